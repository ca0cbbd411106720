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
corpora, which keeps combining marks too), this keeps in-word hyphens and
zero-width (non-)joiners.

Case: ``str.lower`` (Greek keeps its final ς, German its ß; ``casefold`` would write σ
and ss), with a capital İ always lowercased to i (``lower`` writes i and a combining
dot above), and with ``turkic_case`` the capital I to the dotless ı (Turkish, Azeri:
the import turns it on when the corpus writes ı or İ). ``map`` applies first, to the
characters as typed (``I=ı`` maps only the capital, ``‘=ʻ`` reaches a quote before it
becomes an apostrophe), and again after quotes, dashes and case are made standard
(``'=ʼ`` reaches ’, ``ς=σ`` a capital Σ). Imports before this (their text_norm.json has
no ``turkic_case``) were case-folded, and are read back so (``case_rule``).
"""

import functools
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from speechtl.atomic import atomic_open
from speechtl.errors import SpeechtlError

#: Typographic variants written as the ASCII apostrophe / hyphen before the rules apply.
#: Hebrew's geresh and gershayim (צ׳ייסר, בת״א) are its apostrophes; its maqaf (בית־ספר) its hyphen.
_APOSTROPHES = dict.fromkeys(map(ord, "\u2019\u2018\u02bc\u0060\u00b4\u2032\u05f3\u05f4"), "'")
_HYPHENS = dict.fromkeys(map(ord, "\u2010\u2011\u05be"), "-")
#: Invisible characters: soft hyphen, BOM, the direction marks (LRM, RLM, ALM: typed into right-to-left
#: text, where they split words) and the Arabic tatweel (a stretch of the line between letters, never
#: spelling) deleted; the zero-width space (a word break in Thai, Khmer, ...) a space. ZWNJ/ZWJ are
#: spelling inside a word (Persian, Indic scripts) and kept there.
_INVISIBLE = {0x00AD: None, 0xFEFF: None, 0x200E: None, 0x200F: None, 0x061C: None, 0x0640: None, 0x200B: " "}
_ZW_JOINERS = "\u200c\u200d"
APOSTROPHE = "'"


#: (cedilla, comma below): one Romanian letter each, typed both ways since legacy encodings and Turkish
#: keyboard layouts had only the cedilla form; the comma below is the standard (Unicode 3.0 on).
CEDILLA_COMMA = (("\u015f", "\u0219"), ("\u0163", "\u021b"), ("\u015e", "\u0218"), ("\u0162", "\u021a"))
#: Each of those letters to its other form, a ``str.translate`` table.
SAME_LETTER = str.maketrans({a: b for a, b in CEDILLA_COMMA} | {b: a for a, b in CEDILLA_COMMA})


@dataclass(frozen=True)
class NormalizeConfig:
    #: Lower case (``str.lower``; the module doc says why not ``str.casefold``).
    casefold: bool = True
    #: Turkish and Azeri casing: I -> ı (İ -> i always). The import sets it from the corpus (``--turkic-case``).
    turkic_case: bool = False
    #: "lower" (``str.lower``), or "casefold": how imports before ``turkic_case`` existed lowered text
    #: (ß -> ss, ς -> σ), kept for their hypotheses and LM text (:func:`normalizer_of`).
    case_rule: str = "lower"
    keep: str = ""  # characters kept although not letters/marks/digits
    drop: str = ""  # characters deleted (not replaced by a space)
    map: str = ""  # "ş=ș ţ=ț": each character before '=' written as the one after
    keep_apostrophes: bool = True  # inside a word
    keep_hyphens: bool = True  # inside a word
    rare_count: int = 3  # a character seen fewer times is flagged in the inventory
    #: A corpus writing a word with a ZWNJ (Persian می‌روید) and, elsewhere, with a space (می روید):
    #: the spaced ones are joined (corpus-wide, at import: :func:`zwnj_words`).
    join_zwnj: bool = True
    #: The words so joined, space-separated (the import fills it in): LM text and hypotheses read
    #: through :func:`normalizer_of` are joined alike.
    zwnj_words: str = ""


def _is_word_char(c: str, keep: str) -> bool:
    return unicodedata.category(c)[0] in "LMN" or c in keep


#: An ASCII double quote between two Hebrew letters: the gershayim of an acronym typed on a keyboard
#: without it (צה"ל), written as the apostrophe the gershayim becomes.
_HEBREW_GERSHAYIM = re.compile(r'(?<=[\u05d0-\u05ea])"(?=[\u05d0-\u05ea])')


def normalize(text: str, cfg: NormalizeConfig = NormalizeConfig()) -> str:
    """One transcript, normalized as the module doc says; spaces collapsed."""
    text = unicodedata.normalize("NFC", text)
    if cfg.map:  # first: the user's pairs name characters as typed
        text = text.translate(char_map(cfg.map))
    text = text.translate(_APOSTROPHES).translate(_HYPHENS).translate(_INVISIBLE)
    if '"' in text:
        text = _HEBREW_GERSHAYIM.sub("'", text)
    if cfg.casefold:
        if cfg.case_rule == "casefold":
            text = unicodedata.normalize("NFC", text.casefold())
        else:
            if cfg.turkic_case:
                text = text.replace("I", "\u0131")
            text = unicodedata.normalize("NFC", text.replace("\u0130", "i").lower())
    if cfg.map:  # again: what the standard quotes, dashes and case made of the typed characters
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
    text = " ".join("".join(out).split())
    return join_zwnj_words(text, cfg.zwnj_words) if cfg.zwnj_words else text


@functools.lru_cache(maxsize=16)
def char_map(spec: str) -> dict[int, str]:
    """The translation table of ``"ş=ș,ţ=ț"`` (pairs split by commas or spaces), each pair also in
    the other case when both of its characters have one (``Ş=Ș`` maps ``ş`` too and ``ş=ș`` maps
    ``Ş``; ``ẞ=ß`` maps only ``ẞ``, ``I=ı`` only the capital I: ß and ı have no other case of one letter).
    Parsed once per spec: :func:`normalize` asks for it on every transcript (not to be mutated)."""
    table = {}
    pairs = []
    for pair in spec.replace(",", " ").split():
        a, sep, b = pair.partition("=")
        if not sep or len(a) != 1 or len(b) > 1:
            raise SpeechtlError(f"--map-chars {pair!r}: write one character, '=', and one (or none): 'ş=ș,ţ=ț'")
        table[ord(a)] = b
        pairs.append((a, b))
    for a, b in pairs:
        for case in (str.lower, str.upper):
            x, y = case(a), case(b)
            if len(x) == 1 and x != a and (not b or (len(y) == 1 and y != b)):
                table.setdefault(ord(x), y)
    return table


#: Letters of the Arabic script typed for one another: Arabic yeh and kaf (ي ك) in Persian and Urdu
#: text, where the standard letters are ی and ک (an Arabic keyboard layout), and alef maksura (ى)
#: for a final yeh. Which form is right depends on the language: the rarer of two that occur is flagged.
ARABIC_SCRIPT_ALIKE = {
    "\u064a": "\u06cc",
    "\u06cc": "\u064a",
    "\u0643": "\u06a9",
    "\u06a9": "\u0643",
    "\u0649": "\u06cc",
}


def look_alike(c: str) -> str | None:
    """The Latin letter with the other of cedilla and comma below (ş/ș, ţ/ț): drawn alike, typed
    for one another (Romanian on a Turkish keyboard layout), two units for one letter; and the
    Arabic-script letters typed for one another (:data:`ARABIC_SCRIPT_ALIKE`)."""
    if c in ARABIC_SCRIPT_ALIKE:
        return ARABIC_SCRIPT_ALIKE[c]
    d = unicodedata.normalize("NFD", c)
    for a, b in (("\u0327", "\u0326"), ("\u0326", "\u0327")):
        if a in d and unicodedata.name(c, "").startswith("LATIN"):
            return unicodedata.normalize("NFC", d.replace(a, b))
    return None


#: Lower-case letters drawn alike in Latin, Cyrillic and Greek: {letter: {script: its look-alike}}.
_GLYPH_SETS = ("aа", "eе", "oоο", "pрρ", "cс", "yу", "xх", "iі", "jј", "sѕ", "dԁ", "vν", "kκ")
_HOMOGLYPHS: dict[str, dict[str, str]] = {}
for _set in _GLYPH_SETS:
    for _c in _set:
        _HOMOGLYPHS[_c] = {unicodedata.name(o).split()[0]: o for o in _set if o != _c}


def _script(c: str) -> str | None:
    name = unicodedata.name(c, "").split()
    return name[0] if name and name[0] in ("LATIN", "CYRILLIC", "GREEK") else None


def mixed_script_letters(texts: Iterable[str]) -> dict[str, tuple[str, int, str]]:
    """``{letter: (its look-alike, times, a word)}`` for letters written inside words of another
    script that has a look-alike of them: a Cyrillic а in the Latin ``cаsa``, a Latin o in a
    Russian word. Whole words of another script (a Latin loan word in Russian text) are not.
    A word's script is the corpus's own when the word has any of its letters (Russian ``тo``,
    ``xoд`` typed with Latin o and x: half or most of the word Latin), else the word's majority."""
    texts = list(texts)
    corpus = Counter(s for text in texts for s in map(_script, text) if s)
    corpus_main = corpus.most_common(1)[0][0] if corpus else None
    found: dict[str, list] = {}
    for text in texts:
        for word in text.split():
            scripts = Counter(s for s in map(_script, word) if s)
            if len(scripts) < 2:
                continue
            main, n = scripts.most_common(1)[0]
            if corpus_main in scripts:
                main = corpus_main
            elif 2 * n <= sum(scripts.values()):
                continue  # no script writes most of the word
            for c in word:
                other = _HOMOGLYPHS.get(c, {}).get(main)
                if _script(c) not in (None, main) and other:
                    entry = found.setdefault(c, [other, 0, word])
                    entry[1] += 1
    return {c: (o, n, w) for c, (o, n, w) in found.items()}


