"""Same-speaker neighbours for closed-set pseudo-labels (``balanced-pseudo-label``'s ``neighbours``).

A teacher that hears a new speaker's TWO as FOUR does so for every TWO of that
speaker, so the balanced plan of :mod:`speechtl.adapt.balance` has to tell two
groups of FOUR-looking utterances apart by small per-utterance margins, and
per-utterance noise lets other words' utterances take TWO's place. Yet two
recordings of one word by one speaker are far more alike than the teacher's
scores say: template matching within a speaker (dynamic time warping of the
features, the oldest isolated-word recogniser) needs no model at all. So each
utterance's transcript scores are averaged with those of its ``k`` nearest
neighbours among the *same speaker's* untranscribed utterances, nearest by DTW
of their fbank; a word's utterances then move in the plan as one group
(transductive label smoothing over a k-NN graph, as in label propagation, Zhou et
al. 2004). The distances come from the audio, not from the teacher, which is why
they can correct its confusions instead of repeating them.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache

import torch
from tqdm import tqdm

from speechtl.data.holdout import speaker_of
from speechtl.errors import SpeechtlError

#: Mel bins of the fbank computed for cuts without stored features (raw-waveform sources).
AUDIO_MEL_BINS = 40


@lru_cache(maxsize=4)
def _fbank_for(sampling_rate: int):
    from speechtl.features.fbank import BatchedFbank, FbankConfig

    return BatchedFbank(FbankConfig(sampling_rate=sampling_rate, num_mel_bins=AUDIO_MEL_BINS))


def normalized_features(cut) -> torch.Tensor:
    """(frames, bins) fbank of a cut, the per-utterance mean removed (speaker and channel
    offsets cancel; the model's ``input_norm: mean`` does the same). The stored features where
    the cut has them; else a 40-bin fbank of its audio (cuts of a raw-waveform source such as
    ``hf:`` wav2vec2 carry audio only)."""
    if cut.has_features:
        feats = torch.as_tensor(cut.load_features(), dtype=torch.float32)
    elif cut.has_recording:
        wave = torch.as_tensor(cut.load_audio()[0], dtype=torch.float32)
        with torch.no_grad():
            feats = _fbank_for(int(cut.sampling_rate))([wave])[0].cpu()
    else:
        raise SpeechtlError(
            f"neighbours: cut {cut.id} has neither stored features nor audio to compare. "
            "Fix: give cuts with a recording or fbank (steps/compute_fbank.sh) as the unlabelled cuts, or neighbours: 0"
        )
    return feats - feats.mean(0, keepdim=True)


def dtw_pairs(a: torch.Tensor, a_lens: torch.Tensor, b: torch.Tensor, b_lens: torch.Tensor) -> torch.Tensor:
    """(B,) DTW distances of B padded pairs a (B, Ta, F) and b (B, Tb, F): the least sum of
    Euclidean frame distances over monotone paths from (0, 0) to (len_a - 1, len_b - 1) with
    horizontal, vertical and diagonal steps, divided by len_a + len_b.

    Row by row over a: within a row the horizontal steps are a min-plus prefix scan,
    D[i, j] = S[j] + min over m <= j of (E[m] - S[m]) with S the row's cumulative cost and E
    the value reached from row i - 1, i.e. a ``cummin``: the whole batch moves one row per step.
    """
    cost = torch.cdist(a, b)  # (B, Ta, Tb)
    inf = torch.tensor(float("inf"), dtype=cost.dtype)
    prefix = cost.cumsum(2)
    row = prefix[:, 0]  # row 0: horizontal steps only
    out = torch.full((a.size(0),), float("inf"), dtype=cost.dtype)
    b_last = (b_lens - 1).clamp(min=0)
    for i in range(a.size(1)):
        if i > 0:
            from_above = torch.minimum(row, torch.cat([inf.expand(row.size(0), 1), row[:, :-1]], 1))
            entry = from_above + cost[:, i]
            s = prefix[:, i]
            row = s + torch.cummin(entry - s, dim=1).values
        done = a_lens - 1 == i
        if done.any():
            out[done] = row[done].gather(1, b_last[done].unsqueeze(1)).squeeze(1)
    return out / (a_lens + b_lens).to(cost.dtype)


def dtw_matrix(feats: Sequence[torch.Tensor], batch_pairs: int = 2048, progress: bool = True) -> torch.Tensor:
    """(N, N) symmetric DTW distances among ``feats`` ((frames, bins) each); diagonal 0."""
    n = len(feats)
    dist = torch.zeros(n, n)
    if n < 2:
        return dist
    lens = torch.tensor([f.size(0) for f in feats])
    padded = torch.nn.utils.rnn.pad_sequence(list(feats), batch_first=True)
    i_idx, j_idx = torch.triu_indices(n, n, offset=1)
    # Pairs of similar length together: less padding per batch.
    order = torch.argsort(lens[i_idx] + lens[j_idx])
    i_idx, j_idx = i_idx[order], j_idx[order]
    starts = range(0, i_idx.numel(), batch_pairs)
    for s in tqdm(starts, desc="dtw", unit="batch", disable=not progress, mininterval=5):
        ii, jj = i_idx[s : s + batch_pairs], j_idx[s : s + batch_pairs]
        ta, tb = int(lens[ii].max()), int(lens[jj].max())
        d = dtw_pairs(padded[ii, :ta], lens[ii], padded[jj, :tb], lens[jj])
        dist[ii, jj] = d
        dist[jj, ii] = d
    return dist


def nearest(dist: torch.Tensor, k: int) -> torch.Tensor:
    """(N, min(k, N - 1)) indices of each row's nearest other rows."""
    n = dist.size(0)
    k = min(k, n - 1)
    if k <= 0:
        return torch.zeros(n, 0, dtype=torch.long)
    masked = dist + torch.diag(torch.full((n,), float("inf")))
    return masked.topk(k, dim=1, largest=False).indices


def smooth_scores(scores: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """Each row's log-posteriors over the transcripts (its log-softmax, floored at -1e4 where
    a transcript cannot fit) averaged with its neighbours' rows, self included."""
    log_post = torch.log_softmax(scores.double().clamp(min=-1e4), dim=1)
    if neighbours.size(1) == 0:
        return log_post
    return torch.cat([log_post.unsqueeze(1), log_post[neighbours]], 1).mean(1)


def speaker_groups(cuts: Sequence) -> dict[str, list[int]]:
    """Positions of the cuts per speaker (one group where speakers are not given)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for pos, cut in enumerate(cuts):
        groups[speaker_of(cut)].append(pos)
    return dict(groups)


def speaker_distances(cuts: Sequence, what: str):
    """(speaker, positions of its cuts in ``cuts``, their (n, n) DTW distances), one speaker at a time."""
    for speaker, pos in speaker_groups(cuts).items():
        logging.info(f"{what}: DTW among {len(pos)} utterances of speaker {speaker or '(none)'}")
        yield speaker, pos, dtw_matrix([normalized_features(cuts[p]) for p in pos])


def smoothed_by_speaker(scores: torch.Tensor, speakers, k: int) -> torch.Tensor:
    """``scores`` (N, K) smoothed over each row's ``k`` nearest rows of the same speaker
    (:func:`smooth_scores`); ``speakers``: (name, positions in ``scores``, their DTW distances),
    as :func:`speaker_distances` yields them."""
    out = torch.empty(scores.shape, dtype=torch.float64)
    for _, pos, dist in speakers:
        idx = torch.tensor(pos)
        out[idx] = smooth_scores(scores[idx], nearest(dist, k))
    return out


def neighbour_smoothed(scores: torch.Tensor, cuts: Sequence, k: int) -> torch.Tensor:
    """``scores`` (N, K) of ``cuts`` (in that order) smoothed over each cut's ``k`` nearest
    same-speaker cuts by DTW of their fbank (:func:`smooth_scores`)."""
    return smoothed_by_speaker(scores, speaker_distances(cuts, f"neighbours (k = {k})"), k)
