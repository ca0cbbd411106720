"""Build a lang dir from a lexicon and LM text (icefall's prepare_lang + compile_hlg)."""

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import kaldifst

from speechtl.data.textfile import read_words_text
from speechtl.errors import SpeechtlError
from speechtl.lang.graph import compose_hlg, make_lexicon_fst
from speechtl.lang.lexicon import Lexicon, add_disambig_symbols, token_inventory, write_lexicon
from speechtl.lang.lm import arpa_to_fst, train_ngram_lm
from speechtl.lang.symbols import write_symbols

BLANK = "<blk>"
RESERVED_WORDS = ("<eps>", "#0", "<s>", "</s>")


def write_lang_files(entries: Lexicon, lang_dir: Path, sil_token: str | None = None, extra_units: Sequence[str] = ()):
    """lexicon.txt, lexicon_disambig.txt, tokens.txt, words.txt and L_disambig.fst.

    With ``sil_token``, that unit is added to tokens.txt and named in
    ``optional_silence.txt`` (Kaldi's name): training targets put it around and
    between words, L lets it appear there optionally, and decoders drop it.
    """
    lang_dir = Path(lang_dir)
    lang_dir.mkdir(parents=True, exist_ok=True)
    bad = [w for w, _ in entries if w in RESERVED_WORDS]
    if bad:
        raise SpeechtlError(f"lexicon uses reserved word(s) {bad}; rename them")
    if BLANK in token_inventory(entries):
        raise SpeechtlError(f"lexicon uses the blank token {BLANK} as a unit; rename it")
    write_lexicon(entries, lang_dir / "lexicon.txt")
    disambig_entries, max_disambig = add_disambig_symbols(entries)
    write_lexicon(disambig_entries, lang_dir / "lexicon_disambig.txt")
    units = sorted(set(token_inventory(entries)) | set(extra_units))
    if sil_token is not None:
        if sil_token in units or sil_token.startswith("#") or sil_token == BLANK:
            raise SpeechtlError(f"silence token {sil_token!r} must be a new unit, not one the lexicon uses")
        units = sorted([*units, sil_token])
        (lang_dir / "optional_silence.txt").write_text(sil_token + "\n", encoding="utf-8")
    else:
        (lang_dir / "optional_silence.txt").unlink(missing_ok=True)
    tokens = [BLANK, *units]
    disambig = [f"#{i}" for i in range(max_disambig + 1)]
    token2id = write_symbols(tokens + disambig, lang_dir / "tokens.txt")
    words = sorted({w for w, _ in entries})
    word2id = write_symbols(["<eps>", *words, "#0", "<s>", "</s>"], lang_dir / "words.txt")
    L = make_lexicon_fst(disambig_entries, token2id, word2id, sil_token=sil_token)
    L.write(str(lang_dir / "L_disambig.fst"))
    return token2id, word2id, len(tokens) - 1, tuple(token2id[d] for d in disambig)


def prepare_lang(
    entries: Lexicon,
    lang_dir: Path,
    lm_text: Path | None = None,
    lm_order: int = 3,
    lm_prune_threshold: float = 0.0,
    arpa: Path | None = None,
    sil_token: str | None = None,
    extra_units: Sequence[str] = (),
) -> Path:
    """Write the whole lang dir; G from ``arpa`` if given, else trained on ``lm_text``.

    ``extra_units`` become tokens even if no lexicon word uses them (all
    sentencepiece pieces, so the acoustic model can spell unseen words).
    """
    lang_dir = Path(lang_dir)
    if arpa is None:  # the LM text is checked before anything is written
        if lm_text is None:
            raise SpeechtlError("prepare_lang needs LM training text (--lm-text) or an ARPA file (--arpa)")
        known = {w for w, _ in entries} | set(RESERVED_WORDS)
        oov = sorted(set(read_words_text(Path(lm_text), "LM text").split()) - known)
        if oov:
            raise SpeechtlError(
                f"{lm_text} has {len(oov)} word(s) not in the lexicon, e.g. {oov[:10]}. "
                "Fix: add them to the lexicon or normalize the text."
            )
    _token2id, word2id, max_token_id, disambig_ids = write_lang_files(entries, lang_dir, sil_token, extra_units)
    if arpa is None:
        words = [w for w in word2id if w not in RESERVED_WORDS]
        arpa = train_ngram_lm(Path(lm_text), lang_dir / "G.arpa", lm_order, lm_prune_threshold, vocab=words)
    arpa_to_fst(Path(arpa), lang_dir / "words.txt", lang_dir / "G.fst")
    L = kaldifst.StdVectorFst.read(str(lang_dir / "L_disambig.fst"))
    G = kaldifst.StdVectorFst.read(str(lang_dir / "G.fst"))
    HLG = compose_hlg(L, G, max_token_id, disambig_ids)
    HLG.write(str(lang_dir / "HLG.fst"))
    logging.info(f"lang dir ready: {lang_dir} ({max_token_id + 1} tokens incl. blank, {len(word2id) - 4} words)")
    return lang_dir


