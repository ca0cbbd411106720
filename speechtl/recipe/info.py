"""What a generated recipe asks at run time: the source's features, the units, the amounts, the sources.

Each function answers one question a stage of the generic ``run.sh`` has about
*this* corpus and *this* source, so that the script itself stays the same for
every generated recipe (``speechtl recipe-info ...`` prints the answers).
"""

import hashlib
import logging
import math
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from speechtl.errors import SpeechtlError

#: Sources named ``kind:PATH`` are pretrained models (:mod:`speechtl.models.pretrained`).
#: They compute their own input (Whisper log-mel, samples) from the cuts' 16 kHz audio,
#: so the fbank stage only needs that rate; the bins are the usual 80.
PRETRAINED_RATE, PRETRAINED_BINS = 16000, 80


@dataclass(frozen=True)
class Features:
    """The input a source model was trained on: the target's fbank must match it."""

    sampling_rate: int
    num_mel_bins: int


def pretrained_kind(source: str) -> str | None:
    """``'whisper'`` for ``'whisper:/models/tiny'``; None for a checkpoint path."""
    from speechtl.models.pretrained import parse_source  # torch: only when asked

    parsed = parse_source(source)
    return parsed.kind if parsed else None


def source_features(source: str) -> Features:
    """The sampling rate and mel bins of ``source`` (a checkpoint, or ``whisper:PATH``/``hf:PATH``)."""
    if pretrained_kind(source):
        return Features(PRETRAINED_RATE, PRETRAINED_BINS)
    from speechtl.train.checkpoint import load_checkpoint

    path = Path(source)
    if path.is_dir():
        load_checkpoint(path)  # a Hugging Face folder: says hf: or whisper:; an exp dir: its final.pt
    if not path.is_file():
        raise SpeechtlError(
            f"source checkpoint {path} does not exist. Fix: a trained source's final.pt (--source, or source= in "
            "conf/recipe.conf; speechtl recipe-info sources lists them), or whisper:PATH / hf:PATH."
        )
    meta = load_checkpoint(path).get("features")
    if not meta:
        raise SpeechtlError(
            f"{path} records no feature settings (trained by an older speechtl). Fix: retrain the source model."
        )
    return Features(int(meta["sampling_rate"]), int(meta["num_mel_bins"]))


@dataclass(frozen=True)
class UnitsChoice:
    units: str  # "char" or "bpe"
    vocab_size: int  # 0 for characters
    reason: str


#: BPE needs every piece seen often enough to learn it: below ~50k words of training
#: text (about 5 hours of read speech) characters are the safer CTC target.
BPE_MIN_WORDS = 50_000
#: Pieces per word of text: about 200 running words per BPE piece keeps each piece frequent.
WORDS_PER_PIECE = 200
MAX_VOCAB = 500
#: Scripts with more characters than this (logographic) keep characters whatever the size.
MAX_BPE_CHARS = 300


