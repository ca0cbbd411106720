"""Raw-waveform models (wav2vec2, HuBERT, WavLM, XLS-R sources) for sherpa-onnx.

sherpa-onnx runs one offline CTC model type whose input is the waveform itself:
its Omnilingual-ASR CTC loader (``OfflineOmnilingualAsrCtcModelConfig``, Meta's
wav2vec2-based 1600-language model). Its contract: one input, (1, samples)
float32 at 16 kHz, which sherpa-onnx has first scaled to zero mean and unit
variance over the utterance; one output, (N, T, V) scores, of which it takes T
as the length and V as the vocabulary; greedy or HLG search as for the other
CTC types. A wav2vec2-family CtcModel fits it as it is: the exported graph
wraps the model so that the samples become its (N, S, 1) input with every
length S.

The one thing to check is that normalization. A model trained with
``input_norm: mvn`` (the wav2vec2 feature extractor's ``do_normalize``)
normalizes the same way itself, so a second pass changes nothing. A model
trained on unnormalized audio is still unchanged when its first convolution has
no bias and a per-channel GroupNorm (the base models' ``feat_extract_norm:
group``): scale and offset cancel there. Anything else would see other input
than in training, so :func:`check_normalization_invariance` measures it on a
test wave and export refuses such a model, saying so.
"""

import torch
from torch import nn

from speechtl.errors import SpeechtlError
from speechtl.models.ctc import CtcModel

MODEL_TYPE = "speechtl_ctc_wave"
INPUT_NAMES = ["x"]
OUTPUT_NAMES = ["log_probs"]
#: Largest change of a log-probability a normalization of the input may make.
INVARIANCE_TOLERANCE = 1e-3


class OnnxWaveCtc(nn.Module):
    """x (N, S) float32 waveform -> log_probs (N, T, V): sherpa-onnx's Omnilingual-ASR CTC contract."""

    def __init__(self, model: CtcModel):
        super().__init__()
        self.model = model
        spec = model.input_spec
        #: The silence the model was trained with at each end of its input (``model.input_pad``), in samples.
        self.pad = round(spec.pad * spec.sampling_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = nn.functional.pad(x, (self.pad, self.pad))
        lengths = torch.full((x.size(0),), x.size(1), dtype=torch.int64, device=x.device)
        log_probs, _ = self.model(x[..., None], lengths)
        return log_probs


def wave_graph(model: CtcModel, level: float | None = None) -> nn.Module:
    """The exported graph of a waveform model: :class:`OnnxWaveCtc`, or for a Whisper encoder
    :class:`speechtl.export.whisper.OnnxWhisperCtc` at ``level``."""
    if model.input_spec.kind == "whisper-mel":
        from speechtl.export.whisper import DEFAULT_LEVEL, OnnxWhisperCtc

        return OnnxWhisperCtc(model, DEFAULT_LEVEL if level is None else level)
    return OnnxWaveCtc(model)


def normalize_like_sherpa(wave: torch.Tensor) -> torch.Tensor:
    """What sherpa-onnx does to a waveform before this model type: zero mean, unit variance (eps 1e-5)."""
    mean = wave.mean()
    var = (wave.square().mean() - mean * mean).clamp(min=0)
    return (wave - mean) / torch.sqrt(var + 1e-5)


@torch.no_grad()
def check_normalization_invariance(model: CtcModel, source, sampling_rate: int = 16000) -> float:
    """The largest change sherpa-onnx's input normalization makes to the model's log-probabilities
    on a quiet test wave (2 s; with a DC offset unless the model pads its input); raises when it
    exceeds ``INVARIANCE_TOLERANCE``."""
    g = torch.Generator().manual_seed(0)
    # With input_pad, the silence is added after sherpa-onnx's normalization but before the model's
    # own: a DC offset then shifts the padding against the speech, which no graph can undo. Recorded
    # speech has next to none, so padded models are checked on a wave of zero mean.
    wave = 0.05 * torch.randn(1, 2 * sampling_rate, generator=g)
    wave = wave - wave.mean() if model.input_spec.pad else wave + 0.01
    wrapper = OnnxWaveCtc(model).eval()
    change = float((wrapper(wave) - wrapper(normalize_like_sherpa(wave))).abs().max())
    if change > INVARIANCE_TOLERANCE:
        raise SpeechtlError(
            f"{source}: sherpa-onnx scales every waveform to zero mean and unit variance before a raw-waveform "
            f"model, and this model's output changes under it (log-probabilities by up to {change:.3g}): it was "
            "trained on unnormalized audio (its pretrained feature extractor's do_normalize is false) and its "
            "first layers do not cancel the scale. Fix: decode and transcribe the torch checkpoint "
            "(`speechtl decode --checkpoint`, `speechtl transcribe --model-dir`), or start from a pretrained "
            "model whose feature extractor normalizes (do_normalize: true)."
        )
    return change


def example_input(sampling_rate: int = 16000) -> torch.Tensor:
    return torch.randn(1, sampling_rate)


def dynamic_shapes(sampling_rate: int = 16000) -> dict:
    """Batch fixed at one stream (sherpa-onnx feeds this type one at a time), samples from 0.1 s to 10 hours."""
    samples = torch.export.Dim("S", min=sampling_rate // 10, max=sampling_rate * 36000)
    return {"x": {1: samples}}
