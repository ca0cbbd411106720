"""A batched, Kaldi-compatible log-mel filterbank in torch, for CPU and GPU.

The per-frame arithmetic (DC removal, pre-emphasis, povey window, FFT, mel
banks, log) is either speechtl's kernel (``kaldi_fbank.py``, the default: fewer
passes over memory, see ``bench/fbank.py``) or lhotse's ``Wav2LogFilterBank``;
both match Kaldi well within 1e-3 on real audio. This module adds exact *batching* of waves of different
lengths: with ``snip_edges=False`` Kaldi reflects each signal at its own ends, so
padding a batch and framing it as one tensor gives wrong final frames for all
but the longest wave. Here every wave is reflected at its own edges first (by
Kaldi's index rule), the batch is framed with ``snip_edges=True`` semantics,
and each result is cut to that wave's Kaldi frame count.
"""

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from speechtl.features.kaldi_fbank import KaldiFbankKernel, StageClock


@dataclass
class FbankConfig:
    """Options with Kaldi's meaning (``compute-fbank-feats``), lhotse's defaults."""

    sampling_rate: int = 16000
    num_mel_bins: int = 80
    frame_length: float = 0.025  # seconds
    frame_shift: float = 0.01  # seconds
    dither: float = 0.0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    round_to_power_of_two: bool = True
    low_freq: float = 20.0
    high_freq: float = -400.0  # <= 0: offset from Nyquist
    energy_floor: float = 1e-10
    snip_edges: bool = False
    #: "speechtl" (our kernel, see kaldi_fbank.py) or "lhotse" (lhotse's Wav2LogFilterBank).
    backend: str = "speechtl"

    def to_dict(self) -> dict:
        return asdict(self)


