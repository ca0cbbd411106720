"""``exp/results.tsv``: the one table every recipe ends by writing.

Columns ``test_set method data decoding wer errors words``, then (added later,
appended so older readers and files keep working) ``seed ci_low ci_high utt_errs cer oov unit config
checkpoint``:
the training seed, the 95% bootstrap interval of the WER (see
:mod:`speechtl.score.stats`), the per-utterance error file behind the row,
relative to results.tsv's folder, and the character error rate (characters of the
space-joined words, spaces included, as Hugging Face's ``cer``: with character
units and little data it moves while the WER sits near 100%; empty for pooled rows), and the share
of the reference words outside the lang dir's ``words.txt`` (in %: errors an HLG search cannot
avoid; empty where no words.txt was used), and what the WER counts: ``char`` where the words are
characters (a script without spaces between words, :mod:`speechtl.lang.spaceless`), ``word`` (or empty,
in older files) otherwise, and ``config``, a digest of the conf that trained the model, its seed left out
(empty for zero-shot rows and older files): seeds of one system trained under two confs are two systems,
and the report says so instead of averaging them, and ``checkpoint``, which model of the training was
decoded: empty for its final model (``final.pt``), ``epoch-30-avg-10`` for an average of other epochs
(``speechtl decode --epoch 30 --avg 10``, :func:`speechtl.train.checkpoint.average_epochs`). One row per
decoded test set, system, seed and checkpoint: rows are keyed by (test_set, method, data, decoding, seed,
checkpoint), so a re-run replaces its row, never duplicates it, the seeds of a system sit side by side,
and an epoch average's row sits beside the final model's instead of replacing it. Files written
before the new columns are read as is (the new fields empty) and upgraded on the
next write; a row without a seed is replaced by any seeded row of its system.
Writes are locked and atomic, so parallel decode jobs can add rows to the same file.
"""

import csv
import fcntl
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from speechtl.atomic import atomic_path
from speechtl.errors import SpeechtlError

#: The columns of the first files; every file starts with them.
BASE_HEADER = ["test_set", "method", "data", "decoding", "wer", "errors", "words"]
HEADER = [*BASE_HEADER, "seed", "ci_low", "ci_high", "utt_errs", "cer", "oov", "unit", "config", "checkpoint"]


@dataclass
class ResultRow:
    test_set: str
    method: str
    data: str
    decoding: str
    wer: float
    errors: int
    words: int
    seed: int | None = None  # None: written before seeds were recorded
    ci_low: float | None = None  # 95% bootstrap interval of wer, in %
    ci_high: float | None = None
    utt_errs: str = ""  # per-utterance errors (speechtl.score.wer.write_utt_errs), relative to results.tsv
    cer: float | None = None  # character error rate, in %
    oov: float | None = None  # reference words outside words.txt, in %
    unit: str = ""  # what wer counts: "char" (a spaceless script's characters) or "word" ("" in older files)
    config: str = ""  # digest of what trained the model, its seed left out (speechtl.train.checkpoint.config_digest)
    checkpoint: str = ""  # "" for the final model, "epoch-30-avg-10" for an epoch average (checkpoint_label)

    @property
    def key(self):
        seed = "" if self.seed is None else str(self.seed)
        return (self.test_set, self.method, self.data, self.decoding, seed, self.checkpoint)


assert [f.name for f in fields(ResultRow)] == HEADER


