"""Transfer as options, as ESPnet's ``--init_param`` and ``--freeze_param``: on top of any method.

A method decides what a model starts from (the source checkpoint, or nothing) and what trains.
These two options let a run take *parts* of other models, from any file that holds tensors by
name, and keep parts fixed, without a new method:

- ``init_param``: ``PATH[:SRC[:DST[:EXCLUDE,...]]]``. The tensors of PATH whose names start with
  the prefix SRC (all when empty) are renamed to start with DST instead and copied into the model
  where a tensor of that name and shape exists. EXCLUDE names prefixes of PATH's names to leave
  out. ``exp/src/final.pt:encoder:encoder`` takes a speechtl model's encoder only;
  ``model.pt:module.encoder:encoder`` one saved by a DDP wrapper; ``cls.pt:::output`` all but
  the output layer. Mismatches are skipped (a wider layer) and listed in the exp dir's
  ``init_param.tsv``; a LoRA-trained speechtl checkpoint gives its weights with the low-rank
  updates merged; the output layer of a checkpoint with other units is not copied (its rows
  would land on other units). A spec that copies nothing at all, or names a prefix that is not
  there, is an error, since it is a typo far more often than intended.
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

from speechtl.config import InitParam  # parsed without torch (speechtl conf-key stamps its files)
from speechtl.errors import SpeechtlError


def under(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or lies below it (whole name parts: ``encoder.layer`` is not under ``encoder.lay``)."""
    prefix = prefix.rstrip(".")
    return not prefix or name == prefix or name.startswith(prefix + ".")


def renamed(name: str, src: str, dst: str) -> str:
    rest = name[len(src) :].lstrip(".") if src else name
    return ".".join(p for p in (dst, rest) if p)


def _merged_lora(tensors: dict[str, torch.Tensor], peft: dict) -> dict[str, torch.Tensor]:
    """A LoRA-trained speechtl model's tensors with each adapted weight merged (W + scale * B @ A)
    under its plain name, as a model without LoRA names it; other tensors as they are."""
    from speechtl.config import from_dict
    from speechtl.models.peft import PeftConfig

    cfg = from_dict(PeftConfig, dict(peft), "peft")
    out = {}
    for name, value in tensors.items():
        owner, sep, rest = name.partition(".parametrizations.")
        if not sep:
            out[name] = value
        elif rest.endswith(".original"):
            weight = rest[: -len(".original")]
            base = f"{owner}.parametrizations.{weight}.0"
            delta = tensors[f"{base}.lora_b"].float() @ tensors[f"{base}.lora_a"].float()
            out[f"{owner}.{weight}"] = (value.float() + cfg.alpha / cfg.dim * delta).to(value.dtype)
    return out


@dataclass
class Tensors:
    """What an init file holds: its named tensors, and the unit symbols of a speechtl checkpoint."""

    named: dict[str, torch.Tensor]
    tokens: dict[str, int] | None = None


def _load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a speechtl checkpoint holds more than tensors (its config, RNG states)
        logging.info(f"init_param: {path} is read with pickle (only give files you trust)")
        return torch.load(path, map_location="cpu", weights_only=False)


def read_tensors(path: Path) -> Tensors:
    """The named tensors of ``path``: a speechtl checkpoint (its ``model``; LoRA merged into the weights
    it adapted), a ``{"state_dict": ...}`` or ``{"model": ...}`` dict as Lightning, icefall and ESPnet
    save them, a plain state dict, or a ``.safetensors`` file."""
    if not path.is_file():
        raise SpeechtlError(f"init_param: {path} does not exist. Fix: give the path of a checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return Tensors(load_file(str(path)))
        obj = _load(path)
    except Exception as e:
        raise SpeechtlError(f"init_param: cannot read {path}: {e}") from e
    tokens, peft = None, {}
    if isinstance(obj, Mapping) and isinstance(obj.get("model_config"), Mapping):  # a speechtl checkpoint
        tokens, peft = obj.get("tokens"), obj["model_config"].get("peft") or {}
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
    if peft.get("kind") == "lora":
        tensors = _merged_lora(tensors, peft)
    return Tensors(tensors, tokens if isinstance(tokens, dict) else None)


@dataclass
class InitReport:
    spec: InitParam
    copied: list[str] = field(default_factory=list)
    #: (name in the model, why): not in the model, or another shape
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _examples(names: Iterable[str], n: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def init_from(model: nn.Module, spec: InitParam, tokens: dict[str, int] | None = None) -> InitReport:
    """Copy what ``spec`` names into ``model``, in place; see the module's docstring. ``tokens``: the
    run's units; the output layer of a checkpoint with other units is not copied (its rows would
    land on other units: ``--source-checkpoint`` maps them by symbol)."""
    read = read_tensors(spec.path)
    tensors = read.named
    unused = [e for e in spec.exclude if not any(under(k, e) for k in tensors)]
    if unused:
        raise SpeechtlError(
            f"init_param {spec}: EXCLUDE {unused} names no tensor of {spec.path}; its names look like "
            f"{_examples(tensors)}. Fix: an EXCLUDE prefix from those names"
        )
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
    other_units = tokens is not None and read.tokens is not None and read.tokens != tokens
    report = InitReport(spec)
    for name, value in picked.items():
        target = renamed(name, spec.src, spec.dst)
        if target not in own:
            report.skipped.append((target, "not in the model"))
        elif own[target].shape != value.shape:
            report.skipped.append((target, f"shape {tuple(value.shape)}, the model's {tuple(own[target].shape)}"))
        elif other_units and under(target, "output"):
            report.skipped.append((target, "the file's units are not this run's"))
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
        f", {len(report.skipped)} skipped" if report.skipped else ""
    )
    absent = [t for t, why in report.skipped if why == "not in the model"]
    # a layer whose weight was skipped but whose bias was copied is half the file's, half fresh
    reshaped = [t for t, why in report.skipped if why.startswith("shape") and not under(t, "output")]
    if len(report.skipped) > len(report.copied) or absent or reshaped:
        # another architecture (a few tensors, a bias of a size both share, fit by chance), or parts the
        # model lacks (a source's adapters): the user should know what did not come over
        example = (absent or reshaped or [report.skipped[0][0]])[0]
        logging.warning(
            f"{said} (e.g. {example}: {dict(report.skipped)[example]}"
            + (f"; {len(absent)} are not in the model" if absent else "")
            + (f"; {len(reshaped)} have another shape, so their layers start partly fresh" if reshaped else "")
            + "): is it the architecture meant?"
        )
    else:
        logging.info(said + (f" (e.g. {report.skipped[0][0]}: {report.skipped[0][1]})" if report.skipped else ""))
    return report


def apply_init_params(model: nn.Module, specs: Sequence[str], tokens: dict[str, int] | None = None) -> list[InitReport]:
    """Every ``init_param`` spec in order (a later one overwrites what an earlier one copied)."""
    return [init_from(model, InitParam.parse(s), tokens) for s in specs]


def write_init_report(reports: Sequence[InitReport], path: Path) -> None:
    """Every tensor each spec named, copied or skipped and why: ``spec name outcome``, tab-separated."""
    lines = ["spec\ttensor\toutcome"]
    for r in reports:
        lines += [f"{r.spec}\t{name}\tcopied" for name in r.copied]
        lines += [f"{r.spec}\t{name}\tskipped: {why}" for name, why in r.skipped]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


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
            f"freeze prefixes {unused} match no parameter; names look like {_examples(n for n, _ in model.named_parameters())}. "
            "Fix: prefixes from those names (train.freeze_param / --freeze-param, or the freeze method's prefixes)"
        )
    return frozen