def is_vowel_mark(c: str) -> bool:
    """Arabic harakat (fatha, kasra, damma, tanwin, sukun, shadda, superscript alef) and Hebrew niqqud:
    marks most text leaves out and some transcribers write."""
    return 0x064B <= ord(c) <= 0x0652 or ord(c) == 0x0670 or 0x05B0 <= ord(c) <= 0x05C2 or ord(c) == 0x05C7


def char_inventory(texts: Iterable[str]) -> Counter:
    return Counter(c for t in texts for c in t if not c.isspace())


def write_char_inventory(
    counts: Counter,
    path: Path,
    rare_count: int = 3,
    mixed: dict[str, tuple[str, int, str]] | None = None,
    kept_apart: Iterable[str] = (),
    mapped: str = "",
) -> list[str]:
    """``char<TAB>codepoint<TAB>name<TAB>count<TAB>flag`` by count; returns the flagged characters.

    Flags: ``digit`` (write numbers as words), ``looks like X`` (the rarer of ş/ș or ţ/ț when both
    occur, or a letter inside words of another script that has its look-alike X: ``mixed``, from
    :func:`mixed_script_letters`), ``rare`` (seen fewer than ``rare_count`` times: a typo, a loan
    word, or a character worth mapping). ``kept_apart``: letters the user mapped to themselves
    (``--map-chars 'ş=ş'``), never flagged as look-alikes; ``mapped``: the characters the import's
    ``--map-chars`` maps (no advice to map them again)."""
    kept_apart = set(kept_apart)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mixed = mixed or {}
    flags: dict[str, str] = {}
    alike: dict[str, str] = {}  # flagged letter -> the letter it looks like
    lines = ["char\tcodepoint\tname\tcount\tflag\n"]
    for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        other = look_alike(c)
        if unicodedata.category(c)[0] == "N":
            flags[c] = "digit"
        elif is_vowel_mark(c):
            flags[c] = "vowel mark"
        elif other and other in counts and not {c, other} & kept_apart and (n, other) < (counts[other], c):
            alike[c] = other
        elif c in mixed:
            alike[c] = mixed[c][0]
        elif n < rare_count:
            flags[c] = "rare"
        if c in alike:
            flags[c] = f"looks like {alike[c]}"
        lines.append(f"{c}\tU+{ord(c):04X}\t{unicodedata.name(c, '?')}\t{n}\t{flags.get(c, '')}\n")
    with atomic_open(path) as f:
        f.write("".join(lines))
    digits = [c for c, f in flags.items() if f == "digit"]
    rare = [c for c, f in flags.items() if f == "rare"]
    if digits:
        logging.warning(f"{path.name}: transcripts hold digits {' '.join(digits)}: write numbers as words for ASR")
    if "\u02bb" in counts and APOSTROPHE in counts and not {"\u2018", "\u2019"} & set(mapped):
        logging.warning(
            f"{path.name}: both ʻ (U+02BB, the ʻokina: a letter) and ' ({counts[APOSTROPHE]}x; quotes ‘ ’ become it) are "
            "written. If some of those apostrophes are ʻokina typed as quotes (autocorrect), they are two units "
            "for one letter. Fix: --map-chars '‘=ʻ' at import (pairs apply to the characters as typed; ’ inside a "
            "word, Hawai’i, is autocorrect's too: '’=ʻ' if the corpus has no English apostrophes)"
        )
    # A global map is safe for ş/ș, and for a letter only ever written inside words of another script.
    safe = [c for c in alike if c not in mixed or mixed[c][1] == counts[c]]
    for c, o in alike.items():
        where = f", e.g. in {mixed[c][2]!r}" if c in mixed else ""
        logging.warning(
            f"{path.name}: {c} (U+{ord(c):04X}, {counts[c]}x) looks like {o} (U+{ord(o):04X}){where}: "
            "two units for one letter"
            + ("" if c in safe else f"; it is also in words of its own script: correct those {mixed[c][1]} by hand")
        )
    if safe:
        logging.warning(f"{path.name}: Fix: --map-chars '{','.join(f'{c}={alike[c]}' for c in safe)}' at import")
    marks = [c for c, f in flags.items() if f == "vowel mark"]
    if marks:
        logging.warning(
            f"{path.name}: transcripts hold vowel marks {' '.join(f'{m} ({counts[m]}x)' for m in marks)}: "
            "if they are written in only some transcripts, one word gets two spellings (two words for the LM, "
            f"an error when scored). Fix: --drop-chars '{''.join(marks)}' at import"
        )
    if rare:
        logging.warning(f"{path.name}: {len(rare)} rare character(s) (< {rare_count} times): {' '.join(rare[:40])}")
    logging.info(f"character inventory: {len(counts)} characters in {path.name}")
    return list(flags)


