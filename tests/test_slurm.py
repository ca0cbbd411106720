"""A real one-node Slurm: the yesno recipe's fbank and decode stages run as Slurm jobs
and give exactly what the local runner gives."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import REPO, copy_recipe, run
from lhotse import CutSet

RECIPE = REPO / "egs" / "yesno" / "ASR"
SLURM = "slurm --time 10 --mem 1G --cpus 1"


@pytest.fixture(scope="module")
def slurm():
    if os.environ.get("SPEECHTL_SKIP_SLURM") == "1":
        pytest.skip("SPEECHTL_SKIP_SLURM=1")
    if os.geteuid() != 0 and shutil.which("sinfo") is None:
        pytest.skip("no Slurm here, and starting one needs root")
    r = subprocess.run(["bash", str(REPO / "utils" / "start_slurm.sh")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def features(recipe):
    cuts = CutSet.from_file(recipe / "data" / "fbank" / "yesno_cuts_test.jsonl.gz")
    cwd = os.getcwd()
    os.chdir(recipe)
    try:
        return {c.id: c.load_features() for c in cuts}
    finally:
        os.chdir(cwd)


def test_fbank_and_decode_through_slurm_match_local(slurm, yesno_dir, tmp_path):
    recipe = copy_recipe(RECIPE, tmp_path)
    r = run(recipe, "--corpus-dir", str(yesno_dir))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    local_feats = features(recipe)
    dec = recipe / "exp" / "scratch_all" / "decode"
    local_recogs = {p.name: p.read_text() for p in dec.glob("recogs-*.txt")}
    local_results = (recipe / "exp" / "results.tsv").read_text()

    shutil.rmtree(recipe / "data" / "fbank")
    shutil.rmtree(dec)
    r = run(recipe, "--corpus-dir", str(yesno_dir), "--stage", "2", "--stop-stage", "2", "--cmd", SLURM)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    slurm_jobs = list((recipe / "data" / "fbank" / "log" / "slurm").iterdir())
    assert slurm_jobs, "fbank did not go through Slurm"
    assert sorted(p.name for p in (recipe / "data" / "fbank" / "log").glob("*.log"))  # per-job logs
    slurm_feats = features(recipe)
    assert slurm_feats.keys() == local_feats.keys()
    for k in local_feats:
        np.testing.assert_array_equal(slurm_feats[k], local_feats[k])

    r = run(recipe, "--corpus-dir", str(yesno_dir), "--stage", "5", "--stop-stage", "5", "--cmd", SLURM)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert list((dec / "log" / "slurm").iterdir()), "HLG search did not go through Slurm"
    assert {p.name: p.read_text() for p in dec.glob("recogs-*.txt")} == local_recogs
    assert (recipe / "exp" / "results.tsv").read_text() == local_results


def test_failed_slurm_job_names_its_id_and_log(slurm, tmp_path):
    from speechtl.cluster import get_executor
    from speechtl.errors import SpeechtlError

    ex = get_executor(SLURM, 2, tmp_path / "log", "div")
    with pytest.raises(
        SpeechtlError, match=r"(?s)div job 1 \(Slurm job \d+_1\) failed: .*ZeroDivisionError.*div\.1\.log"
    ):
        ex.map(divmod, [(4, 2), (1, 0)])
    assert "ZeroDivisionError" in (tmp_path / "log" / "div.1.log").read_text()


def test_training_runs_torchrun_inside_a_slurm_job(slurm, yesno_dir, tmp_path):
    recipe = copy_recipe(RECIPE, tmp_path)
    r = run(recipe, "--corpus-dir", str(yesno_dir), "--stop-stage", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run(
        recipe,
        "--corpus-dir",
        str(yesno_dir),
        "--stage",
        "4",
        "--stop-stage",
        "4",
        "--train-procs",
        "2",
        "--cmd",
        "slurm --time 10 --mem 2G --cpus 2",
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    exp = recipe / "exp" / "scratch_all"
    log = (exp / "log" / "train.0.log").read_text()
    assert log.count("world size 2") == 2, "both DDP ranks ran inside the job"
    checksums = {line.rsplit(" ", 1)[-1] for line in log.splitlines() if "parameter checksum" in line}
    assert len(checksums) == 1, "the ranks must end with the same weights"
    assert list((exp / "log" / "slurm").iterdir()) and (exp / "final.pt").exists()
