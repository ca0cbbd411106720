"""Logging set-up shared by the CLI and jobs: icefall-style ``[file:line]`` lines."""

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when ``log_file`` is given, also to that file (appending)."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(format=FORMAT, level=level, handlers=handlers, force=True)


@contextlib.contextmanager
def native_output_to(path: Path) -> Iterator[None]:
    """Send what C++ extensions print on the process's stdout and stderr (kaldilm's ``[I] Reading
    \\2-grams`` lines, a line per n-gram order, between a recipe's own log lines) to ``path``; on an
    error its last lines are printed, so nothing that explains a failure is hidden."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None under pythonw or a daemon
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    path.write_bytes(b"")
    try:
        # appending: the file descriptors and Python's own streams (tqdm writes to sys.stderr, which
        # need not be descriptor 2) share it
        with open(path, "ab") as f, open(path, "a", encoding="utf-8", buffering=1) as text:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                    yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    except BaseException:
        try:
            tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
            sys.stderr.write("".join(f"{line}\n" for line in tail))
        except (OSError, AttributeError):  # the log gone, or no stderr: the error itself still goes up
            pass
        raise
    finally:
        for fd in saved:
            os.close(fd)
