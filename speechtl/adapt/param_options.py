"""Transfer as options, as ESPnet's ``--init_param`` and ``--freeze_param``: on top of any method.

A method decides what a model starts from (the source checkpoint, or nothing) and what trains.
These two options let a run take *parts* of other models, from any file that holds tensors by
name, and keep parts fixed, without a new method:

- ``init_param``: ``PATH[:SRC[:DST[:EXCLUDE,...]]]``. The tensors of PATH whose names start with
  the prefix SRC (all when empty) are renamed to start with DST instead and copied into the model
  where a tensor of that name and shape exists. EXCLUDE names prefixes of PATH's names to leave
  out. ``exp/src/final.pt:encoder:encoder`` takes a speechtl model's encoder only;
  ``model.pt:module.encoder:encoder`` one saved by a DDP wrapper; ``cls.pt:::output`` all but
  the output layer. Mismatches are listed and skipped (another vocabulary, a wider layer); a
  spec that copies nothing at all is an error, since it is a typo far more often than intended.
- ``freeze_param``: name prefixes whose parameters do not train (``encoder.subsampling``,
  ``encoder.layers.0``). Parameters only: a BatchNorm inside still updates its running
  statistics on the target data, as with ESPnet's option and PyTorch's ``requires_grad``.

Both are train options (``train.init_param``/``train.freeze_param`` in a conf, ``--init-param``
/``--freeze-param`` on ``speechtl train`` and ``steps/train.sh``), so they are part of what a
checkpoint says trained it, of the resume key and of the results' ``config`` digest.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from speechtl.errors import SpeechtlError


@dataclass(frozen=True)
class InitParam:
    """One ``PATH[:SRC[:DST[:EXCLUDE,...]]]``."""

    path: Path
    src: str = ""
    dst: str = ""
    exclude: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> "InitParam":
        # A path that exists whole wins over the split: a folder name may hold a colon.
        if Path(spec).is_file():
            return cls(Path(spec))
        parts = spec.split(":")
        if len(parts) > 4 or not parts[0]:
            raise SpeechtlError(
                f"init_param {spec!r}: expected PATH[:SRC_PREFIX[:DST_PREFIX[:EXCLUDE,...]]], e.g. "
                "exp/source/final.pt:encoder:encoder"
            )
        parts += [""] * (4 - len(parts))
        exclude = tuple(e.strip() for e in parts[3].split(",") if e.strip())
        return cls(Path(parts[0]), parts[1].strip().rstrip("."), parts[2].strip().rstrip("."), exclude)

    def __str__(self) -> str:
        return ":".join([str(self.path), self.src, self.dst, ",".join(self.exclude)]).rstrip(":")


def under(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or lies below it (whole name parts: ``encoder.layer`` is not under ``encoder.lay``)."""
    prefix = prefix.rstrip(".")
    return not prefix or name == prefix or name.startswith(prefix + ".")


def renamed(name: str, src: str, dst: str) -> str:
    rest = name[len(src) :].lstrip(".") if src else name
    return ".".join(p for p in (dst, rest) if p)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The named tensors of ``path``: a speechtl checkpoint (its ``model``), a ``{"state_dict": ...}``
    or ``{"model": ...}`` dict as Lightning, icefall and ESPnet save them, a plain state dict, or a
    ``.safetensors`` file."""
    if not path.is_file():
        raise SpeechtlError(f"init_param: {path} does not exist. Fix: give the path of a checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise SpeechtlError(f"init_param: cannot read {path}: {e}") from e
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, Mapping) else {}
    if not tensors:
        raise SpeechtlError(
            f"init_param: {path} holds no named tensors (a {type(obj).__name__}"
            + (f" with keys {sorted(map(str, obj))[:6]}" if isinstance(obj, Mapping) else "")
            + "). Fix: give a checkpoint or state dict saved with torch.save"
        )
    return tensors


@dataclass
class InitReport:
    spec: InitParam
    copied: list[str] = field(default_factory=list)
    #: (name in the model, why): not in the model, or another shape
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _examples(names: Iterable[str], n: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def init_from(model: nn.Module, spec: InitParam) -> InitReport:
    """Copy what ``spec`` names into ``model``, in place; see the module's docstring."""
    tensors = read_tensors(spec.path)
    picked = {k: v for k, v in tensors.items() if under(k, spec.src) and not any(under(k, e) for e in spec.exclude)}
    if not picked:
        raise SpeechtlError(
            f"init_param {spec}: no tensor of {spec.path} is under {spec.src!r}"
            + (f" outside {list(spec.exclude)}" if spec.exclude else "")
            + f"; its names look like {_examples(tensors)}. Fix: a SRC prefix from those names"
        )
    own = model.state_dict()
    if spec.dst and not any(under(k, spec.dst) for k in own):
        raise SpeechtlError(
            f"init_param {spec}: the model has nothing under {spec.dst!r}; its names look like {_examples(own)}. "
            "Fix: a DST prefix from those names"
        )
    report = InitReport(spec)
    for name, value in picked.items():
        target = renamed(name, spec.src, spec.dst)
        if target not in own:
            report.skipped.append((target, "not in the model"))
        elif own[target].shape != value.shape:
            report.skipped.append((target, f"shape {tuple(value.shape)}, the model's {tuple(own[target].shape)}"))
        else:
            own[target] = value.to(own[target].dtype)
            report.copied.append(target)
    if not report.copied:
        raise SpeechtlError(
            f"init_param {spec}: none of the {len(picked)} tensors fits the model (as {_examples(t for t, _ in report.skipped)}: "
            f"{report.skipped[0][1]}); the model's names look like {_examples(own)}. Fix: SRC and DST prefixes that "
            "map the file's names onto the model's (PATH:SRC:DST), or a checkpoint of the same architecture"
        )
    model.load_state_dict(own)
    said = f"init_param {spec}: {len(report.copied)} tensors copied" + (
        f", {len(report.skipped)} skipped (e.g. {report.skipped[0][0]}: {report.skipped[0][1]})"
        if report.skipped
        else ""
    )
    if len(report.skipped) > len(report.copied):
        # another architecture: a few tensors (a bias of a size both share) fit by chance
        logging.warning(f"{said}: most of what it names does not fit this model; is it the architecture meant?")
    else:
        logging.info(said)
    return report


def apply_init_params(model: nn.Module, specs: Sequence[str]) -> list[InitReport]:
    """Every ``init_param`` spec in order (a later one overwrites what an earlier one copied)."""
    return [init_from(model, InitParam.parse(s)) for s in specs]


def freeze_params(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Stop gradients for every parameter under one of ``prefixes``; returns their names. A prefix
    that names no parameter is an error (a typo would otherwise train what was meant to stay)."""
    if any(not q.strip(".") for q in prefixes):
        raise SpeechtlError(
            f"freeze prefixes {list(prefixes)}: an empty prefix would freeze everything. Fix: name a part"
        )
    frozen = []
    for name, p in model.named_parameters():
        if any(under(name, q) for q in prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    unused = [q for q in prefixes if not any(under(n, q) for n in frozen)]
    if unused:
        raise SpeechtlError(
            f"freeze prefixes {unused} match no parameter; names look like {_examples(n for n, _ in model.named_parameters())}"
        )
    return frozen
