"""Whisper's log-mel spectrogram, batched, in torch (CPU or GPU), for waves of any length.

Per wave (OpenAI's recipe): a 400-point periodic-Hann STFT every 160 samples
(16 kHz: 25 ms windows, 10 ms frames) centred, i.e. reflected by 200 samples at
the wave's own ends; the power spectrum without its last frame (``n // 160``
frames); Slaney-normalized mel filters over 0-8 kHz; ``log10`` floored at 1e-10;
values below the utterance's maximum minus 8 (80 dB) raised to it; ``(x + 4) / 4``.

Batching: every wave is reflected at its own edges before the batch is padded
and framed as one tensor, so each result is what the wave alone gives.

Padded vs un-padded. ``transformers``' ``WhisperFeatureExtractor`` first pads
(or cuts) every wave to 30 s with zeros, then does the above over the 30 s. On a
wave of 30 s the two are the same (``tests/test_whisper.py``: within 1e-4). On
a shorter wave of n samples our frames are the first ``n // 160`` of its 3000
frames but for (at most) the last: (1) the window of frame ``n // 160 - 1``
reaches up to 40 samples past the wave's end, where the padded wave continues
with zeros and ours reflects the speech; (2) the 8-dB clamp uses the maximum
over the utterance here and over the 30-s window there, which is the same
maximum (the zeros' log-mel is -10, below any speech), so it changes none of
the utterance's frames unless they are all silence. What padding adds is
``3000 - n // 160`` frames of the clamped floor, ``(max - 8 + 4) / 4``, that
transformers' encoder attends to and ours, with the positions sliced to the
input, never computes (``tests/test_whisper.py`` checks both statements).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class WhisperMelConfig:
    num_mels: int = 80
    sampling_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    #: Dynamic range kept below each utterance's maximum, in log10 units (8 = 80 dB).
    dynamic_range: float = 8.0


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    logstep = 27.0 / torch.log(torch.tensor(6.4, dtype=f.dtype))
    return torch.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + torch.log(f.clamp(min=1e-10) / 1000.0) * logstep)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    logstep = torch.log(torch.tensor(6.4, dtype=m.dtype)) / 27.0
    return torch.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * torch.exp(logstep * (m - 15.0)))


def slaney_mel_filters(num_mels: int, n_fft: int, sampling_rate: int) -> torch.Tensor:
    """(n_fft // 2 + 1, num_mels) triangular filters, each scaled to unit area (Slaney norm)."""
    freqs = torch.linspace(0, sampling_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(hz_to_mel(torch.tensor(0.0, dtype=torch.float64)).item(),
                                     hz_to_mel(torch.tensor(sampling_rate / 2, dtype=torch.float64)).item(),
                                     num_mels + 2, dtype=torch.float64))  # fmt: skip
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rise = (freqs[:, None] - lo[None, :]) / (mid - lo)[None, :]
    fall = (hi[None, :] - freqs[:, None]) / (hi - mid)[None, :]
    tri = torch.clamp(torch.minimum(rise, fall), min=0.0)
    return (tri * (2.0 / (hi - lo))[None, :]).float()


def reflect_indices(n: int, left: int, right: int) -> torch.Tensor:
    """Indices of a length-n signal reflected (without repeating the edge sample) by
    ``left``/``right`` samples, as numpy's ``pad(mode="reflect")``, also for waves
    shorter than the reflection (it bounces back and forth)."""
    idx = torch.arange(-left, n + right)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


class BatchedWhisperMel(torch.nn.Module):
    """``forward(list of 1-D 16-kHz waves) -> list of (n // 160, num_mels)`` Whisper log-mel."""

    def __init__(self, config: WhisperMelConfig | None = None):
        super().__init__()
        self.config = config if config is not None else WhisperMelConfig()
        c = self.config
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.register_buffer("filters", slaney_mel_filters(c.num_mels, c.n_fft, c.sampling_rate), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.config.hop_length

    @torch.no_grad()
    def forward(self, waves: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        c = self.config
        device = self.window.device
        half = c.n_fft // 2
        counts = [self.num_frames(w.numel()) for w in waves]
        ext = []
        for w in waves:
            w = w.reshape(-1).to(device=device, dtype=torch.float32)
            ext.append(w[reflect_indices(w.numel(), half, half).to(device)] if w.numel() else w)
        if not ext or max(counts) == 0:
            return [torch.zeros(n, c.num_mels, device=device) for n in counts]
        batch = torch.nn.utils.rnn.pad_sequence(ext, batch_first=True)
        need = (max(counts) - 1) * c.hop_length + c.n_fft
        if batch.size(1) < need:
            batch = torch.nn.functional.pad(batch, (0, need - batch.size(1)))
        frames = batch.unfold(1, c.n_fft, c.hop_length)[:, : max(counts)]  # (B, F, n_fft)
        power = torch.fft.rfft(frames * self.window, dim=-1).abs().square()
        logmel = (power @ self.filters).clamp(min=1e-10).log10()  # (B, F, num_mels)
        out = []
        for i, n in enumerate(counts):
            x = logmel[i, :n]
            if n:
                x = torch.maximum(x, x.max() - c.dynamic_range)
            out.append((x + 4.0) / 4.0)
        return out
