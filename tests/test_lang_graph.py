"""HLG built with kaldifst accepts exactly the lexicon's word sequences."""

import itertools
import math
import os

import kaldifst
import numpy as np
import pytest

from speechtl.decode.hlg import HlgDecoder
from speechtl.lang import Lang
from speechtl.lang.lexicon import add_disambig_symbols, lexicon_from_dict
from speechtl.lang.prepare import prepare_lang

# Homophones (TO/TWO), a pronunciation that is a prefix of another (A / AB),
# and a unit ("c") that is no word on its own.
LEXICON = {"A": ["a"], "AB": ["a", "b"], "B": ["b"], "TO": ["t"], "TWO": ["t"], "CA": ["c", "a"]}


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    d = tmp_path_factory.mktemp("lang")
    text = d / "text"
    text.write_text("A AB B TO TWO CA\nB A\nTWO A\n")
    prepare_lang(lexicon_from_dict(LEXICON), d / "lang", lm_text=text, lm_order=1)
    return Lang(d / "lang")


def word_sequences(tokens, max_words=4):
    """All word sequences whose concatenated pronunciations are ``tokens``."""
    out = set()
    for n in range(1, max_words + 1):
        for words in itertools.product(LEXICON, repeat=n):
            if [t for w in words for t in LEXICON[w]] == list(tokens):
                out.add(words)
    return out


def hlg_outputs(lang, tokens):
    """Output word sequence of the best HLG path for a CTC frame sequence, or None."""
    hlg = kaldifst.StdVectorFst.read(str(lang.dir / "HLG.fst"))
    frames = []
    for t in tokens:  # blank between units so repeats stay distinct
        frames += [lang.token2id[t], 0]
    acceptor = kaldifst.make_linear_acceptor([f + 1 for f in frames])
    kaldifst.arcsort(acceptor, sort_type="olabel")
    composed = kaldifst.compose(acceptor, hlg)
    if composed.num_states == 0:
        return None
    best = kaldifst.shortest_path(composed)
    ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(best)
    assert ok
    return tuple(lang.id2word[i] for i in olabels)


def test_disambiguation_symbols_mark_homophones_and_prefixes():
    entries, max_d = add_disambig_symbols(lexicon_from_dict(LEXICON))
    prons = dict(entries)
    assert prons["A"] == ["a", "#1"]  # prefix of AB
    assert sorted([prons["TO"][-1], prons["TWO"][-1]]) == ["#1", "#2"]
    assert prons["AB"] == ["a", "b"] and prons["CA"] == ["c", "a"]
    assert max_d == 2


def test_hlg_accepts_exactly_the_lexicon_word_sequences(lang):
    units = ["a", "b", "t", "c"]
    checked_accept = checked_reject = 0
    for n in range(1, 4):
        for tokens in itertools.product(units, repeat=n):
            allowed = word_sequences(tokens)
            got = hlg_outputs(lang, tokens)
            if allowed:
                assert got in allowed, (tokens, got, allowed)
                checked_accept += 1
            else:
                assert got is None, (tokens, got)
                checked_reject += 1
    assert checked_accept > 10 and checked_reject > 10


def test_hlg_decoder_on_hand_made_posteriors(lang):
    """Frames that clearly say c a _ b _ a decode to CA B A."""
    seq = ["c", "<blk>", "a", "<blk>", "<blk>", "b", "b", "<blk>", "a"]
    lp = np.full((len(seq), lang.vocab_size), math.log(0.01), dtype=np.float32)
    for i, t in enumerate(seq):
        lp[i, lang.token2id[t]] = math.log(0.9)
    dec = HlgDecoder(lang.dir / "HLG.fst", lang.dir / "words.txt")
    assert dec.decode(lp) == ["CA", "B", "A"]
    assert dec.decode(lp[:0]) == []


def test_lang_files_are_icefall_compatible(lang):
    for name in [
        "tokens.txt",
        "words.txt",
        "lexicon.txt",
        "lexicon_disambig.txt",
        "L_disambig.fst",
        "G.arpa",
        "G.fst",
        "HLG.fst",
    ]:
        assert (lang.dir / name).is_file(), name
    assert lang.token2id["<blk>"] == 0
    assert lang.word2id["<eps>"] == 0
    assert {"#0", "<s>", "</s>"} <= set(lang.word2id)
    assert lang.vocab_size == 5  # blank a b c t


def test_lang_encode_decode_roundtrip(lang):
    ids = lang.encode("CA B A")
    assert [lang.id2token[i] for i in ids] == ["c", "a", "b", "a"]
    assert lang.decode(ids) == ["CA", "B", "A"]
    assert lang.decode([lang.token2id["c"]]) == ["<unk>"]


