"""``speechtl new-recipe``: write ``egs/<name>/ASR/`` for a user's corpus, every choice in ``conf/``.

The files outside ``conf/`` (``run.sh``, ``cmd.sh``, ``path.sh``, ``README.md``)
are copied unchanged from ``templates/``, so two generated recipes differ in
configuration only and a fix to the template reaches every new recipe. What a
stage must know about the corpus or the source (its features, the units that
suit the text's size, which amounts the pool holds) it asks at run time
(:mod:`speechtl.recipe.info`), not at generation time, so editing
``conf/recipe.conf`` is all it takes to point a recipe at another corpus or source.
"""

import logging
import os
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from speechtl.errors import SpeechtlError
from speechtl.recipe.info import pretrained_kind, source_features, sources_message

#: scratch (the target-only baseline) and the fine-tuning family, as tts_xling's default.
DEFAULT_METHODS = ("scratch", "finetune", "freeze", "linear-probe", "layerwise-lr")
#: Nested smaller amounts of the labelled pool (minutes); those the pool does not exceed are dropped.
DEFAULT_MINUTES = (5.0, 15.0, 30.0, 60.0)
#: Files copied as they are: the same in every generated recipe.
TEMPLATE_FILES = ("run.sh", "cmd.sh", "path.sh", "README.md")
EXECUTABLE = ("run.sh",)
#: The checkout's shared dirs, linked from every recipe as the hand-written recipes do.
LINKS = ("steps", "utils", "local")
#: Corpora that speechtl synthesizes rather than reads: they have recipes of their own.
SYNTHESIZED = ("tts_digits", "tts_xling")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class RecipeConfig:
    """What ``speechtl new-recipe`` is told; each field becomes a line of ``conf/recipe.conf``."""

    name: str
    corpus: str  # an importer: speechtl prepare <corpus>
    corpus_dir: Path
    source: str = ""  # a checkpoint, or whisper:PATH / hf:PATH; empty: the recipe says which exist
    lm_text: Path | None = None
    methods: Sequence[str] = DEFAULT_METHODS
    minutes: Sequence[float] = DEFAULT_MINUTES
    skip_bad: bool = False
    prepare_opts: str = ""
    validate_opts: str = ""
    speed_perturb: str = "0.9 1.1"
    units: str = "auto"
    decoding: str = "greedy,hlg"
    egs_dir: Path = field(default_factory=lambda: Path("egs"))


def checkout_root() -> Path:
    """The speechtl checkout (``steps/``, ``utils/``, ``local/``) the recipe links to."""
    root = Path(__file__).resolve().parents[2]
    if all((root / d).is_dir() for d in LINKS):
        return root
    raise SpeechtlError(
        f"speechtl at {root} is not a checkout (no steps/, utils/, local/ beside it). "
        "Fix: install speechtl from its git checkout with pip install -e ."
    )


def _check_methods(methods: Sequence[str]) -> None:
    from speechtl.adapt import METHODS
    from speechtl.adapt.base import needs_teacher

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SpeechtlError(f"unknown method(s) {unknown}; known: {', '.join(sorted(METHODS))}")
    needs_more = [m for m in methods if METHODS[m].aux_data or needs_teacher(METHODS[m])]
    if needs_more:
        raise SpeechtlError(
            f"method(s) {needs_more} need unlabelled audio or a teacher, which a generated recipe does not "
            f"prepare outside leave-one-speaker-out. Fix: choose among "
            f"{', '.join(m for m in sorted(METHODS) if m not in needs_more)}, or run them on unseen speakers' "
            "untranscribed audio: ./run.sh --loso true --loso-methods 'finetune dann pseudo-label'"
        )


def _check(cfg: RecipeConfig) -> None:
    from speechtl.data.corpora import CORPORA

    if not _NAME.match(cfg.name):
        raise SpeechtlError(f"recipe name {cfg.name!r}: use letters, digits, '_', '.', '-' (e.g. 'wolof')")
    readable = sorted(k for k in CORPORA if k not in SYNTHESIZED)
    if cfg.corpus not in readable:
        raise SpeechtlError(f"unknown corpus kind {cfg.corpus!r}; a recipe imports one of {', '.join(readable)}")
    if not Path(cfg.corpus_dir).is_dir():
        raise SpeechtlError(f"corpus dir {cfg.corpus_dir} does not exist. Fix: give --corpus-dir of your recordings")
    if cfg.lm_text is not None and not Path(cfg.lm_text).is_file():
        raise SpeechtlError(f"LM text {cfg.lm_text} does not exist. Fix: give --lm-text a text file")
    if cfg.source and not pretrained_kind(cfg.source):
        source_features(cfg.source)  # exists and records its features, or says why not
    elif cfg.source:
        _check_pretrained_location(cfg.source)
    if not cfg.minutes or any(m <= 0 for m in cfg.minutes):
        raise SpeechtlError(f"--minutes takes amounts > 0, got {list(cfg.minutes)}")
    _check_methods(cfg.methods)


