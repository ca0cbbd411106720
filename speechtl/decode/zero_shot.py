"""Zero-shot rows from a pretrained model's own decoder: Whisper through ``transformers``' generate,
or a fine-tuned wav2vec2-family model's CTC head (:mod:`speechtl.decode.ctc_head`).

The row a pretrained source earns before any target label: Whisper transcribes
the test cuts with its own decoder and vocabulary (no CTC head, no lexicon).
Its input is the log-mel of our batched kernel over the audio padded to 30 s,
which is exactly what Whisper was trained on and ``WhisperFeatureExtractor``
gives (``tests/test_whisper.py``). Hypotheses and references both go through
one text normalizer: the built-in corpora's (:func:`speechtl.data.text.normalize_text`:
case-folded, punctuation gone), or, with ``text_norm="import"``, the importers'
(:func:`speechtl.data.normalize.normalize`, which users' corpora were normalized with:
in-word hyphens and apostrophes and combining marks kept, so the row counts the same
words as the adapted systems' rows). With ``spell_digits`` single digits become
English words ("7" -> "seven"), since Whisper writes digits where references
such as FSDD's spell them. Output files and the results.tsv row are those of
``speechtl decode`` (decoding ``whisper``; ``greedy`` for a CTC head).
"""

import json
import logging
import unicodedata
from pathlib import Path

import torch
from lhotse import CutSet

from speechtl.data.text import normalize_text
from speechtl.errors import NoOwnDecoder, SpeechtlError, Unavailable
from speechtl.features.compute import pick_device
from speechtl.lang.spaceless import is_spaceless, words_of
from speechtl.models.hub import quiet_transformers
from speechtl.models.pretrained import parse_source
from speechtl.score.results import ResultRow, drop_results, update_results

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: Whisper's window: 30 s of 16-kHz audio.
WINDOW = 30 * 16000


#: Text normalizers by name: the built-in corpora's, and the importers' (users' corpora).
TEXT_NORMS = ("tts", "import")


def _normalizer(text_norm: str, config: Path | None = None):
    """The normalizer by name; ``config``: the ``<prefix>_text_norm.json`` an importer wrote (its
    --keep-chars, --drop-chars, --map-chars, or no normalization at all)."""
    if text_norm == "tts":
        return normalize_text
    if text_norm == "import":
        from speechtl.data.normalize import normalizer_of

        return normalizer_of(config)
    raise SpeechtlError(f"text normalizer {text_norm!r}: it is one of {', '.join(TEXT_NORMS)}")


def normalize_hypothesis(
    text: str, spell_digits: bool = False, norm=normalize_text, spaceless: bool = False
) -> list[str]:
    """Words of a decoded text as the references are scored (``norm``: :func:`_normalizer`'s;
    ``spaceless``: characters, :mod:`speechtl.lang.spaceless`), digits spelled if asked."""
    words = words_of(norm(text), spaceless)
    return [DIGITS[int(w)] if spell_digits and len(w) == 1 and w.isdigit() else w for w in words]


#: The decoding column of each source kind's zero-shot row: Whisper's generate is a decoder of its own;
#: a wav2vec2-family CTC head is searched greedily, as the adapted systems' greedy rows are.
OWN_DECODING = {"whisper": "whisper", "hf": "greedy"}


def _kind_and_location(source: str) -> tuple[str, str]:
    """(``whisper`` or ``hf``, the model's folder or hub id); a plain folder or hub id is Whisper's."""
    spec = parse_source(source)
    return ("whisper", source) if spec is None else (spec.kind, spec.location)


def _model_dir(source: str) -> str:
    kind, location = _kind_and_location(source)
    if kind != "whisper":
        raise SpeechtlError(f"{source}: this needs a Whisper model (whisper:...)")
    return location


ENGLISH = ("en", "english", "<|en|>")


