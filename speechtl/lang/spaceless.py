"""Scripts written without spaces between words: what a "word" is for the lexicon, the LM and WER.

Thai, Lao, Khmer, Myanmar (Burmese), Tibetan, Chinese and Japanese put no space between
words; a space there separates phrases or sentences, if anything. Split at spaces, a
transcript gives "words" that are whole phrases: the lexicon holds the training sentences,
HLG can output only those (a new sentence comes out empty, or as another training sentence),
and WER is in effect a sentence error rate. Splitting into real words needs a dictionary or a
model of the language, which a new language lacks; the toolkits that score these languages
score characters (icefall's and ESPnet's Chinese recipes; Hugging Face's CER for Thai). So does
speechtl: in a text whose letters are mostly of such scripts, a word is a character, a base
character with the combining marks after it (Thai ที่ is one, not three code points), and spaces
drop out. The lexicon spells each character, the LM is an n-gram over characters, and the WER
column is a character error rate. The lang dir records the choice (:data:`MARKER`), so training,
decode, scoring and transcribe read text alike.
"""

import unicodedata
from collections.abc import Iterable

#: A lang dir holding this file scores characters, not words (see the module doc).
MARKER = "spaceless.txt"
#: Code point ranges of scripts written without spaces between words.
RANGES = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x1A20, 0x1AAF),  # Tai Tham
    (0x3005, 0x3007),  # 々 (iteration mark), 〆, 〇
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA9E0, 0xA9FF),  # Myanmar extended-B
    (0xAA60, 0xAA7F),  # Myanmar extended-A
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
)
#: A text is spaceless when at least this share of its letters are of those scripts.
MIN_SHARE = 0.5
#: Joiners that belong to the character before them, as combining marks do.
_JOINERS = "\u200c\u200d"


def in_spaceless_script(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in RANGES)


def is_spaceless(texts: Iterable[str]) -> bool:
    """Whether most letters of ``texts`` are of scripts written without spaces (and there are letters)."""
    letters = spaceless = 0
    for text in texts:
        for c in text:
            if unicodedata.category(c)[0] == "L":
                letters += 1
                spaceless += in_spaceless_script(c)
    return letters > 0 and spaceless >= MIN_SHARE * letters


def characters(text: str) -> list[str]:
    """The words of ``text`` in a spaceless script: each character of such a script with the
    combining marks (and zero-width joiners) that follow it; a run of other letters or digits (a
    loan word in Latin letters, a number) stays one word, as icefall scores mixed Chinese and
    English; spaces drop out. ``'ที่ดี ok' -> ['ที่', 'ดี', 'ok']``, ``'2024年' -> ['2024', '年']``."""
    out: list[str] = []
    state = None  # None: at a space; "char": after a spaceless character; "run": inside another word
    for c in text:
        if c.isspace():
            state = None
        elif state is not None and (unicodedata.category(c)[0] == "M" or c in _JOINERS):
            out[-1] += c
        elif in_spaceless_script(c):
            out.append(c)
            state = "char"
        elif state == "run":
            out[-1] += c
        else:
            out.append(c)
            state = "run"
    return out


def words_of(text: str, spaceless: bool) -> list[str]:
    """``text``'s words: its characters when ``spaceless``, else what spaces separate."""
    return characters(text) if spaceless else text.split()


def text_of(words: Iterable[str], spaceless: bool) -> str:
    """Words as text: :func:`join_words` when ``spaceless`` (the words are characters), else spaced."""
    return join_words(words) if spaceless else " ".join(words)


def join_words(words: Iterable[str]) -> str:
    """Characters (:func:`characters`) as text: a space between two words unless both are of a
    spaceless script, so a Thai or Chinese transcript reads as the language is written."""
    out = ""
    prev = None
    for w in words:
        if prev is not None and not (in_spaceless_script(prev[-1]) and in_spaceless_script(w[0])):
            out += " "
        out += w
        prev = w
    return out
