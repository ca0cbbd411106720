"""Pretrained sources: ``whisper:PATH_OR_ID`` and ``hf:PATH_OR_ID`` wherever a source checkpoint goes.

A source is either our own checkpoint (a path) or a pretrained model named
by one of :data:`SOURCE_KINDS`. A pretrained source gives the target model its
encoder (architecture and weights); the output layer is new, sized for the
target's units (there are no source units to transfer rows from). The model
config is complete without the pretrained files (see
:class:`speechtl.models.ctc.ModelConfig`), so the checkpoints of the target
rebuild anywhere.
"""

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from speechtl.errors import SpeechtlError
from speechtl.models.ctc import CtcModel, ModelConfig, build_model

#: Prefix -> what follows it: "whisper": an HF Whisper dir or hub id, or an OpenAI .pt;
#: "hf": a wav2vec2 / HuBERT / WavLM / XLS-R dir or hub id.
SOURCE_KINDS = ("whisper", "hf")


@dataclass(frozen=True)
class PretrainedSource:
    kind: str
    location: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


def parse_source(source: str | Path | None) -> PretrainedSource | None:
    """The pretrained model ``source`` names, or None for a path to our own checkpoint."""
    if source is None:
        return None
    text = str(source)
    kind, sep, location = text.partition(":")
    if not sep or kind not in SOURCE_KINDS:
        return None
    if not location:
        raise SpeechtlError(f"source {text!r} names no model. Fix: {kind}:PATH_OR_HUB_ID")
    return PretrainedSource(kind, location)


def pretrained_encoder(source: PretrainedSource) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The model config of a target built on ``source`` and its encoder's pretrained weights."""
    if source.kind == "whisper":
        from speechtl.models.whisper import load_whisper_encoder

        cfg, state = load_whisper_encoder(source.location)
        # Whisper's log-mel is already scaled (clamped to 80 dB, (x + 4) / 4): no further norm.
        return ModelConfig(
            encoder="whisper", num_features=cfg.num_mels, encoder_options=dataclasses.asdict(cfg), input_norm="none"
        ), state
    from speechtl.models.hf_ssl import load_hf_encoder

    config, state, normalize, rate = load_hf_encoder(source.location)
    # Zero mean and unit variance per utterance is the wav2vec2 feature extractor's do_normalize.
    return ModelConfig(
        encoder="hf-ssl",
        num_features=1,
        encoder_options={"config": config, "sampling_rate": rate},
        input_norm="mvn" if normalize else "none",
    ), {"hf." + k: v for k, v in state.items()}


def build_pretrained(
    source: PretrainedSource,
    vocab_size: int,
    head: str | None = None,
    load_weights: bool = True,
    blank_bias: float = 0.0,
    input_pad: float = 0.0,
    layer_mix: bool = False,
) -> CtcModel:
    """A target model on ``source``'s encoder with a fresh output layer of ``vocab_size``
    (its blank's initial bias ``blank_bias``; ``input_pad`` seconds of silence around each input;
    ``layer_mix``: the head reads a learned mix of every layer, :mod:`speechtl.models.layer_mix`).

    ``load_weights=False``: the architecture only (the ``scratch`` baseline)."""
    cfg, state = pretrained_encoder(source)
    cfg = dataclasses.replace(cfg, head=head or "ctc", blank_bias=blank_bias, input_pad=input_pad, layer_mix=layer_mix)
    if not load_weights and cfg.encoder == "hf-ssl":
        # A random CNN front end kept frozen would never learn: the baseline trains all of it.
        cfg = dataclasses.replace(cfg, encoder_options={**cfg.encoder_options, "freeze_feature_encoder": False})
    model = build_model(cfg, vocab_size)
    if load_weights:
        missing, unexpected = model.encoder.load_state_dict(state, strict=False)
        if unexpected or missing:
            raise SpeechtlError(
                f"{source}: weights do not fit the encoder (missing {missing[:4]}, unexpected {unexpected[:4]})"
            )
        logging.info(f"encoder from {source}: {len(state)} tensors, {sum(v.numel() for v in state.values()):,} values")
    else:
        logging.info(f"architecture of {source}, random initialization")
    return model
