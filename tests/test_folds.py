"""K-fold dev sets for a corpus without one (speechtl folds): every original utterance is dev
exactly once, no form of a dev utterance is trained on, the draw is seeded, folds by speaker
keep speakers apart, and the CLI writes the pairs speechtl sweep reads."""

import subprocess
import sys

import pytest
from lhotse import CutSet
from test_loso import corpus

from speechtl.data.folds import FoldsConfig, make_folds, write_folds
from speechtl.data.subset import original_id
from speechtl.errors import SpeechtlError


def ids(cutset):
    return {c.id for c in cutset}


def test_every_original_is_dev_once_and_no_form_of_it_is_trained_on():
    cuts = corpus(n_speakers=2, per_text=4)  # 24 originals, each with an _sp0.9 copy
    originals = {c.id for c in cuts if original_id(c.id) == c.id}
    pairs = make_folds(cuts, FoldsConfig(k=5, seed=1))
    assert len(pairs) == 5
    devs = [ids(dev) for _, dev in pairs]
    assert set().union(*devs) == originals and sum(len(d) for d in devs) == len(originals)
    assert max(map(len, devs)) - min(map(len, devs)) <= 1  # 24 into 5: 5, 5, 5, 5, 4
    for (train, _), d in zip(pairs, devs, strict=True):
        trained = {original_id(i) for i in ids(train)}
        assert not trained & d  # neither the dev utterance nor its perturbed copy
        assert ids(train) == {c.id for c in cuts if original_id(c.id) not in d}  # everything else
        assert all("_sp" not in i for i in d)


def test_the_draw_is_seeded():
    cuts = corpus(n_speakers=2, per_text=4)
    dev_of = {s: [ids(d) for _, d in make_folds(cuts, FoldsConfig(k=3, seed=s))] for s in (0, 1)}
    assert dev_of[0] == [ids(d) for _, d in make_folds(cuts, FoldsConfig(k=3, seed=0))]
    assert dev_of[0] != dev_of[1]


def test_folds_by_speaker_keep_each_speaker_on_one_side():
    cuts = corpus(n_speakers=4, per_text=2)
    pairs = make_folds(cuts, FoldsConfig(k=2, by="speaker"))
    for train, dev in pairs:
        dev_spk = {c.supervisions[0].speaker for c in dev}
        train_spk = {c.supervisions[0].speaker for c in train}
        assert len(dev_spk) == 2 and not dev_spk & train_spk
    with pytest.raises(SpeechtlError, match=r"4 speaker.*cannot make 5 folds.*lower --k"):
        make_folds(cuts, FoldsConfig(k=5, by="speaker"))
    with pytest.raises(SpeechtlError, match="at least 2"):
        make_folds(cuts, FoldsConfig(k=1))


def test_cli_writes_each_fold_and_prints_its_pair(tmp_path):
    cuts = corpus(n_speakers=1, per_text=3)
    pool = tmp_path / "cuts.jsonl.gz"
    cuts.to_file(pool)
    out = tmp_path / "folds"
    r = subprocess.run(
        [sys.executable, "-m", "speechtl.cli", "folds", "--cuts", str(pool), "--k", "3", "--output-dir", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    pairs = [line.split() for line in r.stdout.splitlines()]
    assert pairs == [[str(out / f"train_f{k}.jsonl.gz"), str(out / f"dev_f{k}.jsonl.gz")] for k in range(3)]
    again = write_folds([pool], tmp_path / "again")  # the library call the CLI wraps
    for k, ((train, dev), (train_path, dev_path)) in enumerate(zip(make_folds(cuts), again, strict=True)):
        for path in (out / f"dev_f{k}.jsonl.gz", dev_path):
            assert ids(CutSet.from_file(path)) == ids(dev)
        for path in (out / f"train_f{k}.jsonl.gz", train_path):
            assert ids(CutSet.from_file(path)) == ids(train)
