"""Encoders, by name. Each maps (batch, frames, features) to (batch, frames', dim)."""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class TdnnConfig:
    """A stack of dilated 1-D convolutions (time-delay layers), as icefall's yesno TDNN.

    The receptive field, 1 + sum((k - 1) * d), should cover a word: the model
    must fire once per word, which it cannot place from a few frames of context.
    The defaults give 27 frames (270 ms at a 10 ms shift).
    """

    hidden_dim: int = 32
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 5, 5])
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    dropout: float = 0.0
    #: "batch" (icefall's choice), "layer" (per frame; it removes each frame's
    #: overall level, a speech/silence cue) or "none".
    norm: str = "batch"


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over channels of a (batch, channels, frames) tensor."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class TdnnEncoder(nn.Module):
    """Conv1d -> ReLU -> norm per layer; keeps the frame rate."""

    Config = TdnnConfig

    def __init__(self, num_features: int, config: TdnnConfig):
        super().__init__()
        norms = {
            "batch": lambda d: nn.BatchNorm1d(d, affine=False),
            "layer": _ChannelLayerNorm,
            "none": lambda d: nn.Identity(),
        }
        if config.norm not in norms:
            raise ValueError(f"TdnnConfig.norm must be one of {sorted(norms)}, got {config.norm!r}")
        if len(config.kernel_sizes) != len(config.dilations):
            raise ValueError("TdnnConfig: kernel_sizes and dilations need one entry per layer")
        layers = []
        dim = num_features
        for k, d in zip(config.kernel_sizes, config.dilations, strict=False):
            layers.append(
                nn.Sequential(
                    nn.Conv1d(dim, config.hidden_dim, k, dilation=d, padding=d * (k - 1) // 2),
                    nn.ReLU(),
                    norms[config.norm](config.hidden_dim),
                    nn.Dropout(config.dropout),
                )
            )
            dim = config.hidden_dim
        self.layers = nn.ModuleList(layers)
        self.output_dim = config.hidden_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Zero every layer's output past each utterance's end: the next convolution then
        # sees exactly its own zero padding, so an utterance's output is the same alone
        # or in any batch (without this, its last frames depend on its neighbours).
        keep = (torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(x.device)[:, None])[:, None, :]
        y = x.transpose(1, 2) * keep
        for layer in self.layers:
            y = layer(y) * keep
        return y.transpose(1, 2), lengths


@dataclass
class LstmConfig:
    """A bidirectional LSTM stack: whole-utterance context at small size."""

    hidden_dim: int = 64
    num_layers: int = 2
    dropout: float = 0.0


class LstmEncoder(nn.Module):
    """Bidirectional LSTM over frames; padding excluded by packing."""

    Config = LstmConfig

    def __init__(self, num_features: int, config: LstmConfig):
        super().__init__()
        self.lstm = nn.LSTM(
            num_features,
            config.hidden_dim,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.output_dim = 2 * config.hidden_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out, lengths


from speechtl.models.conformer import ConformerEncoder  # noqa: E402  (registry below)
from speechtl.models.hf_ssl import HfSslEncoder  # noqa: E402
from speechtl.models.whisper import WhisperEncoder  # noqa: E402

#: An encoder may say which input it reads (``input_spec``, default precomputed fbank;
#: see :mod:`speechtl.features.inputs`) and which modules sit above its last layer
#: (``post_layer_modules()``, for the layer-wise methods).
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "tdnn": TdnnEncoder,
    "lstm": LstmEncoder,
    "conformer": ConformerEncoder,
    "whisper": WhisperEncoder,  # pretrained: --source whisper:PATH_OR_ID
    "hf-ssl": HfSslEncoder,  # pretrained: --source hf:PATH_OR_ID (wav2vec2, HuBERT, WavLM, XLS-R)
}
