"""Sentencepiece units (BPE, char) on real text: lang dirs, round trips, HLG."""

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data

from speechtl.data.text import normalize_text
from speechtl.decode.hlg import HlgDecoder
from speechtl.errors import SpeechtlError
from speechtl.lang import Lang
from speechtl.lang.prepare import prepare_lang_from_text


@pytest.fixture(scope="module")
def irish_text(tmp_path_factory):
    src = shared_data() / "text" / "ga.tsv"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    lines = [normalize_text(line.split("\t", 1)[1]) for line in src.read_text(encoding="utf-8").splitlines()]
    out = tmp_path_factory.mktemp("text") / "ga.txt"
    out.write_text("".join(f"{line}\n" for line in lines[:300] if line), encoding="utf-8")
    return out


def test_normalize_text():
    assert normalize_text('"Táim go deimhin." a d\u2019fhreagraíos.') == "táim go deimhin a d'fhreagraíos"
    assert normalize_text("  ‘Hello’,   WORLD!! ") == "hello world"


@pytest.mark.parametrize("units", ["bpe", "char"])
def test_sentencepiece_lang(irish_text, tmp_path, units):
    lang_dir = prepare_lang_from_text(irish_text, tmp_path / units, units=units, vocab_size=150, lm_order=2)
    lang = Lang(lang_dir)
    assert (lang_dir / "bpe.model").is_file() and (lang_dir / "HLG.fst").is_file()
    real = [t for t in lang.token2id if not t.startswith("#") and t != "<blk>"]
    if units == "bpe":
        assert lang.vocab_size == lang.sp.get_piece_size() - 3 + 1  # pieces less control symbols, plus blank
    else:
        assert all(len(t) == 1 for t in real)  # single characters (the word marker included)
    sentence = irish_text.read_text(encoding="utf-8").splitlines()[7]
    ids = lang.encode(sentence)
    assert lang.decode(ids) == sentence.split()
    unseen = "roinnbhíroinn bhí"  # a word no training sentence has is still spelled and read back
    assert "roinnbhíroinn" not in lang.word2id
    assert lang.decode(lang.encode(unseen)) == unseen.split()
    with pytest.raises(SpeechtlError, match="outside the units"):
        lang.encode("jazz")  # no j or z in the training text

    # HLG turns the sentence's pieces, as confident CTC frames, back into its words.
    frames = []
    for i in ids:
        frames += [i, 0]
    lp = np.full((len(frames), lang.vocab_size), math.log(1e-3), dtype=np.float32)
    for t, i in enumerate(frames):
        lp[t, i] = math.log(0.9)
    assert HlgDecoder(lang_dir / "HLG.fst", lang_dir / "words.txt").decode(lp) == sentence.split()


def test_extra_lm_text_extends_lm_and_vocabulary_not_the_units(tmp_path, caplog):
    """--extra-lm-text adds sentences to G and words to the lexicon; the units stay the transcripts'
    (byte for byte, so models trained on them stay valid: utils/common.sh units_key), and a sentence
    with a character they lack is left out with a warning naming the file."""
    from speechtl.cli import main

    (tmp_path / "train.txt").write_text("tá sé go maith\ntá an lá go breá\n", encoding="utf-8")
    (tmp_path / "extra.txt").write_text("tá an lá te\nbhí an oíche fuar\n", encoding="utf-8")

    def prepare(lang: str, *extra: str, order: str = "2") -> Path:
        args = ["prepare-lang", "--units", "char", "--lm-text", str(tmp_path / "train.txt"), *extra]
        assert main([*args, "--lang-dir", str(tmp_path / lang), "--lm-order", order]) == 0
        return tmp_path / lang

    with caplog.at_level(logging.WARNING):  # the library call first: main's logging set-up removes caplog's handler
        prepare_lang_from_text(
            tmp_path / "train.txt", tmp_path / "lib", "char", lm_order=2, extra_lm_text=[tmp_path / "extra.txt"]
        )
    warned = [r.getMessage() for r in caplog.records if "extra.txt" in r.getMessage()]
    plain = prepare("plain", order="1")
    more = prepare("more", "--extra-lm-text", str(tmp_path / "extra.txt"))
    assert (tmp_path / "lib" / "G.arpa").read_text() == (more / "G.arpa").read_text()
    assert (plain / "bpe.model").read_bytes() == (more / "bpe.model").read_bytes()
    assert (plain / "tokens.txt").read_text() == (more / "tokens.txt").read_text()
    lang = Lang(more)
    assert {"te", "maith"} <= set(lang.word2id) and "oíche" not in lang.word2id
    arpa = (more / "G.arpa").read_text(encoding="utf-8")
    assert " te" in arpa and "fuar" not in arpa
    assert warned and "1 of 2 sentences" in warned[0] and "'í'" in warned[0]
