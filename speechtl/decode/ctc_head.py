"""Zero-shot transcripts from a fine-tuned wav2vec2-family model's own CTC head.

A checkpoint such as ``facebook/wav2vec2-base-960h`` or an XLS-R model fine-tuned on
Common Voice (architecture ``Wav2Vec2ForCTC``, ``HubertForCTC``, ``WavLMForCTC`` ...)
can transcribe before any target label: its CTC head over its own vocabulary
(``vocab.json``, usually letters with ``|`` between words). That is the row a
user starting from such a model compares every adaptation with, as
``whisper-zero-shot`` is for Whisper. Its input is what the model's feature
extractor gives: audio at its sampling rate, each utterance scaled to zero mean
and unit variance when ``do_normalize`` says so (with transformers' 1e-7 under the
root). Each utterance is decoded alone, so a "group"-norm model (wav2vec2-base)
never sees a batch's padding. The search is greedy: the best token per frame,
repeats merged, the blank (the model's pad token) and other special tokens
(``<unk>``, ``<s>``, ``</s>``) removed, word delimiters made spaces. A phoneme model
(no word delimiter) has no row: its phones cannot be scored against words.
"""

import logging

import torch
from lhotse import CutSet

from speechtl.errors import NoOwnDecoder, Unavailable
from speechtl.features.compute import pick_device
from speechtl.models.hf_ssl import hub_offline, load_error, model_folder, waveform_options
from speechtl.models.hub import quiet_transformers


def ctc_architecture(config) -> str | None:
    """The ``...ForCTC`` architecture a Hugging Face config names, if any."""
    return next((a for a in config.architectures or [] if a.endswith("ForCTC")), None)


def collapse(ids: list[int], blank: int) -> list[int]:
    """CTC's greedy path to labels: repeats merged, then blanks removed (a blank between two equal
    labels keeps both)."""
    out, prev = [], None
    for i in ids:
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def tokens_to_text(tokenizer, ids: list[int]) -> str:
    """The text of collapsed label ids: special tokens (``<unk>``, ``<s>``, ``</s>``) dropped, the word
    delimiter made a space (a character CTC tokenizer: :func:`check_tokenizer`)."""
    delimiter = tokenizer.word_delimiter_token
    special = set(tokenizer.all_special_ids) - {tokenizer.convert_tokens_to_ids(delimiter)}
    tokens = tokenizer.convert_ids_to_tokens([i for i in ids if i not in special])  # the delimiter is "special" too
    return " ".join("".join(tokens).replace(delimiter, " ").split())


def check_tokenizer(tokenizer, source: str, arch: str) -> None:
    """Only a character tokenizer with a word delimiter writes words the references can be scored
    against: a phoneme model's (Wav2Vec2PhonemeCTCTokenizer) writes phones."""
    if not getattr(tokenizer, "word_delimiter_token", None):
        raise Unavailable(
            f"{source} is a {arch} whose tokenizer ({type(tokenizer).__name__}) has no word delimiter: its CTC head "
            "writes phones or pieces, not the words of your transcripts, so it has no zero-shot row (its encoder "
            "is adapted with a new output layer as usual)"
        )


def vocabulary_share(tokenizer, texts) -> float:
    """The share of the characters (spaces aside) of ``texts`` that the tokenizer's vocabulary holds,
    in either case (1.0 for no characters)."""
    vocab = {t.lower() for t in tokenizer.get_vocab()}
    chars = [c for t in texts for c in t if not c.isspace()]
    return sum(c.lower() in vocab for c in chars) / len(chars) if chars else 1.0


@torch.no_grad()
def ctc_head_transcripts(source: str, cuts: CutSet, device: str | None = None) -> dict[str, str]:
    """``{cut id: the text of the model's own CTC head}`` for every cut; ``source``: the location
    after ``hf:`` (a folder or a hub id). Raises :class:`NoOwnDecoder` for a model without a CTC head,
    and :class:`~speechtl.errors.Unavailable` for one whose folder has no tokenizer (vocab.json)."""
    from transformers import AutoConfig, AutoModelForCTC, AutoTokenizer

    where = model_folder(source)
    try:
        config = AutoConfig.from_pretrained(where, local_files_only=hub_offline())
    except Exception as e:
        raise load_error(source, where, e) from e
    arch = ctc_architecture(config)
    if arch is None:
        kinds = ", ".join(config.architectures or [config.model_type])
        raise NoOwnDecoder(
            f"{source} ({kinds}) has no CTC head of its own, so it has no zero-shot row: its encoder is adapted with "
            "a new output layer for your units. A model fine-tuned for ASR (its config.json lists a ...ForCTC "
            "architecture, e.g. facebook/wav2vec2-base-960h) has one"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=hub_offline())
    except Exception as e:
        raise Unavailable(
            f"{source} is a {arch} but its tokenizer does not load ({type(e).__name__}: {e}), so its CTC head's "
            "labels have no letters. Fix: copy the model's vocab.json, tokenizer_config.json and "
            "special_tokens_map.json into the folder (or save its processor with save_pretrained())"
        ) from e
    check_tokenizer(tokenizer, source, arch)
    if len(tokenizer) < config.vocab_size - 2:  # a few added special tokens are fine either way
        raise Unavailable(
            f"{source}: its tokenizer has {len(tokenizer)} tokens and its CTC head {config.vocab_size} outputs, "
            "so the labels cannot be read. Fix: the vocab.json the model was fine-tuned with"
        )
    share = vocabulary_share(tokenizer, (s.text or "" for c in cuts for s in c.supervisions))
    if share < 0.5:
        logging.warning(
            f"{source}'s vocabulary holds {share:.0%} of the test transcripts' characters: its zero-shot row shows "
            "what it writes in its own letters (a model fine-tuned on another script or language)"
        )
    try:
        with quiet_transformers():
            model = AutoModelForCTC.from_pretrained(where, local_files_only=hub_offline(), dtype=torch.float32)
    except Exception as e:
        raise load_error(source, where, e) from e
    if not hasattr(getattr(model, model.base_model_prefix, model), "feature_extractor"):
        raise Unavailable(
            f"{source} is a {arch} that reads features, not the waveform (not a wav2vec2-family model): speechtl "
            "gives zero-shot rows from wav2vec2, HuBERT, WavLM, data2vec-audio and XLS-R CTC heads"
        )
    normalize, rate = waveform_options(source, where)
    dev = pick_device(device)
    model = model.to(dev).eval()
    blank = config.pad_token_id if config.pad_token_id is not None else tokenizer.pad_token_id
    out = {}
    for c in cuts:
        wave = torch.from_numpy(c.resample(rate).load_audio()).float().mean(0)
        if normalize:
            wave = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
        logits = model(wave[None].to(dev)).logits[0]
        out[c.id] = tokens_to_text(tokenizer, collapse(logits.argmax(-1).tolist(), blank))
    logging.info(f"{source}: {arch}'s own CTC head transcribed {len(out)} cuts (greedy)")
    return out