def choose_units(text: Path, units: str = "auto", vocab_size: int = 0, min_words: int = BPE_MIN_WORDS) -> UnitsChoice:
    """Characters, or BPE when ``text`` (one sentence a line) is large enough; ``units``/``vocab_size`` force it."""
    from speechtl.lang.spaceless import is_spaceless

    lines = Path(text).read_text(encoding="utf-8").splitlines()
    words = sum(len(line.split()) for line in lines)
    chars = len({c for line in lines for c in line if not c.isspace()})
    if units not in ("auto", "char", "bpe"):
        raise SpeechtlError(f"units must be auto, char or bpe, got {units!r}. Fix: units= in conf/recipe.conf")
    # A script without spaces between words: its words are characters (speechtl.lang.spaceless), and
    # the whitespace "words" counted here are phrases, no measure of how much text BPE would learn from.
    spaceless = units == "auto" and is_spaceless(lines)
    size = f"{words} words, {chars} distinct characters in {text}"
    if units == "char" or (units == "auto" and (spaceless or words < min_words or chars > MAX_BPE_CHARS)):
        why = (
            "as asked" if units == "char"
            else "a script without spaces between words" if spaceless
            else f"< {min_words} words" if words < min_words
            else "a large script"
        )  # fmt: skip
        return UnitsChoice("char", 0, f"characters ({why}; {size})")
    if vocab_size <= 0:
        vocab_size = max(50 * (words // WORDS_PER_PIECE // 50), chars + 50)
        vocab_size = min(vocab_size, max(MAX_VOCAB, chars + 50))
    why = "as asked" if units == "bpe" else f">= {min_words} words"
    return UnitsChoice("bpe", vocab_size, f"BPE with {vocab_size} pieces ({why}; {size})")


def _label(minutes: float) -> str:
    """``5 -> '5min'``, ``7.34 -> '7.3min'``, ``10.1031 -> '10.1min'`` (a whole pool's odd size): a data
    label ``speechtl report`` parses as an amount."""
    return f"{round(minutes, 1) or round(minutes, 2):g}min"


@dataclass(frozen=True)
class Amount:
    label: str  # e.g. "5min", the results' data column
    minutes: float  # what `speechtl subset --minutes` takes; math.inf for the whole pool


def plan_amounts(cuts: Path, minutes: Iterable[float], output_prefix: Path | None = None) -> list[Amount]:
    """The nested amounts of the labelled pool ``cuts`` to adapt on: each of ``minutes`` it holds, then the pool.

    Amounts the pool does not exceed are dropped (said in the log); the pool is
    labelled by its own duration, so it lands on the data-efficiency plot too.
    With ``output_prefix`` each amount is written to ``<output_prefix>_<label>.jsonl.gz``
    (the subsets of ``speechtl subset --minutes``, in one process).
    """
    from lhotse import CutSet

    from speechtl.data.subset import original_id, subset_by_minutes

    pool_cuts = CutSet.from_file(cuts)
    total = sum(c.duration for c in pool_cuts if original_id(c.id) == c.id) / 60
    if total <= 0:
        raise SpeechtlError(f"{cuts} holds no audio. Fix: check the import stage's train split.")
    pool = _label(total)
    out = []
    for m in sorted(set(minutes)):
        if m <= 0:
            raise SpeechtlError(f"amounts are minutes > 0, got {m:g}. Fix: minutes= in conf/recipe.conf")
        if m >= total or _label(m) in (pool, *(a.label for a in out)):
            logging.info(f"amount {m:g} min dropped: {_label(m)} is the labelled pool's {total:.2f} min or more")
            continue
        out.append(Amount(_label(m), m))
    out.append(Amount(pool, math.inf))
    logging.info(f"amounts: {', '.join(a.label for a in out)} (the last is the whole pool, {total:.2f} min)")
    if output_prefix is not None:
        for a in out:
            chosen = pool_cuts if a.minutes == math.inf else subset_by_minutes(pool_cuts, a.minutes)
            chosen.to_file(f"{output_prefix}_{a.label}.jsonl.gz")
    return out


def write_transcripts(supervisions: Path, out: Path, extra: Sequence[Path] = ()) -> Path:
    """The transcripts of a supervision manifest, one a line (the units' and LM's text), read lazily."""
    from lhotse import SupervisionSet

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w", encoding="utf-8") as f:
        for s in SupervisionSet.from_jsonl_lazy(supervisions):
            if s.text and s.text.strip():
                f.write(" ".join(s.text.split()) + "\n")
                n += 1
    if n == 0:
        raise SpeechtlError(f"{supervisions} has no transcripts. Fix: check the import stage's train split.")
    logging.info(f"{n} transcripts of {supervisions} -> {out}")
    return out


def normalize_lm_text(text: Path, out: Path, norm_config: Path | None = None) -> Path:
    """``--lm-text`` normalized as the import normalized the transcripts (``norm_config``: its
    ``<prefix>_text_norm.json``; None: the importers' defaults), one sentence a line. Otherwise a
    --map-chars or the ş/ș joining would leave the LM's words spelled unlike the training text's."""
    from speechtl.data.normalize import normalizer_of

    if not Path(text).is_file():
        raise SpeechtlError(f"LM text {text} does not exist. Fix: lm_text= in conf/recipe.conf")
    norm = normalizer_of(norm_config)
    lines = (norm(line) for line in Path(text).read_text(encoding="utf-8").splitlines())
    kept = [line for line in lines if line]
    if not kept:
        raise SpeechtlError(f"LM text {text} has no words after normalization")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    logging.info(f"{len(kept)} LM sentences of {text} -> {out}")
    return Path(out)


def find_sources(egs_dirs: Iterable[Path]) -> list[Path]:
    """Every trained source checkpoint, ``<egs>/<recipe>/ASR/exp/source/final.pt``, once each."""
    seen: dict[Path, Path] = {}
    for egs in egs_dirs:
        for p in sorted(Path(egs).glob("*/ASR/exp/source/final.pt")):
            seen.setdefault(p.resolve(), p.absolute())
    return list(seen.values())


def how_to_make_a_source(checkout_egs: Path) -> str:
    """The commands that make a source, with the built-in recipes' paths as they are on this machine."""
    return f"""\
To make one:
  cd {checkout_egs / "tts_xling" / "ASR"} && ./run.sh --stop-stage 4    # multilingual (en nl ro ru) synthetic speech, 16 kHz, 80 bins
  cd {checkout_egs / "fsdd" / "ASR"} && ./run.sh --stop-stage 4         # English digit words only, 8 kHz, 40 bins
or train one on a corpus of your own with steps/train.sh --method scratch (exp/<dir>/final.pt);
or start from a pretrained model: whisper:PATH_OR_ID (Whisper) or hf:PATH_OR_ID (wav2vec2, HuBERT, WavLM, XLS-R)."""


def sources_message(egs_dirs: Iterable[Path]) -> str:
    """Which sources exist (with their features) and how to make one: what a recipe with no source says."""
    found = find_sources(egs_dirs)
    lines = []
    for p in found:
        try:
            f = source_features(str(p))
            lines.append(f"  {p}  ({f.sampling_rate} Hz, {f.num_mel_bins} mel bins)")
        except SpeechtlError as e:
            lines.append(f"  {p}  (unreadable: {e})")
    head = "Trained sources here:\n" + "\n".join(lines) if lines else "No trained source here yet."
    checkout_egs = Path(__file__).resolve().parents[2] / "egs"  # this checkout's built-in recipes
    return f"{head}\n{how_to_make_a_source(checkout_egs)}"


#: Files a corpus fingerprint reads whole (transcripts, Kaldi's text/segments/wav.scp/utt2spk, which
#: have no suffix), up to :data:`MAX_READ` bytes; every other file, audio included, counts by name,
#: size and modification time (reading hours of audio, or a tarball beside it, to start a recipe
#: would take minutes and memory).
TEXT_SUFFIXES = {"", ".txt", ".tsv", ".csv", ".json", ".jsonl", ".lab", ".textgrid", ".eaf", ".scp", ".list"}
MAX_READ = 1 << 20


def named_files(prepare_opts: str, corpus_dir: Path) -> list[Path]:
    """The files an import's options name (``--transcripts a.csv b.csv``), relative ones read from
    ``corpus_dir`` as the import reads them: a transcript kept outside the corpus folder counts too."""
    import shlex

    try:
        words = shlex.split(prepare_opts or "")
    except ValueError:  # an unmatched quote: stage 0's own split of the options names it
        return []
    given: list[str] = []
    for i, w in enumerate(words):
        if w == "--transcripts":
            for v in words[i + 1 :]:
                if v.startswith("--"):
                    break
                given.append(v)
        elif w.startswith("--transcripts="):
            given.append(w.split("=", 1)[1])
    return [Path(v) if Path(v).is_absolute() else Path(corpus_dir) / v for v in given]


def corpus_fingerprint(corpus_dir: Path, also: Sequence[Path] = ()) -> str:
    """12 hex digits that change when a file of ``corpus_dir`` is added, removed, renamed or rewritten
    (an audio file by its size and time, a transcript or segments file by its content): a generated
    recipe's stage 0 keys on it, so that fixing or adding files imports the corpus again instead of
    keeping the manifests of what was there before. Hidden files and folders, and anything that is
    not a regular file (a FIFO), are left out; a folder linked twice is walked once."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise SpeechtlError(f"corpus folder {corpus_dir} does not exist. Fix: check --corpus-dir")
    h = hashlib.sha1()
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(corpus_dir, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree, or a second link to one folder
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(root) / name
            h.update(_file_entry(path, path.relative_to(corpus_dir).as_posix()))
    for path in also:  # files outside the folder that the import reads (--transcripts)
        h.update(_file_entry(Path(path), str(path)))
    return h.hexdigest()[:12]


def _file_entry(path: Path, name: str) -> bytes:
    """What :func:`corpus_fingerprint` hashes of one file: a small transcript-like file's content,
    any other's size and modification time; nothing for what is not a regular file (a FIFO)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return b""
        if path.suffix.lower() in TEXT_SUFFIXES and st.st_size <= MAX_READ:
            return f"{name}\0".encode() + hashlib.sha1(path.read_bytes()).digest()
        return f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
    except OSError:  # a broken link: named, as the import will name it
        return f"{name}\0unreadable\n".encode()
