"""CTC acoustic model: encoder + linear output layer + log-softmax."""

import copy
import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from speechtl.config import from_dict
from speechtl.errors import SpeechtlError
from speechtl.models.encoders import ENCODERS


@dataclass
class ModelConfig:
    encoder: str = "tdnn"
    num_features: int = 80
    #: Options of the chosen encoder's config dataclass (e.g. TdnnConfig).
    encoder_options: dict[str, Any] = field(default_factory=dict)
    #: Per-utterance feature normalization over its own frames (padding excluded):
    #: "mvn" (or true): zero mean, unit variance; "mean": zero mean only (removes
    #: channel and level, keeps the spread); "none" (or false). The variance of a
    #: short, tightly trimmed recording is mostly speech, of a padded one mostly
    #: silence, so "mvn" scales the two differently; "mean" does not. "robust": the
    #: median and interquartile range of each bin instead of mean and standard deviation:
    #: a stretch of near-digital silence (a gated or muted recorder start: log-mel at the
    #: numeric floor, 10+ nats below the room's own silence) inflates a recording's
    #: variance and shifts every frame under "mvn", and barely moves the quartiles.
    input_norm: bool | str = True
    #: Initial output bias of the blank unit. CTC normally starts blank-dominant
    #: and learns word spikes; on tiny corpora a word unit can instead take the
    #: filler role (emitted on silence frames), a valid alignment for training
    #: data that generalizes badly. A positive bias starts the model on blank.
    blank_bias: float = 0.0
    #: Adapters or LoRA (a :class:`speechtl.models.peft.PeftConfig` mapping), added
    #: by the adapter/lora methods and recorded here so checkpoints rebuild them.
    peft: dict[str, Any] = field(default_factory=dict)
    #: "ctc": a unit distribution per frame (ASR). "mean", "stats" or "attention":
    #: one label per utterance from encoder frames pooled that way
    #: (:class:`speechtl.models.classifier.UtteranceClassifier`).
    head: str = "ctc"
    #: A vocal-tract-length warp of the input features (a
    #: :class:`speechtl.features.warp.WarpConfig` mapping; empty: none), set by the
    #: ``vtln`` method for the speaker it adapted to, so decode, transcribe and export
    #: apply it with no flag of their own.
    input_warp: dict[str, Any] = field(default_factory=dict)
    #: Seconds of silence added at both ends of every utterance's audio before an on-the-fly
    #: input (Whisper's log-mel, wav2vec2's samples) is computed; 0: none. Encoders pretrained
    #: on long windows can miss tightly trimmed short words without it
    #: (:class:`speechtl.features.inputs.PaddedInput`). Encoders on precomputed fbank refuse it.
    input_pad: float = 0.0
    #: The head reads a learned weighted sum of every layer of the encoder instead of its last
    #: layer (:mod:`speechtl.models.layer_mix`; pretrained encoders: whisper, hf-ssl).
    layer_mix: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class CtcModel(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        if config.encoder not in ENCODERS:
            raise SpeechtlError(f"unknown encoder {config.encoder!r}; known: {sorted(ENCODERS)}")
        cls = ENCODERS[config.encoder]
        enc_cfg = from_dict(cls.Config, config.encoder_options, f"encoder_options of {config.encoder}")
        self.config = copy.deepcopy(config)  # set_input_warp changes it: never the caller's
        self.norm = input_norm_mode(config.input_norm)
        self.vocab_size = vocab_size
        self.encoder = cls(config.num_features, enc_cfg)
        if config.input_pad:
            from speechtl.features.inputs import model_input

            self.encoder.input_spec = dataclasses.replace(model_input(self.encoder), pad=config.input_pad)
        self.layer_mix = self._make_layer_mix() if config.layer_mix else None
        self.output = self._make_output(vocab_size)
        self.set_input_warp(config.input_warp)
        if config.peft:
            from speechtl.models.peft import add_peft

            add_peft(self, config.peft)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, return_encoder: bool = False):
        """(batch, frames, features) -> log-probs (batch, frames', vocab), lengths'
        [, encoder output (batch, frames', dim) when ``return_encoder``]."""
        x = self.prepare_input(feats, lengths)
        if self.layer_mix is None:
            enc, out_lens = self.encoder(x, lengths)
        else:
            states, out_lens = self.encoder(x, lengths, all_layers=True)
            enc = self.layer_mix(states)
        log_probs = self._head(enc, out_lens).log_softmax(dim=-1)
        return (log_probs, out_lens, enc) if return_encoder else (log_probs, out_lens)

    def prepare_input(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The encoder's input: the features warped (``input_warp``), then normalized (``input_norm``)."""
        if self.warp is not None:
            feats = feats @ self.warp.to(feats.dtype).T
        if self.norm == "robust":
            feats = robust_normalize(feats, lengths)
        elif self.norm != "none":
            feats = utterance_normalize(feats, lengths, variance=self.norm == "mvn")
        return feats

    def set_input_warp(self, warp: dict[str, Any] | None) -> None:
        """Warp every input from now on (``warp``: a WarpConfig mapping; None or empty: stop).
        The matrix is rebuilt from the config, not saved in the state dict, so checkpoints
        with and without a warp load into the same modules."""
        from speechtl.features.warp import WarpConfig, warp_matrix

        warp = dict(warp or {})
        self.config.input_warp = warp
        matrix = warp_matrix(from_dict(WarpConfig, warp, "model input_warp")) if warp else None
        device = next(self.parameters()).device
        self.register_buffer("warp", None if matrix is None else matrix.to(device), persistent=False)

    @property
    def input_spec(self):
        """What the model reads (an :class:`speechtl.features.inputs.InputSpec`): its
        encoder's choice, so a checkpoint's model config says it."""
        from speechtl.features.inputs import model_input

        return model_input(self)

    def _make_layer_mix(self) -> nn.Module:
        from speechtl.models.layer_mix import LayerMix

        if self.config.encoder not in LAYER_MIX_ENCODERS:
            raise SpeechtlError(
                f"model layer_mix: the {self.config.encoder} encoder does not give its layers' outputs; it is for "
                f"pretrained encoders ({', '.join(LAYER_MIX_ENCODERS)}: --source whisper:/hf:). Fix: layer_mix: false"
            )
        getattr(self.encoder, "prepare_all_layers", lambda: None)()
        return LayerMix(len(self.encoder.layers) + 1)

    def _make_output(self, vocab_size: int) -> nn.Module:
        output = nn.Linear(self.encoder.output_dim, vocab_size)
        with torch.no_grad():
            output.bias[0] += self.config.blank_bias
        return output

    def _head(self, enc: torch.Tensor, out_lens: torch.Tensor) -> torch.Tensor:
        return self.output(enc)


INPUT_NORMS = ("mvn", "mean", "robust", "none")
#: Encoders whose forward gives every hidden state (``all_layers``), for ``layer_mix``.
LAYER_MIX_ENCODERS = ("whisper", "hf-ssl")


def input_norm_mode(value: bool | str) -> str:
    """ModelConfig.input_norm as one of INPUT_NORMS (true/false are "mvn"/"none")."""
    mode = {True: "mvn", False: "none"}.get(value, value) if isinstance(value, bool) else value
    if mode not in INPUT_NORMS:
        raise SpeechtlError(f"model input_norm must be one of {', '.join(INPUT_NORMS)} (or true/false), got {value!r}")
    return mode


def utterance_normalize(
    feats: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5, variance: bool = True
) -> torch.Tensor:
    """Per-utterance mean (and variance) normalization over valid frames; padding set to 0."""
    mask = torch.arange(feats.size(1), device=feats.device)[None, :] < lengths.to(feats.device)[:, None]
    mask = mask.unsqueeze(-1).to(feats.dtype)
    n = mask.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (feats * mask).sum(dim=1, keepdim=True) / n
    if not variance:
        return (feats - mean) * mask
    var = (((feats - mean) * mask) ** 2).sum(dim=1, keepdim=True) / n
    return (feats - mean) / (var + eps).sqrt() * mask


#: The interquartile range of a normal distribution, in standard deviations.
IQR_PER_SD = 1.349


def robust_normalize(feats: torch.Tensor, lengths: torch.Tensor, min_scale: float = 0.1) -> torch.Tensor:
    """Per-utterance robust standardization over valid frames: each bin minus its median,
    divided by its interquartile range / 1.349 (the standard deviation, were it normal);
    padding (and an empty utterance) set to 0. Sort-and-gather quantiles (nearest rank),
    which ONNX exports. ``min_scale`` (log-mel units) bounds the gain of a bin whose frames
    are mostly one value (half of them at the log floor: IQR 0): without it such a bin's
    other frames would be multiplied by thousands. On yesno every bin's scale is >= 0.33."""
    mask = torch.arange(feats.size(1), device=feats.device)[None, :] < lengths.to(feats.device)[:, None]
    ordered = feats.masked_fill(~mask[..., None], float("inf")).sort(dim=1).values  # padding last
    last = (lengths.to(feats.device) - 1).clamp(min=0).float()  # float32 ranks, whatever the dtype

    def quantile(q: float) -> torch.Tensor:
        rank = (last * q).round().long()[:, None, None].expand(-1, 1, feats.size(2))
        return ordered.gather(1, rank)  # (batch, 1, bins); +inf for an empty utterance

    scale = ((quantile(0.75) - quantile(0.25)) / IQR_PER_SD).clamp(min=min_scale)
    out = (feats - quantile(0.5)) / scale
    return torch.where(mask[..., None], out, torch.zeros_like(out))  # no inf/NaN left in padding


def build_model(config: ModelConfig, vocab_size: int) -> CtcModel:
    """A CTC model, or an utterance classifier when ``config.head`` names a pooling."""
    if config.head == "ctc":
        return CtcModel(config, vocab_size)
    from speechtl.models.classifier import UtteranceClassifier

    return UtteranceClassifier(config, vocab_size)
