"""Word error rates and the files icefall users read: recogs-*, errs-*, wer-summary-*."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kaldialign

from speechtl.atomic import atomic_open
from speechtl.errors import SpeechtlError

EPS = "*"
Hyp = tuple[str, list[str], list[str]]  # (utterance id, reference words, hypothesis words)


@dataclass
class WerStats:
    insertions: int = 0
    deletions: int = 0
    substitutions: int = 0
    words: int = 0

    @property
    def errors(self) -> int:
        return self.insertions + self.deletions + self.substitutions

    @property
    def wer(self) -> float:
        """Percent; 0 for an empty reference with no errors."""
        return 100.0 * self.errors / self.words if self.words else (0.0 if self.errors == 0 else float("inf"))


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str]]:
    return kaldialign.align(list(ref), list(hyp), EPS)


def compute_wer(results: Sequence[Hyp]) -> WerStats:
    s = WerStats()
    for _, ref, hyp in results:
        s.words += len(ref)
        for r, h in align(ref, hyp):
            if r == EPS:
                s.insertions += 1
            elif h == EPS:
                s.deletions += 1
            elif r != h:
                s.substitutions += 1
    return s


def write_recogs(results: Sequence[Hyp], path: Path) -> None:
    with atomic_open(path) as f:  # whole or not at all: a killed decode leaves no half file
        for utt, ref, hyp in sorted(results):
            f.write(f"{utt}:\tref={ref}\n{utt}:\thyp={hyp}\n")


def write_errs(results: Sequence[Hyp], path: Path, name: str) -> WerStats:
    """icefall's errs file: summary, per-utterance alignments and error counts by word."""
    stats = compute_wer(results)
    subs, ins, dels = Counter(), Counter(), Counter()
    lines = []
    for utt, ref, hyp in sorted(results):
        parts = []
        for r, h in align(ref, hyp):
            if r == h:
                parts.append(r)
            elif r == EPS:
                ins[h] += 1
                parts.append(f"(->{h})")
            elif h == EPS:
                dels[r] += 1
                parts.append(f"({r}->)")
            else:
                subs[(r, h)] += 1
                parts.append(f"({r}->{h})")
        lines.append(f"{utt}:\t{' '.join(parts)}\n")
    with atomic_open(path) as f:
        f.write(
            f"%WER = {stats.wer:.2f}\n"
            f"Errors: {stats.insertions} insertions, {stats.deletions} deletions, "
            f"{stats.substitutions} substitutions, over {stats.words} reference words "
            f"({stats.words - stats.deletions - stats.substitutions} correct)\n"
            f"Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, DELETIONS:, INSERTIONS:\n\n"
            f"PER-UTT DETAILS: corr or (ref->hyp)  [{name}]\n"
        )
        f.writelines(lines)
        f.write("\nSUBSTITUTIONS: count ref -> hyp\n")
        f.writelines(f"{c}   {r} -> {h}\n" for (r, h), c in subs.most_common())
        f.write("\nDELETIONS: count ref\n")
        f.writelines(f"{c}   {w}\n" for w, c in dels.most_common())
        f.write("\nINSERTIONS: count hyp\n")
        f.writelines(f"{c}   {w}\n" for w, c in ins.most_common())
    return stats


def write_wer_summary(rows: Sequence[tuple[str, float]], path: Path) -> None:
    """``settings<TAB>WER`` then one row per setting, best first (icefall's layout)."""
    with atomic_open(path) as f:
        f.write("settings\tWER\n")
        for name, wer in sorted(rows, key=lambda r: r[1]):
            f.write(f"{name}\t{wer:.2f}\n")


#: Columns of ``utt-errs-<test_set>-<decoding>.tsv``: what speechtl.score.stats resamples.
UTT_ERRS_HEADER = ["utt_id", "errors", "ref_words"]


def utt_errors(results: Sequence[Hyp]) -> list[tuple[str, int, int]]:
    """``(utterance id, errors, reference words)`` per utterance, by id."""
    return [(utt, compute_wer([(utt, ref, hyp)]).errors, len(ref)) for utt, ref, hyp in sorted(results)]


def write_utt_errs(results: Sequence[Hyp], path: Path) -> list[tuple[str, int, int]]:
    """The per-utterance error counts behind a WER, kept so that intervals and paired
    tests between systems can be computed later without decoding again."""
    return write_utt_counts(utt_errors(results), path)


def write_utt_counts(counts: Sequence[tuple[str, int, int]], path: Path) -> list[tuple[str, int, int]]:
    """``(utterance id, errors, reference words)`` triples in the format :func:`read_utt_errs` reads."""
    counts = list(counts)
    with atomic_open(path) as f:
        f.write("\t".join(UTT_ERRS_HEADER) + "\n")
        f.writelines(f"{u}\t{e}\t{w}\n" for u, e, w in counts)
    return counts


def read_utt_errs(path: Path) -> list[tuple[str, int, int]]:
    """What :func:`write_utt_errs` wrote."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != UTT_ERRS_HEADER:
        raise SpeechtlError(f"{path}: expected a header {UTT_ERRS_HEADER}. Fix: decode the system again.")
    out = []
    for n, line in enumerate(lines[1:], 2):
        parts = line.split("\t")
        if len(parts) != 3:
            raise SpeechtlError(f"{path}:{n}: expected 3 tab-separated fields, got {line!r}")
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out
