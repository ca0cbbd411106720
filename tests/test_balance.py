"""Balanced pseudo-labels over a closed set of transcripts (speechtl.adapt.balance)."""

import math

import pytest
import torch
from test_methods_advanced import source, trainer_for  # noqa: F401  (fixture)

from speechtl.adapt import get_method
from speechtl.adapt.balance import balanced_labels, closed_set, sinkhorn, transcript_scores
from speechtl.errors import SpeechtlError


def test_sinkhorn_rows_are_distributions_and_columns_follow_the_prior():
    torch.manual_seed(0)
    scores = torch.randn(60, 3) * 3
    prior = torch.tensor([0.5, 0.3, 0.2])
    plan = sinkhorn(scores, prior)
    assert torch.allclose(plan.sum(1), torch.ones(60, dtype=plan.dtype), atol=1e-9)
    assert torch.allclose(plan.sum(0), 60 * prior.double(), atol=1e-3)


def test_a_systematic_confusion_is_undone_by_the_labelled_frequencies():
    """Ten utterances of each of 3 words; the teacher scores every 'two' a little higher as
    'four' (and 'four' much higher still as 'four'): its free choice has no 'two' and twenty
    'four's, the balanced one gives each word its ten."""
    names = ["four", "one", "two"]
    rows = []
    for truth in names:
        for _ in range(10):
            s = {"one": -9.0, "two": -9.0, "four": -9.0}
            if truth == "one":
                s["one"] = -1.0
            elif truth == "two":
                s["two"], s["four"] = -2.0, -1.5  # confused, by a little
            else:
                s["four"], s["two"] = -0.5, -6.0
            rows.append([s[n] for n in names])
    scores = torch.tensor(rows)
    truth = [n for n in names for _ in range(10)]
    free = [names[int(i)] for i in scores.argmax(1)]
    assert free.count("two") == 0 and free.count("four") == 20
    labels = balanced_labels(scores, names, torch.full((3,), 1 / 3))
    assert [t for t, _ in labels] == truth
    assert all(0.5 < c <= 1.0 for _, c in labels)


def test_transcript_scores_are_ctc_log_likelihoods():
    torch.manual_seed(1)
    lp = torch.randn(6, 4).log_softmax(-1)
    targets = [[1], [2, 3], [1, 1, 1, 1]]  # the last needs 7 frames (blanks between repeats): cannot fit
    got = transcript_scores(lp, targets)
    for k, t in enumerate(targets[:2]):
        want = -torch.nn.functional.ctc_loss(
            lp.unsqueeze(1), torch.tensor([t]), torch.tensor([6]), torch.tensor([len(t)]), reduction="sum"
        )
        assert got[k] == pytest.approx(float(want), abs=1e-5)
    assert got[2] == -math.inf


def test_closed_set_counts_transcripts_and_refuses_free_speech():
    said = [("r1", "b"), ("r2", "a"), ("r3", "b"), ("r4", ""), ("r5", "b"), ("r6", "a"), ("r6_sp1.1", "a")]
    names, freq = closed_set(said)
    assert names == ["a", "b"] and torch.allclose(freq, torch.tensor([0.4, 0.6], dtype=freq.dtype))
    with pytest.raises(SpeechtlError, match="2 or more distinct"):
        closed_set([("r1", "a"), ("r2", "a")])
    free_text = [(f"r{i}", f"sentence {i}") for i in range(50)]
    perturbed = [(f"{i}_sp{f}", t) for i, t in free_text for f in ("0.9", "1.1")]
    with pytest.raises(SpeechtlError, match=r"Fix: pseudo-label \(balance: none\)"):
        closed_set(free_text + perturbed)  # speed-perturbed copies do not make a sentence a prompt
    with pytest.raises(SpeechtlError, match="balance must be one of none, transcripts"):
        get_method("pseudo-label", {"balance": "yes"})


def test_balanced_pseudo_labels_are_labelled_transcripts(small_yesno, source, tmp_path):  # noqa: F811
    """yesno's 8 prompts said by two 'speakers' (the cuts under a second id): every kept label of the
    untranscribed audio is one of them; the free-text case is refused before any training."""
    _, cuts, _ = small_yesno
    labelled = cuts + cuts.modify_ids(lambda i: "spk2-" + i)
    method = get_method("balanced-pseudo-label", {"teacher": str(source), "threshold": 0.0})
    assert method.options.balance == "transcripts"
    trainer, _ = trainer_for(method, small_yesno, source, tmp_path / "exp")
    trainer.exp_dir.mkdir(parents=True, exist_ok=True)
    unlabelled = cuts.modify_ids(lambda i: "u-" + i)
    out = method.prepare_data(trainer, labelled, {"unlabelled": unlabelled})
    prompts = {c.supervisions[0].text for c in cuts}
    kept = [line.split("\t") for line in (trainer.exp_dir / "pseudo_labels.txt").read_text().splitlines()]
    assert len(kept) == len(cuts) and len(out) == len(labelled) + len(cuts)
    assert all(text in prompts for _, _, text in kept)
    with pytest.raises(SpeechtlError, match="not a closed prompt set"):
        method.prepare_data(trainer, cuts, {"unlabelled": unlabelled})
