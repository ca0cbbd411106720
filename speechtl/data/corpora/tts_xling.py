"""tts_xling: a cross-lingual transfer corpus synthesized from text.

Source: sentences of several languages (en, nl, ro, ru by default), each
spoken by several espeak-ng voice variants. Target: a low-resource language
(Irish) spoken by *other* voice variants at *other* speaking rates; its dev and
test sets use held-out sentences and held-out voices, so a target-test score
measures generalization to new speakers and new text, not memorization.

Splits (``tts_xling_{recordings,supervisions}_<split>.jsonl.gz``):
``source_train``, ``source_dev``, ``target_train`` (the pool that labelled
subsets such as 5 or 30 minutes are cut from), ``target_dev``, ``target_test``,
and ``target_unlabelled``: pool sentences spoken by the held-out voices, whose
transcripts the recipe never uses (the unlabelled target-speaker audio of
domain adaptation, self-training and distillation; test sentences never occur).
``<split>_text.txt`` holds each split's normalized sentences (LM and unit text).
"""

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechtl.config import from_dict, load_yaml
from speechtl.data.corpora.lad import download_lad_text, shipped_lad_text
from speechtl.data.text import normalize_text
from speechtl.data.tts import Voice, plan, read_texts, synthesize_splits
from speechtl.errors import SpeechtlError

Pathlike = str | Path
SPLITS = ("source_train", "source_dev", "target_train", "target_dev", "target_test", "target_unlabelled")
_DIGIT = re.compile(r"\d")


@dataclass
class TtsXlingConfig:
    source_langs: list[str] = field(default_factory=lambda: ["en", "nl", "ro", "ru"])
    target_lang: str = "ga"
    #: Sentences per source language for training, and for the source dev set.
    source_train_sentences: int = 400
    source_dev_sentences: int = 20
    #: Held-out target sentences; the rest (up to target_train_sentences, 0 = all) is the train pool.
    target_dev_sentences: int = 60
    target_test_sentences: int = 150
    target_train_sentences: int = 0
    #: Pool sentences spoken again by the held-out voices, as unlabelled audio (0 = none).
    target_unlabelled_sentences: int = 0
    seed: int = 0
    sampling_rate: int = 16000
    #: {source: [...], target_train: [...], target_heldout: [...]}, each a list of
    #: {engine, name, rate, pitch}; ``{lang}`` in a name becomes the language code.
    voices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def load_config(path: Pathlike) -> TtsXlingConfig:
    return from_dict(TtsXlingConfig, load_yaml(Path(path)), str(path))


def _voices(cfg: TtsXlingConfig, role: str, lang: str) -> list[Voice]:
    entries = cfg.voices.get(role)
    if not entries:
        raise SpeechtlError(
            f"tts_xling config: no voices for {role!r}; expected voices: {{source, target_train, target_heldout}}"
        )
    out = []
    for i, e in enumerate(entries):
        v = from_dict(Voice, {**e, "name": str(e.get("name", "")).format(lang=lang)}, f"voices.{role}[{i}]")
        out.append(Voice(v.engine, v.name, tuple(v.rate), tuple(v.pitch)))
    return out


def _variant(v: Voice) -> tuple[str, str]:
    return v.engine, v.name.split("+", 1)[1] if "+" in v.name else ""


def check_voice_separation(source: Sequence[Voice], train: Sequence[Voice], heldout: Sequence[Voice]) -> None:
    """Warn when the target reuses a source voice variant or the held-out voices overlap the target's training voices."""
    src = {_variant(v) for v in source}
    for v in list(train) + list(heldout):
        if _variant(v) in src:
            logging.warning(
                f"target voice {v.name} uses a variant the source also uses: transfer is then easier than claimed"
            )
    if {v.name for v in train} & {v.name for v in heldout}:
        logging.warning(
            "target held-out voices overlap the target training voices: the test no longer measures new speakers"
        )


def select_sentences(path: Path) -> list[tuple[str, str, str]]:
    """``(id, raw sentence, normalized text)``; sentences with digits or no words are left out.

    Digits are spoken as words by the engines but stay digits in the transcript,
    so they would teach the model wrong labels.
    """
    out, dropped = [], 0
    for uid, text in read_texts(path):
        norm = normalize_text(text)
        if not norm or _DIGIT.search(norm):
            dropped += 1
            continue
        out.append((uid, text, norm))
    if dropped:
        logging.info(f"{path}: left out {dropped} sentence(s) with digits or no words")
    if not out:
        raise SpeechtlError(f"{path} has no usable sentences")
    return out


