"""Scripts without spaces between words (Thai, Chinese...): characters are the words of the lexicon,
the LM and WER; sentencepiece keeps Thai's ำ whole; the TTS normalizer keeps combining marks."""

import numpy as np
import pytest

from speechtl.data.text import normalize_text
from speechtl.lang import Lang
from speechtl.lang.spaceless import MARKER, characters, is_spaceless, join_words

THAI = [
    "วันนี้อากาศดีมาก",
    "ผมทำงานที่ธนาคาร",
    "เด็กๆ กำลังเล่นอยู่ที่สนาม",
    "คุณแม่ทำแกงเขียวหวาน",
    "ฉันจะกลับบ้านตอนเย็น",
    "เขาไปโรงเรียนทุกวัน",
]


def test_characters_keep_their_marks_and_drop_spaces():
    assert characters("ที่ดี") == ["ที่", "ดี"]  # ท + ี + ่ is one character
    assert characters("ทำ งาน") == ["ท", "ำ", "ง", "า", "น"]  # ำ is a letter of its own (Lo), spaces drop out
    assert characters("我们 去") == ["我", "们", "去"]
    assert characters("क्षि") == ["क्षि"]  # not a spaceless script: one word, marks and all
    # A loan word in Latin letters and a number stay whole; 々 is a character of its own.
    assert characters("ผมชอบ ok มาก") == ["ผ", "ม", "ช", "อ", "บ", "ok", "ม", "า", "ก"]
    assert characters("我用iphone手机 2024年") == ["我", "用", "iphone", "手", "机", "2024", "年"]
    assert characters("人々") == ["人", "々"]
    for text in ("ผมชอบ ok มาก", "วันนี้อากาศดีมาก", "人々は来る"):
        assert join_words(characters(text)) == text


def test_which_texts_are_spaceless():
    assert is_spaceless(THAI) and is_spaceless(["我们去学校"]) and is_spaceless(["今日はいい天気です"])
    assert not is_spaceless(["dia duit a chara", "привет мир", "안녕하세요 여러분"])  # Korean has spaces
    assert not is_spaceless(["", "123"])  # no letters: nothing to say
    assert is_spaceless(["ผมชอบ ok มาก"])  # a loan word in Latin letters does not change the script


def test_tts_normalizer_keeps_combining_marks():
    """normalize_text (zero-shot's --text-norm tts, synthesize) split Thai words at every vowel and
    tone mark ('วันนี้อากาศดีมาก' -> 'ว นน อากาศด มาก'): \\w has no combining marks."""
    assert normalize_text("วันนี้อากาศดีมาก!") == "วันนี้อากาศดีมาก"
    assert normalize_text("เด็กๆ กำลังเล่น") == "เด็กๆ กำลังเล่น"
    assert normalize_text("Don't 'quote' it_now, O'Brien!") == "don't quote it now o'brien"


@pytest.fixture(scope="module")
def thai_lang(tmp_path_factory):
    from speechtl.lang.prepare import prepare_lang_from_text

    d = tmp_path_factory.mktemp("thai")
    (d / "text.txt").write_text("".join(t + "\n" for t in THAI), encoding="utf-8")
    return Lang(prepare_lang_from_text(d / "text.txt", d / "lang", units="char", lm_order=2))


def test_a_spaceless_lang_dir_has_characters_for_words(thai_lang):
    """Before, words.txt held whole phrases ('คุณแม่ทำแกงเขียวหวาน'), so HLG could only output training
    sentences and WER was a sentence error rate; now every word is one character, spelled without
    sentencepiece's word-start piece, and ำ is one unit (sentencepiece's NFKC split it in two)."""
    assert (thai_lang.dir / MARKER).is_file() and thai_lang.spaceless
    words = {w for w in thai_lang.word2id if not w.startswith(("<", "#"))}
    clusters = {c for t in THAI for c in characters(t)}
    assert words >= clusters and all(len(w) == 1 for w in words - clusters)  # and each code point alone
    assert all(len(characters(w)) == 1 for w in words)
    assert "ำ" in thai_lang.token2id and "ํ" not in thai_lang.token2id
    assert all("▁" not in pron for pron in thai_lang.lexicon.values())
    for t in THAI:  # the training targets read back as the text's characters
        assert thai_lang.decode(thai_lang.encode(t)) == characters(t)
    assert thai_lang.words("ทำ งาน") == ["ท", "ำ", "ง", "า", "น"]


