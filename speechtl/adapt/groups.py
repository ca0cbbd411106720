"""Word groups of a speaker's untranscribed audio, matched to a closed prompt set
(``balanced-pseudo-label``'s ``assign: groups``).

Why: the balanced plan of :mod:`speechtl.adapt.balance` decides utterance by utterance,
so a teacher's systematic confusion can travel round a cycle. On a held-out FSDD
speaker the teacher heard every TWO as FOUR and his FOURs as FIVE or FOUR; each
utterance that moves along TWO -> FOUR -> FIVE -> ... costs the plan almost nothing,
and a few FIVEs with a slightly better TWO score close the cycle, so a quarter of that
speaker's labels came out wrong, neighbours or not. Decided per *word* instead, the
same scores are unambiguous: his group of TWOs scores TWO at -8.3 and FOUR at -0.7 on
average, his FOURs TWO at -10.9 and FOUR at -1.9, so TWO -> TWO, FOUR -> FOUR is the
better one-to-one matching. The words are found without the teacher: one speaker's
recordings of one word are far more alike than recordings of two words (dynamic time
warping of the fbank, :mod:`speechtl.adapt.neighbours`), so

1. the speaker's k-nearest-neighbour graph by DTW is cut into as many groups as there
   are transcripts (spectral clustering: normalized Laplacian, k-means of its first
   eigenvectors; Ng, Jordan and Weiss 2001);
2. groups and transcripts are matched one to one by the groups' mean teacher
   log-posteriors (the Hungarian method: the best whole matching, not each group's
   best guess; the mean, so that a group's size does not buy it a transcript);
3. utterances a group holds by mistake are moved by their own scores and their
   neighbours' labels (a few synchronous sweeps of label updates under the speaker's
   balanced plan);
4. a label's confidence is, by default, the probability that the utterance-by-utterance
   plan of :mod:`speechtl.adapt.neighbours` gives it ("agreement"), so the ``threshold``
   keeps the labels the two ways agree on. Where the DTW groups merge two words (one
   FSDD speaker's TWO and THREE), the groups alone mislabel a tenth of his audio; the
   agreement drops most of those, and a speaker's words the teacher cannot yet hear
   (his TWOs) wait for a later round, whose student has learned his other words.

Measured on FSDD's leave-one-speaker-out folds (egs/fsdd/ASR/RESULTS.md, "Groups"):
with finetune teachers (3 seeds x 4 held-out speakers) the groups' labels are 4.1% wrong
against 12.6% for the plan with neighbours; of the labels a 0.8 threshold keeps, 0.9%
(agreement, 72% kept) against 3.1% (the plan, 74% kept). After three rounds the held-out
speakers' WER is 3.83% against 8.25%. It assumes what the balanced plan assumes (every utterance
says one of the transcripts, each about as often as in the labelled data), and for each
speaker apart: every speaker says every transcript about equally often (a speaker with
fewer than two utterances per transcript keeps the plan's labels), and a speaker's
utterances of one transcript sound alike, as read prompts and commands do. Cost: a
speaker's (N, N) DTW matrix and eigendecomposition.
"""

import logging

import numpy as np
import torch

from speechtl.adapt.balance import fitting, sinkhorn
from speechtl.adapt.neighbours import nearest, smoothed_by_speaker


def knn_graph(dist: torch.Tensor, k: int) -> torch.Tensor:
    """(N, N) 0/1 float64 adjacency: i and j joined when either is among the other's ``k`` nearest."""
    n = dist.size(0)
    w = torch.zeros(n, n, dtype=torch.float64)
    nn = nearest(dist, k)
    if nn.numel():
        w[torch.arange(n).unsqueeze(1), nn] = 1.0
    return ((w + w.T) > 0).double()


