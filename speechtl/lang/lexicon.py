"""Lexicons: ``word token token ...`` per line, and Kaldi's disambiguation symbols."""

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechtl.data.textfile import read_utf8
from speechtl.errors import SpeechtlError

Lexicon = list[tuple[str, list[str]]]


def read_lexicon(path: Path) -> Lexicon:
    entries: Lexicon = []
    for n, line in enumerate(read_utf8(Path(path), "lexicon").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise SpeechtlError(f"{path}:{n}: a lexicon line is 'WORD TOKEN [TOKEN ...]', got {line.rstrip()!r}")
        entries.append((parts[0], parts[1:]))
    if not entries:
        raise SpeechtlError(f"lexicon {path} is empty")
    return entries


def write_lexicon(entries: Lexicon, path: Path) -> None:
    Path(path).write_text("".join(f"{w} {' '.join(p)}\n" for w, p in entries), encoding="utf-8")


def lexicon_from_dict(d: dict[str, Sequence[str]]) -> Lexicon:
    return [(w, list(p)) for w, p in sorted(d.items())]


def add_disambig_symbols(entries: Lexicon) -> tuple[Lexicon, int]:
    """Append ``#1``, ``#2`` ... where a pronunciation is ambiguous (Kaldi's add_lex_disambig).

    A pronunciation needs a disambiguation symbol when several words share it
    (homophones) or when it is a proper prefix of another word's; without one,
    L∘G cannot be determinized. ``#0`` is left for the LM's back-off arcs.
    Returns the new lexicon and the largest index used (0 if none).
    """
    count = Counter(tuple(p) for _, p in entries)
    prefixes = set()
    for _, p in entries:
        for i in range(1, len(p)):
            prefixes.add(tuple(p[:i]))
    next_id: dict[tuple[str, ...], int] = {}
    max_disambig = 0
    out: Lexicon = []
    for w, p in entries:
        key = tuple(p)
        if key in prefixes or count[key] > 1:
            k = next_id.get(key, 0) + 1
            next_id[key] = k
            max_disambig = max(max_disambig, k)
            out.append((w, [*list(p), f"#{k}"]))
        else:
            out.append((w, list(p)))
    return out, max_disambig


def token_inventory(entries: Iterable[tuple[str, list[str]]]) -> list[str]:
    return sorted({t for _, p in entries for t in p})
