"""Outputs that appear whole or not at all, and disk errors that say what to do.

A stage killed mid-write (kill -9, a node lost, a full disk) must not leave a
half-written file under its final name: a re-run, or the next stage, would take
it as done. Every output goes through :func:`atomic_path`: it is written under
a temporary name beside the target (same directory, same suffixes, so lhotse
still infers the format) and moved into place with ``os.replace`` only once
complete. A failed write removes the temporary file and leaves the old target,
if any, untouched.
"""

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from speechtl.errors import SpeechtlError

#: Prefix of the temporary name an output is written under until it is complete.
PARTIAL = ".partial."

_FIXES = {
    errno.ENOSPC: "no space left on the device. Fix: free space, or write to a larger disk (another output dir)",
    errno.EDQUOT: "the disk quota is exceeded. Fix: free space, or write to another disk",
    errno.EROFS: "the file system is read-only. Fix: write to a writable dir (e.g. another --exp-dir/--output-dir)",
    errno.EACCES: "permission denied. Fix: make the dir writable, or write elsewhere",
    errno.EPERM: "permission denied. Fix: make the dir writable, or write elsewhere",
}


def partial_path(path: Path) -> Path:
    """The temporary name ``path`` is written under (``.partial.<name>`` beside it)."""
    path = Path(path)
    return path.with_name(PARTIAL + path.name)


def disk_error(path: Path, e: BaseException) -> SpeechtlError | None:
    """A SpeechtlError naming ``path`` and the fix for a full, read-only or forbidden disk; else None."""
    fix = _FIXES.get(e.errno) if isinstance(e, OSError) else None
    return SpeechtlError(f"cannot write {path}: {fix}. The partial file was removed.") if fix else None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield the temporary path to write ``path`` through; once the block ends, it replaces ``path``."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        friendly = disk_error(path, e)
        if friendly is not None:
            raise friendly from e
        raise


@contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """``open(path, mode)`` through :func:`atomic_path`: the file appears once closed."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f


def writable_dir(path: Path, what: str = "output dir") -> Path:
    """Create ``path`` if needed and check that files can be written in it, before any work starts.

    ``os.access`` is not enough (root passes it on a read-only mount), so a
    probe file is created and removed.
    """
    path = Path(path)
    probe = path / f"{PARTIAL}probe.{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except FileExistsError as e:
        raise SpeechtlError(f"{what} {path} is a file (or under one). Fix: pass a directory.") from e
    except NotADirectoryError as e:
        raise SpeechtlError(f"{what} {path} is under a file, not a directory. Fix: pass a directory.") from e
    except OSError as e:
        if e.errno not in _FIXES:
            raise
        raise SpeechtlError(f"{what} {path} is not writable: {_FIXES[e.errno]}") from e
    return path
