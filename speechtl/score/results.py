"""``exp/results.tsv``: the one table every recipe ends by writing.

Columns ``test_set method data decoding wer errors words``; one row per decoded
test set and system. Rows are keyed by (test_set, method, data, decoding):
a re-run replaces its row, never duplicates it. Writes are locked and atomic,
so parallel decode jobs can add rows to the same file.
"""

import csv
import fcntl
import os
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Iterable, List

from speechtl.errors import SpeechtlError

HEADER = ["test_set", "method", "data", "decoding", "wer", "errors", "words"]


@dataclass
class ResultRow:
    test_set: str
    method: str
    data: str
    decoding: str
    wer: float
    errors: int
    words: int

    @property
    def key(self):
        return (self.test_set, self.method, self.data, self.decoding)


assert [f.name for f in fields(ResultRow)] == HEADER


def read_results(path: Path) -> List[ResultRow]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header != HEADER:
            raise SpeechtlError(f"{path} has header {header}, expected {HEADER}. Fix: move the file aside.")
        rows = []
        for n, r in enumerate(reader, 2):
            if not r:
                continue
            if len(r) != len(HEADER):
                raise SpeechtlError(f"{path}:{n}: expected {len(HEADER)} tab-separated fields, got {r}")
            rows.append(ResultRow(r[0], r[1], r[2], r[3], float(r[4]), int(r[5]), int(r[6])))
        return rows


def update_results(path: Path, new_rows: Iterable[ResultRow]) -> List[ResultRow]:
    """Add or replace rows (by key) and rewrite the file atomically; returns all rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = {r.key: r for r in read_results(path)}
        for r in new_rows:
            rows[r.key] = r
        ordered = sorted(rows.values(), key=lambda r: r.key)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(HEADER)
            for r in ordered:
                row = list(astuple(r))
                row[4] = f"{r.wer:.2f}"
                w.writerow(row)
        os.replace(tmp, path)
    return ordered
