"""Symbol tables (``symbol id`` per line), as Kaldi and icefall write them."""

from collections.abc import Iterable
from pathlib import Path

from speechtl.errors import SpeechtlError


def write_symbols(symbols: Iterable[str], path: Path) -> dict[str, int]:
    """Write symbols with ids 0, 1, 2, ... in the given order; returns the map."""
    table = {s: i for i, s in enumerate(symbols)}
    Path(path).write_text("".join(f"{s} {i}\n" for s, i in table.items()), encoding="utf-8")
    return table


def read_symbols(path: Path) -> dict[str, int]:
    table: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise SpeechtlError(f"{path}:{n}: expected 'symbol id', got {line.rstrip()!r}")
            table[parts[0]] = int(parts[1])
    return table
