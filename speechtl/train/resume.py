"""Mid-epoch resume: a run killed at any point and started again with the same command
ends with the weights an uninterrupted run has (on CPU, bit for bit).

Every ``train.save_every_n`` updates rank 0 writes ``checkpoint-last.pt`` (atomically:
temp file, then rename) with what the next update depends on: model, optimizer,
scheduler and gradient scaler, every rank's RNG states (torch, CUDA, numpy, Python),
and the :class:`Position` (epoch, batches of it done, updates, batches drawn since
the start). Epoch checkpoints (``epoch-N.pt``) record the same, so resuming from
either is exact. On start the Trainer takes the more advanced of the two; it takes
``checkpoint-last.pt`` only when the run's settings match the ones it was written
with (:func:`resume_key`), and otherwise says which keys differ and resumes from the
last finished epoch as before.

The data order needs no saved state: a lhotse sampler's batches are a function of
(cuts, seed, epoch), and augmentation is seeded per cut (:class:`PerCutAugmentDataset`).
lhotse's own ``state_dict()`` (1.33 here) restores by re-iterating the batches its
diagnostics counted, which are the batches the sampler handed out, not those trained
on (a prefetching DataLoader worker runs ahead), and our per-epoch batch count resets
them; so the position is counted here, by the loop, and the loader skips that many
batches at the sampler (:func:`skip_batches`), before any features are read.
"""

import contextlib
import itertools
import logging
import random
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse import CutSet
from torch.utils.data import DataLoader

from speechtl.errors import SpeechtlError
from speechtl.train.checkpoint import epoch_checkpoints, load_checkpoint

LAST = "checkpoint-last.pt"

#: Train options that change how a run is logged or checkpointed, not what it computes.
RUN_ONLY = ("log_interval", "save_every_n", "max_bad_batches", "device", "num_epochs", "keep_epochs")


@dataclass
class Position:
    """Where a run stands; ``epoch`` is the one in progress (or the next to start)."""

    epoch: int = 1
    #: Batches of ``epoch`` trained on (a multiple of accum_grad, or the whole epoch).
    batches_done: int = 0
    #: Optimizer updates so far (the scheduler's and the methods' progress).
    step: int = 0
    #: Batches drawn since the start, over all epochs: each auxiliary stream is one batch per batch.
    batches_total: int = 0
    #: Non-finite updates in a row (train.max_bad_batches stops the run).
    bad_in_a_row: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def rng_states() -> dict[str, Any]:
    """This process's generator states (what dropout and any other draw continue from)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda, "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if states.get("numpy") is not None:
        np.random.set_state(states["numpy"])
    if states.get("python") is not None:
        random.setstate(states["python"])


def data_id(cuts: CutSet) -> str:
    """A short fingerprint of a cut set: a resumed run must read the same cuts."""
    crc, n = 0, 0
    for c in cuts:
        crc = zlib.crc32(c.id.encode("utf-8") + b"\n", crc)
        n += 1
    return f"{n} cuts, crc32 {crc:08x}"


def resume_key(train_config: dict, method: str, world_size: int, data: str, options: dict | None = None) -> dict:
    """What must be equal for ``checkpoint-last.pt`` to continue this run: the method's options
    too (layers frozen, loss weights), since they change what an update computes."""
    key = {k: v for k, v in train_config.items() if k not in RUN_ONLY}
    return {**key, "method": method, "options": options or {}, "world_size": world_size, "data": data}


def mismatched(saved: dict | None, now: dict, defaults: dict | None = None) -> list[str]:
    """Keys whose values differ between a checkpoint's resume key and this run's. A train option the
    saved key lacks (added to speechtl since) counts as its default in ``defaults`` (TrainConfig's), so
    an upgrade does not throw away a run's mid-epoch progress."""
    if saved is None:
        return ["(no resume key: written by an older speechtl)"]
    saved = {**{k: v for k, v in (defaults or {}).items() if k in now}, **saved}
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))


