"""Checkpoints: save, load, find the latest, average (icefall's --epoch/--avg)."""

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from speechtl.atomic import atomic_path
from speechtl.errors import SpeechtlError
from speechtl.models import CtcModel, ModelConfig, build_model


def save_checkpoint(path: Path, model: CtcModel, **extra) -> None:
    """Write atomically (:func:`speechtl.atomic.atomic_path`: a temp file, flushed to disk,
    renamed over ``path``): a run killed mid-write leaves the previous checkpoint whole."""
    state = {
        "model": model.state_dict(),
        "model_config": model.config.to_dict(),
        "vocab_size": model.vocab_size,
        **extra,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


#: Train options that do not change the model a run makes (besides its seed, which is its own column).
NOT_TRAINING = ("seed", "log_interval", "save_every_n", "max_bad_batches", "device", "keep_epochs")


def config_digest(ckpt: dict) -> str:
    """8 hex digits naming what trained a checkpoint, its seed left out: the model's config, the train
    options, the method and its options. Two seeds of one system share it; a conf edited between them
    (fewer epochs, another lr) does not. Empty for a checkpoint without its train options."""
    from speechtl.train.trainer import TrainConfig  # here: the trainer imports this module

    train = ckpt.get("train_config")
    if not train:
        return ""
    options = ckpt.get("method_options", (ckpt.get("resume_key") or {}).get("options", {}))

    def changed(saved: dict | None, defaults: dict) -> dict:
        # only what differs from today's defaults: an option added to speechtl since a checkpoint was
        # written (saved by the new one at its default) changes no digest, so the seeds stay one system
        return {k: v for k, v in (saved or {}).items() if k not in defaults or v != defaults[k]}

    what = {
        "model": changed(ckpt.get("model_config"), ModelConfig().to_dict()),
        "train": changed({k: v for k, v in train.items() if k not in NOT_TRAINING}, asdict(TrainConfig())),
        "method": ckpt.get("method"),
        "options": options,
    }
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    hf_dir = path if path.is_dir() else path.parent
    if (hf_dir / "config.json").is_file() and (path.is_dir() or path.suffix in (".safetensors", ".bin")):
        raise SpeechtlError(
            f"{path} is a Hugging Face model, not a speechtl checkpoint. Fix: pass the folder as "
            f"hf:{hf_dir} (wav2vec2, HuBERT, WavLM, XLS-R) or whisper:{hf_dir} (Whisper)"
        )
    if path.is_dir() and (path / "final.pt").is_file():
        raise SpeechtlError(f"{path} is a folder. Fix: pass its checkpoint, {path / 'final.pt'}")
    if not path.is_file():
        raise SpeechtlError(f"checkpoint {path} does not exist. Fix: run the training stage first.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise SpeechtlError(f"cannot read checkpoint {path}: {e}") from e


def model_from_checkpoint(path: Path) -> CtcModel:
    return model_from_state(load_checkpoint(path))


def model_from_state(ckpt: dict) -> CtcModel:
    """The model of a loaded checkpoint (see :func:`load_checkpoint`)."""
    model = build_model(ModelConfig(**ckpt["model_config"]), ckpt["vocab_size"])
    model.load_state_dict(ckpt["model"])
    return model


def epoch_checkpoints(exp_dir: Path) -> list[Path]:
    """``epoch-N.pt`` files in ``exp_dir``, by N."""
    found = []
    for p in Path(exp_dir).glob("epoch-*.pt"):
        m = re.fullmatch(r"epoch-(\d+)\.pt", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def prune_epochs(exp_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` (>= 1) ``epoch-N.pt`` of ``exp_dir``; returns what went."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    gone = epoch_checkpoints(exp_dir)[:-keep]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def average_state_dicts(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors; integer buffers (counters) from the last."""
    avg = {}
    for k, v in states[-1].items():
        if v.is_floating_point():
            avg[k] = sum(s[k].double() for s in states).div(len(states)).to(v.dtype)
        else:
            avg[k] = v.clone()
    return avg


#: What only resuming needs; averaged checkpoints drop it.
TRAINING_STATE = ("optimizer", "scheduler", "rng", "rng_states", "scaler", "position", "resume_key")


def average_checkpoints(paths: Sequence[Path], out: Path | None = None) -> dict:
    """Average the models of ``paths``; the result keeps the last one's metadata."""
    if not paths:
        raise SpeechtlError("no checkpoints to average")
    ckpts = [load_checkpoint(p) for p in paths]
    result = {k: v for k, v in ckpts[-1].items() if k not in TRAINING_STATE}
    result["model"] = average_state_dicts([c["model"] for c in ckpts])
    result["averaged"] = [str(p) for p in paths]
    if out is not None:
        with atomic_path(out) as tmp:
            torch.save(result, tmp)
    return result


#: The key of an epoch average's own record (:func:`average_epochs`): which epochs, its label, its sources.
EPOCH_AVERAGE = "epoch_average"


def epoch_average_label(epoch: int, avg: int) -> str:
    """icefall's name of the model of ``--epoch N --avg K``: ``epoch-N-avg-K`` (its decode files' suffix)."""
    return f"epoch-{epoch}-avg-{avg}"


def checkpoint_label(ckpt: dict) -> str:
    """Which model of its training a loaded checkpoint is: ``epoch-N-avg-K`` for an epoch average
    (:func:`average_epochs`), empty for the training's final model. Decoding writes it into
    results.tsv's ``checkpoint`` column, so the two get a row each rather than one replacing the other."""
    return (ckpt.get(EPOCH_AVERAGE) or {}).get("label", "")


def _spans(numbers: Sequence[int]) -> str:
    """``[1, 2, 3, 5, 7, 8]`` -> ``'1-3, 5, 7-8'``: an exp dir's epochs, short enough for one line."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def epoch_number(path: Path) -> int:
    """N of ``epoch-N.pt`` (a name :func:`epoch_checkpoints` returns)."""
    return int(Path(path).stem.removeprefix("epoch-"))


def epochs_to_average(exp_dir: Path, epoch: int, avg: int) -> list[Path]:
    """``epoch-(N-K+1).pt .. epoch-N.pt`` of ``exp_dir``, each there, or an error that says which epochs
    the dir does have: training keeps only the newest ``train.keep_epochs`` (never fewer than
    ``train.average_last``), so an average reaching further back needs a training that kept more."""
    exp_dir = Path(exp_dir)
    if avg < 1:
        raise SpeechtlError(f"--avg must be at least 1 (the number of epochs averaged), got {avg}")
    if epoch < 1:
        raise SpeechtlError(f"--epoch must be at least 1 (the first epoch is epoch-1.pt), got {epoch}")
    if avg > epoch:
        raise SpeechtlError(
            f"--epoch {epoch} --avg {avg} would average epoch-{epoch - avg + 1}..epoch-{epoch}, starting before "
            f"epoch 1. Fix: --avg {epoch} or less"
        )
    if not exp_dir.is_dir():
        raise SpeechtlError(f"exp dir {exp_dir} does not exist. Fix: pass the dir the training wrote epoch-N.pt into")
    wanted = [exp_dir / f"epoch-{n}.pt" for n in range(epoch - avg + 1, epoch + 1)]
    missing = [epoch_number(p) for p in wanted if not p.is_file()]
    if missing:
        have = [epoch_number(p) for p in epoch_checkpoints(exp_dir)]
        there = f"{exp_dir} has epochs {_spans(have)}" if have else f"{exp_dir} has no epoch-N.pt"
        run = epoch - missing[-1]  # the epochs there, counting back from N
        instead = f" (e.g. --epoch {epoch} --avg {run})" if run else ""
        raise SpeechtlError(
            f"--epoch {epoch} --avg {avg} averages epoch-{epoch - avg + 1}..epoch-{epoch}.pt, but "
            f"{exp_dir / f'epoch-{missing[0]}.pt'} is not there (missing: {_spans(missing)}; {there}). Fix: choose "
            f"--epoch and --avg among those{instead}, or train again keeping more: train.keep_epochs: {avg} or more "
            "(0 keeps all; a training keeps only its newest keep_epochs, default 10, never fewer than "
            "train.average_last)"
        )
    return wanted


def _sources(paths: Sequence[Path]) -> dict[str, list[int]]:
    """Name -> [size, mtime_ns] of each averaged file: a retrained epoch (rewritten) no longer matches."""
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def average_epochs(exp_dir: Path, epoch: int, avg: int, out: Path) -> dict:
    """icefall's ``--epoch N --avg K``: the mean of ``epoch-(N-K+1).pt .. epoch-N.pt`` written to
    ``out``, laid out as ``final.pt`` is (:func:`average_checkpoints`: the model, its config, method,
    features, seed), so decode, transcribe and export-onnx take it as they take ``final.pt``; it also
    records which epochs it averages and from which files (``epoch_average``). Returns it."""
    paths = epochs_to_average(exp_dir, epoch, avg)
    sources = _sources(paths)
    logging.info(f"averaging epochs {_spans([epoch_number(p) for p in paths])} of {exp_dir} -> {out}")
    result = average_checkpoints(paths)
    result[EPOCH_AVERAGE] = {
        "epoch": epoch,
        "avg": avg,
        "epochs": [epoch_number(p) for p in paths],
        "label": epoch_average_label(epoch, avg),
        "sources": sources,
    }
    _warn_if_finalized(Path(exp_dir), result)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(result, tmp)
    return result


def _warn_if_finalized(exp_dir: Path, averaged: dict) -> None:
    """A method may change ``final.pt`` after averaging (vtln keeps a warp factor it chose then in the
    model config): an epoch average has the trained epochs only, so it differs from ``final.pt`` by
    more than its epochs. Said, with the fix."""
    final = exp_dir / "final.pt"
    if not final.is_file():
        return
    try:
        config = torch.load(final, map_location="cpu", weights_only=False, mmap=True).get("model_config")
    except Exception:  # an unreadable final.pt is not this average's business
        return
    if config is not None and config != averaged.get("model_config"):
        changed = sorted(
            k for k in {*config, *averaged["model_config"]} if config.get(k) != averaged["model_config"].get(k)
        )
        logging.warning(
            f"{final}'s model config differs from its epochs' in {', '.join(changed)}: its method changed the model "
            "after averaging (vtln sets the warp factor it chose then), and this average of the epochs has no such "
            "change. Fix: do that step on the average too (vtln: speechtl vtln --checkpoint AVERAGE ...)"
        )


def epoch_average_path(exp_dir: Path, epoch: int, avg: int) -> Path:
    """Where decode keeps the average of ``--epoch N --avg K``: ``EXP/avg-epoch-N-K.pt``."""
    return Path(exp_dir) / f"avg-epoch-{epoch}-{avg}.pt"


def ensure_epoch_average(exp_dir: Path, epoch: int, avg: int) -> Path:
    """:func:`epoch_average_path`, averaged now unless it is there already from the same epoch files
    (same names, sizes and times: a retraining rewrites them, and then it is averaged again)."""
    out = epoch_average_path(exp_dir, epoch, avg)
    paths = epochs_to_average(exp_dir, epoch, avg)
    if out.is_file():
        try:
            made = torch.load(out, map_location="cpu", weights_only=False, mmap=True).get(EPOCH_AVERAGE) or {}
        except Exception:  # unreadable: made again below
            made = {}
        if made.get("sources") == _sources(paths):
            logging.info(f"{out}: the average of epochs {_spans(made['epochs'])}, made before; reused")
            return out
    average_epochs(exp_dir, epoch, avg, out)
    return out