def _read_table(path: Path, header: Sequence[str], min_width: int | None = None) -> list[list[str]]:
    """Rows of ``path``, each padded to ``header`` with empty fields; a file whose header is
    ``header``'s first ``min_width`` (or more) columns is an older version of the table."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        found = next(reader, None) or []
        width = len(found)
        if width < (min_width or len(header)) or found != list(header[:width]):
            raise SpeechtlError(f"{path} has header {found}, expected {list(header)}. Fix: move the file aside.")
        rows = []
        for n, r in enumerate(reader, 2):
            if not r:
                continue
            if len(r) != width:
                raise SpeechtlError(f"{path}:{n}: expected {width} tab-separated fields, got {r}")
            rows.append(r + [""] * (len(header) - width))
        return rows


def upsert_table(
    path: Path,
    header: Sequence[str],
    new_rows: Iterable[Sequence[str]],
    key_width: int | Sequence[int],
    min_width: int | None = None,
    drop: Iterable[tuple[str, ...]] = (),
) -> list[list[str]]:
    """Add or replace rows of a tab-separated table, keyed by their first ``key_width``
    fields (or the fields at those indices), sorted by key, under a lock and atomically;
    rows keyed ``drop`` go. Returns every row. ``min_width``: see :func:`_read_table`."""
    cols = range(key_width) if isinstance(key_width, int) else key_width

    def key(r: Sequence[str]) -> tuple[str, ...]:
        return tuple(str(r[i]) for i in cols)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = {key(r): list(r) for r in _read_table(path, header, min_width)}
        for k in drop:
            rows.pop(tuple(k), None)
        for r in new_rows:
            rows[key(r)] = [str(x) for x in r]
        ordered = [rows[k] for k in sorted(rows)]
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(header)
            w.writerows(ordered)
    return ordered


def _parse(r: Sequence[str]) -> ResultRow:
    def opt(s: str, type_):
        return type_(s) if s != "" else None

    return ResultRow(
        r[0], r[1], r[2], r[3], float(r[4]), int(r[5]), int(r[6]), opt(r[7], int), opt(r[8], float), opt(r[9], float),
        r[10], opt(r[11], float), opt(r[12], float), r[13], r[14], r[15],
    )  # fmt: skip


def read_results(path: Path) -> list[ResultRow]:
    """Every row; rows of files written before the seed and interval columns have those empty."""
    return [_parse(r) for r in _read_table(path, HEADER, len(BASE_HEADER))]


def _format(r: ResultRow) -> list:
    def opt(v, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    return [
        r.test_set, r.method, r.data, r.decoding, f"{r.wer:.2f}", r.errors, r.words,
        opt(r.seed, "d"), opt(r.ci_low, ".2f"), opt(r.ci_high, ".2f"), r.utt_errs, opt(r.cer, ".2f"),
        opt(r.oov, ".2f"), r.unit, r.config, r.checkpoint,
    ]  # fmt: skip


#: The key's columns in HEADER (ResultRow.key's order).
_KEY = tuple(HEADER.index(c) for c in ("test_set", "method", "data", "decoding", "seed", "checkpoint"))


def update_results(path: Path, new_rows: Iterable[ResultRow]) -> list[ResultRow]:
    """Add or replace rows (by key) and rewrite the file atomically; returns all rows.

    A seeded row also replaces its system's unseeded row (one written before seeds were
    recorded) of the same checkpoint: the new measurement supersedes it rather than averaging with it."""
    new_rows = list(new_rows)
    _warn_relabelled(path, new_rows)
    legacy = [(*r.key[:4], "", r.checkpoint) for r in new_rows if r.seed is not None]
    table = upsert_table(path, HEADER, [_format(r) for r in new_rows], _KEY, len(BASE_HEADER), legacy)
    return [_parse(r) for r in table]


def drop_results(path: Path, keys: Iterable[tuple[str, ...]]) -> None:
    """Remove the rows of ``keys`` (``ResultRow.key``s), if the file and they exist. A key of the
    five columns before ``checkpoint`` names the final model's row (its checkpoint empty)."""
    if Path(path).is_file():
        full = [(*k, *[""] * (len(_KEY) - len(k))) for k in keys]
        upsert_table(path, HEADER, [], _KEY, len(BASE_HEADER), full)


def _warn_relabelled(path: Path, new_rows: list[ResultRow]) -> None:
    """A new row replacing one of the same key whose decode was in another directory: two systems
    under one label (two hand decodes of differently named dirs, both ``finetune all``), and the
    first one's numbers are gone from the table. Said, with the fix."""
    if not Path(path).is_file():
        return
    old = {r.key: r for r in read_results(path)}
    for r in new_rows:
        before = old.get(r.key)
        if before and before.utt_errs and r.utt_errs and Path(before.utt_errs).parent != Path(r.utt_errs).parent:
            logging.warning(
                f"{path}: the row {' '.join(str(k) for k in r.key if k not in (None, ''))} of "
                f"{Path(before.utt_errs).parent} is replaced by {Path(r.utt_errs).parent}'s: two systems with one "
                "label. Fix: decode each with --method/--data naming it (e.g. --method hubert-finetune)"
            )
