"""Training-time feature augmentation beyond SpecAugment.

:class:`MelNoise` adds noise in the log-mel domain. A model trained on a few
dozen clean utterances can learn to fire on the silence-to-speech edge rather
than on the word itself; noise in the pauses hides that edge, so only the
word's own spectrum is left to learn from. Adding noise to the stored fbank
(``log(exp(f) + n)``, the power-domain sum without the cross term) costs a few
tensor ops per batch, where mixing audio would mean recomputing features.
"""

from dataclasses import dataclass
from typing import Any

import torch

from speechtl.errors import SpeechtlError


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