def test_optional_silence(tmp_path):
    text = tmp_path / "text"
    text.write_text("YES NO\n")
    prepare_lang(
        lexicon_from_dict({"YES": ["Y"], "NO": ["N"]}), tmp_path / "lang", lm_text=text, lm_order=1, sil_token="SIL"
    )
    lang = Lang(tmp_path / "lang")
    sil, y, n = lang.token2id["SIL"], lang.token2id["Y"], lang.token2id["N"]
    assert lang.encode("YES NO") == [sil, y, sil, n, sil]
    assert lang.decode([sil, y, sil, sil, n]) == ["YES", "NO"]
    # HLG takes silence anywhere between words, or none.
    for frames, words in [(["SIL", "Y", "SIL", "N", "SIL"], ["YES", "NO"]), (["Y", "N"], ["YES", "NO"])]:
        lp = np.full((len(frames), lang.vocab_size), math.log(0.01), dtype=np.float32)
        for i, t in enumerate(frames):
            lp[i, lang.token2id[t]] = math.log(0.95)
        assert HlgDecoder(lang.dir / "HLG.fst", lang.dir / "words.txt").decode(lp) == words


def test_lattice_lm_scale_and_nbest(tmp_path):
    """Acoustics slightly favour A; the LM strongly favours B: the LM scale decides."""
    text = tmp_path / "text"
    text.write_text("B\n" * 50 + "A\n")
    prepare_lang(lexicon_from_dict({"A": ["a"], "B": ["b"]}), tmp_path / "lang", lm_text=text, lm_order=1)
    lang = Lang(tmp_path / "lang")
    lp = np.full((3, lang.vocab_size), math.log(1e-4), dtype=np.float32)
    lp[:, 0] = math.log(0.5)  # blank, a or b on the middle frame
    lp[1, lang.token2id["a"]], lp[1, lang.token2id["b"]], lp[1, 0] = math.log(0.55), math.log(0.44), math.log(0.01)
    dec = HlgDecoder(lang.dir / "HLG.fst", lang.dir / "words.txt")
    lat = dec.lattice(lp)
    best = dec.rescore(lat, [0.0, 1.0])
    assert best[0.0] == ["A"] and best[1.0] == ["B"]
    assert [w for w, _, _ in dec.nbest(lat, 2, lm_scale=0.0)] == [["A"], ["B"]]
    nbest = dec.nbest(lat, 2, lm_scale=1.0)
    assert [w for w, _, _ in nbest] == [["B"], ["A"]]
    (_, g_b, ac_b), (_, g_a, ac_a) = nbest
    assert ac_a < ac_b and g_a > g_b  # A wins on acoustics, B on the LM
    assert dec.rescore(dec.lattice(lp[:0]), [1.0]) == {1.0: []}


def test_decoded_words_are_nfc_as_the_transcripts_are(tmp_path):
    """NFC keeps क़ as क + nukta, so a Hindi lang dir has both र and ़ as units beside ऱ: a model that
    emitted र then ़ wrote a word that looks like the reference's ऱ and was scored as another."""
    import unicodedata

    from speechtl.lang import Lang
    from speechtl.lang.prepare import prepare_lang_from_text

    texts = ["मैं ख़ुश हूँ", "वह ज़रूर आएगा", "और तऱह"] * 3
    (tmp_path / "t.txt").write_text("".join(unicodedata.normalize("NFC", t) + "\n" for t in texts), encoding="utf-8")
    lang = Lang(prepare_lang_from_text(tmp_path / "t.txt", tmp_path / "lang", units="char", lm_order=2))
    assert {"र", "़", "ऱ"} <= set(lang.token2id)
    ids = [lang.token2id[t] for t in ("▁", "त", "र", "़", "ह")]
    assert lang.decode(ids) == ["तऱह"] and unicodedata.is_normalized("NFC", lang.decode(ids)[0])


def test_the_lm_tools_print_into_logs_not_the_console(tmp_path, capfd):
    """kaldilm's C++ lines ([I] Reading \\2-grams, a file:line each) and kaldingram's redrawn bars went
    to the console between a recipe's own lines; they are in logs beside the LM, and a failure inside
    shows their last lines."""
    from speechtl.log import native_output_to

    (tmp_path / "lm.txt").write_text("YES NO\nNO YES YES\n")
    prepare_lang(lexicon_from_dict({"YES": ["Y"], "NO": ["N"]}), tmp_path / "lang", tmp_path / "lm.txt", lm_order=2)
    err = capfd.readouterr().err
    assert "arpa_file_parser" not in err and "[A" not in err
    assert "Reading" in (tmp_path / "lang" / "arpa2fst.log").read_text()
    with pytest.raises(RuntimeError), native_output_to(tmp_path / "x.log"):
        os.write(2, b"the native reason\n")
        raise RuntimeError("failed")
    assert "the native reason" in capfd.readouterr().err
