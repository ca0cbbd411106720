"""Logging set-up shared by the CLI and jobs: icefall-style ``[file:line]`` lines."""

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when ``log_file`` is given, also to that file (appending)."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(format=FORMAT, level=level, handlers=handlers, force=True)
