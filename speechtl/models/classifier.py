"""Utterance classification on a speech encoder: pool the frames, one linear layer.

The same encoder as the CTC model (so a CTC-pretrained source transfers to it
unchanged) with ``output`` replaced by :class:`PooledLinear`: the pooling
lives *inside* the head, so the fine-tuning family treats it as head
(linear-probe trains it, freeze leaves it trainable) and, for classes that
are also source units (digit words), the source's output rows can initialize
the class rows by symbol, as in vocabulary transfer.
"""

import torch
from torch import nn

from speechtl.errors import SpeechtlError
from speechtl.models.ctc import CtcModel


def _mask(enc: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    return (torch.arange(enc.size(1), device=enc.device)[None, :] < lens.to(enc.device)[:, None]).unsqueeze(-1)


class MeanPool(nn.Module):
    """Average of the valid frames."""

    def __init__(self, dim: int):
        super().__init__()
        self.output_dim = dim

    def forward(self, enc: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        m = _mask(enc, lens).to(enc.dtype)
        return (enc * m).sum(1) / m.sum(1).clamp(min=1)


class StatsPool(nn.Module):
    """Mean and standard deviation of the valid frames (x-vector statistics pooling):
    the spread carries speaker traits that the mean averages away."""

    def __init__(self, dim: int):
        super().__init__()
        self.output_dim = 2 * dim

    def forward(self, enc: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        m = _mask(enc, lens).to(enc.dtype)
        n = m.sum(1).clamp(min=1)
        mean = (enc * m).sum(1) / n
        var = (((enc - mean[:, None]) * m) ** 2).sum(1) / n
        return torch.cat([mean, (var + 1e-5).sqrt()], dim=-1)


class AttentionPool(nn.Module):
    """A learned weighted average: frames that carry the class (the digit, not the
    silence around it) get the weight."""

    def __init__(self, dim: int):
        super().__init__()
        self.output_dim = dim
        self.score = nn.Linear(dim, 1)

    def forward(self, enc: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        scores = self.score(enc).masked_fill(~_mask(enc, lens), float("-inf"))
        return (scores.softmax(dim=1) * enc).sum(1)


POOLINGS: dict[str, type[nn.Module]] = {"mean": MeanPool, "stats": StatsPool, "attention": AttentionPool}


class PooledLinear(nn.Linear):
    """Pooling then a linear layer; ``weight``/``bias`` keep nn.Linear's names."""

    def __init__(self, dim: int, num_classes: int, pooling: str):
        if pooling not in POOLINGS:
            raise SpeechtlError(f"unknown pooling head {pooling!r}; known: ctc, {', '.join(POOLINGS)}")
        pool = POOLINGS[pooling](dim)
        super().__init__(pool.output_dim, num_classes)
        self.pool = pool

    def forward(self, enc: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(self.pool(enc, lens))


class UtteranceClassifier(CtcModel):
    """forward() returns per-utterance log-probs (batch, classes), the encoder's
    frame lengths and (with ``return_encoder``) its output, like CtcModel."""

    def _make_output(self, vocab_size: int) -> nn.Module:
        return PooledLinear(self.encoder.output_dim, vocab_size, self.config.head)

    def _head(self, enc: torch.Tensor, out_lens: torch.Tensor) -> torch.Tensor:
        return self.output(enc, out_lens)
