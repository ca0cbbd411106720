"""Training-time feature augmentation beyond SpecAugment.

:class:`MelNoise` adds noise in the log-mel domain. A model trained on a few
dozen clean utterances can learn to fire on the silence-to-speech edge rather
than on the word itself; noise in the pauses hides that edge, so only the
word's own spectrum is left to learn from. Adding noise to the stored fbank
(``log(exp(f) + n)``, the power-domain sum without the cross term) costs a few
tensor ops per batch, where mixing audio would mean recomputing features.

:class:`Vtlp` (vocal tract length perturbation, Jaitly and Hinton 2013) scales
each utterance's frequency axis by a random factor
(:mod:`speechtl.features.warp`), so a source model meets more vocal-tract
lengths than its voices have.
"""

from dataclasses import dataclass, replace
from typing import Any

import torch

from speechtl.errors import SpeechtlError
from speechtl.features.warp import WarpConfig, warp_matrix


@dataclass
class MelNoiseConfig:
    #: Signal-to-noise ratio range in dB, drawn uniformly per utterance.
    snr: tuple[float, float] = (5.0, 25.0)
    #: Share of utterances that get noise.
    prob: float = 0.5
    #: Spectral tilt range: the noise power changes by exp(tilt) from the lowest
    #: to the highest mel bin (0 = flat across bins).
    tilt: tuple[float, float] = (-2.0, 2.0)
    #: Frame-to-frame level variation of the noise (std of its log power).
    jitter: float = 0.3


def mel_noise_config(options: dict[str, Any]) -> MelNoiseConfig:
    """The config of a YAML ``mel_noise:`` mapping; unknown keys or bad ranges are named."""
    try:
        cfg = MelNoiseConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    except TypeError as e:
        raise SpeechtlError(f"bad mel_noise options {options}: {e}. Known: snr, prob, tilt, jitter") from e
    if cfg.snr[0] > cfg.snr[1] or not 0.0 <= cfg.prob <= 1.0:
        raise SpeechtlError(
            f"bad mel_noise options {options}: need snr [low, high] with low <= high and 0 <= prob <= 1"
        )
    return cfg


class MelNoise(torch.nn.Module):
    """A lhotse input transform: ``(batch, frames, bins)`` log-mel features in, noisy ones out."""

    def __init__(self, config: MelNoiseConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.generator = generator

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator)

    def forward(self, feats: torch.Tensor, supervision_segments: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        b, t, f = feats.shape
        valid = torch.zeros(b, t, dtype=torch.bool)
        if supervision_segments is None:
            valid[:] = True
        else:
            for seq, start, num in supervision_segments.tolist():
                valid[int(seq), int(start) : int(start) + int(num)] = True
        power = feats.float().exp() * valid[..., None]
        signal = power.sum((1, 2)) / (valid.sum(1) * f).clamp(min=1)  # mean power per bin and frame
        snr = cfg.snr[0] + (cfg.snr[1] - cfg.snr[0]) * self._rand(b)
        tilt = cfg.tilt[0] + (cfg.tilt[1] - cfg.tilt[0]) * self._rand(b)
        shape = torch.exp(tilt[:, None] * (torch.linspace(0, 1, f)[None, :] - 0.5))  # (b, f)
        shape = shape / shape.mean(1, keepdim=True)
        level = signal * 10.0 ** (-snr / 10.0)  # (b,)
        jitter = torch.exp(cfg.jitter * torch.randn(b, t, 1, generator=self.generator))
        noise = level[:, None, None] * shape[:, None, :] * jitter
        noisy = torch.logaddexp(feats.float(), noise.clamp(min=1e-20).log()).to(feats.dtype)
        chosen = (self._rand(b) < cfg.prob) & (signal > 0)
        out = torch.where(chosen[:, None, None] & valid[..., None], noisy, feats)
        return out


@dataclass
class VtlpConfig:
    #: Warp factor range, drawn uniformly per utterance (speechtl.features.warp: > 1 moves formants down).
    low: float = 0.9
    high: float = 1.1
    #: Share of utterances warped.
    prob: float = 1.0


def vtlp_config(options: dict[str, Any]) -> VtlpConfig:
    """The config of a YAML ``vtlp:`` mapping; unknown keys or bad ranges are named."""
    try:
        cfg = VtlpConfig(**options)
    except TypeError as e:
        raise SpeechtlError(f"bad vtlp options {options}: {e}. Known: low, high, prob") from e
    if not 0.5 <= cfg.low <= cfg.high <= 2.0 or not 0.0 <= cfg.prob <= 1.0:
        raise SpeechtlError(f"bad vtlp options {options}: need 0.5 <= low <= high <= 2.0 and 0 <= prob <= 1")
    return cfg


class Vtlp(torch.nn.Module):
    """A lhotse input transform: each utterance of ``(batch, frames, bins)`` log-mel features
    warped by its own random factor; ``geometry`` is the features' bin layout (its factor unused)."""

    #: Factors are drawn on this grid, so each batch builds a few matrices, not one per utterance.
    STEP = 0.01

    def __init__(self, config: VtlpConfig, geometry: WarpConfig):
        super().__init__()
        self.config = config
        self.geometry = geometry
        self._matrices: dict[float, torch.Tensor] = {}

    def matrix(self, factor: float) -> torch.Tensor:
        if factor not in self._matrices:
            self._matrices[factor] = warp_matrix(replace(self.geometry, factor=factor))
        return self._matrices[factor]

    def forward(self, feats: torch.Tensor, supervision_segments: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        out = feats.clone()
        for i in range(feats.size(0)):
            if torch.rand(()) >= cfg.prob:
                continue
            factor = round((cfg.low + (cfg.high - cfg.low) * float(torch.rand(()))) / self.STEP) * self.STEP
            factor = round(factor, 4)
            if factor != 1.0:
                out[i] = (feats[i].float() @ self.matrix(factor).T).to(feats.dtype)
        return out
