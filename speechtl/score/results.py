"""``exp/results.tsv``: the one table every recipe ends by writing.

Columns ``test_set method data decoding wer errors words``; one row per decoded
test set and system. Rows are keyed by (test_set, method, data, decoding):
a re-run replaces its row, never duplicates it. Writes are locked and atomic,
so parallel decode jobs can add rows to the same file.
"""

import csv
import fcntl
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, List, Sequence

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


def _read_table(path: Path, header: Sequence[str]) -> List[List[str]]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        found = next(reader, None)
        if found != list(header):
            raise SpeechtlError(f"{path} has header {found}, expected {list(header)}. Fix: move the file aside.")
        rows = []
        for n, r in enumerate(reader, 2):
            if not r:
                continue
            if len(r) != len(header):
                raise SpeechtlError(f"{path}:{n}: expected {len(header)} tab-separated fields, got {r}")
            rows.append(r)
        return rows


def upsert_table(path: Path, header: Sequence[str], new_rows: Iterable[Sequence[str]], key_width: int) -> List[List[str]]:
    """Add or replace rows of a tab-separated table, keyed by their first ``key_width``
    fields, sorted by key, under a lock and atomically; returns every row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = {tuple(r[:key_width]): list(r) for r in _read_table(path, header)}
        for r in new_rows:
            rows[tuple(r[:key_width])] = [str(x) for x in r]
        ordered = [rows[k] for k in sorted(rows)]
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(header)
            w.writerows(ordered)
        os.replace(tmp, path)
    return ordered


def _parse(r: Sequence[str]) -> ResultRow:
    return ResultRow(r[0], r[1], r[2], r[3], float(r[4]), int(r[5]), int(r[6]))


def read_results(path: Path) -> List[ResultRow]:
    return [_parse(r) for r in _read_table(path, HEADER)]


def update_results(path: Path, new_rows: Iterable[ResultRow]) -> List[ResultRow]:
    """Add or replace rows (by key) and rewrite the file atomically; returns all rows."""
    formatted = [[r.test_set, r.method, r.data, r.decoding, f"{r.wer:.2f}", r.errors, r.words] for r in new_rows]
    return [_parse(r) for r in upsert_table(path, HEADER, formatted, 4)]
