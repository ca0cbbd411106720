"""Job runners. ``local`` runs jobs as a pool of processes on this machine.

Every job logs to ``<log_dir>/<name>.<job>.log``. A failed job stops the step
with its number and log path; the other jobs' outputs stay on disk.
"""

import logging
import multiprocessing as mp
import shlex
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, List, Sequence, Tuple

from speechtl.errors import SpeechtlError
from speechtl.log import FORMAT


def _run_job(fn: Callable, args: Tuple, log_path: str, num_threads: int) -> Any:
    """Body of one job, in its own process: log to its file, limit threads, run."""
    import torch

    torch.set_num_threads(num_threads)
    root = logging.getLogger()
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        return fn(*args)
    except BaseException:
        logging.error("job failed:\n" + traceback.format_exc())
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


class LocalExecutor:
    """Runs ``nj`` jobs in parallel processes on this machine."""

    def __init__(self, nj: int, log_dir: Path, name: str, cpus: int = 0):
        self.nj = max(1, int(nj))
        self.log_dir = Path(log_dir)
        self.name = name
        total = cpus or mp.cpu_count()
        self.threads_per_job = max(1, total // self.nj)

    def log_path(self, job: int) -> Path:
        return self.log_dir / f"{self.name}.{job}.log"

    def map(self, fn: Callable, args_list: Sequence[Tuple]) -> List[Any]:
        """Run ``fn(*args)`` for every entry; results in input order."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logging.info(
            f"running {len(args_list)} {self.name} job(s), {self.nj} at a time; "
            f"logs: {self.log_dir}/{self.name}.*.log"
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
            f"{self.name} job {job} failed with {type(e).__name__}: {e}\n"
            f"See its log: {self.log_path(job)}"
        )


def get_executor(cmd: str, nj: int, log_dir: Path, name: str) -> LocalExecutor:
    """Build the runner that ``cmd`` (from the recipe's cmd.sh) names.

    ``cmd`` is a backend name followed by its options, e.g. ``"local"``.
    """
    words = shlex.split(cmd or "local")
    backend, opts = words[0], words[1:]
    if backend == "local":
        if opts:
            raise SpeechtlError(f"--cmd local takes no options, got: {' '.join(opts)}")
        return LocalExecutor(nj, log_dir, name)
    raise SpeechtlError(f"unknown job runner {backend!r} in --cmd {cmd!r}; known: local. Fix: edit cmd.sh.")
