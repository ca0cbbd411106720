"""Domain-alignment building blocks: gradient reversal, MMD, CORAL, a domain classifier.

They act on encoder outputs sampled or pooled to (N, D) frame/utterance vectors
of the labelled batch and a batch of unlabelled target audio (the "source" and
"target" domains of unsupervised domain adaptation: here the labelled voices and
the unlabelled target speakers). None of icefall, ESPnet, SpeechBrain or NeMo ship
them for ASR; the formulas follow Ganin & Lempitsky (2015, gradient reversal),
Gretton et al. (2012) / Long et al. (2015, multi-kernel MMD) and Sun & Saenko
(2016, Deep CORAL).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from speechtl.adapt.base import Method, register_method


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; gradient multiplied by ``-scale`` backward."""
    return _GradReverse.apply(x, scale)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin's schedule: 0 at the start, rising to 1: 2 / (1 + exp(-gamma p)) - 1."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(progress, 0.0), 1.0))) - 1.0


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0)) -> torch.Tensor:
    """Squared multi-kernel MMD (biased estimate) between samples ``x`` (n, d) and ``y`` (m, d).

    The kernels are Gaussian with bandwidths relative to the median pairwise
    squared distance (the median heuristic), so the loss is scale-free.
    """
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    base = d2.detach()[d2.detach() > 0].median() if (d2.detach() > 0).any() else d2.new_tensor(1.0)
    k = sum(torch.exp(-d2 / (base * b)) for b in bandwidths)
    n = x.size(0)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def coral(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: squared Frobenius distance of the covariances, / (4 d^2)."""
    d = x.size(1)

    def cov(a):
        a = a - a.mean(0, keepdim=True)
        return a.t() @ a / max(1, a.size(0) - 1)

    return (cov(x) - cov(y)).pow(2).sum() / (4 * d * d)


class DomainClassifier(nn.Module):
    """A small MLP: frame (or pooled) encoder vectors -> source/target logit."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def frame_mask(lens: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch, frames) bool: True at the frames inside each length."""
    return torch.arange(frames, device=lens.device)[None, :] < lens[:, None]


def valid_frames(enc: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """(batch, frames, dim) -> (valid frames, dim), padding dropped."""
    return enc[frame_mask(lens, enc.size(1))]


def sample_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """At most ``n`` rows of ``x`` drawn without replacement (torch's seeded RNG)."""
    if x.size(0) <= n:
        return x
    return x[torch.randperm(x.size(0), device=x.device)[:n]]


def pooled(enc: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Mean over each utterance's valid frames: (batch, dim)."""
    mask = frame_mask(lens, enc.size(1)).unsqueeze(-1).to(enc.dtype)
    return (enc * mask).sum(1) / mask.sum(1).clamp(min=1)


@dataclass
class AlignOptions:
    #: Weight of the alignment term next to CTC.
    weight: float = 1.0
    #: Frames drawn from each side per step (MMD is quadratic in it).
    max_frames: int = 512


class _Align(Method):
    """Shared by mmd and coral: align labelled and unlabelled-target encoder frames."""

    Options = AlignOptions
    uses_source = True
    aux_data = ("unlabelled",)
    distance = staticmethod(coral)

    def extra_loss(self, ctx) -> torch.Tensor | None:
        lab = sample_rows(valid_frames(ctx.encoder_out, ctx.out_lens), self.options.max_frames)
        _, lens, enc = ctx.aux["unlabelled"]
        unl = sample_rows(valid_frames(enc, lens), self.options.max_frames)
        return self.options.weight * self.distance(lab, unl)


@register_method
class Mmd(_Align):
    """Start from the source; add a multi-kernel RBF MMD between the encoder frames of
    labelled and unlabelled target audio, pulling their distributions together."""

    name = "mmd"
    distance = staticmethod(mmd_rbf)


@register_method
class Coral(_Align):
    """Start from the source; add Deep CORAL (covariance distance) between the encoder
    frames of labelled and unlabelled target audio."""

    name = "coral"
    distance = staticmethod(coral)


@dataclass
class DannOptions:
    #: Final weight of the domain loss (reached by Ganin's schedule).
    weight: float = 0.1
    gamma: float = 10.0
    hidden: int = 64
    max_frames: int = 512


class _WithClassifier(Method):
    """A method that owns a domain classifier over encoder vectors (trained with the model)."""

    uses_source = True
    aux_data = ("unlabelled",)

    def __init__(self, options=None):
        super().__init__(options)
        self.classifier: DomainClassifier | None = None

    def prepare(self, model: nn.Module) -> None:
        self.classifier = DomainClassifier(model.encoder.output_dim, self.options.hidden)

    def modules(self) -> nn.Module | None:
        return self.classifier


@register_method
class Dann(_WithClassifier):
    """Start from the source; a domain classifier on encoder frames behind a gradient
    reversal layer learns labelled vs unlabelled target audio, while the encoder learns
    to make them indistinguishable (lambda rising 0 -> weight, Ganin & Lempitsky)."""

    name = "dann"
    Options = DannOptions

    def extra_loss(self, ctx) -> torch.Tensor | None:
        o = self.options
        lab = sample_rows(valid_frames(ctx.encoder_out, ctx.out_lens), o.max_frames)
        _, lens, enc = ctx.aux["unlabelled"]
        unl = sample_rows(valid_frames(enc, lens), o.max_frames)
        lam = dann_lambda(ctx.progress, o.gamma)
        logits = self.classifier(grad_reverse(torch.cat([lab, unl]), lam))
        labels = torch.cat([torch.zeros(lab.size(0)), torch.ones(unl.size(0))]).to(logits.device)
        return o.weight * nn.functional.binary_cross_entropy_with_logits(logits, labels)


@dataclass
class ReweightOptions:
    hidden: int = 64
    #: Weights are clipped to [1 / max_weight, max_weight], then normalized to mean 1.
    max_weight: float = 5.0


@register_method
class Reweight(_WithClassifier):
    """Start from the source; weight each labelled utterance's CTC by a domain
    classifier's odds p(target-like) / p(labelled-like), learned on pooled (detached)
    encoder features of labelled vs unlabelled target audio: utterances that look like
    the unlabelled target count more (importance weighting under covariate shift)."""

    name = "reweight"
    Options = ReweightOptions

    def utterance_weights(self, ctx) -> torch.Tensor | None:
        with torch.no_grad():
            odds = torch.exp(self.classifier(pooled(ctx.encoder_out, ctx.out_lens).detach()))
            m = self.options.max_weight
            w = odds.clamp(1 / m, m)
            return w / w.mean()

    def extra_loss(self, ctx) -> torch.Tensor | None:
        lab = pooled(ctx.encoder_out, ctx.out_lens).detach()
        _, lens, enc = ctx.aux["unlabelled"]
        unl = pooled(enc, lens).detach()
        logits = self.classifier(torch.cat([lab, unl]))
        labels = torch.cat([torch.zeros(lab.size(0)), torch.ones(unl.size(0))]).to(logits.device)
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)
