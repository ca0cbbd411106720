"""Reading the text files users bring (LM text, sentences, lexicons) with errors that say the fix.

``Path.read_text`` on a Latin-1 or UTF-16 file raises a bare UnicodeDecodeError
from deep inside a stage; here the error names the file, the line and the byte,
and says how to convert it. A file with nothing but blank lines is as useless
as an empty one and is refused the same way.
"""

from pathlib import Path

from speechtl.errors import SpeechtlError

#: Windows code pages a transcript not in UTF-8 is most likely in, for the fix's ``iconv -f``.
CODE_PAGES = (
    "CP1250: Central European, e.g. Romanian, Polish, Czech; CP1252 or LATIN1: Western European; "
    "CP1251: Cyrillic; CP1253: Greek; CP1254: Turkish; CP1255: Hebrew; CP1256: Arabic, Persian, Urdu; "
    "CP874: Thai"
)


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
