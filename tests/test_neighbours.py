"""Same-speaker DTW neighbours for balanced pseudo-labels (speechtl.adapt.neighbours)."""

from dataclasses import dataclass

import pytest
import torch
from test_methods_advanced import source, trainer_for  # noqa: F401  (fixture)

from speechtl.adapt import get_method
from speechtl.adapt.balance import balanced_labels
from speechtl.adapt.neighbours import dtw_matrix, dtw_pairs, nearest, neighbour_smoothed, smooth_scores
from speechtl.errors import SpeechtlError


def naive_dtw(a: torch.Tensor, b: torch.Tensor) -> float:
    """Textbook DTW (steps right, down, diagonal), Euclidean frame cost, / (len a + len b)."""
    inf = float("inf")
    d = [[inf] * len(b) for _ in range(len(a))]
    for i in range(len(a)):
        for j in range(len(b)):
            c = float(torch.dist(a[i], b[j]))
            if i == 0 and j == 0:
                d[i][j] = c
                continue
            best = min(
                d[i - 1][j] if i else inf,
                d[i][j - 1] if j else inf,
                d[i - 1][j - 1] if i and j else inf,
            )
            d[i][j] = c + best
    return d[-1][-1] / (len(a) + len(b))


def test_batched_dtw_equals_the_textbook_recursion_on_padded_pairs():
    torch.manual_seed(0)
    seqs = [torch.randn(n, 3) for n in (1, 4, 7, 5, 9, 2)]
    pairs = [(0, 1), (1, 2), (2, 1), (3, 4), (4, 5), (5, 0), (2, 2)]
    a = torch.nn.utils.rnn.pad_sequence([seqs[i] for i, _ in pairs], batch_first=True)
    b = torch.nn.utils.rnn.pad_sequence([seqs[j] for _, j in pairs], batch_first=True)
    a_lens = torch.tensor([len(seqs[i]) for i, _ in pairs])
    b_lens = torch.tensor([len(seqs[j]) for _, j in pairs])
    got = dtw_pairs(a, a_lens, b, b_lens)
    want = torch.tensor([naive_dtw(seqs[i], seqs[j]) for i, j in pairs])
    assert torch.allclose(got, want, atol=1e-5)
    assert got[-1] == 0.0  # a sequence against itself


def test_dtw_matrix_is_symmetric_and_finds_a_time_stretched_copy():
    torch.manual_seed(1)
    word = torch.randn(8, 4)
    stretched = word.repeat_interleave(2, dim=0)  # the same word said twice as slowly
    other = torch.randn(8, 4)
    dist = dtw_matrix([word, other, stretched], batch_pairs=2, progress=False)
    assert torch.equal(dist, dist.T) and torch.all(dist.diagonal() == 0)
    assert dist[0, 2] < dist[0, 1] and dist[2, 0] < dist[2, 1]
    assert nearest(dist, 1).squeeze(1).tolist() == [2, 0, 0]
    assert nearest(dist, 5).shape == (3, 2)  # never more neighbours than other utterances


def test_smoothing_averages_log_posteriors_with_the_neighbours():
    scores = torch.tensor([[0.0, -4.0], [-3.0, 0.0], [-1.0, -1.0]])
    alone = smooth_scores(scores, torch.zeros(3, 0, dtype=torch.long))
    assert torch.allclose(alone.exp().sum(1), torch.ones(3, dtype=alone.dtype))
    got = smooth_scores(scores, torch.tensor([[1], [0], [0]]))
    assert torch.allclose(got[0], (alone[0] + alone[1]) / 2) and torch.allclose(got[2], (alone[2] + alone[0]) / 2)
    # A transcript that cannot fit (-inf) stays finite and low, never NaN.
    assert torch.isfinite(
        smooth_scores(torch.tensor([[0.0, -float("inf")]]), torch.zeros(1, 0, dtype=torch.long))
    ).all()


@dataclass
class _Sup:
    speaker: str


class _Cut:
    """What neighbour_smoothed reads of a cut: its id, speaker and stored features."""

    def __init__(self, cut_id: str, speaker: str, feats: torch.Tensor):
        self.id, self.supervisions, self._feats = cut_id, [_Sup(speaker)], feats
        self.has_features = True

    def load_features(self):
        return self._feats.numpy()


