"""Word groups matched to a closed prompt set (speechtl.adapt.groups, balanced-pseudo-label's assign: groups)."""

import itertools

import pytest
import torch
from test_methods_advanced import source, trainer_for  # noqa: F401  (fixture)
from test_neighbours import _Cut

from speechtl.adapt import get_method
from speechtl.adapt.balance import balanced_labels
from speechtl.adapt.groups import group_assignment, grouped_labels, hungarian, match_groups, spectral_groups
from speechtl.adapt.neighbours import dtw_matrix, nearest, neighbour_smoothed, smooth_scores
from speechtl.errors import SpeechtlError


def test_hungarian_finds_the_best_one_to_one_matching():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        rows = int(torch.randint(1, 6, (1,), generator=g))
        cols = rows + int(torch.randint(0, 3, (1,), generator=g))
        score = torch.randn(rows, cols, generator=g).double()
        if trial % 3 == 0:
            score = score.round()  # ties
        got = hungarian(score)
        assert len(set(got)) == rows and all(0 <= c < cols for c in got)
        best = max(sum(float(score[i, p[i]]) for i in range(rows)) for p in itertools.permutations(range(cols), rows))
        assert sum(float(score[i, got[i]]) for i in range(rows)) == pytest.approx(best)
    # Each row's own best is not the best whole matching.
    assert hungarian(torch.tensor([[5.0, 4.0], [4.9, 0.0]])) == [1, 0]
    with pytest.raises(ValueError, match="3 rows for 2 columns"):
        hungarian(torch.zeros(3, 2))


def recordings(names, per_word, seed):
    """``per_word`` recordings of each word by one speaker: the word's template at random local
    speeds, with noise. (cuts, true word of each)."""
    g = torch.Generator().manual_seed(seed)
    templates = {n: torch.randn(10, 6, generator=g) * 2 for n in names}
    cuts, truth = [], []
    for n in names:
        for r in range(per_word):
            reps = torch.randint(1, 3, (10,), generator=g)
            feats = templates[n].repeat_interleave(reps, dim=0) + 0.3 * torch.randn(int(reps.sum()), 6, generator=g)
            cuts.append(_Cut(f"{n}-{r}", "george", feats))
            truth.append(n)
    return cuts, truth


def test_spectral_groups_are_the_words_and_matching_names_them():
    names = ["a", "b", "c", "d", "e"]
    cuts, truth = recordings(names, 12, seed=1)
    dist = dtw_matrix([c._feats - c._feats.mean(0) for c in cuts], progress=False)
    groups = spectral_groups(dist, len(names), k=5)
    assert len(set(groups.tolist())) == len(names)
    # each group is exactly one word's recordings
    for grp in set(groups.tolist()):
        assert len({truth[i] for i in range(len(cuts)) if groups[i] == grp}) == 1
    # a teacher that prefers the right word on average names every group rightly
    g = torch.Generator().manual_seed(2)
    log_post = torch.log_softmax(
        torch.tensor([[2.0 if m == t else 0.0 for m in names] for t in truth]) + 1.5 * torch.randn(60, 5, generator=g),
        1,
    ).double()
    assert [names[i] for i in match_groups(groups, log_post)] == truth
    # Group numbers with gaps (an empty k-means cluster) name the same groups the same way.
    assert torch.equal(match_groups(groups * 3 + 7, log_post), match_groups(groups, log_post))


NAMES = ["eight", "five", "four", "nine", "two"]
#: The teacher's mean scores of a held-out FSDD speaker (finetune teacher, RESULTS.md "Groups").
GEORGE = {
    "two": {"four": -0.1, "two": -8.3, "five": -7.3},
    "four": {"five": -1.9, "four": -2.1, "two": -10.9, "eight": -7.7},
    "five": {"five": 0.0, "eight": -6.4, "nine": -6.4, "four": -8.4},
    "eight": {"eight": 0.0},
    "nine": {"nine": -0.7, "five": -8.0},
}