def test_hlg_outputs_a_sentence_it_never_saw(thai_lang):
    """A new sentence of known characters: HLG over characters finds it (a phrase-level graph gave
    an empty output or another training sentence)."""
    from speechtl.decode.hlg import HlgDecoder

    new = "ฉันทำงานที่บ้าน"  # not in THAI; every character is
    ids = thai_lang.encode(new)
    frames = []
    for i in ids:  # each token for two frames, a blank between: a confident CTC output
        frames += [i, i, 0]
    log_probs = np.full((len(frames), thai_lang.vocab_size), -20.0, dtype=np.float32)
    log_probs[np.arange(len(frames)), frames] = 0.0
    decoder = HlgDecoder(thai_lang.dir / "HLG.fst", thai_lang.dir / "words.txt")
    assert decoder.decode(log_probs) == characters(new)
    assert join_words(decoder.decode(log_probs)) == new


def test_units_for_a_spaceless_script_are_characters(tmp_path):
    """The BPE threshold counted whitespace 'words', which in Thai are phrases: a spaceless text gets
    characters, and says why."""
    from speechtl.recipe.info import choose_units

    (tmp_path / "t.txt").write_text("".join(t + "\n" for t in THAI * 50), encoding="utf-8")
    choice = choose_units(tmp_path / "t.txt", min_words=10)
    assert choice.units == "char" and "without spaces" in choice.reason
    (tmp_path / "e.txt").write_text("the cat sat on the mat\n" * 50, encoding="utf-8")
    assert choose_units(tmp_path / "e.txt", min_words=10).units == "bpe"


def test_scores_count_characters(tmp_path):
    """WER of a spaceless lang dir counts characters; its CER counts code points, no spaces."""
    from speechtl.decode.run import score_decoding

    ref, hyp = characters("ที่ทำงาน"), characters("ที่ทำงง")
    row = score_decoding([("u1", ref, hyp)], tmp_path, "test", "greedy", "m", "all", None, None, spaceless=True)
    assert (row.errors, row.words) == (2, 6)  # า -> ง substituted, น deleted: 2 of 6 characters (ที่ is one)
    assert row.cer == pytest.approx(100 * 2 / 8)  # 8 code points, no spaces between them


def test_results_say_the_wer_counts_characters(tmp_path):
    """RESULTS.md said "WER in %" over Thai character counts: results.tsv's unit column says what a row
    counts, and the report says it under the table, or names the rows when lang dirs of both kinds mix."""
    from speechtl.decode.run import score_decoding
    from speechtl.score.report import write_results_md
    from speechtl.score.results import read_results, update_results

    tsv = tmp_path / "exp" / "results.tsv"
    (tmp_path / "d").mkdir()
    res = [("u1", characters("ที่ทำงาน"), characters("ที่ทำงง"))]
    rows = [
        score_decoding(res, tmp_path / "d", "test", d, "finetune", "5min", tsv, 1, spaceless=True)
        for d in ("greedy", "hlg")
    ]
    update_results(tsv, rows)
    assert [r.unit for r in read_results(tsv)] == ["char", "char"]
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "WER on test counts characters" in md and "Rows counting characters" not in md
    words = score_decoding([("u1", ["a", "b"], ["a"])], tmp_path / "d", "test", "hlg", "scratch", "5min", tsv, 1)
    update_results(tsv, [words])
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "WER on test counts characters" not in md
    assert "Rows counting characters, not words, on test:** finetune/5min/greedy, finetune/5min/hlg" in md
    # rows from before the unit column (empty) beside char rows: characters, not "mixed"
    from dataclasses import replace

    tsv.unlink()
    update_results(tsv, [rows[0], replace(rows[1], unit="")])
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "WER on test counts characters" in md and "say nothing of it" in md and "Rows counting" not in md