def english_only(source: str) -> bool:
    """Whether a Whisper checkpoint is English-only: ``is_multilingual: false`` in a local folder's
    generation_config.json, or a name ending in ``.en`` (``openai/whisper-tiny.en``)."""
    if _model_dir(source).rstrip("/").endswith(".en"):
        return True
    cfg = Path(_model_dir(source)) / "generation_config.json"
    try:
        return cfg.is_file() and json.loads(cfg.read_text(encoding="utf-8")).get("is_multilingual") is False
    except (OSError, ValueError):
        return False


def latin_share(texts) -> float:
    """The share of the letters of ``texts`` that are Latin (1.0 when there are none)."""
    letters = [c for t in texts for c in t if unicodedata.category(c)[0] == "L"]
    return sum(unicodedata.name(c, "").startswith("LATIN") for c in letters) / len(letters) if letters else 1.0


def generate_language(model, language: str | None, where: str) -> dict[str, str]:
    """``generate``'s language options. An English-only model (``*.en``) takes none: transformers
    stops with a traceback when given one, and such a model writes English whatever the speech."""
    if not language:
        return {}
    if getattr(model.generation_config, "is_multilingual", True) is False:
        if language.lower() in ENGLISH:
            return {}
        raise Unavailable(
            f"{where} is an English-only Whisper (its generation_config says is_multilingual: false); it "
            f"cannot transcribe --language {language}. Fix: a multilingual checkpoint (whisper-tiny, not "
            "whisper-tiny.en) for the zero-shot row, or no --language (--whisper-language in a recipe) for English"
        )
    if not hasattr(model.generation_config, "lang_to_id"):
        raise Unavailable(
            f"{where}'s generation_config.json is older than generate's language option (it has no lang_to_id), "
            f"so it cannot be told to transcribe {language}. Fix: copy generation_config.json of the original "
            "multilingual checkpoint of its size (openai/whisper-<size>) into the folder, or give no language"
        )
    return {"language": language, "task": "transcribe"}


@torch.no_grad()
def whisper_transcripts(
    source: str,
    cuts: CutSet,
    device: str | None = None,
    batch_size: int = 16,
    language: str | None = None,
    max_new_tokens: int = 96,
) -> dict[str, str]:
    """``{cut id: Whisper's text}`` for every cut (audio over 30 s is cut to its first 30 s)."""
    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    from speechtl.features.whisper_mel import BatchedWhisperMel, WhisperMelConfig

    where = _model_dir(source)
    dev = pick_device(device)
    if Path(where).is_file():
        raise Unavailable(
            f"{where} is a single checkpoint file (OpenAI's .pt): it has the weights but no tokenizer, so Whisper's "
            "own decoder cannot write text from it (training, decoding and export use the file as is). Fix: for "
            "the zero-shot row, the Hugging Face folder of the same model (e.g. openai/whisper-small)"
        )
    try:
        model = WhisperForConditionalGeneration.from_pretrained(where, dtype=torch.float32).to(dev).eval()
        tokenizer = AutoTokenizer.from_pretrained(where)
    except Exception as e:  # a network error or a typo is no reason to leave the row out for good
        raise SpeechtlError(f"cannot load Whisper model and tokenizer from {where}: {e}") from e
    if len(tokenizer) < 0.5 * model.config.vocab_size:
        # transformers gives a folder without tokenizer files a near-empty tokenizer, and every text came out empty
        raise Unavailable(
            f"{where} has no complete tokenizer ({len(tokenizer)} tokens for the model's {model.config.vocab_size}): "
            "its folder lacks the tokenizer files, so Whisper's own decoder cannot write text. Fix: copy vocab.json, "
            "merges.txt, tokenizer_config.json and added_tokens.json (or tokenizer.json) of the same Whisper size "
            "into it"
        )
    mel = BatchedWhisperMel(WhisperMelConfig(num_mels=model.config.num_mel_bins)).to(dev)
    kwargs = generate_language(model, language, where)
    cut_list = list(cuts)
    out = {}
    for start in range(0, len(cut_list), batch_size):
        part = cut_list[start : start + batch_size]
        waves = []
        for c in part:
            w = torch.from_numpy(c.resample(16000).load_audio()).float().mean(0)
            if w.numel() > WINDOW:
                logging.warning(f"{c.id}: {w.numel() / 16000:.1f} s, Whisper hears its first 30 s only")
            waves.append(torch.nn.functional.pad(w[:WINDOW], (0, WINDOW - min(WINDOW, w.numel()))))
        feats = torch.stack(mel(waves)).transpose(1, 2)  # (batch, mels, 3000)
        with quiet_transformers():  # "max_new_tokens and max_length (448, the checkpoint's) set", every batch
            ids = model.generate(feats, max_new_tokens=max_new_tokens, **kwargs)
        for c, text in zip(part, tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True):
            out[c.id] = text
    return out