def prepare_lang_from_text(
    text: Path,
    lang_dir: Path,
    units: str = "bpe",
    vocab_size: int = 500,
    lm_order: int = 3,
    lm_prune_threshold: float = 0.0,
    extra_lm_text: Sequence[Path] = (),
) -> Path:
    """Lang dir with sentencepiece ``units`` ("bpe" or "char") trained on ``text``.

    ``text`` holds one normalized sentence a line (the training transcripts); its words make the
    lexicon (each spelled by its pieces) and the LM's training text. ``extra_lm_text`` adds
    sentences to the LM and words to the lexicon but not to the units' training, as icefall trains
    its BPE on the transcripts: more LM text then leaves the units, hence the acoustic models
    trained on them, as they were. A sentence with a character the units lack cannot be spelled
    and is left out (a warning names them). In a script written without spaces the words are
    characters (:mod:`speechtl.lang.spaceless`): each is spelled without sentencepiece's
    word-start piece, which L takes as optional between them.
    """
    from speechtl.lang.spaceless import MARKER, characters, is_spaceless
    from speechtl.lang.units import WORD_START, lexicon_from_sentencepiece, load, pieces, train_sentencepiece

    lang_dir = Path(lang_dir)
    content = read_words_text(Path(text), "LM text")  # checked before anything is written
    extra = [read_words_text(Path(f), "extra LM text") for f in extra_lm_text]
    spaceless = is_spaceless([content])
    if spaceless and units == "bpe":
        logging.warning(
            f"{text}: a script written without spaces between words, whose words here are characters; BPE pieces "
            "span characters, which a character lexicon cannot spell (HLG would find no path), so the units are "
            "characters instead"
        )
        units = "char"
    lang_dir.mkdir(parents=True, exist_ok=True)
    model = train_sentencepiece(Path(text), lang_dir / "bpe.model", units, vocab_size)
    sp = load(model)
    lm_text = Path(text)
    if extra:
        content = content.rstrip("\n") + "\n" + spelled_lines(extra, set(content), extra_lm_text)
        lm_text = lang_dir / "lm_train.txt"  # the transcripts and the extra sentences the units can spell
        lm_text.write_text(content, encoding="utf-8")
    if not spaceless:
        (lang_dir / MARKER).unlink(missing_ok=True)
        return prepare_lang(
            lexicon_from_sentencepiece(set(content.split()), sp),
            lang_dir,
            lm_text=lm_text,
            lm_order=lm_order,
            lm_prune_threshold=lm_prune_threshold,
            extra_units=pieces(sp),
        )
    logging.info(
        f"{text}: a script written without spaces between words, so words are characters (a letter with its "
        "marks): the lexicon, the LM and WER count characters, and the WER column is a character error rate"
    )
    (lang_dir / MARKER).write_text(
        "Words are characters: this script has no spaces between words (speechtl.lang.spaceless).\n", encoding="utf-8"
    )
    seen = set(characters(content))
    # Every code point is a word too, once in the LM's text: HLG then spells a character the text has
    # only in other company (ปั่ from ป, ั and ่), which Lang.regroup makes one character again.
    alone = sorted({c for c in content if not c.isspace()} - seen)
    spelled = lexicon_from_sentencepiece(seen | set(alone), sp)
    lexicon = [(w, [p for p in ps if p != WORD_START]) for w, ps in spelled]
    lm_text = lang_dir / "lm_characters.txt"  # the LM's text: a line's characters, a space between them
    lines = [" ".join(characters(line)) for line in content.splitlines() if line.strip()]
    lm_text.write_text("".join(line + "\n" for line in [*lines, " ".join(alone)] if line), encoding="utf-8")
    return prepare_lang(
        lexicon,
        lang_dir,
        lm_text=lm_text,
        lm_order=lm_order,
        lm_prune_threshold=lm_prune_threshold,
        sil_token=WORD_START,
        extra_units=[p for p in pieces(sp) if p != WORD_START],
    )


def spelled_lines(texts: Sequence[str], known: set[str], names: Sequence[Path]) -> str:
    """The lines of ``texts`` (one file's content each) whose characters are all ``known`` (the
    units' training text's, which sentencepiece at full character coverage spells); the others are
    left out with a warning naming the file, how many and the characters missing."""
    kept: list[str] = []
    for text, name in zip(texts, names, strict=True):
        lines = [line for line in text.splitlines() if line.strip()]
        missing: Counter[str] = Counter()  # character -> sentences it is in
        n_out = 0
        for line in lines:
            unknown = {c for c in line if not c.isspace() and c not in known}
            if unknown:
                n_out += 1
                missing.update(unknown)
            else:
                kept.append(line)
        if n_out:
            top = " ".join(f"{c!r}" for c, _ in missing.most_common(10))
            share = "all" if n_out == len(lines) else f"{n_out} of"
            logging.warning(
                f"{name}: {share} {len(lines)} sentences have characters that no transcript has, e.g. {top}, so "
                "the units (trained on the transcripts) cannot spell them, nor the model say them: they are left "
                "out of the LM. Fix: normalize the text as the transcripts are (speechtl recipe-info lm-text does "
                "it with the import's settings); a letter the recordings never say needs transcripts that have it"
            )
    return "".join(line + "\n" for line in kept)
