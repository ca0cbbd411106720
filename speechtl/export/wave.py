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

The one thing to handle is that normalization. A model trained with
``input_norm: mvn`` (the wav2vec2 feature extractor's ``do_normalize``)
normalizes the same way itself, so a second pass changes nothing. A model
trained on unnormalized audio (``do_normalize: false``, HuBERT and WavLM base)
would hear every utterance at unit variance, far louder than any training
audio; the base models' first GroupNorm cancels most of the scale, but not all
of it (its eps against a quiet wave's small variance: a tiny random HuBERT's
log-probabilities moved by 4e-3), and the large models' LayerNorm does not
cancel it at all. So the graph brings sherpa-onnx's unit-variance wave to the
median level of the model's training audio, as the Whisper graph does
(``input_level`` in the checkpoint, :func:`export_level`).
"""

import logging

import torch
from torch import nn

from speechtl.errors import SpeechtlError
from speechtl.models.ctc import CtcModel

MODEL_TYPE = "speechtl_ctc_wave"
INPUT_NAMES = ["x"]
OUTPUT_NAMES = ["log_probs"]

#: The level (standard deviation of the samples, full scale 1) a checkpoint without a recorded
#: ``input_level`` is exported at: -26 dBFS, the usual level of speech in recordings that use
#: their range (ITU-T P.56's active speech level for test signals).
DEFAULT_LEVEL = 10 ** (-26 / 20)


class OnnxWaveCtc(nn.Module):
    """x (N, S) float32 waveform -> log_probs (N, T, V): sherpa-onnx's Omnilingual-ASR CTC contract."""

    def __init__(self, model: CtcModel, level: float | None = None):
        super().__init__()
        self.model = model
        spec = model.input_spec
        #: The silence the model was trained with at each end of its input (``model.input_pad``), in samples.
        self.pad = round(spec.pad * spec.sampling_rate)
        #: The level sherpa-onnx's unit-variance wave is brought to (None: the model normalizes itself).
        self.level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.level is not None:
            x = x * self.level
        if self.pad:
            x = nn.functional.pad(x, (self.pad, self.pad))
        lengths = torch.full((x.size(0),), x.size(1), dtype=torch.int64, device=x.device)
        log_probs, _ = self.model(x[..., None], lengths)
        return log_probs


def wave_graph(model: CtcModel, level: float | None = None) -> nn.Module:
    """The exported graph of a waveform model: :class:`OnnxWaveCtc`, or for a Whisper encoder
    :class:`speechtl.export.whisper.OnnxWhisperCtc` at ``level``."""
    if model.input_spec.kind == "whisper-mel":
        from speechtl.export.whisper import OnnxWhisperCtc

        return OnnxWhisperCtc(model, DEFAULT_LEVEL if level is None else level)
    return OnnxWaveCtc(model, level)


def export_level(ckpt: dict, source) -> float:
    """The level a checkpoint's model is exported at: its recorded ``input_level``, else DEFAULT_LEVEL."""
    level = ckpt.get("input_level")
    if level:
        logging.info(f"sherpa-onnx's unit-variance waves are brought to {float(level):.4g}, "
                     "the median level of the training audio")  # fmt: skip
        return float(level)
    logging.warning(
        f"{source} records no level of its training audio (trained by an older speechtl): the graph brings "
        f"sherpa-onnx's unit-variance waves to {DEFAULT_LEVEL:.4g} (-26 dBFS). Retrain to record it."
    )
    return DEFAULT_LEVEL


def normalize_like_sherpa(wave: torch.Tensor) -> torch.Tensor:
    """What sherpa-onnx does to a waveform before this model type: zero mean, unit variance (eps 1e-5)."""
    mean = wave.mean()
    var = (wave.square().mean() - mean * mean).clamp(min=0)
    return (wave - mean) / torch.sqrt(var + 1e-5)


#: The one rate sherpa-onnx's raw-waveform CTC type feeds its model at.
SHERPA_RATE = 16000


def check_sampling_rate(model: CtcModel, source) -> None:
    """sherpa-onnx resamples every recording to 16 kHz before this model type: a model that reads
    another rate (an 8-kHz telephone wav2vec2) would hear the wrong rate, so export refuses it."""
    rate = model.input_spec.sampling_rate
    if rate != SHERPA_RATE:
        raise SpeechtlError(
            f"{source} reads waves at {rate} Hz, and sherpa-onnx's raw-waveform CTC type feeds its model "
            f"at {SHERPA_RATE} Hz only. Fix: decode and transcribe the torch checkpoint (`speechtl decode "
            "--checkpoint`, `speechtl transcribe --model-dir`), or start from a 16-kHz pretrained model."
        )


def example_input(sampling_rate: int = 16000) -> torch.Tensor:
    return torch.randn(1, sampling_rate)


def dynamic_shapes(sampling_rate: int = 16000) -> dict:
    """Batch fixed at one stream (sherpa-onnx feeds this type one at a time), samples from 0.1 s to 10 hours."""
    samples = torch.export.Dim("S", min=sampling_rate // 10, max=sampling_rate * 36000)
    return {"x": {1: samples}}