def normalizer_of(config: Path | None = None):
    """``text -> text`` as an import normalized its transcripts: ``config`` is the
    ``<prefix>_text_norm.json`` it wrote (its --keep-chars/--drop-chars/--map-chars, the ş/ș joining,
    the words joined at their ZWNJ, or no normalization at all); None: the defaults. Hypotheses and LM text read through it match
    the references letter for letter."""
    import json
    from functools import partial

    from speechtl.config import from_dict

    if config is None:
        return normalize
    if not Path(config).is_file():
        raise SpeechtlError(f"--text-norm-config {config} does not exist. Fix: run the import stage first.")
    opts = json.loads(Path(config).read_text(encoding="utf-8"))
    if not opts.pop("normalize", True):
        return lambda text: " ".join(text.split())
    if "turkic_case" not in opts:  # written before lower case replaced case folding: as its references were
        opts["case_rule"] = "casefold"
    return partial(normalize, cfg=from_dict(NormalizeConfig, opts, str(config)))


def zwnj_words(texts: Iterable[str]) -> dict[str, str]:
    """``{"می روید": "می‌روید"}``: each word written with a ZWNJ in ``texts`` whose parts also occur with
    a space between them. A space typed for the ZWNJ (a keyboard without it) makes two words of one:
    two errors when scored, and two spellings for the LM. One pass over the texts' word n-grams."""
    texts = list(texts)
    table, _ = _zwnj_table(" ".join({w for t in texts for w in t.split() if "\u200c" in w.strip("\u200c")}))
    lengths = {len(k) for k in table}
    found = set()
    for t in texts if table else ():
        ws = t.split()
        found.update(k for n in lengths for i in range(len(ws) - n + 1) if (k := tuple(ws[i : i + n])) in table)
    return {" ".join(k): table[k] for k in sorted(found)}


@functools.lru_cache(maxsize=4)
def _zwnj_table(joined: str) -> tuple[dict[tuple[str, ...], str], int]:
    """``joined`` (words with a ZWNJ, space-separated) by their parts, and the most parts of one."""
    table = {tuple(p for p in w.split("\u200c") if p): w for w in joined.split()}
    return table, max(map(len, table), default=0)


def join_zwnj_words(text: str, joined: str) -> str:
    """``text`` with each run of words that are the parts of one of ``joined`` (words with a ZWNJ,
    space-separated: ``NormalizeConfig.zwnj_words``) written as that word, longest first."""
    table, longest = _zwnj_table(joined)
    if not table:
        return text
    words, out, i = text.split(), [], 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 1, -1):
            w = table.get(tuple(words[i : i + n]))
            if w:
                out.append(w)
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)