def test_neighbours_undo_a_confusion_that_per_utterance_balance_leaves():
    """Three words, twelve recordings each by one speaker (a template said at random speeds, with
    noise). The teacher hears every 'two' as a little more 'four' than 'two', with per-utterance
    noise as large as the margins: balancing alone mislabels several; sharing scores with the
    11 nearest recordings by DTW (the word's other recordings, found from the audio alone) labels
    every recording rightly."""
    g = torch.Generator().manual_seed(3)
    names = ["four", "one", "two"]
    templates = {n: torch.randn(10, 6, generator=g) * 2 for n in names}
    cuts, rows, truth = [], [], []
    for n in names:
        for r in range(12):
            reps = torch.randint(1, 3, (10,), generator=g)
            feats = templates[n].repeat_interleave(reps, dim=0) + 0.3 * torch.randn(int(reps.sum()), 6, generator=g)
            cuts.append(_Cut(f"{n}-{r}", "george", feats))
            mean = {"four": {"four": -0.5, "two": -1.5}, "two": {"four": -1.5, "two": -1.8}, "one": {"one": -0.5}}[n]
            row = [mean.get(m, -6.0) + float(torch.randn(1, generator=g)) for m in names]
            rows.append(row)
            truth.append(n)
    scores = torch.tensor(rows)
    prior = torch.full((3,), 1 / 3)
    alone = [t for t, _ in balanced_labels(scores, names, prior)]
    shared = [t for t, _ in balanced_labels(neighbour_smoothed(scores, cuts, 11), names, prior)]
    assert sum(a != t for a, t in zip(alone, truth, strict=True)) >= 4
    assert shared == truth
    # Neighbours stay within a speaker: a second speaker's copies change nothing of george's.
    others = [_Cut(f"x-{c.id}", "nicolas", c._feats.flip(0)) for c in cuts]
    both = neighbour_smoothed(torch.cat([scores, scores]), cuts + others, 11)
    assert torch.allclose(both[: len(cuts)], neighbour_smoothed(scores, cuts, 11))


def test_neighbours_option_is_checked_and_runs_on_real_fbank(small_yesno, source, tmp_path):  # noqa: F811
    with pytest.raises(SpeechtlError, match="Fix: balance: transcripts"):
        get_method("pseudo-label", {"neighbours": 3})
    with pytest.raises(SpeechtlError, match="neighbours must be >= 0"):
        get_method("balanced-pseudo-label", {"neighbours": -1})
    _, cuts, _ = small_yesno
    labelled = cuts + cuts.modify_ids(lambda i: "spk2-" + i)
    method = get_method("balanced-pseudo-label", {"teacher": str(source), "threshold": 0.0, "neighbours": 2})
    trainer, _ = trainer_for(method, small_yesno, source, tmp_path / "exp")
    trainer.exp_dir.mkdir(parents=True, exist_ok=True)
    # Each recording twice under two ids: its copy is its nearest neighbour, at distance 0.
    unlabelled = cuts.modify_ids(lambda i: "u-" + i) + cuts.modify_ids(lambda i: "v-" + i)
    out = method.prepare_data(trainer, labelled, {"unlabelled": unlabelled})
    kept = dict(
        (i, t)
        for i, _, t in (line.split("\t") for line in (trainer.exp_dir / "pseudo_labels.txt").read_text().splitlines())
    )
    prompts = {c.supervisions[0].text for c in cuts}
    assert len(kept) == len(unlabelled) and len(out) == len(labelled) + len(unlabelled)
    assert set(kept.values()) <= prompts
    from speechtl.adapt.neighbours import normalized_features

    feats = [normalized_features(c) for c in unlabelled]
    dist = dtw_matrix(feats, progress=False)
    n = len(cuts)
    assert nearest(dist, 1).squeeze(1).tolist() == [i + n for i in range(n)] + list(range(n))


def test_features_from_audio_where_none_are_stored(small_yesno):
    """Cuts of a raw-waveform source carry audio only: the distances come from its fbank."""
    from speechtl.adapt.neighbours import AUDIO_MEL_BINS, normalized_features

    _, cuts, _ = small_yesno
    audio_only = [c.drop_features() for c in cuts]
    assert not audio_only[0].has_features
    feats = normalized_features(audio_only[0])
    assert feats.shape[1] == AUDIO_MEL_BINS and abs(feats.shape[0] - audio_only[0].duration * 100) <= 2
    assert torch.allclose(feats.mean(0), torch.zeros(AUDIO_MEL_BINS), atol=1e-4)
    # A recording and its copy are each other's nearest neighbour.
    both = audio_only[:4] + [c.with_id("copy-" + c.id) for c in audio_only[:4]]
    dist = dtw_matrix([normalized_features(c) for c in both], progress=False)
    assert nearest(dist, 1).squeeze(1).tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    from lhotse.utils import fastcopy

    bare = fastcopy(audio_only[0], recording=None)
    with pytest.raises(SpeechtlError, match=f"{bare.id} has neither stored features nor audio"):
        normalized_features(bare)
