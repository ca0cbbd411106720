"""Sentencepiece units (BPE or characters) and the lexicons built from them.

The model is stored as ``bpe.model`` in the lang dir (icefall's name, for char
models too). Every piece becomes a token, so the acoustic model can spell any
word; the lexicon maps each word of the training text to its pieces, which is
what L and HLG need.
"""

import io
import logging
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from speechtl.atomic import atomic_open
from speechtl.errors import SpeechtlError
from speechtl.lang.lexicon import Lexicon

CONTROL = ("<unk>", "<s>", "</s>")
WORD_START = "\u2581"  # sentencepiece's word-start piece


def train_sentencepiece(text: Path, model_path: Path, units: str = "bpe", vocab_size: int = 500) -> Path:
    """Train a sentencepiece model of ``units`` ("bpe" or "char") on one sentence a line."""
    if units not in ("bpe", "char"):
        raise SpeechtlError(f"units must be 'bpe' or 'char', got {units!r}")
    model_path = Path(model_path)
    # Trained into memory, not to a temporary prefix: the model then records no path, so the same text
    # makes the same bytes, and a lang dir rebuilt for another LM keeps its units' checksum
    # (utils/common.sh units_key: training is not redone).
    model = io.BytesIO()
    args = dict(
        input=str(text),
        model_writer=model,
        model_type=units,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        input_sentence_size=10_000_000,
        minloglevel=2,
        # The text is NFC already (speechtl.data.normalize). sentencepiece's default NFKC split
        # letters such as Thai's ำ (SARA AM) into two, so decoded text never matched the references.
        normalization_rule_name="identity",
    )
    if units == "bpe":
        args["vocab_size"] = vocab_size
    try:
        spm.SentencePieceTrainer.train(**args)
    except RuntimeError as e:
        raise SpeechtlError(
            f"sentencepiece could not train on {text}: {e}. Fix: lower --vocab-size or give more text."
        ) from e
    with atomic_open(model_path, "wb", encoding=None) as f:
        f.write(model.getvalue())
    n = len(pieces(load(model_path)))  # without <unk>, <s>, </s>: the lang dir's tokens add <blk>
    logging.info(f"{units} units: {model_path} ({n} pieces, and sentencepiece's <unk> <s> </s>)")
    return model_path


def load(model_path: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(model_path))


def pieces(sp: spm.SentencePieceProcessor) -> list[str]:
    """Every non-control piece of the model."""
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.id_to_piece(i) not in CONTROL]


def lexicon_from_sentencepiece(words: Iterable[str], sp: spm.SentencePieceProcessor) -> Lexicon:
    return [(w, sp.encode(w, out_type=str)) for w in sorted(set(words))]
