"""kill -9 during fbank or decoding, then the same command again: it completes, and gives
what an uninterrupted run gives; no half-written file is ever left under a final name
(outputs are written as ``.partial.<name>`` and renamed, ``speechtl.atomic``), and a
recipe stage killed mid-way has no ``.done``, so its re-run redoes it.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, copy_recipe, venv_env
from lhotse import CutSet

from speechtl.atomic import PARTIAL
from speechtl.data.corpora.yesno import LEXICON, prepare_yesno
from speechtl.lang import Lang
from speechtl.lang.lexicon import lexicon_from_dict
from speechtl.lang.prepare import prepare_lang
from speechtl.models import ModelConfig, build_model
from speechtl.train.checkpoint import save_checkpoint

FBANK = ["--prefix", "yesno", "--splits", "train", "test", "--sampling-rate", "8000", "--num-mel-bins", "23"]
PERTURB = ["--speed-perturb", "0.9", "1.1"]  # 90 train cuts: long enough to be killed mid-write


def speechtl(*args) -> list[str]:
    return [sys.executable, "-m", "speechtl.cli", *map(str, args)]


def env() -> dict:
    return venv_env(OMP_NUM_THREADS="1")


def kill_when(cmd: list[str], ready: Callable[[], bool], cwd: Path | None = None, timeout: float = 300) -> None:
    """Start ``cmd`` in a process group of its own and SIGKILL the whole group (job processes
    too) as soon as ``ready()``; fails if the command ends first (then nothing was tested)."""
    p = subprocess.Popen(
        cmd, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < timeout:
        if ready():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return
        time.sleep(0.005)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    pytest.fail(f"{cmd[:5]} ended (rc {p.wait()}) before the kill point; nothing was tested\n{p.stderr.read()[-2000:]}")


def partials(d: Path) -> list[Path]:
    return sorted(Path(d).rglob(f"{PARTIAL}*"))


def features(path: Path) -> dict[str, np.ndarray]:
    return {c.id: c.load_features() for c in CutSet.from_file(path)}


def assert_same_features(a: Path, b: Path) -> None:
    fa, fb = features(a), features(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])


@pytest.fixture(scope="module")
def yesno(yesno_dir, tmp_path_factory):
    """Full yesno manifests, an uninterrupted fbank run, a lang dir and a random-weight model."""
    d = tmp_path_factory.mktemp("atomic")
    prepare_yesno(yesno_dir, d / "manifests")
    r = subprocess.run(speechtl("compute-fbank", "--manifest-dir", d / "manifests", "--output-dir", d / "ref",
                                *FBANK, *PERTURB), env=env(), capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (d / "lm.txt").write_text("YES NO YES NO\nNO NO YES YES\n")
    prepare_lang(lexicon_from_dict(LEXICON), d / "lang", lm_text=d / "lm.txt", lm_order=2)
    lang = Lang(d / "lang")
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_features=23, encoder_options={"hidden_dim": 32}), lang.vocab_size)
    save_checkpoint(d / "model.pt", model, tokens=lang.token2id)
    return d


def test_fbank_killed_mid_write_then_rerun_equals_an_uninterrupted_run(yesno, tmp_path):
    out = tmp_path / "fbank"
    cmd = speechtl("compute-fbank", "--manifest-dir", yesno / "manifests", "--output-dir", out, *FBANK, *PERTURB,
                   "--nj", 2)  # fmt: skip
    # Killed while the train features are being written: the partial archive exists.
    kill_when(cmd, lambda: any((out / "yesno_feats_train").glob(f"{PARTIAL}feats.*.lca")))
    assert not (out / "yesno_cuts_train.jsonl.gz").exists(), "a killed split must not look finished"
    assert not list((out / "yesno_feats_train").glob("cuts.*.jsonl.gz")), "nor any of its jobs"
    # Killed again once train is finished and test is under way: train's outputs are whole.
    kill_when(cmd, lambda: any((out / "yesno_feats_test").glob(f"{PARTIAL}*")))
    assert_same_features(out / "yesno_cuts_train.jsonl.gz", yesno / "ref" / "yesno_cuts_train.jsonl.gz")
    assert not (out / "yesno_cuts_test.jsonl.gz").exists()

    r = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for split in ("train", "test"):
        assert_same_features(out / f"yesno_cuts_{split}.jsonl.gz", yesno / "ref" / f"yesno_cuts_{split}.jsonl.gz")
    assert not partials(out), "the re-run replaces what the killed runs left"


def test_recipe_fbank_stage_killed_has_no_done_and_reruns(yesno, yesno_dir, tmp_path, monkeypatch):
    recipe = copy_recipe(REPO / "egs" / "yesno" / "ASR", tmp_path)

    def stage(*args) -> list[str]:
        return ["./run.sh", "--corpus-dir", str(yesno_dir), *args]

    r = subprocess.run(stage("--stage", "1", "--stop-stage", "1"), cwd=recipe, env=env(), capture_output=True)
    assert r.returncode == 0, r.stderr[-2000:]
    fbank = recipe / "data" / "fbank"
    kill_when(stage("--stage", "2", "--stop-stage", "2"),
              lambda: any(fbank.glob(f"yesno_feats_*/{PARTIAL}feats.*.lca")), cwd=recipe)  # fmt: skip
    assert not (fbank / ".done").exists()
    r = subprocess.run(stage("--stage", "2", "--stop-stage", "2"), cwd=recipe, env=env(), capture_output=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (fbank / ".done").is_file() and not partials(fbank)
    monkeypatch.chdir(recipe)  # the recipe's cuts name their features relative to it
    assert_same_features(fbank / "yesno_cuts_train.jsonl.gz", yesno / "ref" / "yesno_cuts_train.jsonl.gz")


def decode_cmd(yesno: Path, out: Path, results: Path) -> list[str]:
    return speechtl(
        "decode", "--checkpoint", yesno / "model.pt", "--lang-dir", yesno / "lang",
        "--cuts", yesno / "ref" / "yesno_cuts_test.jsonl.gz", "--test-set", "test", "--out-dir", out,
        "--decoding", "greedy,beam,hlg,hlg-lattice", "--results", results, "--nj", "2",
    )  # fmt: skip


def test_decode_killed_between_and_during_writes_then_rerun_equals_an_uninterrupted_run(yesno, tmp_path):
    ref_out, ref_results = tmp_path / "ref", tmp_path / "ref_results.tsv"
    r = subprocess.run(decode_cmd(yesno, ref_out, ref_results), env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = {p.name: p.read_bytes() for p in ref_out.glob("*") if p.is_file()}
    assert len(ref) >= 12

    out, results = tmp_path / "dec", tmp_path / "results.tsv"
    shutil.copy(ref_results, results)  # an earlier run's rows: a kill must leave them whole
    results_before = results.read_bytes()
    cmd = decode_cmd(yesno, out, results)
    # Once the greedy files are written, and again while the HLG searches run.
    for ready in (
        lambda: (out / "wer-summary-test-greedy.txt").exists(),
        lambda: (out / "recogs-test-hlg.txt").exists(),
    ):
        kill_when(cmd, ready)
        for p in out.glob("*"):
            if p.is_file() and not p.name.startswith(PARTIAL):
                assert p.read_bytes() == ref[p.name], f"{p.name} is under its final name, so it must be whole"
        assert results.read_bytes() == results_before
    assert not (out / "wer-summary-test-hlg-lattice.txt").exists()

    r = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in out.glob("*") if p.is_file()} == ref

    def scores(path: Path) -> list[list[str]]:  # the columns every reader knows (later ones name files)
        return [line.split("\t")[:7] for line in path.read_text().splitlines()]

    assert scores(results) == scores(ref_results)