def _shuffled(items: list, seed: int, lang: str) -> list:
    items = list(items)
    random.Random(f"{seed}:{lang}").shuffle(items)
    return items


def plan_corpus(text_dir: Path, cfg: TtsXlingConfig) -> dict[str, list[dict]]:
    """The synthesis jobs of every split (nothing is synthesized yet)."""
    jobs: dict[str, list[dict]] = {s: [] for s in SPLITS}
    src_voices = []
    for lang in cfg.source_langs:
        voices = _voices(cfg, "source", lang)
        src_voices += voices
        sents = _shuffled(select_sentences(text_dir / f"{lang}.tsv"), cfg.seed, lang)
        n_train, n_dev = cfg.source_train_sentences, cfg.source_dev_sentences
        if len(sents) < n_train + n_dev:
            logging.warning(f"{lang}: {len(sents)} sentences, fewer than {n_train} + {n_dev} asked for; using all")
        for split, part in (("source_dev", sents[:n_dev]), ("source_train", sents[n_dev : n_dev + n_train])):
            jobs[split] += plan([(f"{lang}_{u}", raw) for u, raw, _ in part], voices, cfg.seed, lang)
    lang = cfg.target_lang
    train_v, heldout_v = _voices(cfg, "target_train", lang), _voices(cfg, "target_heldout", lang)
    check_voice_separation(src_voices, train_v, heldout_v)
    sents = _shuffled(select_sentences(text_dir / f"{lang}.tsv"), cfg.seed, lang)
    n_test, n_dev = cfg.target_test_sentences, cfg.target_dev_sentences
    if len(sents) <= n_test + n_dev:
        raise SpeechtlError(
            f"{text_dir / (lang + '.tsv')}: {len(sents)} usable sentences, not more than the "
            f"{n_test} test + {n_dev} dev held out. Fix: give more text or lower target_*_sentences."
        )
    pool = sents[n_test + n_dev :]
    if cfg.target_train_sentences:
        pool = pool[: cfg.target_train_sentences]
    for split, part, voices in (
        ("target_test", sents[:n_test], heldout_v),
        ("target_dev", sents[n_test : n_test + n_dev], heldout_v),
        ("target_train", pool, train_v),
    ):
        jobs[split] += plan([(f"{lang}_{u}", raw) for u, raw, _ in part], voices, cfg.seed, lang)
    unl = _shuffled(pool, cfg.seed + 1, lang)[: cfg.target_unlabelled_sentences]
    jobs["target_unlabelled"] += plan([(f"{lang}_unl_{u}", raw) for u, raw, _ in unl], heldout_v, cfg.seed, lang)
    return jobs


def download_tts_xling(
    target_dir: Pathlike, langs: Sequence[str] = ("en", "nl", "ro", "ru", "ga"), from_web: bool = False
) -> Path:
    """The recipe's sentences from the Living Audio Dataset into ``target_dir/text``.

    By default the copy shipped with speechtl (no network: ``make demo`` runs
    offline), files already there kept; ``from_web`` downloads the recording scripts afresh, over
    what is there (each file replaced whole once downloaded: a failed download keeps the old one).
    """
    if from_web:
        return download_lad_text(langs, Path(target_dir) / "text", force=True)
    return shipped_lad_text(langs, Path(target_dir) / "text")


def prepare_tts_xling(
    text_dir: Pathlike,
    output_dir: Pathlike,
    config: Pathlike,
    nj: int = 1,
    cmd: str = "local",
) -> dict[str, dict]:
    """Synthesize every split of the corpus from ``text_dir/{lang}.tsv``; writes and returns manifests."""
    text_dir, output_dir = Path(text_dir), Path(output_dir)
    cfg = load_config(config)
    missing = [
        f"{lang}.tsv" for lang in [*cfg.source_langs, cfg.target_lang] if not (text_dir / f"{lang}.tsv").is_file()
    ]
    if missing:
        raise SpeechtlError(
            f"{text_dir} lacks {', '.join(missing)}. Fix: pass --text-dir with id<TAB>sentence files, "
            "or leave it out to use the Living Audio Dataset's sentences shipped with speechtl."
        )
    jobs = plan_corpus(text_dir, cfg)
    logging.info(
        f"synthesizing {sum(len(jobs[s]) for s in SPLITS)} utterances with {nj} job(s): "
        + ", ".join(f"{s} {len(jobs[s])}" for s in SPLITS)
    )
    return synthesize_splits(
        {s: jobs[s] for s in SPLITS}, output_dir, "tts_xling", cfg.sampling_rate, nj, cmd, normalize=normalize_text
    )