def position_of(ckpt: dict, steps_per_epoch: int) -> Position:
    """The position a checkpoint continues from; ``epoch-N.pt`` of older versions lacks
    one and resumes at epoch N+1 with the step estimated as before."""
    if "position" in ckpt:
        return Position(**ckpt["position"])
    epoch = int(ckpt["epoch"])
    return Position(epoch=epoch + 1, step=epoch * steps_per_epoch)


def _differ(keys: list[str]) -> str:
    return f"{', '.join(keys)} {'differs' if len(keys) == 1 else 'differ'}"


def find_resume(exp_dir: Path, key: dict, defaults: dict | None = None) -> tuple[Path, dict] | None:
    """The checkpoint to continue from: ``checkpoint-last.pt`` when it is further along
    than the last ``epoch-N.pt`` and was written by a run with this ``key`` (``defaults``: of the
    train options, for keys written before they existed)."""
    epochs = epoch_checkpoints(exp_dir)
    best = (epochs[-1], load_checkpoint(epochs[-1])) if epochs else None
    if best is not None and (diff := mismatched(best[1].get("resume_key"), key, defaults)):
        # resumed anyway (a longer run of the same training is num_epochs alone, which is not in the key),
        # but said: the same command with an edited conf otherwise trained on top of the old run silently
        logging.warning(
            f"{best[0]} was written with other settings ({_differ(diff)}): this run continues that "
            f"one with the new settings. Fix, for a new run: a new --exp-dir, or delete {Path(exp_dir)}'s checkpoints"
        )
    last = Path(exp_dir) / LAST
    if not last.is_file():
        return best
    ckpt = load_checkpoint(last)
    done = int(best[1]["epoch"]) if best else 0
    pos = ckpt.get("position") or {}
    if pos.get("epoch", 0) <= done:
        return best  # the epoch it was written in has finished since
    diff = mismatched(ckpt.get("resume_key"), key, defaults)
    if diff:
        logging.warning(
            f"{last} was written with other settings ({_differ(diff)}), so the run does not continue "
            f"from it mid-epoch; it resumes from {best[0].name if best else 'the start'}. "
            f"Fix: rerun with the settings it was written with, or delete {last}"
        )
        return best
    return last, ckpt


@contextlib.contextmanager
def exp_lock(exp_dir: Path) -> Iterator[None]:
    """Hold ``exp_dir/.train.lock`` (an flock, freed by the kernel when its holder dies) while training:
    a second training of one exp dir, started while the first still runs (its recipe killed around
    it, two shells), stops at once instead of resuming from checkpoints the first is still writing."""
    import fcntl
    import os

    path = Path(exp_dir) / ".train.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise SpeechtlError(
                f"another training is running in {exp_dir} (pid {holder}). Fix: wait for it, or stop it "
                f"(kill {holder}) and run this again: it resumes from what that one wrote"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()


class SkipFirst:
    """A batch sampler without the first ``n`` batches of its wrapped sampler's epoch."""

    def __init__(self, sampler, n: int):
        self.sampler = sampler
        self.n = n

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.n, None)


def skip_batches(loader: DataLoader, n: int) -> DataLoader:
    """``loader`` from its ``n``-th batch of the current epoch (sampler and dataset shared).

    Starting a DataLoader iterator draws its workers' base seed from torch's global
    generator; the interrupted run drew it at the epoch's start, before the saved RNG
    state, so the iterator is started here outside that generator (:func:`quiet_iter`)."""
    if n <= 0:
        return loader
    return DataLoader(
        loader.dataset,
        sampler=SkipFirst(loader.sampler, n),
        batch_size=None,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
    )


def quiet_iter(loader: DataLoader):
    """``iter(loader)`` leaving torch's global generator where it was."""
    with torch.random.fork_rng(devices=[]):
        return iter(loader)
