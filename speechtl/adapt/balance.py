"""Balanced pseudo-labels for a closed set of transcripts (``pseudo-label``'s ``balance: transcripts``).

When every speaker says the same prompts -- digits, commands, a read prompt list,
as many low-resource collections are recorded -- a teacher's errors on a new
voice are systematic: it hears each of george's TWOs as FOUR, so its confident
labels of his audio hold almost no TWO and twice the FOURs, and a student
trained on them learns the confusion. The labelled speakers say how often each
prompt occurs; if the new speaker says them as often, the labels can be made to
agree with that. Each untranscribed utterance is scored against every transcript
of the labelled data by the teacher's CTC log-likelihood (forced alignment, not
the free best path), and the scores are turned into a transport plan whose
column sums are the labelled data's transcript frequencies (Sinkhorn-Knopp, as
in self-labelling by optimal transport, Asano et al. 2020, and SwAV): an
utterance keeps the transcript the balanced plan gives it, with the plan's row
probability as its confidence. A FOUR that the teacher scores only a little
better than TWO goes to TWO when there are already too many FOURs.

It assumes the closed set (an utterance says one of the labelled transcripts)
and the shared frequencies; both hold for FSDD-like corpora and neither for
free speech, where ``balance: none`` (the default) applies.
"""

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from speechtl.data.subset import original_id
from speechtl.errors import SpeechtlError

#: More distinct transcripts than this is not a closed prompt set.
MAX_TRANSCRIPTS = 500


def closed_set(labelled: Iterable[tuple[str, str]]) -> tuple[list[str], torch.Tensor]:
    """The distinct transcripts of the labelled (cut id, transcript) pairs and their frequencies
    (summing to 1), counted once per recording (speed-perturbed copies are one). Refused unless the
    transcripts repeat across recordings, as a prompt set every speaker says does."""
    seen = {(original_id(i), t) for i, t in labelled if t.strip()}
    counts = Counter(t for _, t in seen)
    if len(counts) < 2:
        raise SpeechtlError("balance: transcripts needs 2 or more distinct labelled transcripts")
    if len(counts) > MAX_TRANSCRIPTS or len(seen) < 2 * len(counts):
        raise SpeechtlError(
            f"balance: transcripts: the labelled data's {len(seen)} recordings say {len(counts)} distinct "
            "transcripts, most of them once: not a closed prompt set that every speaker says. "
            "Fix: pseudo-label (balance: none) for free speech"
        )
    names = sorted(counts)
    freq = torch.tensor([counts[n] for n in names], dtype=torch.float64)
    return names, freq / freq.sum()


def transcript_scores(log_probs: torch.Tensor, targets: Sequence[Sequence[int]]) -> torch.Tensor:
    """(K,) CTC log-likelihoods of each unit sequence in ``targets`` given one utterance's
    (frames, vocab) log-probs; -inf where a sequence cannot fit in the frames."""
    k = len(targets)
    lens = torch.tensor([len(t) for t in targets])
    flat = torch.tensor([u for t in targets for u in t], dtype=torch.long)
    lp = log_probs.float().unsqueeze(1).expand(-1, k, -1)  # (T, K, V)
    frames = torch.full((k,), log_probs.size(0), dtype=torch.long)
    nll = torch.nn.functional.ctc_loss(lp, flat, frames, lens, blank=0, reduction="none", zero_infinity=False)
    return torch.where(torch.isfinite(nll), -nll, torch.full_like(nll, -math.inf))


def sinkhorn(scores: torch.Tensor, prior: torch.Tensor, iterations: int = 200) -> torch.Tensor:
    """Row-stochastic (N, K) plan from log-scores: each row sums to 1, column k to about
    N * prior[k]. Rows with no finite score stay uniform over nothing (all zero)."""
    n = scores.size(0)
    log_p = scores.double().clamp(min=-1e4)
    log_cols = torch.log(prior.double() * n)
    for _ in range(iterations):
        log_p = log_p - log_p.logsumexp(1, keepdim=True)
        log_p = log_p - log_p.logsumexp(0, keepdim=True) + log_cols
    return (log_p - log_p.logsumexp(1, keepdim=True)).exp()


def fitting(scores: torch.Tensor, labels: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """``conf`` (N,), 0 where the label's transcript cannot fit the utterance's frames (its
    score in ``scores`` (N, K) is -inf, :func:`transcript_scores`): such a label is never kept,
    whatever the plan or the neighbours made of it."""
    fits = torch.isfinite(scores.gather(1, labels.unsqueeze(1)).squeeze(1))
    return torch.where(fits, conf, torch.zeros_like(conf))


def plan_labels(scores: torch.Tensor, prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) transcript index of each utterance under the balanced plan and (N,) its probability there."""
    conf, best = sinkhorn(scores, prior).max(1)
    return best, conf


def balanced_labels(scores: torch.Tensor, names: Sequence[str], prior: torch.Tensor) -> list[tuple[str, float]]:
    """Each utterance's transcript under the balanced plan and its probability there."""
    best, conf = plan_labels(scores, prior)
    return [(names[int(b)], float(c)) for b, c in zip(best, conf, strict=True)]