def zero_shot(
    source: str,
    cuts_path: Path,
    test_set: str,
    out_dir: Path,
    method: str = "zero-shot-whisper",
    data: str = "0",
    results_tsv: Path | None = None,
    device: str | None = None,
    spell_digits: bool = False,
    language: str | None = None,
    batch_size: int = 16,
    text_norm: str = "tts",
    text_norm_config: Path | None = None,
    skip_unavailable: bool = False,
) -> ResultRow | None:
    """Decode ``cuts_path`` with the source's own decoder (Whisper's generate, or a fine-tuned wav2vec2-family
    model's CTC head: :mod:`speechtl.decode.ctc_head`); recogs/errs/wer-summary files and a results.tsv row
    (None, with a warning, for an English-only Whisper and references in another script, and with
    ``skip_unavailable`` for a source that cannot give the row: :class:`Unavailable`, or has no decoder of
    its own, :class:`NoOwnDecoder`, said at info level)."""
    from speechtl.decode.run import score_decoding

    if not Path(cuts_path).is_file():
        raise SpeechtlError(f"test cuts {cuts_path} do not exist. Fix: run the data stages first.")
    cuts = CutSet.from_file(cuts_path)
    norm = _normalizer(text_norm, text_norm_config)  # a wrong name fails before the model loads
    refs = {c.id: norm(" ".join(s.text or "" for s in c.supervisions)) for c in cuts}
    kind, location = _kind_and_location(source)
    decoding = OWN_DECODING[kind]
    if kind == "whisper" and english_only(source) and latin_share(refs.values()) < 0.5:
        logging.warning(
            f"zero-shot skipped: {source} is an English-only Whisper (is_multilingual: false) and the references "
            f"of {cuts_path} are not in Latin letters: it writes English whatever the speech (a Thai test set got "
            "a 1074% WER row, after 12 minutes). Fix: a multilingual checkpoint (whisper-tiny, not whisper-tiny.en)"
        )
        return None
    try:
        if kind == "hf":
            from speechtl.decode.ctc_head import ctc_head_transcripts

            if language:
                logging.warning(f"--language {language} is Whisper's; {source}'s CTC head has no language to choose")

            texts = ctc_head_transcripts(location, cuts, device)
        else:
            texts = whisper_transcripts(source, cuts, device, batch_size, language)
    except Unavailable as e:
        if not skip_unavailable:
            raise
        if isinstance(e, NoOwnDecoder):
            logging.info(f"no zero-shot row: {e}")
        else:
            logging.warning(f"zero-shot row left out, the other results stand: {e}")
        if results_tsv is not None:  # a row of an earlier source of the same name would pass for this one's
            drop_results(results_tsv, [(test_set, method, data, decoding, "")])
        return None
    spaceless = is_spaceless(refs.values())  # scored in characters, as the recipe's own rows are
    results = [
        (k, words_of(ref, spaceless), normalize_hypothesis(texts[k], spell_digits, norm=norm, spaceless=spaceless))
        for k, ref in refs.items()
    ]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    row = score_decoding(
        sorted(results), out_dir, test_set, decoding, method, data, results_tsv, None, spaceless=spaceless
    )
    if results_tsv is not None:
        update_results(results_tsv, [row])
        logging.info(f"results: {results_tsv}")
    return row