def kaldi_num_frames(num_samples: int, window_length: int, window_shift: int, snip_edges: bool) -> int:
    """Kaldi's ``NumFrames``: how many frames a signal of ``num_samples`` gives."""
    if snip_edges:
        return 0 if num_samples < window_length else 1 + (num_samples - window_length) // window_shift
    return (num_samples + window_shift // 2) // window_shift


class BatchedFbank(torch.nn.Module):
    """``forward(list of 1-D waves in [-1, 1]) -> list of (num_frames, num_mel_bins)``."""

    def __init__(self, config: FbankConfig | None = None):
        super().__init__()
        config = config if config is not None else FbankConfig()
        self.config = config
        sr = config.sampling_rate
        # Kaldi (and lhotse) truncate to whole samples: 25.1 ms at 8 kHz is 200 samples,
        # not 201. The 1e-6 keeps e.g. 0.0145 s * 16 kHz = 231.99999999999997 at 232.
        self.window_length = int(config.frame_length * sr + 1e-6)
        self.window_shift = int(config.frame_shift * sr + 1e-6)
        if config.backend not in ("speechtl", "lhotse"):
            raise ValueError(f"FbankConfig.backend must be 'speechtl' or 'lhotse', got {config.backend!r}")
        self.kernel = self.layer = None
        if config.backend == "speechtl":
            self.kernel = KaldiFbankKernel(
                self.window_length,
                self.window_shift,
                sr,
                config.num_mel_bins,
                preemph=config.preemph_coeff,
                remove_dc=config.remove_dc_offset,
                round_to_power_of_two=config.round_to_power_of_two,
                low_freq=config.low_freq,
                high_freq=config.high_freq,
                window_type=config.window_type,
                dither=config.dither,
            )
        else:
            self.layer = self._lhotse_layer(config)
        #: When a dict, the speechtl backend adds the seconds it spends per stage to it
        #: (``bench/fbank.py --profile``).
        self.stage_times: dict[str, float] | None = None
        # Follows .to(device), so forward() knows where to put the waves.
        self.register_buffer("_where", torch.zeros(0), persistent=False)

    @staticmethod
    def _lhotse_layer(config: FbankConfig) -> torch.nn.Module:
        from lhotse.features.kaldi.layers import Wav2LogFilterBank

        with warnings.catch_warnings():
            # lhotse warns that snip_edges=True is unusual; we handle the edges ourselves.
            warnings.simplefilter("ignore")
            return Wav2LogFilterBank(
                sampling_rate=config.sampling_rate,
                frame_length=config.frame_length,
                frame_shift=config.frame_shift,
                round_to_power_of_two=config.round_to_power_of_two,
                remove_dc_offset=config.remove_dc_offset,
                preemph_coeff=config.preemph_coeff,
                window_type=config.window_type,
                dither=config.dither,
                snip_edges=True,
                energy_floor=config.energy_floor,
                low_freq=config.low_freq,
                high_freq=config.high_freq,
                num_filters=config.num_mel_bins,
            )

    def num_frames(self, num_samples: int) -> int:
        return kaldi_num_frames(num_samples, self.window_length, self.window_shift, self.config.snip_edges)

    def _kaldi_pieces(self, wave: torch.Tensor, num_frames: int) -> list[torch.Tensor]:
        """The samples Kaldi's frames read, edges reflected, laid out for snip_edges
        framing, as pieces to concatenate: commonly the two flipped edges (copies of
        at most a frame each) around the wave itself (not copied here)."""
        if self.config.snip_edges or num_frames == 0:
            return [wave]
        n = wave.numel()
        first = self.window_shift // 2 - self.window_length // 2  # first sample of frame 0
        total = (num_frames - 1) * self.window_shift + self.window_length
        left, right = -first, first + total - n
        if 0 <= left <= n and 0 <= right <= n:
            # Kaldi reflects x[-1 - k] = x[k] and x[n + k] = x[n - 1 - k]: flipped slices.
            return [wave[:left].flip(0), wave, wave[n - right :].flip(0)]
        idx = torch.arange(first, first + total, device=wave.device)
        idx = torch.where(idx < 0, -idx - 1, idx)
        idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
        return [wave[idx.clamp_(0, n - 1)]]

    def _kaldi_extended(self, wave: torch.Tensor, num_frames: int) -> torch.Tensor:
        pieces = self._kaldi_pieces(wave, num_frames)
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    @torch.no_grad()
    def forward(self, waves: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        device = self._where.device
        counts = [self.num_frames(w.numel()) for w in waves]
        if self.kernel is not None:
            return self._packed(waves, counts, device)
        ext = [
            self._kaldi_extended(w.to(device=device, dtype=torch.float32).reshape(-1), c)
            for w, c in zip(waves, counts, strict=False)
        ]
        nonempty = [e for e, c in zip(ext, counts, strict=False) if c > 0]
        out: list[torch.Tensor] = []
        if nonempty:
            feats = self.layer(torch.nn.utils.rnn.pad_sequence(nonempty, batch_first=True))
        k = 0
        for c in counts:
            if c == 0:
                out.append(torch.zeros(0, self.config.num_mel_bins, device=device))
            else:
                out.append(feats[k, :c])
                k += 1
        return out

    def _packed(self, waves: Sequence[torch.Tensor], counts: list[int], device) -> list[torch.Tensor]:
        """All waves back to back in one signal, each starting at a multiple of the
        frame shift: one framing covers them all, with no padding to the longest wave
        and at most a couple of discarded frames across each boundary.

        The signal is one ``torch.cat`` of slices of the waves (reflected edges, zero
        gaps), built where the waves are and moved to ``device`` in one copy: no
        per-wave intermediate tensors or host-to-GPU transfers."""
        clock = StageClock(self.stage_times)
        shift = self.window_shift
        where = waves[0].device if waves and all(w.device == waves[0].device for w in waves) else device
        gap = torch.zeros(shift, device=where)
        parts, first_frame, pos = [], [], 0
        for w, c in zip(waves, counts, strict=False):
            first_frame.append(pos)
            if c > 0:
                pieces = self._kaldi_pieces(w.to(device=where, dtype=torch.float32).reshape(-1), c)
                n = sum(p.numel() for p in pieces)
                room = -(-n // shift) * shift
                parts += pieces
                if room > n:
                    parts.append(gap[: room - n])
                pos += room // shift
        if not parts:
            return [torch.zeros(0, self.config.num_mel_bins, device=device) for _ in counts]
        flat = torch.cat(parts).to(device)
        total = (flat.numel() - self.window_length) // shift + 1
        clock("packing waves")
        feats = self.kernel(flat, total, self.stage_times)
        clock = StageClock(self.stage_times)
        out = [feats[f : f + c] for f, c in zip(first_frame, counts, strict=False)]
        clock("packing waves")
        return out
