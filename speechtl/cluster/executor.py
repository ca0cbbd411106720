"""Job runners. ``local`` runs jobs as a pool of processes on this machine;
``slurm`` submits them as a Slurm job array through submitit.

``cmd`` (a recipe's cmd.sh) names the backend and its options, as Kaldi's
run.pl/slurm.pl: ``local`` or ``slurm --partition debug --time 60 --mem 4G
--cpus 2 --gpus 0``. Every job logs to ``<log_dir>/<name>.<job>.log``. A failed
job stops the step with its number (and Slurm id) and log path; the other
jobs' outputs stay on disk.
"""

import logging
import multiprocessing as mp
import os
import shlex
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechtl.cluster.slurm_watch import failure, wait_for
from speechtl.errors import SpeechtlError
from speechtl.log import FORMAT


def cpu_share(cpus: int, procs: int) -> int:
    """Threads for each of ``procs`` processes sharing ``cpus`` equally: at least 1."""
    return max(1, cpus // max(1, procs))


def _run_job(fn: Callable, args: tuple, log_path: str, num_threads: int) -> Any:
    """Body of one job, in its own process: log to its file, limit threads, run."""
    import torch

    torch.set_num_threads(num_threads)
    task = int(os.environ.get("SLURM_PROCID", "0"))
    if task > 0:  # the other nodes' tasks of a multi-node job: their own logs beside task 0's
        log_path = log_path.removesuffix(".log") + f".task{task}.log"
    root = logging.getLogger()
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        return fn(*args)
    except SpeechtlError as e:  # the user's input: the message says the fix, a traceback would hide it
        logging.error(f"job failed: {e}")
        raise
    except BaseException:
        logging.error("job failed:\n" + traceback.format_exc())
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


class _Executor:
    """What every runner shares: ``nj`` jobs of step ``name``, job ``j`` logging to ``<log_dir>/<name>.<j>.log``."""

    def __init__(self, nj: int, log_dir: Path, name: str):
        self.nj = max(1, int(nj))
        self.log_dir = Path(log_dir)
        self.name = name

    def log_path(self, job: int) -> Path:
        return self.log_dir / f"{self.name}.{job}.log"


class LocalExecutor(_Executor):
    """Runs ``nj`` jobs in parallel processes on this machine."""

    def __init__(self, nj: int, log_dir: Path, name: str, cpus: int = 0):
        super().__init__(nj, log_dir, name)
        self.threads_per_job = cpu_share(cpus or mp.cpu_count(), self.nj)

    def map(self, fn: Callable, args_list: Sequence[tuple]) -> list[Any]:
        """Run ``fn(*args)`` for every entry; results in input order."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logging.info(
            f"running {len(args_list)} {self.name} job(s), {self.nj} at a time; logs: {self.log_dir}/{self.name}.*.log"
        )
        if self.nj == 1 or len(args_list) == 1:
            results = []
            for j, args in enumerate(args_list):
                try:
                    results.append(_run_job(fn, args, str(self.log_path(j)), self.threads_per_job))
                except Exception as e:
                    raise self._failure(j, e) from e
            return results
        ctx = mp.get_context("spawn")  # fork + torch threads can deadlock
        with ProcessPoolExecutor(max_workers=self.nj, mp_context=ctx) as pool:
            futures = [
                pool.submit(_run_job, fn, args, str(self.log_path(j)), self.threads_per_job)
                for j, args in enumerate(args_list)
            ]
            results = []
            for j, fut in enumerate(futures):
                try:
                    results.append(fut.result())
                except Exception as e:
                    for f in futures:
                        f.cancel()
                    raise self._failure(j, e) from e
            return results

    def _failure(self, job: int, e: BaseException) -> SpeechtlError:
        if isinstance(e, SpeechtlError):
            return SpeechtlError(f"{self.name} job {job} failed: {e}\n(log: {self.log_path(job)})")
        return SpeechtlError(
            f"{self.name} job {job} failed with {type(e).__name__}: {e}\nSee its log: {self.log_path(job)}"
        )


@dataclass
class SlurmOptions:
    partition: str = ""
    time: int = 60  # minutes
    mem: str = "2G"
    cpus: int = 1
    gpus: int = 0
    #: Nodes per job, one task on each (multi-node DDP training: one torchrun agent per node).
    nodes: int = 1
    #: Minutes a job may stay pending on a reason only an admin ends (a drained or down node,
    #: a down partition) before the step cancels its jobs and stops (speechtl.cluster.slurm_watch).
    max_stuck: float = 10.0


def parse_slurm_options(opts: Sequence[str]) -> SlurmOptions:
    """``--partition P --time MIN --mem 4G --cpus N --gpus N`` -> SlurmOptions."""
    o = SlurmOptions()
    it = iter(opts)
    for flag in it:
        key = flag.lstrip("-").replace("-", "_")
        if not flag.startswith("--") or key not in o.__dataclass_fields__:
            known = " ".join("--" + k.replace("_", "-") for k in o.__dataclass_fields__)
            raise SpeechtlError(f"unknown slurm option {flag!r}; known: {known}")
        try:
            value = next(it)
        except StopIteration:
            raise SpeechtlError(f"slurm option {flag} needs a value") from None
        setattr(o, key, type(getattr(o, key))(value))
    return o


class SlurmExecutor(_Executor):
    """Runs jobs as one Slurm job array (at most ``nj`` at once) through submitit."""

    def __init__(self, nj: int, log_dir: Path, name: str, options: SlurmOptions):
        super().__init__(nj, log_dir, name)
        self.options = options

    def parameters(self) -> dict[str, Any]:
        """submitit's parameters of these jobs (its batch script's #SBATCH lines)."""
        o = self.options
        params = dict(
            timeout_min=o.time,
            cpus_per_task=o.cpus,
            slurm_mem=o.mem,
            name=f"speechtl-{self.name}",
            slurm_array_parallelism=self.nj,
            # submitit's USR2 "time is nearly up" signal ends a job that cannot checkpoint, by
            # default 90 s before --time: all of a 1-minute job. Sent near the end instead.
            slurm_signal_delay_s=min(90, max(5, o.time * 6)),
        )
        if o.partition:
            params["slurm_partition"] = o.partition
        if o.gpus:
            params["slurm_gpus_per_node"] = o.gpus
        if o.nodes > 1:  # srun in the batch script starts one task per node
            params.update(nodes=o.nodes, tasks_per_node=1)
        return params

    def map(self, fn: Callable, args_list: Sequence[tuple]) -> list[Any]:
        import submitit

        o = self.options
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ex = submitit.AutoExecutor(folder=self.log_dir / "slurm" / "%j", cluster="slurm")
        ex.update_parameters(**self.parameters())
        try:
            with ex.batch():
                jobs = [
                    ex.submit(_run_job, fn, args, str(self.log_path(j)), o.cpus) for j, args in enumerate(args_list)
                ]
        except (submitit.core.utils.FailedJobError, OSError) as e:  # sbatch refused, or is not there
            said = " ".join(str(e).split())[-400:]
            raise SpeechtlError(
                f"Slurm did not take the {len(args_list)} {self.name} job(s): {said}. Fix: check that Slurm runs "
                "here (sinfo; on one Debian machine utils/start_slurm.sh starts one), or run with --cmd local. "
                "Nothing of this step was started; run it again once Slurm answers"
            ) from e
        logging.info(
            f"submitted {len(jobs)} {self.name} job(s) to Slurm (array {jobs[0].job_id.split('_')[0]}, "
            f"{self.nj} at a time); logs: {self.log_dir}/{self.name}.*.log"
        )
        try:
            wait_for(jobs, self.name, o.max_stuck)  # never forever: stuck jobs are cancelled and reported
        except BaseException:  # Ctrl-C or SIGTERM: the jobs must not go on writing without anyone waiting
            for job in jobs:  # (a rerun would start a second array over the same files, as slurm.pl avoids)
                job.cancel(check=False)
            logging.error(f"Slurm array {jobs[0].job_id.split('_')[0]} ({self.name}) cancelled")
            raise
        results = []
        for j, job in enumerate(jobs):
            try:
                results.append(job.results()[0] if o.nodes > 1 else job.result())
            except Exception as e:
                # Read its state before cancelling anything: a job that has written its result may
                # still be ending in Slurm, and a cancel then would relabel its failure CANCELLED.
                err = failure(self.name, j, job, e, self.log_path(j), o)
                for other in jobs:
                    if other is not job and not other.done():
                        other.cancel(check=False)
                raise err from e
        return results


def get_executor(cmd: str, nj: int, log_dir: Path, name: str) -> LocalExecutor | SlurmExecutor:
    """Build the runner that ``cmd`` (from the recipe's cmd.sh) names.

    ``cmd`` is a backend name followed by its options, e.g. ``"local"`` or
    ``"slurm --partition gpu --time 120 --mem 8G --cpus 4 --gpus 1"``.
    """
    words = shlex.split(cmd or "local")
    backend, opts = words[0], words[1:]
    if backend == "local":
        if opts:
            raise SpeechtlError(f"--cmd local takes no options, got: {' '.join(opts)}")
        return LocalExecutor(nj, log_dir, name)
    if backend == "slurm":
        return SlurmExecutor(nj, log_dir, name, parse_slurm_options(opts))
    raise SpeechtlError(f"unknown job runner {backend!r} in --cmd {cmd!r}; known: local, slurm. Fix: edit cmd.sh.")
