"""Run a whole command as one job of a job runner (``--cmd``): how a training step
goes to Slurm. Under Slurm the job runs ``torchrun`` over its allocation, so DDP
training uses the CPUs/GPUs the job was given.

Across nodes (``--cmd "slurm --nodes N ..."``) the job has one task per node, and
Slurm's ``srun`` (in the batch script submitit writes) starts each: every task runs
one torchrun agent (:func:`torchrun_argv`), and the N agents meet in a c10d
rendezvous on the job's first node at a port derived from the job id, so no address
is configured by hand. Each agent starts ``--nproc-per-node`` training processes;
torchrun numbers them across nodes (RANK, WORLD_SIZE), which is all the Trainer reads.
"""

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechtl.errors import SpeechtlError

#: Rendezvous ports are RDZV_PORT_BASE + (Slurm job id mod RDZV_PORT_SPAN): two jobs
#: sharing a head node rarely collide, and every node of one job computes the same.
RDZV_PORT_BASE = 29500
RDZV_PORT_SPAN = 20000


def run_command(argv: list[str], cwd: str) -> int:
    """In the job: run ``argv`` in ``cwd``, its output into this job's log; raise on failure."""
    logging.info(f"running in {cwd}: {' '.join(argv)}")
    p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout.splitlines():
        logging.info(line)
    if p.returncode != 0:
        raise SpeechtlError(f"{argv[0]} exited with status {p.returncode}")
    return p.returncode


def torchrun_argv(
    program: Sequence[str], nproc: int, nnodes: int = 1, endpoint: str = "", run_id: str = "speechtl"
) -> list[str]:
    """``speechtl PROGRAM...`` under torchrun: ``nproc`` processes on this node,
    standalone, or with ``endpoint`` (host:port) one of ``nnodes`` agents in a c10d rendezvous."""
    argv = ["torchrun", "--nproc-per-node", str(nproc)]
    if nnodes == 1 and not endpoint:
        argv.append("--standalone")
    else:
        if not endpoint:
            raise SpeechtlError(f"torchrun across {nnodes} nodes needs a rendezvous endpoint host:port")
        argv += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id]
    return [*argv, "-m", "speechtl.cli", *program]


def split_launcher(argv: Sequence[str]) -> tuple[list[str], int]:
    """(speechtl arguments, processes per node) of the command steps/train.sh builds:
    ``speechtl ARGS`` or ``torchrun --standalone --nproc-per-node P -m speechtl.cli ARGS``."""
    argv = list(argv)
    if argv and argv[0] == "speechtl":
        return argv[1:], 1
    if argv and Path(argv[0]).name == "torchrun" and "-m" in argv:
        m = argv.index("-m")
        if m + 1 < len(argv) and argv[m + 1] == "speechtl.cli":
            opts, nproc = argv[1:m], 1
            for i, opt in enumerate(opts):
                if opt.startswith("--nproc-per-node") or opt.startswith("--nproc_per_node"):
                    nproc = int(opt.split("=", 1)[1] if "=" in opt else opts[i + 1])
            return argv[m + 2 :], nproc
    raise SpeechtlError(
        f"a job across nodes runs `speechtl ...` or `torchrun ... -m speechtl.cli ...`, got: {' '.join(argv)}"
    )


def slurm_rendezvous(env: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(host:port, run id) of this Slurm job's c10d rendezvous: the first node of the
    allocation, a port from the job id, the job id as the run id."""
    job = env.get("SLURM_JOB_ID")
    nodelist = env.get("SLURM_JOB_NODELIST")
    if not job or not nodelist:
        raise SpeechtlError("a job across nodes must run inside Slurm (SLURM_JOB_ID and SLURM_JOB_NODELIST unset)")
    p = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
    hosts = p.stdout.split()
    if p.returncode != 0 or not hosts:
        raise SpeechtlError(f"scontrol could not expand the node list {nodelist!r}: {p.stderr.strip()}")
    port = RDZV_PORT_BASE + int(job) % RDZV_PORT_SPAN
    return f"{hosts[0]}:{port}", job


def run_torchrun_node(program: list[str], nproc: int, nnodes: int, cwd: str) -> int:
    """One node's task of a multi-node job: its torchrun agent, meeting the others' in the job's rendezvous."""
    endpoint, run_id = slurm_rendezvous()
    return run_command(torchrun_argv(program, nproc, nnodes, endpoint, run_id), cwd)


def run_as_job(argv: Sequence[str], cmd: str, log_dir: Path, name: str) -> None:
    """Submit ``argv`` as a single job of ``cmd``'s runner and wait for it; with
    ``--nodes N`` (Slurm) as one task per node, each running a torchrun agent."""
    from speechtl.cluster import get_executor

    executor = get_executor(cmd, 1, log_dir, name)
    nodes = getattr(getattr(executor, "options", None), "nodes", 1)
    if nodes > 1:
        program, nproc = split_launcher(argv)
        executor.map(run_torchrun_node, [(program, nproc, nodes, str(Path.cwd()))])
        return
    executor.map(run_command, [(list(argv), str(Path.cwd()))])
