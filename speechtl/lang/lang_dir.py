"""A lang dir loaded for training and decoding: text <-> token ids."""

import logging
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from speechtl.errors import SpeechtlError
from speechtl.lang.lexicon import read_lexicon
from speechtl.lang.spaceless import MARKER, is_spaceless, text_of, words_of
from speechtl.lang.symbols import read_symbols


class Lang:
    """Tokens, words and lexicon of a lang dir.

    ``encode`` maps a transcript to token ids (each word's first pronunciation);
    ``decode`` maps a token sequence back to words by longest match against the
    lexicon, a token that starts no word becoming ``<unk>`` so it counts as an error.
    With an optional-silence unit (``optional_silence.txt``), ``encode`` puts it
    before, between and after words and ``decode`` ignores it. With a
    sentencepiece model (``bpe.model``) both go through it instead, so words
    outside the lexicon are spelled and read back too.
    """

    def __init__(self, lang_dir: Path):
        self.dir = Path(lang_dir)
        for name in ("tokens.txt", "words.txt", "lexicon.txt"):
            if not (self.dir / name).is_file():
                raise SpeechtlError(f"{self.dir / name} is missing. Fix: run the lang stage (steps/prepare_lang.sh).")
        self.token2id = read_symbols(self.dir / "tokens.txt")
        self.id2token = {i: t for t, i in self.token2id.items()}
        self.word2id = read_symbols(self.dir / "words.txt")
        self.id2word = {i: w for w, i in self.word2id.items()}
        self.lexicon: dict[str, list[str]] = {}
        for w, p in read_lexicon(self.dir / "lexicon.txt"):
            self.lexicon.setdefault(w, p)
        self._pron2word: dict[tuple, str] = {}
        for w, p in self.lexicon.items():
            self._pron2word.setdefault(tuple(self.token2id[t] for t in p), w)
        self._max_pron = max(len(p) for p in self._pron2word)
        self.sp = None
        if (self.dir / "bpe.model").is_file():
            from speechtl.lang.units import load

            self.sp = load(self.dir / "bpe.model")
        sil_file = self.dir / "optional_silence.txt"
        self.sil_id = self.token2id[sil_file.read_text(encoding="utf-8").strip()] if sil_file.is_file() else None
        #: Words are characters: the text's script has no spaces between words (speechtl.lang.spaceless).
        self.spaceless = (self.dir / MARKER).is_file()
        if not self.spaceless and self.sp is not None:
            sample = [w for w in list(self.word2id)[1:201] if not w.startswith(("#", "<"))]
            if sample and is_spaceless(sample) and sum(map(len, sample)) > 4 * len(sample):
                logging.warning(
                    f"{self.dir}: its words are phrases of a script written without spaces, made before speechtl "
                    "counted characters there (HLG outputs only whole training phrases; WER is a sentence error "
                    "rate). Fix: make the lang dir again (delete it and rerun the lang stage)"
                )

    def words(self, text: str) -> list[str]:
        """A transcript's words as this lang dir counts them (characters for a spaceless script)."""
        return words_of(text, self.spaceless)

    def regroup(self, words: Sequence[str]) -> list[str]:
        """A decoder's words as :meth:`words` counts them: of a spaceless script, HLG may spell a character
        seen only in other company (ปั่ as ป, ั and ่); joined and split again, it is one character."""
        return self.words(self.text(words)) if self.spaceless else list(words)

    def text(self, words: Sequence[str]) -> str:
        """Words back to a transcript, as the language writes it (no spaces between characters of a
        spaceless script); what ``encode`` takes."""
        return text_of(words, self.spaceless)

    @property
    def vocab_size(self) -> int:
        """Number of model outputs: blank plus real tokens (disambiguation symbols excluded)."""
        return sum(1 for t in self.token2id if not t.startswith("#"))

    def encode(self, text: str) -> list[int]:
        if self.sp is not None:  # sentencepiece units spell any word of known characters
            pieces = self.sp.encode(text, out_type=str)
            unknown = sorted({p for p in pieces if p not in self.token2id})
            if unknown:
                raise SpeechtlError(
                    f"{text!r} has characters outside the units of {self.dir}: {unknown}. "
                    "Fix: normalize the text, or train the units on text that has them."
                )
            return [self.token2id[p] for p in pieces]
        sil = [] if self.sil_id is None else [self.sil_id]
        ids: list[int] = list(sil)
        for w in self.words(text):
            pron = self.lexicon.get(w)
            if pron is None:
                raise SpeechtlError(f"word {w!r} (in {text!r}) is not in {self.dir / 'lexicon.txt'}")
            ids.extend(self.token2id[t] for t in pron)
            ids.extend(sil)
        return ids

    def decode(self, token_ids: Sequence[int]) -> list[str]:
        if self.sp is not None:
            # NFC, as the transcripts are: units emitted one by one (र then ़) would otherwise spell a word
            # that looks like the reference's (ऱ) and is scored as another
            return self.words(
                unicodedata.normalize("NFC", self.sp.decode_pieces([self.id2token[t] for t in token_ids]))
            )
        words, i, ids = [], 0, [t for t in token_ids if t != self.sil_id]
        while i < len(ids):
            for n in range(min(self._max_pron, len(ids) - i), 0, -1):
                w = self._pron2word.get(tuple(ids[i : i + n]))
                if w is not None:
                    words.append(w)
                    i += n
                    break
            else:
                words.append("<unk>")
                i += 1
        return words
