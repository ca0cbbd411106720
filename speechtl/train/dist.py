"""Distributed data parallel under torchrun: gloo on CPU, nccl on GPU.

``torchrun --nproc-per-node N -m speechtl.cli train ...`` sets RANK,
WORLD_SIZE and LOCAL_RANK; without them training runs in one process.

Each rank also caps its intra-op threads at its share of the node's CPUs
(:func:`fair_threads`): torchrun leaves an exported ``OMP_NUM_THREADS`` as it is,
and N ranks each running the threads meant for one process oversubscribe the
cores. On a 2-core machine, tts_xling's source with 2 ranks and
``OMP_NUM_THREADS=2`` took 2.0 s an update, and 0.31 s with 1 thread a rank.
"""

import logging
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from speechtl.cluster.executor import cpu_share


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def fair_threads(requested: int, cpus: int, local_procs: int) -> int:
    """Intra-op threads for one of ``local_procs`` processes sharing ``cpus``: the
    ``requested`` number, at most an equal share of the CPUs (:func:`cpu_share`), at least 1."""
    return max(1, min(requested, cpu_share(cpus, local_procs)))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a Slurm or cgroup allocation), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cap_threads(local_procs: int, local_rank: int) -> None:
    """Lower this process's intra-op threads to its share of the CPUs, saying so once."""
    have, cpus = torch.get_num_threads(), usable_cpus()
    n = fair_threads(have, cpus, local_procs)
    if n < have:
        torch.set_num_threads(n)
        if local_rank == 0:  # once a node
            logging.warning(
                f"{local_procs} processes x {have} threads on {cpus} CPUs: {n} thread(s) per process instead "
                f"(oversubscribed cores make every update several times slower). "
                f"Fix: export OMP_NUM_THREADS={n}, or leave it unset under torchrun"
            )


def die_with_parent() -> None:
    """Under torchrun, end this worker (SIGTERM: it stops as on Ctrl-C) when its agent dies. torchrun
    starts workers in their own session, so a ``kill -9`` of the agent or of the recipe around it left
    them training on, and a rerun resumed from checkpoints they were still writing. Linux only."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except OSError:
        return
    if os.getppid() == 1:  # the agent died before the call: prctl only covers a death after it
        os.kill(os.getpid(), signal.SIGTERM)


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (once); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    die_with_parent()
    cap_threads(int(os.environ.get("LOCAL_WORLD_SIZE", world)), info.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend)
    return info


def _all_reduce_int(value: int, info: DistInfo, device: torch.device, op) -> int:
    if info.world_size == 1:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=op)
    return int(t.item())


def all_reduce_min(value: int, info: DistInfo, device: torch.device) -> int:
    return _all_reduce_int(value, info, device, dist.ReduceOp.MIN)


def all_reduce_sum(value: int, info: DistInfo, device: torch.device) -> int:
    return _all_reduce_int(value, info, device, dist.ReduceOp.SUM)


def all_reduce_sums(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Each of ``values`` summed over the ranks (float64): an epoch's loss and frames, so that the one
    line rank 0 logs is the whole run's, not its own share's."""
    if info.world_size == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def all_reduce_grads(module: torch.nn.Module, info: DistInfo) -> None:
    """Average the gradients of a module DDP does not wrap (a method's own modules)."""
    if info.world_size <= 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(info.world_size)


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any: ranks that must act together
    (skip an update, stop) decide from the same answer."""
    return _all_reduce_int(int(flag), info, device, dist.ReduceOp.MAX) > 0


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    if info.world_size <= 1:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
