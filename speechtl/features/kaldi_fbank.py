"""speechtl's own Kaldi fbank kernel: the same numbers as Kaldi, in fewer passes.

Kaldi processes each frame separately: (dither,) remove the frame's mean,
pre-emphasize, window, FFT, power, mel, log. Frames overlap (25 ms every
10 ms), so per-frame steps touch every sample 2.5 times. This kernel
reorganizes the same arithmetic:

- Pre-emphasis is applied to the signal, not to each frame; only the first
  sample of each frame differs from Kaldi's per-frame rule (it uses ``x[0]``
  as its own predecessor) and is patched afterwards.
- Mean removal commutes with pre-emphasis up to a constant: with ``m`` the
  frame mean, ``P(x - m) = Px - (1 - c) m``, so framing, pre-emphasis and DC
  removal are one subtraction that writes the strided frames into the FFT
  buffer. Frame means come from sums over blocks of ``gcd(frame length,
  shift)`` samples (80 at 16 kHz), which every frame is made of: about one
  pass over the signal instead of 2.5. (Moving the mean removal after the FFT
  by linearity saves a pass but loses float32 precision on frames with a
  large offset: 1.7e-3 against Kaldi, measured.)
- Power spectrum and mel projection are one in-place square and BLAS
  matmuls: the mel matrix has each row twice, so applied to the squared
  interleaved (re, im) pairs it also sums re^2 + im^2. The filters are
  triangles over contiguous bins, so each group of 16 filters is multiplied by
  only the bins its triangles cover (a fifth of the dense 257 x 80 MACs), and
  written straight into its columns of the output. (A separate power pass
  ``re^2 + im^2`` followed by half-width matmuls is slower on CPU: that pass
  reads the complex spectrum with stride 2. Groups of 16 suit MKL's sgemm
  kernels; 10 or 20 are slower despite fewer or equal MACs.)
- On CPU, frames go through all steps in blocks of ``block_frames`` (1024),
  so the FFT buffer, the spectrum and the output stay in cache between
  steps, and buffers are allocated once per call. Unblocked, a 60 s batch
  (6000 frames, 12 MB of FFT buffer) runs the same steps 1.5x slower, and
  the 600 s batches of ``compute.py`` 3.5x slower (measured). On GPUs all
  frames are one block: there per-op launch cost, not cache, is what matters.
"""

import math
import time

import numpy as np
import torch


class StageClock:
    """``clock(name)`` adds the seconds since its previous call to ``times[name]``:
    the per-stage profile that ``bench/fbank.py --profile`` prints, taken on the
    real code path. Free when ``times`` is None. Host time: on a GPU it measures
    kernel launches, not the kernels."""

    def __init__(self, times: dict[str, float] | None):
        self.times = times
        self.last = time.perf_counter() if times is not None else 0.0

    def __call__(self, name: str) -> None:
        if self.times is not None:
            now = time.perf_counter()
            self.times[name] = self.times.get(name, 0.0) + now - self.last
            self.last = now


def povey_window(length: int) -> torch.Tensor:
    n = torch.arange(length, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))).pow(0.85)


