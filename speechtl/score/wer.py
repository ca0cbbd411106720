"""Word error rates and the files icefall users read: recogs-*, errs-*, wer-summary-*."""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import kaldialign

EPS = "*"
Hyp = Tuple[str, List[str], List[str]]  # (utterance id, reference words, hypothesis words)


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


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[Tuple[str, str]]:
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
    with open(path, "w", encoding="utf-8") as f:
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
    with open(path, "w", encoding="utf-8") as f:
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


def write_wer_summary(rows: Sequence[Tuple[str, float]], path: Path) -> None:
    """``settings<TAB>WER`` then one row per setting, best first (icefall's layout)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("settings\tWER\n")
        for name, wer in sorted(rows, key=lambda r: r[1]):
            f.write(f"{name}\t{wer:.2f}\n")
