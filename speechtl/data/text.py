"""Transcript normalization for ASR targets, language-independent.

Case-folded; every character that is not a letter, a combining mark, a digit or a
word-internal apostrophe becomes a space; runs of spaces collapse. Unicode letters
of any script stay (Irish fadas, Cyrillic, ...), and so do the marks that complete
them (Thai vowels and tones, Devanagari vowel signs): ``\\w`` alone has no marks,
which split วันนี้ into ``ว นน``.
"""

import re
import unicodedata

_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")


def _kept(c: str) -> bool:
    return c == "'" or (c != "_" and (c.isalnum() or unicodedata.category(c)[0] == "M"))


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).casefold().replace("\u2019", "'")
    text = "".join(c if _kept(c) else " " for c in text)
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return " ".join(text.split())