def test_exports_pseudo_labels_and_old_lang_dirs_keep_the_word_unit(thai_lang, tmp_path, caplog):
    """The ONNX export dropped spaceless.txt, so decode/transcribe --onnx scored phrases again; a word
    lexicon of segmented Chinese (or a lang dir made before) got its words glued into one by the
    spaceless joiner; a lang dir of phrases made before this change is named, with the fix."""
    import logging

    from speechtl.export.onnx import copy_lang_files
    from speechtl.lang.lexicon import lexicon_from_dict
    from speechtl.lang.prepare import prepare_lang

    (tmp_path / "onnx").mkdir()
    copy_lang_files(thai_lang.dir, tmp_path / "onnx")
    assert Lang(tmp_path / "onnx").spaceless
    assert thai_lang.text(characters("ผมชอบ ok มาก")) == "ผมชอบ ok มาก"
    (tmp_path / "lm.txt").write_text("我们 去 学校\n", encoding="utf-8")
    words = prepare_lang(lexicon_from_dict({"我们": ["我", "们"], "去": ["去"], "学校": ["学", "校"]}),
                         tmp_path / "words", lm_text=tmp_path / "lm.txt", lm_order=1)  # fmt: skip
    lang = Lang(words)
    assert not lang.spaceless and lang.text(["我们", "去", "学校"]) == "我们 去 学校"
    assert lang.decode(lang.encode(lang.text(["我们", "去", "学校"]))) == ["我们", "去", "学校"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "t.txt").write_text("".join(t + "\n" for t in THAI), encoding="utf-8")
    from speechtl.lang.prepare import prepare_lang as _prepare
    from speechtl.lang.units import lexicon_from_sentencepiece, load, pieces, train_sentencepiece

    (old / "lang").mkdir()
    sp = load(train_sentencepiece(old / "t.txt", old / "lang" / "bpe.model", "char"))
    _prepare(
        lexicon_from_sentencepiece(set(" ".join(THAI).split()), sp),
        old / "lang",
        lm_text=old / "t.txt",
        lm_order=1,
        extra_units=pieces(sp),
    )  # fmt: skip  (a lang dir of phrases, as before)
    with caplog.at_level(logging.WARNING):
        Lang(old / "lang")
    assert "made before speechtl counted characters" in caplog.text


def test_bpe_on_a_spaceless_script_becomes_characters(tmp_path, caplog):
    """BPE pieces span characters, which the character lexicon cannot spell (HLG found no path):
    asked for BPE, a spaceless text gets characters, with a warning."""
    import logging

    from speechtl.lang.prepare import prepare_lang_from_text

    (tmp_path / "t.txt").write_text("".join(t + "\n" for t in THAI * 3), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        lang = Lang(prepare_lang_from_text(tmp_path / "t.txt", tmp_path / "lang", units="bpe", vocab_size=60))
    assert "units are characters instead" in caplog.text
    assert all(len(t) == 1 for t in lang.token2id if not t.startswith(("<", "#")))
    for t in THAI:
        assert all(lang.id2token[i] in lang.token2id for i in lang.encode(t))


def test_hlg_spells_a_character_seen_only_in_other_company(thai_lang):
    """ปั่ is in no training sentence, though ป, ั and ่ are: HLG over seen characters could not output
    it (น้องปั่นจักรยาน came out as น้องกันจักรยาน). Every code point is a word now, and the decoder's
    words regrouped are the reference's characters."""
    from speechtl.decode.hlg import HlgDecoder

    new = "ปั่น"
    assert "ปั่" not in {c for t in THAI for c in characters(t)} and "ปั่" not in thai_lang.word2id
    frames = []
    for i in thai_lang.encode(new):
        frames += [i, i, 0]
    log_probs = np.full((len(frames), thai_lang.vocab_size), -20.0, dtype=np.float32)
    log_probs[np.arange(len(frames)), frames] = 0.0
    words = HlgDecoder(thai_lang.dir / "HLG.fst", thai_lang.dir / "words.txt").decode(log_probs)
    assert thai_lang.regroup(words) == characters(new) == ["ปั่", "น"]
