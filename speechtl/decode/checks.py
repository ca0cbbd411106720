"""Checks before decoding: the model, the lang dir, the features and the references go together.

A checkpoint trained on other units decodes "fine" through another lang dir:
every output id is read as the wrong symbol and the WER is garbage, with no
error. A checkpoint expecting other features fails deep inside a convolution.
Both are caught here, before the network runs or any file is written, with
the files named and the fix.
"""

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from lhotse import CutSet

from speechtl.errors import SpeechtlError
from speechtl.features.inputs import model_input
from speechtl.lang import Lang


def _units(token2id: Mapping[str, int]) -> dict[str, int]:
    """Model output units: tokens without the disambiguation symbols (#0, #1, ...)."""
    return {t: i for t, i in token2id.items() if not t.startswith("#")}


def check_model_fits(ckpt: dict, ckpt_path: Path, lang: Lang) -> None:
    """Raise unless ``ckpt`` (loaded from ``ckpt_path``) outputs ``lang``'s units."""
    if ckpt.get("task") not in (None, "asr"):
        raise SpeechtlError(
            f"{ckpt_path} is an utterance classifier ({ckpt['task']}), not a CTC model. "
            "Fix: score it with 'speechtl classify', or decode an ASR checkpoint."
        )
    fix = f"Fix: decode with the lang dir {ckpt_path} was trained with (or retrain on {lang.dir})."
    trained = ckpt.get("tokens")
    if trained is not None and _units(trained) != _units(lang.token2id):
        mine, theirs = _units(trained), _units(lang.token2id)
        only_ckpt, only_lang = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
        detail = (
            f"units only in the checkpoint: {only_ckpt[:10]}, only in the lang dir: {only_lang[:10]}"
            if only_ckpt or only_lang
            else "the same units with other ids"
        )
        raise SpeechtlError(
            f"{ckpt_path} was trained on {len(mine)} units, {lang.dir / 'tokens.txt'} has {len(theirs)} "
            f"({detail}). {fix}"
        )
    vocab = ckpt.get("vocab_size")
    if vocab is not None and vocab != lang.vocab_size:
        raise SpeechtlError(
            f"{ckpt_path} has {vocab} output units, {lang.dir / 'tokens.txt'} has {lang.vocab_size}. {fix}"
        )


def check_features(
    model: torch.nn.Module, cuts: CutSet, source: Path, what: str = "the test cuts", cuts_path: Path | None = None
) -> None:
    """Raise unless ``model`` (from ``source``, a checkpoint or config) reads features of ``cuts``' dimension.

    Only for models that read precomputed fbank; Whisper's log-mel and raw
    samples are computed from the audio to the model's own settings.
    """
    if model_input(model).kind != "fbank":
        return
    expected = model.config.num_features
    first = next(iter(cuts), None)
    feats = first.features if first is not None else None
    stored = Path(feats.storage_path) if feats is not None else None
    if stored is not None and not stored.is_absolute() and not stored.exists():
        # the dir the fbank stage ran in is most likely one above the cuts file (a recipe's data/fbank/)
        above = Path(cuts_path).resolve().parents if cuts_path is not None else []
        home = next((d for d in above if (d / stored).exists()), None)
        raise SpeechtlError(
            f"the features of {what} are stored at {stored}, a path relative to the dir their fbank stage ran in, "
            f"and {Path.cwd()} has no {stored}. Fix: run from that dir"
            + (f": cd {home}" if home else " (the recipe's, e.g. cd egs/NAME/ASR)")
        )
    found = feats.num_features if feats is not None else None
    if found is not None and found != expected:
        raise SpeechtlError(
            f"{source} makes a model that reads {expected}-dimensional features, {what} have {found}. "
            f"Fix: compute their fbank with --num-mel-bins {expected}, or use a model for {found}-bin features."
        )


def check_references(refs: Mapping[str, Sequence[str]], lang: Lang, cuts_path: Path) -> float:
    """Stop when no utterance has a reference word; warn about empty references and words outside words.txt.
    Returns the share of reference words outside words.txt, in % (results.tsv's ``oov``).

    An out-of-vocabulary reference word is scored as it is: HLG decoding can
    only output words.txt's words, so each one counts as an error there (a
    sentencepiece model's greedy search can still spell it).
    """
    if not any(refs.values()):
        raise SpeechtlError(
            f"no utterance of {cuts_path} has a reference transcript (all {len(refs)} are empty or blank), "
            "so there is nothing to score. Fix: give the supervisions their text, or use 'speechtl transcribe' "
            "to decode without references."
        )
    empty = sorted(k for k, words in refs.items() if not words)
    if empty:
        logging.warning(
            f"{len(empty)} of {len(refs)} utterance(s) of {cuts_path} have an empty reference (e.g. {empty[:3]}): "
            "every word decoded for them counts as an insertion"
        )
    oov = Counter(w for words in refs.values() for w in words if w not in lang.word2id)
    total = sum(len(words) for words in refs.values())
    if oov:
        logging.warning(
            f"{sum(oov.values())} of {total} reference words of {cuts_path} ({len(oov)} distinct, e.g. "
            f"{[w for w, _ in oov.most_common(5)]}) are not in {lang.dir / 'words.txt'}: HLG decoding cannot "
            "output them, so they count as errors"
        )
    return 100.0 * sum(oov.values()) / max(total, 1)


def check_graph(lang: Lang, decodings: Sequence[str]) -> None:
    """HLG decodings need HLG.fst: missing, it stops the run before greedy results are written."""
    hlg = lang.dir / "HLG.fst"
    if any(d.startswith("hlg") for d in decodings) and not hlg.is_file():
        raise SpeechtlError(
            f"{hlg} is missing (needed by --decoding {','.join(d for d in decodings if d.startswith('hlg'))}). "
            "Fix: run the lang stage (steps/prepare_lang.sh), or decode with greedy/beam only."
        )