def confused_speaker(seed: int, per_word: int = 14):
    """(cuts, true words, (N, K) scores, (N, N) DTW): recordings of NAMES scored as GEORGE's teacher
    scored his, with per-utterance noise."""
    cuts, truth = recordings(NAMES, per_word, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    scores = torch.tensor(
        [[GEORGE[t].get(m, -11.0) + 1.5 * float(torch.randn(1, generator=g)) for m in NAMES] for t in truth]
    )
    return cuts, truth, scores, dtw_matrix([c._feats - c._feats.mean(0) for c in cuts], progress=False)


def test_groups_undo_a_cycle_of_confusions_that_the_plan_keeps():
    """His TWO scores FOUR at -0.1 and TWO at -8.3, his FOUR FIVE at -1.9 and FOUR at -2.1, his FIVE
    EIGHT and NINE at -6.4. Utterance by utterance the balanced plan, neighbours or not, passes
    labels round TWO -> FOUR -> FIVE -> ...; groups matched as wholes label every recording rightly."""
    cuts, truth, scores, dist = confused_speaker(3)
    prior = torch.full((len(NAMES),), 1 / len(NAMES))
    alone = [t for t, _ in balanced_labels(scores, NAMES, prior)]
    plan = [t for t, _ in balanced_labels(neighbour_smoothed(scores, cuts, 5), NAMES, prior)]
    for labels, at_least in ((alone, 10), (plan, 3)):
        wrong = [(t, p) for p, t in zip(labels, truth, strict=True) if p != t]
        assert len(wrong) >= at_least and ("two", "four") in wrong
    labels, refined = grouped_labels(scores, dist, prior, graph_neighbours=5, neighbours=5)
    assert [NAMES[i] for i in labels] == truth
    assert bool((refined > 0.9).all() and (refined <= 1).all()), "the refinement is sure of nearly all"
    # Confidence "agreement" (the default) is the plan's probability of the group's label: low where
    # the plan says another word, so a threshold keeps the labels both agree on.
    speakers = [("george", list(range(len(cuts))), dist)]
    got, conf = group_assignment(scores, speakers, prior, graph_neighbours=5, neighbours=5)
    assert torch.equal(got, labels)
    disputed = torch.tensor([p != t for p, t in zip(plan, truth, strict=True)])
    assert bool((conf[disputed] < 0.5).all()) and float(conf[~disputed].median()) > 0.9
    _, conf_refined = group_assignment(scores, speakers, prior, 5, 5, confidence="refined")
    assert torch.allclose(conf_refined, refined)


def test_group_assignment_per_speaker_with_interleaved_positions_and_a_small_speaker(caplog):
    """Two confused speakers whose utterances alternate in the input, and a third with too few
    utterances to group: each of the first two gets the labels it gets alone, the third the
    plan's, with one warning naming it; a transcript that cannot fit is never confident."""
    prior = torch.full((len(NAMES),), 1 / len(NAMES))
    a, b = confused_speaker(3), confused_speaker(11)
    n = len(a[0])
    small_scores = a[2][:6]  # 6 utterances for 5 transcripts
    scores = torch.empty(2 * n + 6, len(NAMES))
    pos_a, pos_b = list(range(0, 2 * n, 2)), list(range(1, 2 * n, 2))
    pos_c = list(range(2 * n, 2 * n + 6))
    scores[pos_a], scores[pos_b], scores[pos_c] = a[2], b[2], small_scores
    small_dist = a[3][:6, :6]
    speakers = [("george", pos_a, a[3]), ("nicolas", pos_b, b[3]), ("lucas", pos_c, small_dist)]
    with caplog.at_level("WARNING"):
        labels, conf = group_assignment(scores, speakers, prior, graph_neighbours=5, neighbours=5)
    for (_, truth, _, _), pos in ((a, pos_a), (b, pos_b)):
        assert [NAMES[i] for i in labels[pos]] == truth
    assert "1 speaker(s) with fewer than 2 utterances per transcript" in caplog.text and "lucas (6)" in caplog.text
    smoothed = torch.empty(2 * n + 6, len(NAMES), dtype=torch.float64)
    for _, pos, dist in speakers:
        smoothed[pos] = smooth_scores(scores[pos], nearest(dist, 5))
    plan = [NAMES.index(t) for t, _ in balanced_labels(smoothed, NAMES, prior)]
    assert labels[pos_c].tolist() == [plan[p] for p in pos_c]
    # "nine" cannot fit in any of george's utterances: whatever gets it has confidence 0.
    scores[pos_a, NAMES.index("nine")] = -float("inf")
    labels, conf = group_assignment(scores, speakers, prior, graph_neighbours=5, neighbours=5)
    nine = [p for p in pos_a if labels[p] == NAMES.index("nine")]
    assert nine and all(float(conf[p]) == 0.0 for p in nine)
    assert all(float(conf[p]) > 0 for p in pos_b if labels[p] == NAMES.index("nine"))


def test_assign_groups_is_checked_and_runs_through_the_method_on_real_fbank(small_yesno, source, tmp_path):  # noqa: F811
    with pytest.raises(SpeechtlError, match="assign must be one of plan, groups"):
        get_method("balanced-pseudo-label", {"assign": "clusters"})
    with pytest.raises(SpeechtlError, match="Fix: balance: transcripts, neighbours >= 1"):
        get_method("balanced-pseudo-label", {"assign": "groups", "neighbours": 0})
    with pytest.raises(SpeechtlError, match="assign: groups"):
        get_method("pseudo-label", {"assign": "groups"})
    with pytest.raises(SpeechtlError, match="group_confidence must be one of agreement, refined"):
        get_method("balanced-pseudo-label", {"assign": "groups", "neighbours": 5, "group_confidence": "high"})
    _, cuts, _ = small_yesno
    labelled = cuts + cuts.modify_ids(lambda i: "spk2-" + i)
    method = get_method(
        "balanced-pseudo-label",
        {"teacher": str(source), "threshold": 0.0, "neighbours": 1, "assign": "groups", "group_neighbours": 1},
    )
    trainer, _ = trainer_for(method, small_yesno, source, tmp_path / "exp")
    trainer.exp_dir.mkdir(parents=True, exist_ok=True)
    # Each recording twice: a recording and its copy are one group, so they get one transcript.
    unlabelled = cuts.modify_ids(lambda i: "u-" + i) + cuts.modify_ids(lambda i: "v-" + i)
    out = method.prepare_data(trainer, labelled, {"unlabelled": unlabelled})
    rows = [line.split("\t") for line in (trainer.exp_dir / "pseudo_labels.txt").read_text().splitlines()]
    kept = {i: t for i, _, t in rows}
    assert len(kept) == len(unlabelled) and len(out) == len(labelled) + len(unlabelled)
    assert all(kept["u-" + c.id] == kept["v-" + c.id] for c in cuts)
    assert sorted(kept.values()) == sorted(2 * [c.supervisions[0].text for c in cuts]), "one group per transcript"