def kaldi_mel_banks(
    num_bins: int, padded: int, sampling_rate: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """(num_bins, padded // 2 + 1) triangular filters on Kaldi's mel scale (Nyquist column 0)."""
    nyquist = 0.5 * sampling_rate
    if high_freq <= 0:
        high_freq += nyquist

    def mel(f):
        return 1127.0 * torch.log1p(f / 700.0)

    lo, hi = mel(torch.tensor(low_freq, dtype=torch.float64)), mel(torch.tensor(high_freq, dtype=torch.float64))
    delta = (hi - lo) / (num_bins + 1)
    freqs = torch.arange(padded // 2, dtype=torch.float64) * (sampling_rate / padded)
    m = mel(freqs)[None, :]
    b = torch.arange(num_bins, dtype=torch.float64)[:, None]
    left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
    up = (m - left) / (center - left)
    down = (right - m) / (right - center)
    w = torch.where(m <= center, up, down)
    w = torch.where((m > left) & (m < right), w, torch.zeros_like(w))
    return torch.cat([w, torch.zeros(num_bins, 1, dtype=torch.float64)], dim=1)


class KaldiFbankKernel(torch.nn.Module):
    """``forward(signal (N,), num_frames) -> (num_frames, num_bins)`` log-mel energies.

    ``signal`` is laid out for snip_edges framing: frame ``t`` is
    ``signal[t * shift : t * shift + length]`` (see
    :class:`speechtl.features.fbank.BatchedFbank`, which packs a batch of waves
    into one such signal).
    """

    def __init__(
        self,
        window_length: int,
        window_shift: int,
        sampling_rate: int,
        num_bins: int,
        preemph: float = 0.97,
        remove_dc: bool = True,
        round_to_power_of_two: bool = True,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        window_type: str = "povey",
        dither: float = 0.0,
        mel_group: int = 16,
        block_frames: int = 1024,
    ):
        super().__init__()
        if window_type != "povey":
            raise ValueError("the speechtl fbank kernel implements Kaldi's povey window only")
        self.length, self.shift, self.num_bins = window_length, window_shift, num_bins
        self.padded = 1 << (window_length - 1).bit_length() if round_to_power_of_two else window_length
        self.preemph, self.remove_dc, self.dither = preemph, remove_dc, dither
        self.block_frames = block_frames
        self.register_buffer("window", povey_window(window_length).float(), persistent=False)
        banks = kaldi_mel_banks(num_bins, self.padded, sampling_rate, low_freq, high_freq)
        # Each mel row twice: applied to the FFT's interleaved (re, im) pairs squared, the
        # matmul also does the re^2 + im^2 sum of the power spectrum.
        mel_t2 = banks.t().repeat_interleave(2, dim=0).float()
        # Filters are triangles over contiguous bins: multiply each group of filters by
        # only the rows its triangles cover (exact, a fifth of the MACs).
        self.groups = []
        for f0 in range(0, num_bins, mel_group):
            f1 = min(num_bins, f0 + mel_group)
            nz = torch.nonzero(mel_t2[:, f0:f1].abs().sum(1)).flatten()
            lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.numel() else (0, 1)
            self.register_buffer(f"mel_g{f0}", mel_t2[lo:hi, f0:f1].contiguous(), persistent=False)
            self.groups.append((f0, f1, lo, hi, f"mel_g{f0}"))
        self.eps = torch.finfo(torch.float32).eps

    def frame_means(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Mean of each frame: sums of ``gcd(length, shift)``-sample blocks, then of the
        blocks each frame spans (float32 sums of <= 80 terms: far below Kaldi's own
        float32 rounding, without a cumulative sum's cancellation)."""
        L, S = self.length, self.shift
        g = math.gcd(L, S)
        blocks = x[: (num_frames - 1) * S + L].reshape(-1, g).sum(1)
        return blocks.unfold(0, L // g, S // g).sum(1) / L

    def frame_noise(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """Kaldi's dither for ``n`` frames: independent Gaussian noise per frame sample,
        passed through the same DC removal and pre-emphasis as the frames (all linear,
        so it can be added to the processed frames)."""
        noise = torch.randn(n, self.length, device=like.device, dtype=like.dtype).mul_(self.dither)
        if self.remove_dc:
            noise -= noise.mean(1, keepdim=True)
        out = torch.empty_like(noise)
        torch.add(noise[:, 1:], noise[:, :-1], alpha=-self.preemph, out=out[:, 1:])
        out[:, 0] = (1 - self.preemph) * noise[:, 0]
        return out

    def forward(self, x: torch.Tensor, num_frames: int, stage_times: dict[str, float] | None = None) -> torch.Tensor:
        """``stage_times``, when a dict, gets the seconds spent in each stage added."""
        clock = StageClock(stage_times)
        L, S, c, T = self.length, self.shift, self.preemph, num_frames
        out = x.new_empty(T, self.num_bins)
        if T == 0:
            return out
        # Per-frame constants, for all frames at once: what DC removal subtracts from
        # the pre-emphasized frame, and each frame's first sample after both.
        starts = x[: (T - 1) * S + 1 : S]
        if self.remove_dc:
            mean = self.frame_means(x, T)
            offset = (1 - c) * mean
            first = (1 - c) * (starts - mean)
        else:
            offset, first = None, (1 - c) * starts
        clock("frame means")
        block = min(T, self.block_frames) if x.device.type == "cpu" else T
        emph = x.new_empty((block - 1) * S + L)
        fft_in = x.new_zeros(block, self.padded)  # the padding columns stay zero
        spec = torch.empty(block, self.padded // 2 + 1, device=x.device, dtype=torch.complex64)
        spec_ri = torch.view_as_real(spec).view(block, -1)  # re, im, re, im, ...
        clock("buffers")
        for t0 in range(0, T, block):
            n = min(block, T - t0)
            a, m = t0 * S, (n - 1) * S + L
            torch.add(x[a + 1 : a + m], x[a : a + m - 1], alpha=-c, out=emph[1:m])
            frames = emph.as_strided((n, L), (S, 1))
            clock("pre-emphasis")
            win = fft_in[:n, :L]
            if offset is not None:
                torch.sub(frames, offset[t0 : t0 + n, None], out=win)
            else:
                win.copy_(frames)
            clock("framing + DC removal")
            win[:, 0] = first[t0 : t0 + n]
            clock("first-sample fix")
            if self.dither != 0:
                win += self.frame_noise(n, win)
                clock("dither")
            win.mul_(self.window)
            clock("window")
            torch.fft.rfft(fft_in[:n], out=spec[:n])
            clock("rfft")
            squares = spec_ri[:n].square_()
            clock("power (square)")
            o = out[t0 : t0 + n]
            for f0, f1, lo, hi, name in self.groups:
                torch.mm(squares[:, lo:hi], getattr(self, name), out=o[:, f0:f1])
            clock("mel matmuls")
            self._log_(o.clamp_(min=self.eps))
            clock("floor + log")
        return out

    @staticmethod
    def _log_(x: torch.Tensor) -> None:
        """In-place natural log. On CPU through numpy, whose SIMD float32 log is
        2.7x faster than torch's (1 vs 0.36 ns an element, measured): it was 5%
        of the whole fbank."""
        if x.device.type == "cpu":
            np.log(x.numpy(), out=x.numpy())
        else:
            x.log_()
