"""Transcript normalization for a language never seen, and its character inventory.

The units and the LM learn whatever characters the transcripts hold, so a
corpus in a new language is normalized by rules that need no knowledge of it:
Unicode NFC (one code point sequence per written character), case folding, and
punctuation removed, except apostrophes and hyphens inside a word (``don't``,
``t-athair``, ``k'iche'``: they are spelling there). Letters, combining marks
(Devanagari vowel signs, Arabic harakat, ...) and digits of every script stay.
``keep`` names more characters to keep (``@``, ``+``), ``drop`` characters to
delete outright (say, a tone mark the corpus uses inconsistently), ``map`` one
character written as another (``ş=ș``: Romanian typed with the Turkish cedilla).

:func:`write_char_inventory` then writes every character with its count and
flags the rare ones, the digits and look-alikes: a character seen twice becomes
a unit trained on two examples, a digit is read out as a word the transcript
does not contain, and two characters that look the same (ş and ș, Cyrillic а
and Latin a) split one letter's examples between two units; all are worth
fixing before training.

Unlike :func:`speechtl.data.text.normalize_text` (kept as it is for the TTS
corpora), this keeps combining marks, in-word hyphens and zero-width (non-)joiners.
"""

import logging
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from speechtl.atomic import atomic_open
from speechtl.errors import SpeechtlError

#: Typographic variants written as the ASCII apostrophe / hyphen before the rules apply.
_APOSTROPHES = dict.fromkeys(map(ord, "\u2019\u2018\u02bc\u0060\u00b4\u2032"), "'")
_HYPHENS = dict.fromkeys(map(ord, "\u2010\u2011"), "-")
#: Invisible characters: soft hyphen and BOM deleted; the zero-width space (a word break in Thai,
#: Khmer, ...) a space. ZWNJ/ZWJ are spelling inside a word (Persian, Indic scripts) and kept there.
_INVISIBLE = {0x00AD: None, 0xFEFF: None, 0x200B: " "}
_ZW_JOINERS = "\u200c\u200d"


@dataclass(frozen=True)
class NormalizeConfig:
    casefold: bool = True
    keep: str = ""  # characters kept although not letters/marks/digits
    drop: str = ""  # characters deleted (not replaced by a space)
    map: str = ""  # "ş=ș ţ=ț": each character before '=' written as the one after
    keep_apostrophes: bool = True  # inside a word
    keep_hyphens: bool = True  # inside a word
    rare_count: int = 3  # a character seen fewer times is flagged in the inventory


def _is_word_char(c: str, keep: str) -> bool:
    return unicodedata.category(c)[0] in "LMN" or c in keep


def normalize(text: str, cfg: NormalizeConfig = NormalizeConfig()) -> str:
    """One transcript, normalized as the module doc says; spaces collapsed."""
    text = unicodedata.normalize("NFC", text).translate(_APOSTROPHES).translate(_HYPHENS).translate(_INVISIBLE)
    if cfg.casefold:
        text = unicodedata.normalize("NFC", text.casefold())
    if cfg.map:
        text = text.translate(char_map(cfg.map))
    if cfg.drop:
        text = text.translate(dict.fromkeys(map(ord, cfg.drop)))
    joiners = ("'" if cfg.keep_apostrophes else "") + ("-" if cfg.keep_hyphens else "") + _ZW_JOINERS
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if _is_word_char(c, cfg.keep):
            out.append(c)
            i += 1
        elif c in joiners:  # a run of joiners stays only between two word characters: rock-'n'-roll
            j = i
            while j < len(text) and text[j] in joiners:
                j += 1
            inside = i > 0 and j < len(text) and _is_word_char(text[i - 1], cfg.keep)
            out.append(text[i:j] if inside and _is_word_char(text[j], cfg.keep) else " ")
            i = j
        else:
            out.append(" ")
            i += 1
    return " ".join("".join(out).split())


def char_map(spec: str) -> dict[int, str]:
    """The translation table of ``"ş=ș ţ=ț"``, each pair also case-folded (``Ş=Ș`` maps ``ş`` too)."""
    table = {}
    for pair in spec.split():
        a, sep, b = pair.partition("=")
        if not sep or len(a) != 1 or len(b) > 1:
            raise SpeechtlError(f"--map-chars {pair!r}: write one character, '=', and one (or none): 'ş=ș'")
        table[ord(a)] = b
        table[ord(a.casefold()[0])] = b.casefold()
    return table


#: Letters of other scripts drawn like a Latin one: a Cyrillic а typed into Latin text (or the
#: reverse) makes a second unit for one letter.
_HOMOGLYPHS = dict(zip("аеорсухіјѕԁονı", "aeopcyxijsdovi", strict=True))
_HOMOGLYPHS.update({v: k for k, v in _HOMOGLYPHS.items()})


def look_alike(c: str) -> str | None:
    """The character drawn like ``c`` that a keyboard or a font mix-up writes instead: cedilla and
    comma below swapped (ş/ș, ţ/ț), or a Latin/Cyrillic/Greek homoglyph."""
    d = unicodedata.normalize("NFD", c)
    for a, b in (("\u0327", "\u0326"), ("\u0326", "\u0327")):
        if a in d:
            return unicodedata.normalize("NFC", d.replace(a, b))
    return _HOMOGLYPHS.get(c)


def char_inventory(texts: Iterable[str]) -> Counter:
    return Counter(c for t in texts for c in t if not c.isspace())


def write_char_inventory(counts: Counter, path: Path, rare_count: int = 3) -> list[str]:
    """``char<TAB>codepoint<TAB>name<TAB>count<TAB>flag`` by count; returns the flagged characters.

    Flags: ``digit`` (write numbers as words), ``looks like X`` (the rarer of two characters
    drawn alike, both in the text: map it, ``--map-chars 'c=X'``), ``rare`` (seen fewer than
    ``rare_count`` times: a typo, a loan word, or a character worth mapping)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags: dict[str, str] = {}
    lines = ["char\tcodepoint\tname\tcount\tflag\n"]
    for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        other = look_alike(c)
        if unicodedata.category(c)[0] == "N":
            flags[c] = "digit"
        elif other and other in counts and (n, other) < (counts[other], c):  # the rarer one (ties: one)
            flags[c] = f"looks like {other}"
        elif n < rare_count:
            flags[c] = "rare"
        lines.append(f"{c}\tU+{ord(c):04X}\t{unicodedata.name(c, '?')}\t{n}\t{flags.get(c, '')}\n")
    with atomic_open(path) as f:
        f.write("".join(lines))
    digits = [c for c, f in flags.items() if f == "digit"]
    rare = [c for c, f in flags.items() if f == "rare"]
    alike = {c: look_alike(c) for c, f in flags.items() if f.startswith("looks like")}
    if digits:
        logging.warning(f"{path.name}: transcripts hold digits {''.join(digits)}: write numbers as words for ASR")
    if alike:
        said = "; ".join(
            f"{c} (U+{ord(c):04X}, {counts[c]}x) looks like {o} (U+{ord(o):04X}, {counts[o]}x)"
            for c, o in alike.items()
        )
        logging.warning(
            f"{path.name}: characters drawn alike make two units of one letter: {said}. "
            f"Fix: --map-chars '{' '.join(f'{c}={o}' for c, o in alike.items())}' (turned round if the rarer is right)"
        )
    if rare:
        logging.warning(f"{path.name}: {len(rare)} rare character(s) (< {rare_count} times): {' '.join(rare[:40])}")
    logging.info(f"character inventory: {len(counts)} characters in {path.name}")
    return list(flags)
