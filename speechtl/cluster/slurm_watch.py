"""Watching Slurm jobs to their end, and saying why one did not finish.

submitit's ``job.result()`` waits as long as the job exists, and a job pending
on a drained or down node, or a down partition, exists forever: the step would
hang with no word. :func:`wait_for` polls the jobs instead and, when one has
been pending for ``max_stuck`` minutes on a reason only an admin can end,
cancels the step's jobs and raises. Jobs that end badly (cancelled, past their
``--time``, out of memory, on a failed node) are reported by :func:`failure`
with the Slurm job id, its state, the fix and both logs; the step can simply
be run again.
"""

import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechtl.errors import SpeechtlError

#: Pending reasons (squeue %r) that no amount of waiting ends: nodes drained or down,
#: a partition down or too small for the request, a job held by an admin.
STUCK_REASONS = (
    "ReqNodeNotAvail",
    "DOWN, DRAINED",
    "NodeDown",
    "PartitionDown",
    "PartitionInactive",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "JobHeldAdmin",
    "PartitionConfig",  # asks for more (CPUs, memory, GPUs, nodes) than the partition's nodes have
)

#: Reasons no node coming back ends: the request itself has to change.
TOO_BIG_REASONS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints")

#: Job state (as submitit reports it, e.g. "CANCELLED by 0") -> what happened and the fix.
STATE_HINTS = {
    "CANCELLED": "it was cancelled (scancel, or an admin). Fix: run the step again",
    "TIMEOUT": "it ran past its --time of {time} min. Fix: raise --time in cmd.sh's slurm options, or use more --nj",
    "OUT_OF_MEMORY": "it ran out of its --mem {mem}. Fix: raise --mem in cmd.sh's slurm options",
    "NODE_FAIL": "its node failed. Fix: run the step again (Slurm picks a working node)",
    "BOOT_FAIL": "its node failed to boot. Fix: run the step again",
    "PREEMPTED": "a job of higher priority preempted it. Fix: run the step again",
    "DEADLINE": "it passed its deadline. Fix: run the step again",
}


def pending_reasons(array_id: str) -> dict[str, str]:
    """``{job id: reason}`` of the pending tasks of a job array (one squeue call; {} if it fails)."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-j", array_id, "-t", "PENDING", "-o", "%i|%r"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)


def is_stuck(reason: str) -> bool:
    return any(r in reason for r in STUCK_REASONS)


def stuck_fix(reason: str) -> str:
    """What ends a wait on ``reason``: a smaller request, or a node or partition back."""
    if any(r in reason for r in TOO_BIG_REASONS):
        return (
            "it asks for more than the partition's nodes have or allow. Fix: lower --cpus, --mem, --gpus, "
            "--nodes or --time in cmd.sh's slurm options (sinfo -o '%P %c %m %G %l' shows what there is), "
            "or choose another --partition"
        )
    return (
        "nothing runs it until a node or partition is back. Fix: resume the node "
        "(scontrol update nodename=NODE state=resume) or choose another --partition in cmd.sh"
    )


def wait_for(jobs: Sequence[Any], name: str, max_stuck_min: float, poll_s: float = 2.0) -> None:
    """Return once every job has ended; cancel them all and raise if one stays stuck pending."""
    array_id = jobs[0].job_id.split("_")[0]
    stuck_since: dict[str, float] = {}
    while not all(job.done() for job in jobs):
        now = time.time()
        reasons = {k: r for k, r in pending_reasons(array_id).items() if is_stuck(r)}
        stuck_since = {k: stuck_since.get(k, now) for k in reasons}
        for job_id, since in stuck_since.items():
            if now - since >= max_stuck_min * 60:
                for job in jobs:
                    job.cancel(check=False)
                raise SpeechtlError(
                    f"{name}: Slurm job {job_id} has been pending for {(now - since) / 60:.1f} min because "
                    f"{reasons[job_id]!r}; {stuck_fix(reasons[job_id])}, then run the step again. "
                    "Its jobs were cancelled."
                )
            if since == now:
                logging.warning(f"{name}: Slurm job {job_id} pending: {reasons[job_id]}")
        time.sleep(poll_s)


def failure(name: str, index: int, job: Any, e: BaseException, log_path: Path, options: Any) -> SpeechtlError:
    """The error for job ``index`` of step ``name`` that ended without a result."""
    try:
        state = str(job.state)
    except Exception:  # the state is a courtesy: never hide the failure behind it
        state = "UNKNOWN"
    text = str(e)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    slurm_lines = [line for line in lines if "***" in line]  # slurmstepd: *** JOB 17 ON vm CANCELLED AT ... ***
    timed_out = state.startswith("TIMEOUT") or "timed-out" in text
    hint = next((h for s, h in STATE_HINTS.items() if state.startswith(s)), None)
    if timed_out:
        hint = STATE_HINTS["TIMEOUT"]
    if hint is not None:
        why = hint.format(time=options.time, mem=options.mem) + (f" ({slurm_lines[-1]})" if slurm_lines else "")
    else:
        why = next((line for line in reversed(lines) if "Error" in line), lines[0] if lines else type(e).__name__)
    return SpeechtlError(
        f"{name} job {index} (Slurm job {job.job_id}) failed: {why[:400]}\n"
        f"Slurm state: {state}. See its log: {log_path} (Slurm's output: {job.paths.stderr})"
    )
