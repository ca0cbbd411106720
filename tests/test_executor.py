import os

import pytest

from speechtl.cluster import get_executor
from speechtl.errors import SpeechtlError


def square(x):
    return x * x


def fail_on_two(x):
    if x == 2:
        raise ValueError("bad input two")
    return x


def test_local_executor_runs_jobs_in_order_with_logs(tmp_path):
    ex = get_executor("local", 2, tmp_path / "log", "sq")
    assert ex.map(square, [(i,) for i in range(5)]) == [0, 1, 4, 9, 16]
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == [f"sq.{i}.log" for i in range(5)]


def test_failed_job_names_its_number_and_log(tmp_path):
    ex = get_executor("local", 2, tmp_path / "log", "f")
    with pytest.raises(SpeechtlError) as e:
        ex.map(fail_on_two, [(i,) for i in range(4)])
    assert "f job 2 failed" in str(e.value) and "f.2.log" in str(e.value)
    assert "bad input two" in (tmp_path / "log" / "f.2.log").read_text()


def test_unknown_backend_is_a_clear_error(tmp_path):
    with pytest.raises(SpeechtlError, match="unknown job runner 'pbs'"):
        get_executor("pbs -q x", 1, tmp_path, "x")


def test_slurm_that_does_not_answer_is_one_error_with_the_fix(tmp_path, monkeypatch):
    """--cmd slurm where sbatch cannot reach a controller ended in submitit's FailedJobError traceback."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Unable to contact slurm controller' >&2\nexit 1\n"
    )
    (fake / "sbatch").chmod(0o755)
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit looks for one before it calls sbatch
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    ex = get_executor("slurm --partition debug --time 5", 2, tmp_path / "log", "fbank")
    with pytest.raises(SpeechtlError) as e:
        ex.map(square, [(i,) for i in range(3)])
    msg = str(e.value)
    assert "Slurm did not take the 3 fbank job(s)" in msg and "Unable to contact slurm controller" in msg
    assert "utils/start_slurm.sh" in msg and "--cmd local" in msg
