"""Vocal-tract-length warping of log-mel features: one linear map per warp factor.

A longer or shorter vocal tract moves every formant by about the same factor
(Lee and Rose, 1998), so a voice is, to first order, another voice with its
frequency axis scaled. Kaldi warps the filterbank's centre frequencies when it
computes the features (VTLN); speechtl's features are stored, so the warp acts on
them instead: bin ``i`` of the warped features takes the stored features'
log-energy at ``factor`` times bin ``i``'s centre frequency, interpolated
linearly between the two bins around it (held at the edge bins). Each output bin
is a convex combination of two input bins, so the warp is a fixed
(bins, bins) matrix, is exact at factor 1, commutes with per-utterance mean
normalization, and exports to ONNX as one MatMul.

``factor`` > 1 reads each bin from a higher frequency: formants move down
(a short vocal tract, higher formants, is mapped towards a longer one); < 1
moves them up. Used twice: as training augmentation (VTLP, Jaitly and Hinton
2013: a random factor per utterance, :class:`speechtl.train.augment.Vtlp`) and
as per-speaker normalization (the ``vtln`` method chooses one factor for a new
speaker's untranscribed audio and the model keeps it, ``ModelConfig.input_warp``).

The bin geometry is Kaldi's mel scale between ``low_freq`` and ``high_freq``
(<= 0: offset from Nyquist), the fbank's own settings (FbankConfig's defaults).
For Whisper's log-mel (Slaney's scale, 0 Hz to Nyquist) the same formula with
``low_freq=0, high_freq=0`` is an approximation: the two scales differ by a few
percent in where a bin's centre lies.
"""

import math
from dataclasses import asdict, dataclass, replace

import torch

from speechtl.errors import SpeechtlError


@dataclass
class WarpConfig:
    #: Frequency scale: the warped bin at f reads the input at factor * f.
    factor: float = 1.0
    sampling_rate: int = 16000
    num_bins: int = 80
    low_freq: float = 20.0
    high_freq: float = -400.0

    def __post_init__(self):
        if not 0.5 <= self.factor <= 2.0:
            raise SpeechtlError(f"warp factor must be in [0.5, 2.0], got {self.factor}")
        if self.num_bins < 2:
            raise SpeechtlError(f"warping needs 2 or more mel bins, got {self.num_bins}")

    def to_dict(self) -> dict:
        return asdict(self)


def input_warp(geometry: WarpConfig, factor: float) -> dict | None:
    """``ModelConfig.input_warp`` for ``factor`` on ``geometry``'s bins; None (no warp) at 1."""
    return None if factor == 1.0 else replace(geometry, factor=factor).to_dict()


def _mel(f: float) -> float:
    return 1127.0 * math.log1p(f / 700.0)


def _hz(m: float) -> float:
    return 700.0 * math.expm1(m / 1127.0)


def bin_centres(num_bins: int, sampling_rate: float, low_freq: float, high_freq: float) -> list[float]:
    """Centre frequencies (Hz) of Kaldi's triangular mel filters."""
    high = high_freq + 0.5 * sampling_rate if high_freq <= 0 else high_freq
    lo, hi = _mel(low_freq), _mel(high)
    delta = (hi - lo) / (num_bins + 1)
    return [_hz(lo + (i + 1) * delta) for i in range(num_bins)]


def warp_matrix(config: WarpConfig) -> torch.Tensor:
    """(bins, bins) ``W`` with ``warped = feats @ W.T``; rows sum to 1."""
    n = config.num_bins
    centres = bin_centres(n, config.sampling_rate, config.low_freq, config.high_freq)
    lo, hi = _mel(centres[0]), _mel(centres[-1])
    w = torch.zeros(n, n, dtype=torch.float64)
    for i, f in enumerate(centres):
        pos = (_mel(f * config.factor) - lo) / (hi - lo) * (n - 1)  # fractional input bin
        pos = min(max(pos, 0.0), n - 1.0)
        if abs(pos - round(pos)) < 1e-9:  # on a bin (factor 1): exactly it, not a 1e-16 mix
            pos = float(round(pos))
        j = min(math.floor(pos), n - 2)
        frac = pos - j
        w[i, j] += 1.0 - frac
        w[i, j + 1] += frac
    return w.float()


def warp_features(feats: torch.Tensor, config: WarpConfig) -> torch.Tensor:
    """``feats`` (..., bins) warped by ``config.factor`` (unchanged at 1)."""
    if feats.size(-1) != config.num_bins:
        raise SpeechtlError(f"warp built for {config.num_bins} bins, features have {feats.size(-1)}")
    if config.factor == 1.0:
        return feats
    return feats @ warp_matrix(config).to(feats.device, feats.dtype).T


def geometry(input_kind: str, sampling_rate: int, num_bins: int) -> WarpConfig:
    """The identity warp of a model's input: our fbank (FbankConfig's band) or Whisper's
    log-mel (0 Hz to Nyquist); raw samples have no frequency axis to warp."""
    if input_kind == "fbank":
        from speechtl.features.fbank import FbankConfig

        fb = FbankConfig()
        return WarpConfig(1.0, sampling_rate, num_bins, fb.low_freq, fb.high_freq)
    if input_kind == "whisper-mel":
        return WarpConfig(1.0, sampling_rate, num_bins, 0.0, 0.0)
    raise SpeechtlError(
        f"the model reads {input_kind!r}, which has no mel-frequency axis to warp. "
        "Fix: warp (vtlp, vtln) models on fbank or Whisper log-mel input"
    )


def model_geometry(model: torch.nn.Module, cuts) -> WarpConfig:
    """The identity warp of what ``model`` reads from ``cuts``: bins and rate of the cuts'
    stored fbank, or of the Whisper log-mel the model computes."""
    from speechtl.features.inputs import model_input, speech_track

    spec = model_input(model)
    if spec.kind == "fbank":
        f = getattr(speech_track(next(iter(cuts))), "features", None)
        if f is None:
            raise SpeechtlError("the cuts have no features to warp. Fix: run the fbank stage first")
        return geometry("fbank", f.sampling_rate, f.num_features)
    return geometry(spec.kind, spec.sampling_rate, spec.num_features)
