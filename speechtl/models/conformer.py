"""A Conformer encoder (Gulati et al., 2020) for CTC, small enough for CPU recipes.

Conv2d subsampling (x4) -> sinusoidal positions -> N macaron blocks
(half FFN, multi-head self-attention, convolution module, half FFN). Padding
frames are masked in attention and zeroed before every convolution, and the
convolution module normalizes with LayerNorm rather than BatchNorm, so an
utterance's output does not depend on what it is batched with.
``layers`` is a ModuleList, so methods can freeze or re-rate blocks by index.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ConformerConfig:
    d_model: int = 144
    num_heads: int = 4
    ffn_dim: int = 576
    num_layers: int = 6
    kernel_size: int = 15
    dropout: float = 0.1
    #: Channels of the x4 convolutional subsampling; 0 = d_model. On CPU the
    #: subsampling's second 3x3 convolution can cost as much as all blocks
    #: together: fewer channels (icefall uses 8-128 in its front ends) buy speed.
    subsampling_channels: int = 0
    #: Frames in per frame out: 4 (40 ms frames, for BPE/word units) or 2 (20 ms,
    #: for characters: fast speech reaches 20 characters/s, and CTC needs at least
    #: one frame per label plus a blank between repeats).
    time_reduction: int = 4


def padding_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """(batch, t) True on padding."""
    return torch.arange(t, device=lengths.device)[None, :] >= lengths[:, None]


class Subsampling(nn.Module):
    """Two 3x3 convolutions over (time, frequency), both stride 2 in frequency and
    stride 2 in time (``time_reduction`` 4) or only the first (2)."""

    def __init__(self, num_features: int, d_model: int, channels: int = 0, time_reduction: int = 4):
        super().__init__()
        if time_reduction not in (2, 4):
            raise ValueError(f"time_reduction must be 2 or 4, got {time_reduction}")
        c = channels or d_model
        self.second_stride = time_reduction // 2
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, 3, 2), nn.ReLU(), nn.Conv2d(c, c, 3, (self.second_stride, 2)), nn.ReLU()
        )
        f = ((num_features - 3) // 2 + 1 - 3) // 2 + 1
        self.out = nn.Linear(c * f, d_model)

    def out_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return (((lengths - 3) // 2 + 1) - 3) // self.second_stride + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), self.out_lengths(lengths).clamp(min=0)


def sinusoids(t: int, d: int, device) -> torch.Tensor:
    pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


class FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d),
            nn.Linear(d, hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, d),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel_size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pointwise_in = nn.Conv1d(d, 2 * d, 1)
        self.depthwise = nn.Conv1d(d, d, kernel_size, padding=kernel_size // 2, groups=d)
        self.mid_norm = nn.LayerNorm(d)
        self.pointwise_out = nn.Conv1d(d, d, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        keep = (~pad).unsqueeze(1).to(x.dtype)  # (B, 1, T)
        y = nn.functional.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1) * keep
        y = self.depthwise(y)
        y = nn.functional.silu(self.mid_norm(y.transpose(1, 2))).transpose(1, 2)
        return self.dropout(self.pointwise_out(y).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, c: ConformerConfig):
        super().__init__()
        self.ff1 = FeedForward(c.d_model, c.ffn_dim, c.dropout)
        self.attn_norm = nn.LayerNorm(c.d_model)
        self.attn = nn.MultiheadAttention(c.d_model, c.num_heads, dropout=c.dropout, batch_first=True)
        self.attn_dropout = nn.Dropout(c.dropout)
        self.conv = ConvModule(c.d_model, c.kernel_size, c.dropout)
        self.ff2 = FeedForward(c.d_model, c.ffn_dim, c.dropout)
        self.out_norm = nn.LayerNorm(c.d_model)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        h = self.attn_norm(x)
        x = x + self.attn_dropout(self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0])
        x = x + self.conv(x, pad)
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x)


class ConformerEncoder(nn.Module):
    Config = ConformerConfig

    def __init__(self, num_features: int, config: ConformerConfig):
        super().__init__()
        self.subsampling = Subsampling(num_features, config.d_model, config.subsampling_channels, config.time_reduction)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(ConformerBlock(config) for _ in range(config.num_layers))
        self.output_dim = config.d_model
        self.xscale = math.sqrt(config.d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths = self.subsampling(x, lengths.to(x.device))
        # Scale by sqrt(d_model) before adding positions (Vaswani et al.; ESPnet's
        # xscale): at init the subsampled features are small and the sinusoids
        # would otherwise dominate the first attention layers.
        x = self.dropout(x * self.xscale + sinusoids(x.size(1), x.size(2), x.device))
        pad = padding_mask(lengths, x.size(1))
        for layer in self.layers:
            x = layer(x, pad)
        return x, lengths
