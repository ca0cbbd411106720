"""Typed configs from YAML: dataclass fields are the only keys accepted."""

import re
import types
from collections import abc
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from speechtl.errors import SpeechtlError

T = TypeVar("T")


def fits(value: Any, tp: Any) -> bool:
    """Whether a YAML value can stand for a field annotated ``tp``.

    ints pass for floats, lists for tuples; bools never pass for numbers (YAML's
    ``yes`` is a bool). Annotations it does not know (a class, a Callable) pass.
    """
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(fits(value, a) for a in args)
    if origin is Literal:
        return value in args
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        return isinstance(value, int if tp is int else (int, float)) and not isinstance(value, bool)
    if tp in (str, Path):  # a path where a string is expected (teacher=PATH) is fine
        return isinstance(value, str | Path)
    if origin in (list, tuple, abc.Sequence):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(fits(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(fits(v, args[0]) for v in value)
    if origin in (dict, abc.Mapping):
        return isinstance(value, dict) and (not args or all(fits(v, args[1]) for v in value.values()))
    return True


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _wrong(key: str, value: Any, tp: Any) -> str:
    msg = f"{key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})"
    if isinstance(value, str) and fits(1.0, tp) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
        msg += f" (YAML reads {value} as text; write it with a dot, e.g. {float(value):.1e})"
    return msg


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build ``cls`` from a mapping, naming unknown keys and wrongly typed values instead of
    passing them on (a string learning rate would otherwise fail deep inside torch)."""
    assert is_dataclass(cls)
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise SpeechtlError(f"{where}: expected a mapping of options, got {data!r} ({type(data).__name__})")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SpeechtlError(f"{where}: unknown option(s) {unknown}; known: {sorted(names)}")
    hints = get_type_hints(cls)
    wrong = [(k, v, hints[k]) for k, v in data.items() if k in hints and not fits(v, hints[k])]
    if wrong:
        listing = "; ".join(_wrong(k, v, tp) for k, v, tp in wrong)
        raise SpeechtlError(f"{where}: {listing}. Fix: correct the value(s) in the config.")
    return cls(**data)


def load_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpeechtlError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise SpeechtlError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise SpeechtlError(f"{path}: expected a mapping of options at the top level")
    return data


def method_train(conf: dict[str, Any], method: str) -> dict[str, Any]:
    """A conf's ``train`` section as ``method`` trains with it: ``methods.<method>.train`` replaces its keys."""
    own = ((conf.get("methods") or {}).get(method) or {}).get("train") or {}
    return {**(conf.get("train") or {}), **own}


def method_digest(conf: dict[str, Any], method: str) -> str:
    """A digest of what one method's run reads from an adapt conf: every section but
    ``methods``, and ``methods.<method>``. Recipes key a system's ``.done`` on it, so editing
    another method's options, or a comment, retrains nothing, and editing this method's does."""
    import hashlib
    import json

    mine = {k: v for k, v in conf.items() if k != "methods"}
    mine["method"] = ((conf.get("methods") or {}).get(method)) or {}
    text = json.dumps(mine, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


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


def init_stamp(specs: str | Sequence[str] | None) -> str:
    """What the ``init_param`` files are now (size and mtime of each, "none" when absent), for the
    recipes' ``.done`` keys (``speechtl conf-key``): a conf names its init file by path, and a file
    retrained in place must retrain what starts from it. Empty without ``init_param``."""
    if not specs:
        return ""
    stamps = []
    for spec in [specs] if isinstance(specs, str) else specs:
        path = InitParam.parse(spec).path
        st = path.stat() if path.is_file() else None
        stamps.append(f"{st.st_size}-{int(st.st_mtime)}" if st else "none")
    return ",".join(stamps)