def _check_pretrained_location(source: str) -> None:
    """``whisper:``/``hf:`` with a local path must exist now (a hub id is fetched when stage 3 runs):
    otherwise the recipe imports the corpus and computes features before its trainings fail."""
    from speechtl.models.hub import is_hub_id

    kind, _, location = source.partition(":")
    if not is_hub_id(location) and not Path(location).expanduser().exists():
        example = "openai/whisper-tiny" if kind == "whisper" else "facebook/wav2vec2-base"
        raise SpeechtlError(
            f"pretrained model {location} does not exist (--source {source}). Fix: the folder of a "
            f"{'Whisper' if kind == 'whisper' else 'wav2vec2-family'} model (config.json and weights), or a hub id "
            f"such as {example}"
        )


def _abs_source(source: str) -> str:
    """The source as run.sh (in another directory) must read it: local paths made absolute."""
    if not source:
        return source
    kind = pretrained_kind(source)
    if kind is None:
        return str(Path(source).absolute())
    location = source.partition(":")[2]
    if Path(location).expanduser().exists():  # a local folder, not a hub id
        return f"{kind}:{Path(location).expanduser().absolute()}"
    return source


def recipe_conf(cfg: RecipeConfig) -> str:
    """``conf/recipe.conf``: shell assignments, each with what it means (run.sh sources it)."""

    def q(value) -> str:
        return shlex.quote(str(value))

    lines = [
        ("recipe", cfg.name, "this recipe's name"),
        ("corpus", cfg.corpus, "the importer: speechtl prepare <corpus> (kaldi, commonvoice, folder, ...)"),
        ("corpus_dir", Path(cfg.corpus_dir).absolute(), "your recordings and transcripts"),
        (
            "skip_bad",
            str(cfg.skip_bad).lower(),
            "true: leave bad audio/text out (listed in data/manifests/bad_audio.txt)",
        ),
        ("prepare_opts", cfg.prepare_opts, "more options of speechtl prepare <corpus>"),
        ("validate_opts", cfg.validate_opts, "more options of speechtl validate"),
        (
            "source",
            _abs_source(cfg.source),
            "the model adapted: a checkpoint (exp/source/final.pt) or whisper:PATH, hf:PATH",
        ),
        (
            "lm_text",
            Path(cfg.lm_text).absolute() if cfg.lm_text else "",
            "more text for the word LM, one sentence a line (not for the units: another one rebuilds HLG, not the models)",
        ),
        (
            "minutes",
            " ".join(f"{m:g}" for m in cfg.minutes),
            "nested smaller amounts of the labelled pool; the whole pool is added",
        ),
        ("methods", " ".join(cfg.methods), "adaptation methods (conf/adapt.yaml); scratch = target data only"),
        ("units", cfg.units, "auto: characters, or BPE from bpe_min_words words of training text; or char, bpe"),
        ("vocab_size", 0, "BPE pieces (0: from the text's size)"),
        ("bpe_min_words", 50000, "auto units: BPE from this many words of training text"),
        ("lm_order", 3, "word n-gram order of G (HLG decoding)"),
        ("speed_perturb", cfg.speed_perturb, "extra speed-perturbed copies of the labelled train audio"),
        ("decoding", cfg.decoding, "decodings of dev and test; the plot takes the one best on dev"),
        ("seeds", "", "training seeds: a run per method x amount x seed (<method>_<amount>_s<seed>); empty: one"),
        ("tune", "", "methods whose options stage 3 first chooses on the dev split (conf/sweep.yaml)"),
    ]
    head = [
        "# shellcheck shell=bash",
        "# What this recipe runs on, read by run.sh (written by speechtl new-recipe; edit freely).",
        "# Any line can be given to run.sh as an option instead: ./run.sh --minutes '2 10'.",
    ]
    return "\n".join(head + [f"{k}={q(v)}  # {why}" for k, v, why in lines]) + "\n"


def _template(name: str) -> str:
    return (resources.files("speechtl.recipe") / "templates" / name).read_text(encoding="utf-8")


def _link(target: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent))


def new_recipe(cfg: RecipeConfig, force: bool = False) -> Path:
    """Write ``<egs_dir>/<name>/ASR/``; returns it. ``force`` rewrites the generated files, keeping data/ and exp/."""
    _check(cfg)
    root = checkout_root()
    out = Path(cfg.egs_dir) / cfg.name / "ASR"
    if (out / "run.sh").exists() and not force:
        raise SpeechtlError(f"{out} already holds a recipe. Fix: choose another name, or pass --force to rewrite it")
    (out / "conf").mkdir(parents=True, exist_ok=True)
    for name in TEMPLATE_FILES:
        (out / name).write_text(_template(name), encoding="utf-8")
        if name in EXECUTABLE:
            (out / name).chmod(0o755)
    (out / "conf" / "recipe.conf").write_text(recipe_conf(cfg), encoding="utf-8")
    for conf in ("adapt.yaml", "sweep.yaml", "adapt_pretrained.yaml", "sweep_pretrained.yaml"):
        shutil.copyfile(str(resources.files("speechtl.recipe") / "templates" / conf), out / "conf" / conf)
    for d in LINKS:
        _link(root / d, out / d)
    logging.info(
        f"wrote {out}: run.sh, cmd.sh, path.sh, README.md, conf/recipe.conf, conf/adapt[_pretrained].yaml, "
        "conf/sweep[_pretrained].yaml"
    )
    if not cfg.source:
        logging.warning(
            f"no --source: {out}/run.sh will import and validate the corpus (stage 0) and then stop "
            f"until source= is set in {out}/conf/recipe.conf.\n" + sources_message([Path(cfg.egs_dir), root / "egs"])
        )
    return out
