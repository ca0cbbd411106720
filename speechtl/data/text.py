"""Transcript normalization for ASR targets, language-independent.

Case-folded; every character that is not a letter, a digit or a word-internal
apostrophe becomes a space; runs of spaces collapse. Unicode letters of any
script stay (Irish fadas, Cyrillic, ...).
"""

import re
import unicodedata

_NOT_WORD = re.compile(r"[^\w']+|_")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).casefold().replace("\u2019", "'")
    text = _NOT_WORD.sub(" ", text)
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return " ".join(text.split())
