"""The ``method`` and ``data`` of a decode's results.tsv rows when the command line gives none.

Recipes pass both (``steps/decode.sh``). A user who decodes one system by hand, as the README's
ONNX commands do, gets rows that read what the system is: the method its checkpoint was trained
with, and the amount from icefall-style system dirs, ``exp/<method>_<data>[_s<seed>]/``. Before,
they defaulted to ``scratch``/``all`` and a finetune_5min model's rows went into RESULTS.md as a
``scratch | all`` system.
"""

import json
import logging
import re
from pathlib import Path

SEED_SUFFIX = re.compile(r"_s\d+$")


def system_labels(
    system_dir: Path, method: str | None, data: str | None, trained_method: str | None
) -> tuple[str, str]:
    """``(method, data)``: each as given, else the trained method (else ``scratch``) and the part
    of the system dir's name after ``<method>_`` (its ``_s<seed>`` left out; else ``all``)."""
    chosen = method or trained_method or "scratch"
    label = data
    if label is None:
        name = SEED_SUFFIX.sub("", Path(system_dir).name)
        label = name[len(chosen) + 1 :] if name.startswith(chosen + "_") and len(name) > len(chosen) + 1 else "all"
    if method is None or data is None:
        logging.info(
            f"results rows: method {chosen}, data {label} (from {Path(system_dir).name}/ and its checkpoint; "
            "--method/--data set them)"
        )
    return chosen, label


def checkpoint_labels(checkpoint: Path, method: str | None, data: str | None) -> tuple[str, str]:
    """:func:`system_labels` of a checkpoint (``exp/<system>/final.pt``), read without loading its weights."""
    if method is not None and data is not None:
        return method, data
    import torch

    try:
        trained = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True).get("method")
    except Exception:  # the decode that follows names what is wrong with the file
        trained = None
    return system_labels(Path(checkpoint).resolve().parent, method, data, trained)


def export_labels(onnx_dir: Path, method: str | None, data: str | None) -> tuple[str, str]:
    """:func:`system_labels` of an ``export-onnx`` dir: its ``export.json`` names the checkpoint and
    the method it was trained with (exports before 2026-12-06: the dir above the export's)."""
    if method is not None and data is not None:
        return method, data
    try:
        info = json.loads((Path(onnx_dir) / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    system = Path(info["checkpoint"]).parent if info.get("checkpoint") else Path(onnx_dir).resolve().parent
    return system_labels(system, method, data, info.get("method"))
