"""Checkpoints: save, load, find the latest, average (icefall's --epoch/--avg)."""

import hashlib
import json
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
