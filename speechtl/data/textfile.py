"""Reading the text files users bring (LM text, sentences, lexicons) with errors that say the fix.

``Path.read_text`` on a Latin-1 or UTF-16 file raises a bare UnicodeDecodeError
from deep inside a stage; here the error names the file, the line and the byte,
and says how to convert it. A file with nothing but blank lines is as useless
as an empty one and is refused the same way.
"""

import unicodedata
from itertools import pairwise
from pathlib import Path

from speechtl.errors import SpeechtlError

#: Windows code pages a transcript not in UTF-8 is most likely in, for the fix's ``iconv -f``.
CODE_PAGES = (
    "CP1250: Central European, e.g. Romanian, Polish, Czech; CP1252 or LATIN1: Western European; "
    "CP1251: Cyrillic; CP1253: Greek; CP1254: Turkish; CP1255: Hebrew; CP1256: Arabic, Persian, Urdu; "
    "CP874: Thai"
)

#: The code pages of :data:`CODE_PAGES`, as Python names them, in the order the fix lists them.
CODE_PAGE_CODECS = ("cp1250", "cp1252", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp874")

#: Bytes that end a word of a transcript line (space, tab, the separators of transcript files).
_WORD_ENDS = b" \t,;|\r\n"


def code_page_readings(raw: bytes, at: int) -> str:
    """How the word holding byte ``at`` of a non-UTF-8 line reads in each code page where it is
    printable letters of one script, e.g. ``CP1252 'Þiþli'de', CP1254 'Şişli'de'``: the fix's
    ``iconv -f CODEPAGE`` asks the user to know the code page, and the word shows which it is.
    Empty when no code page reads it so (a binary file)."""
    start = max(raw.rfind(bytes([b]), 0, at) for b in _WORD_ENDS) + 1
    ends = [i for i in (raw.find(bytes([b]), at) for b in _WORD_ENDS) if i != -1]
    word = raw[start : min(ends, default=len(raw))]
    readings = []
    for codec in CODE_PAGE_CODECS:
        try:
            text = word.decode(codec)
        except UnicodeDecodeError:
            continue
        scripts = {unicodedata.name(c, "?").split(" ")[0] for c in text if c.isalpha()}
        if len(scripts) == 1 and text.isprintable():
            readings.append((_oddity(text), f"{codec.upper()} {text!r}"))
    return ", ".join(r for _, r in sorted(readings, key=lambda r: r[0]))


def _oddity(word: str) -> int:
    """How unlike a written word ``word`` is: symbols inside it ('ÀÒÉÒä·Â'), and a capital after a
    small letter. The readings are listed from the least odd; among equally plausible ones (Latin
    readings of a Turkish word) the user, who knows the language, picks."""
    odd = sum(not (c.isalnum() or unicodedata.category(c).startswith("M") or c in "'’-") for c in word)
    return odd + sum(a.islower() and b.isupper() for a, b in pairwise(word))


def read_utf8(path: Path, what: str = "text file") -> str:
    """The text of ``path``; a SpeechtlError naming the line and byte if it is missing or not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise SpeechtlError(f"{what} {path} does not exist")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise SpeechtlError(
            f"{what} {path} is not UTF-8: byte 0x{raw[e.start]:02x} on line {line}. Fix: convert it from the "
            f"file's own code page, iconv -f CODEPAGE -t UTF-8 {path} > {path.stem}.utf8{path.suffix} "
            f"({CODE_PAGES})"
        ) from e


def read_words_text(path: Path, what: str = "text file") -> str:
    """Like :func:`read_utf8`, and refuses a file with no words (empty or only whitespace)."""
    text = read_utf8(path, what)
    if not text.split():
        raise SpeechtlError(
            f"{what} {path} has no words ({'empty' if not text else 'only whitespace'}). "
            "Fix: check the stage that wrote it, or pass a file with one sentence a line."
        )
    return text
