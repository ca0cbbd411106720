"""End to end: egs/yesno/ASR/run.sh on the real corpus, then a re-run that does no work."""

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

RECIPE = REPO / "egs" / "yesno" / "ASR"


def copy_recipe(dst: Path) -> Path:
    """The recipe in a scratch tree: its own data/ and exp/, the repo's steps/utils/local."""
    d = dst / "egs" / "yesno" / "ASR"
    d.mkdir(parents=True)
    for name in ["run.sh", "cmd.sh", "path.sh"]:
        shutil.copy(RECIPE / name, d / name)
    shutil.copytree(RECIPE / "conf", d / "conf")
    for link in ["steps", "utils", "local"]:
        (d / link).symlink_to(REPO / link)
    return d


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def recipe_run(yesno_dir, tmp_path_factory):
    recipe = copy_recipe(tmp_path_factory.mktemp("yesno"))
    t0 = time.time()
    r = run(recipe, "--corpus-dir", str(yesno_dir))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return recipe, r, time.time() - t0


def results(recipe: Path):
    with open(recipe / "exp" / "results.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_recipe_writes_results_and_decodes_well(recipe_run):
    recipe, r, seconds = recipe_run
    rows = results(recipe)
    assert list(rows[0]) == ["test_set", "method", "data", "decoding", "wer", "errors", "words"]
    by = {row["decoding"]: row for row in rows}
    assert set(by) == {"greedy", "hlg"}
    for row in rows:
        assert (row["test_set"], row["method"], row["data"], row["words"]) == ("test", "scratch", "all", "240")
        assert abs(float(row["wer"]) - 100 * int(row["errors"]) / 240) < 0.01
    # The issue asks <= 0.42% (1 error in 240 words); training is seeded, and this bound
    # leaves room for floating-point differences between machines.
    assert float(by["hlg"]["wer"]) <= 1.0, rows
    dec = recipe / "exp" / "scratch_all" / "decode"
    for d in ["greedy", "hlg"]:
        for kind in ["recogs", "errs", "wer-summary"]:
            assert (dec / f"{kind}-test-{d}.txt").is_file()
    assert "Stage 5" in r.stdout and "(run.sh:" in r.stdout


def test_rerun_skips_every_stage(recipe_run, yesno_dir):
    recipe = recipe_run[0]
    watched = [recipe / "exp" / "scratch_all" / "final.pt", recipe / "data" / "lang" / "HLG.fst",
               recipe / "data" / "fbank" / "yesno_cuts_train.jsonl.gz", recipe / "exp" / "results.tsv"]
    before = [p.stat().st_mtime_ns for p in watched]
    t0 = time.time()
    r = run(recipe, "--corpus-dir", str(yesno_dir))
    took = time.time() - t0
    assert r.returncode == 0, r.stderr
    assert "Stage" not in r.stdout, r.stdout
    assert [p.stat().st_mtime_ns for p in watched] == before
    assert took < 10, f"a re-run took {took:.1f}s"


def test_changed_argument_redoes_only_its_stage(recipe_run, yesno_dir):
    recipe = recipe_run[0]
    r = run(recipe, "--corpus-dir", str(yesno_dir), "--stage", "5", "--decoding", "greedy")
    assert r.returncode == 0, r.stderr
    assert "Stage 5" in r.stdout and "Stage 4" not in r.stdout