def kmeans(x: torch.Tensor, k: int, restarts: int = 10, iterations: int = 100, seed: int = 0) -> torch.Tensor:
    """(N,) cluster of each row of ``x``: the best (least inertia) of ``restarts`` seeded k-means++ runs."""
    n = x.size(0)
    g = torch.Generator().manual_seed(seed)
    best, best_inertia = None, float("inf")
    for _ in range(restarts):
        centres = [x[int(torch.randint(n, (1,), generator=g))]]
        for _ in range(k - 1):
            d2 = torch.cdist(x, torch.stack(centres)).min(1).values ** 2
            pick = (
                torch.multinomial(d2 / d2.sum(), 1, generator=g)
                if d2.sum() > 0
                else torch.randint(n, (1,), generator=g)
            )
            centres.append(x[int(pick)])
        c = torch.stack(centres)
        for _ in range(iterations):
            assign = torch.cdist(x, c).argmin(1)
            new = torch.stack([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
            if torch.allclose(new, c):
                break
            c = new
        assign = torch.cdist(x, c).argmin(1)
        inertia = float(((x - c[assign]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = assign, inertia
    return best


def spectral_groups(dist: torch.Tensor, num_groups: int, k: int = 10, seed: int = 0) -> torch.Tensor:
    """(N,) group of each utterance: the k-NN graph of ``dist`` cut into ``num_groups`` groups
    (normalized spectral clustering with unit-length rows)."""
    w = knn_graph(dist, k)
    deg = w.sum(1).clamp(min=1e-12)
    s = w / torch.sqrt(deg.unsqueeze(1) * deg.unsqueeze(0))
    values, vectors = torch.linalg.eigh(torch.eye(w.size(0), dtype=torch.float64) - s)
    if values.numel() > num_groups and float(values[num_groups]) < 1e-9:
        logging.warning(
            f"groups: the {k}-NN graph falls apart into more than {num_groups} pieces; which pieces share a "
            "group is then arbitrary. Fix: a larger group_neighbours"
        )
    u = vectors[:, :num_groups]
    u = u / u.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return kmeans(u, num_groups, seed=seed)


def hungarian(score: torch.Tensor) -> list[int]:
    """The column of each row in the one-to-one matching of the (R, C) ``score`` (R <= C) with
    the largest total (Kuhn-Munkres with potentials, O(R^2 C))."""
    cost = -np.asarray(score, dtype=np.float64)
    r, c = cost.shape
    if r > c:
        raise ValueError(f"hungarian: {r} rows for {c} columns")
    if not np.isfinite(cost).all():
        raise ValueError("hungarian: scores must be finite (clamp -inf first)")
    u, v = np.zeros(r + 1), np.zeros(c + 1)
    owner = np.zeros(c + 1, dtype=np.int64)  # owner[j]: the row (1-based) that holds column j; 0 free
    way = np.zeros(c + 1, dtype=np.int64)
    for i in range(1, r + 1):
        owner[0], j0 = i, 0
        minv = np.full(c + 1, np.inf)
        used = np.zeros(c + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(cand.argmin()) + 1
            delta = cand[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    out = [0] * r
    for j in range(1, c + 1):
        if owner[j]:
            out[owner[j] - 1] = j - 1
    return out


def match_groups(groups: torch.Tensor, log_post: torch.Tensor) -> torch.Tensor:
    """(N,) transcript of each utterance: its group's, groups matched one to one to the
    transcripts by their members' mean log-posteriors."""
    _, groups = torch.unique(groups, return_inverse=True)  # no empty group takes a transcript
    num = int(groups.max()) + 1
    total = torch.zeros(num, log_post.size(1), dtype=torch.float64).index_add_(0, groups, log_post.double())
    mean = total / torch.bincount(groups, minlength=num).clamp(min=1).unsqueeze(1).double()
    of_group = torch.tensor(hungarian(mean))
    return of_group[groups]


def refine(
    labels: torch.Tensor,
    log_post: torch.Tensor,
    neighbours: torch.Tensor,
    prior: torch.Tensor,
    weight: float = 3.0,
    sweeps: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and their confidence after at most ``sweeps`` synchronous updates: every
    utterance's scores plus ``weight`` x the log share of its neighbours that carry each label
    (smoothed), balanced by the plan, all labels at once. Stops when no label moves."""
    n, k = log_post.shape
    plan = None
    for _ in range(max(1, sweeps)):
        votes = torch.zeros(n, k, dtype=torch.float64)
        if neighbours.numel():
            votes.scatter_add_(1, labels[neighbours], torch.ones(neighbours.shape, dtype=torch.float64))
        share = torch.log((votes + 0.1) / (neighbours.size(1) + 0.1 * k))
        plan = sinkhorn(log_post + weight * share, prior)
        new = plan.argmax(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels, plan.gather(1, labels.unsqueeze(1)).squeeze(1)


def grouped_labels(
    scores: torch.Tensor,
    dist: torch.Tensor,
    prior: torch.Tensor,
    graph_neighbours: int = 10,
    neighbours: int = 5,
    weight: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(N,) transcript index and (N,) confidence after the refinement, for one speaker's
    utterances from their (N, K) transcript scores (CTC log-likelihoods) and (N, N) DTW
    distances: groups, matching, refinement (balanced within the speaker). None with fewer
    than two utterances per transcript: there are no groups to find."""
    n, k = scores.shape
    if n < 2 * k:
        return None
    log_post = torch.log_softmax(scores.double().clamp(min=-1e4), dim=1)
    groups = spectral_groups(dist, k, graph_neighbours)
    return refine(match_groups(groups, log_post), log_post, nearest(dist, neighbours), prior, weight)


CONFIDENCE = ("agreement", "refined")


def group_assignment(
    scores: torch.Tensor,
    speakers: list[tuple[str, list[int], torch.Tensor]],
    prior: torch.Tensor,
    graph_neighbours: int = 10,
    neighbours: int = 5,
    confidence: str = "agreement",
    weight: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) transcript index and (N,) confidence of every utterance from their (N, K) transcript
    scores and, per speaker, (name, positions in ``scores``, DTW distances among them).

    The reference is the utterance-by-utterance plan of :mod:`speechtl.adapt.balance` over all
    utterances, each row's scores first averaged with its ``neighbours`` nearest same-speaker
    rows (``balanced-pseudo-label``'s ``assign: plan``). A speaker with at least two utterances
    per transcript gets the groups' labels; confidence "agreement" is the reference plan's
    probability of each such label, "refined" its probability after the refinement. A speaker
    with fewer keeps the reference plan's labels and confidence (with one warning for all such
    speakers). A label whose transcript cannot fit in the utterance's frames has confidence 0."""
    if confidence not in CONFIDENCE:
        raise ValueError(f"group_assignment: confidence must be one of {CONFIDENCE}, got {confidence!r}")
    k = scores.size(1)
    plan = sinkhorn(smoothed_by_speaker(scores, speakers, neighbours), prior)
    conf, labels = plan.max(1)  # the plan itself: "agreement" reads it at the groups' labels
    small = []
    for name, pos, dist in speakers:
        found = grouped_labels(scores[pos], dist, prior, graph_neighbours, neighbours, weight)
        if found is None:
            small.append(f"{name or '(none)'} ({len(pos)})")
            continue
        idx = torch.tensor(pos)
        labels[idx] = found[0]
        conf[idx] = found[1] if confidence == "refined" else plan[idx, found[0]]
    if small:
        logging.warning(
            f"groups: {len(small)} speaker(s) with fewer than 2 utterances per transcript ({k} transcripts) "
            f"keep the utterance-by-utterance plan's labels: {', '.join(small[:10])}{' ...' if len(small) > 10 else ''}"
        )
    return labels, fitting(scores, labels, conf)
