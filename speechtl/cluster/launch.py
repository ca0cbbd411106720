"""Run a whole command as one job of a job runner (``--cmd``): how a training step
goes to Slurm. Under Slurm the job runs ``torchrun`` over its allocation, so DDP
training uses the CPUs/GPUs the job was given."""

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

from speechtl.errors import SpeechtlError


def run_command(argv: list[str], cwd: str) -> int:
    """In the job: run ``argv`` in ``cwd``, its output into this job's log; raise on failure."""
    logging.info(f"running in {cwd}: {' '.join(argv)}")
    p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout.splitlines():
        logging.info(line)
    if p.returncode != 0:
        raise SpeechtlError(f"{argv[0]} exited with status {p.returncode}")
    return p.returncode


def run_as_job(argv: Sequence[str], cmd: str, log_dir: Path, name: str) -> None:
    """Submit ``argv`` as a single job of ``cmd``'s runner and wait for it."""
    from speechtl.cluster import get_executor

    get_executor(cmd, 1, log_dir, name).map(run_command, [(list(argv), str(Path.cwd()))])
