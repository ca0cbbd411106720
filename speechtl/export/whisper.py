"""Whisper-source models for sherpa-onnx: the log-mel computed in the graph, at a fixed level.

sherpa-onnx has no CTC model type that computes Whisper's log-mel (its Whisper type runs OpenAI's
decoder, not a CTC head), so a model on a Whisper encoder goes through the raw-waveform CTC type
the wav2vec2 family uses (:mod:`speechtl.export.wave`), with the log-mel as the graph's first
layers: the 400-point DFT of Hann-windowed frames as one strided convolution (ONNX needs no FFT op
for it), power, Slaney mel filters, ``log10``, the 80-dB clamp below the utterance's maximum,
``(x + 4) / 4``. It equals :class:`speechtl.features.whisper_mel.BatchedWhisperMel` (test).

The one thing to settle is the level. sherpa-onnx scales each waveform to zero mean and unit
variance before this model type, and Whisper's log-mel is not invariant to that: a gain ``c``
adds ``log10(c) / 2`` to every feature, which the pretrained input convolution (with biases, then
GELU) carries through. No fine-tuned Whisper model is invariant, so export cannot refuse the
others as it does for waveform models. Instead the graph multiplies the unit-variance wave by a
fixed level, the median standard deviation of the model's training audio (the trainer records it
in the checkpoint as ``input_level``): sherpa-onnx then gives every utterance the level of a
typical training utterance. An utterance at that level decodes as the torch model decodes it
(tested utterance by utterance); one recorded louder or softer is heard at the typical level, a
loudness normalization the torch decode does not do. ``speechtl decode --onnx`` writes the
exported model's WER beside the torch rows of results.tsv, so the difference is measured, not
assumed.
"""

import math

import torch
from torch import nn

from speechtl.features.whisper_mel import WhisperMelConfig, slaney_mel_filters
from speechtl.models.ctc import CtcModel


class GraphWhisperMel(nn.Module):
    """(1, S) wave -> (1, S // hop, num_mels) Whisper log-mel, with ops ONNX has (no FFT)."""

    def __init__(self, config: WhisperMelConfig):
        super().__init__()
        self.config = c = config
        n = torch.arange(c.n_fft, dtype=torch.float64)
        k = torch.arange(c.n_fft // 2 + 1, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / c.n_fft
        window = torch.hann_window(c.n_fft, dtype=torch.float64)
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2 * bins, n_fft)
        self.register_buffer("basis", basis.float()[:, None, :], persistent=False)
        self.register_buffer("filters", slaney_mel_filters(c.num_mels, c.n_fft, c.sampling_rate), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.config
        frames = wave.size(-1) // c.hop_length
        half = c.n_fft // 2
        x = nn.functional.pad(wave[:, None, :], (half, half), mode="reflect")
        spec = nn.functional.conv1d(x, self.basis, stride=c.hop_length)[..., :frames]  # (1, 2 * bins, F)
        re, im = spec.chunk(2, dim=1)
        power = (re.square() + im.square()).transpose(1, 2)  # (1, F, bins)
        logmel = (power @ self.filters).clamp(min=1e-10).log10()
        logmel = torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - c.dynamic_range)
        return (logmel + 4.0) / 4.0


class OnnxWhisperCtc(nn.Module):
    """x (1, S) unit-variance wave -> log_probs (1, T, V): the graph of a Whisper-source model.

    The wave is brought to ``level``, padded with the model's input silence (``input_pad``, as in
    training), turned into log-mel and decoded by the model (warp and input norm included)."""

    def __init__(self, model: CtcModel, level: float):
        super().__init__()
        self.model = model
        spec = model.input_spec
        self.level = float(level)
        self.pad = round(spec.pad * spec.sampling_rate)
        self.mel = GraphWhisperMel(WhisperMelConfig(num_mels=spec.num_features, sampling_rate=spec.sampling_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.level
        if self.pad:
            x = nn.functional.pad(x, (self.pad, self.pad))
        feats = self.mel(x)
        lengths = torch.full((1,), feats.size(1), dtype=torch.int64, device=x.device)
        log_probs, _ = self.model(feats, lengths)
        return log_probs


def example_input(sampling_rate: int = 16000) -> torch.Tensor:
    return torch.randn(1, 2 * sampling_rate)


def dynamic_shapes(model: CtcModel) -> dict:
    """One stream (sherpa-onnx feeds this type one at a time) of 0.1 s up to what the encoder's
    positions cover less the input pad (pieces of longer recordings: :mod:`speechtl.decode.longform`)."""
    from speechtl.decode.longform import model_max_seconds, piece_limit

    spec = model.input_spec
    longest = piece_limit(0.0, model_max_seconds(model), spec.pad)
    samples = torch.export.Dim("S", min=spec.sampling_rate // 10, max=int(longest * spec.sampling_rate))
    return {"x": {1: samples}}
