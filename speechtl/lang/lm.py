"""Kneser-Ney n-gram LMs with kaldingram, converted to G with kaldilm."""

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from speechtl.errors import SpeechtlError
from speechtl.log import native_output_to


def write_unigram_arpa(text: Path, arpa: Path, vocab: Iterable[str]) -> Path:
    """Add-one unigram over ``vocab`` and the text's words.

    Kneser-Ney at order 1 has no lower order to give discounted mass to, so
    words seen once get probability zero and vanish from G; a unigram LM
    is therefore estimated with add-one smoothing instead.
    """
    counts = Counter(w for line in Path(text).read_text(encoding="utf-8").splitlines() for w in line.split())
    words = sorted(set(counts) | set(vocab))
    sentences = sum(1 for line in Path(text).read_text(encoding="utf-8").splitlines() if line.strip())
    counts["</s>"] = sentences
    total = sum(counts.values()) + len(words) + 1
    lines = ["\\data\\", f"ngram 1={len(words) + 2}", "", "\\1-grams:", "-99\t<s>"]
    for w in [*words, "</s>"]:
        lines.append(f"{math.log10((counts[w] + 1) / total):.7f}\t{w}")
    lines += ["", "\\end\\", ""]
    Path(arpa).write_text("\n".join(lines), encoding="utf-8")
    return Path(arpa)


def add_missing_unigrams(arpa: Path, vocab: Iterable[str]) -> int:
    """Give every word of ``vocab`` absent from ``arpa`` the lowest unigram probability.

    Like SRILM's ``-vocab``: a lexicon word the LM text never saw stays
    reachable in HLG. Returns how many words were added.
    """
    lines = Path(arpa).read_text(encoding="utf-8").split("\n")
    try:
        start = lines.index("\\1-grams:") + 1
    except ValueError:
        raise SpeechtlError(f"{arpa} has no \\1-grams: section") from None
    end = next(i for i in range(start, len(lines)) if not lines[i].strip() or lines[i].startswith("\\"))
    present, floor = set(), 0.0
    for line in lines[start:end]:
        parts = line.split("\t")
        present.add(parts[1])
        if parts[1] not in ("<s>", "</s>"):
            floor = min(floor, float(parts[0]))
    missing = sorted(set(vocab) - present)
    if not missing:
        return 0
    lines[end:end] = [f"{floor:.7f}\t{w}" for w in missing]
    for i, line in enumerate(lines):
        m = re.fullmatch(r"ngram 1=(\d+)", line.strip())
        if m:
            lines[i] = f"ngram 1={int(m.group(1)) + len(missing)}"
            break
    Path(arpa).write_text("\n".join(lines), encoding="utf-8")
    return len(missing)


def train_ngram_lm(
    text: Path,
    arpa: Path,
    order: int = 3,
    prune_threshold: float = 0.0,
    vocab: Iterable[str] = (),
) -> Path:
    """Train an ARPA LM on ``text`` (one sentence a line); prune by relative entropy if asked.

    Orders 2-5: Kneser-Ney with kaldingram. Order 1: add-one unigram (see
    :func:`write_unigram_arpa`). Words of ``vocab`` the text lacks are added.
    """
    import kaldingram.prune
    import kaldingram.train

    text, arpa = Path(text), Path(arpa)
    vocab = list(vocab)
    if not text.is_file() or text.stat().st_size == 0:
        raise SpeechtlError(f"LM training text {text} is missing or empty. Fix: check the data preparation stage.")
    if not 1 <= order <= 5:
        raise SpeechtlError(f"LM order must be 1..5, got {order}")
    if order == 1:
        return write_unigram_arpa(text, arpa, vocab)
    raw = arpa.with_suffix(".unpruned.arpa") if prune_threshold > 0 else arpa
    # kaldingram's progress bars (a bar per order, redrawn) go to a log beside the LM, not the console
    with native_output_to(Path(arpa).with_name("lm.log")):
        kaldingram.train.main(["--ngram-order", str(order), "--text", str(text), "--lm", str(raw)])
        if prune_threshold > 0:
            kaldingram.prune.main(["--lm", str(raw), "--write-lm", str(arpa), "--threshold", str(prune_threshold)])
    added = add_missing_unigrams(arpa, vocab)
    logging.info(f"{order}-gram LM: {arpa}" + (f" ({added} lexicon words added at the floor)" if added else ""))
    return arpa


def arpa_to_fst(arpa: Path, words_txt: Path, g_fst: Path, max_order: int | None = None) -> Path:
    """G.fst from an ARPA file, with ``#0`` on back-off arcs and <s>, </s> as epsilons."""
    import kaldilm

    with native_output_to(Path(g_fst).with_name("arpa2fst.log")):  # kaldilm's progress lines, off the console
        kaldilm.arpa2fst(
            input_arpa=str(arpa),
            output_fst=str(g_fst),
            disambig_symbol="#0",
            read_symbol_table=str(words_txt),
            max_order=max_order or -1,
        )
    if not Path(g_fst).is_file():
        raise SpeechtlError(
            f"kaldilm wrote no {g_fst} from {arpa}; its output: {Path(g_fst).with_name('arpa2fst.log')}"
        )
    return Path(g_fst)
