"""Methods for speakers the model has never heard: ``speaker-adversarial``, ``entropy``, ``infomax``.

``speaker-adversarial`` (Meng et al., 2018, "speaker-invariant training"): a
speaker classifier on utterance-pooled encoder vectors, behind a gradient
reversal layer, learns who is speaking, while the encoder learns to make the
speakers indistinguishable, so what it keeps is what the words share across
voices. The labelled speakers are its classes; the unlabelled audio (the new
speaker's) is one more class, so the encoder also learns to hide the new voice.

``entropy`` (Grandvalet and Bengio, 2005; the objective Tent and SUTA minimize
at test time, Wang et al. 2021, Lin et al. 2022): the frame posteriors on the
new speaker's untranscribed audio are pushed to be confident, next to CTC on the
labelled data, so decision boundaries move away from where that speaker's
frames lie.

``infomax`` (information maximization, as in SHOT, Liang et al. 2020): entropy
minimization alone can make a new speaker's every "two" a confident "four"; a
second term keeps the units the model emits on that speaker's audio as frequent
as on the labelled data (the cross-entropy of the labelled batch's mean
non-blank posterior under the unlabelled batch's), so a confusion that sends two
words to one costs something. It assumes the new speaker says the units about as
often as the labelled speakers do (true of a digit or command corpus, and of
running text in one language).
"""

import zlib
from dataclasses import dataclass

import torch
from torch import nn

from speechtl.adapt.alignment import dann_lambda, frame_mask, grad_reverse, pooled
from speechtl.adapt.base import Method, register_method
from speechtl.data.holdout import speaker_of
from speechtl.errors import SpeechtlError


@dataclass
class SpeakerAdversarialOptions:
    #: Final weight of the speaker loss (reached by Ganin's schedule, as in dann).
    weight: float = 0.1
    gamma: float = 10.0
    hidden: int = 64
    #: Classifier outputs. Speakers are hashed into buckets 1..max_speakers-1 (the same on every
    #: DDP rank, whatever order they are met in); bucket 0 is the unlabelled audio.
    max_speakers: int = 256


def speaker_bucket(speaker: str, buckets: int) -> int:
    """A stable class index in 1..buckets-1 for ``speaker`` (crc32: no per-process hash seed)."""
    return 1 + zlib.crc32(speaker.encode("utf-8")) % (buckets - 1)


@register_method
class SpeakerAdversarial(Method):
    """Start from the source; CTC plus a reversed-gradient speaker classifier on pooled
    encoder vectors (labelled speakers, and the unlabelled audio as one more class)."""

    name = "speaker-adversarial"
    Options = SpeakerAdversarialOptions
    uses_source = True
    aux_data = ("unlabelled",)

    def __init__(self, options=None):
        super().__init__(options)
        if self.options.max_speakers < 3:
            raise SpeechtlError(f"speaker-adversarial: max_speakers must be >= 3, got {self.options.max_speakers}")
        self.classifier: nn.Module | None = None

    def prepare(self, model: nn.Module) -> None:
        o = self.options
        d = model.encoder.output_dim
        self.classifier = nn.Sequential(nn.Linear(d, o.hidden), nn.ReLU(), nn.Linear(o.hidden, o.max_speakers))

    def modules(self) -> nn.Module | None:
        return self.classifier

    def speaker_labels(self, cuts) -> torch.Tensor:
        missing = [c.id for c in cuts if not speaker_of(c)]
        if missing:
            raise SpeechtlError(
                f"speaker-adversarial needs a speaker for every labelled utterance; {missing[:3]} have none. "
                "Fix: give the importer speakers, or use dann"
            )
        return torch.tensor([speaker_bucket(speaker_of(c), self.options.max_speakers) for c in cuts])

    def extra_loss(self, ctx) -> torch.Tensor | None:
        o = self.options
        lab = pooled(ctx.encoder_out, ctx.out_lens)
        _, lens, enc = ctx.aux["unlabelled"]
        unl = pooled(enc, lens)
        labels = torch.cat([self.speaker_labels(ctx.cuts), torch.zeros(unl.size(0), dtype=torch.long)])
        logits = self.classifier(grad_reverse(torch.cat([lab, unl]), dann_lambda(ctx.progress, o.gamma)))
        return o.weight * nn.functional.cross_entropy(logits, labels.to(logits.device))


@dataclass
class EntropyOptions:
    #: Weight of the mean frame entropy of the unlabelled audio's posteriors next to CTC.
    weight: float = 0.1


def frame_entropy(log_probs: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the (batch, frames, vocab) posteriors over the valid frames."""
    ent = -(log_probs.exp() * log_probs).sum(-1)
    mask = frame_mask(lens, ent.size(1)).to(ent.dtype)
    return (ent * mask).sum() / mask.sum().clamp(min=1)


@register_method
class Entropy(Method):
    """Start from the source; CTC on the labelled data plus the frame-posterior entropy
    on unlabelled target audio (entropy minimization)."""

    name = "entropy"
    Options = EntropyOptions
    uses_source = True
    ctc_only = True
    aux_data = ("unlabelled",)

    def extra_loss(self, ctx) -> torch.Tensor | None:
        lp, lens, _ = ctx.aux["unlabelled"]
        return self.options.weight * frame_entropy(lp, lens)


def unit_marginal(log_probs: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """The mean posterior over non-blank units of the valid frames, weighted by each frame's
    non-blank mass (where the model emits something) and renormalized: (vocab - 1,)."""
    p = log_probs.exp()
    mask = frame_mask(lens, p.size(1)).to(p.dtype)
    keep = [i for i in range(p.size(-1)) if i != blank]
    units = (p[..., keep] * mask.unsqueeze(-1)).sum((0, 1))
    return units / units.sum().clamp(min=1e-12)


@dataclass
class InfomaxOptions:
    #: Weight of the unlabelled frames' entropy (as in ``entropy``).
    weight: float = 0.1
    #: Weight of the unit-balance term: -sum_u prior(u) log marginal_unlabelled(u).
    balance: float = 1.0


@register_method
class Infomax(Entropy):
    """Start from the source; CTC, the unlabelled audio's frame entropy, and a term that keeps
    the units emitted on the unlabelled audio as frequent as on the labelled batch."""

    name = "infomax"
    Options = InfomaxOptions

    def extra_loss(self, ctx) -> torch.Tensor | None:
        o = self.options
        lp, lens, _ = ctx.aux["unlabelled"]
        prior = unit_marginal(ctx.log_probs, ctx.out_lens).detach()
        marginal = unit_marginal(lp, lens)
        balance = (
            -(prior * torch.log(marginal.clamp(min=1e-8))).sum() + (prior * torch.log(prior.clamp(min=1e-8))).sum()
        )
        return o.weight * frame_entropy(lp, lens) + o.balance * balance
