"""Typed configs from YAML: dataclass fields are the only keys accepted."""

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from speechtl.errors import SpeechtlError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build ``cls`` from a mapping, naming unknown keys instead of ignoring them."""
    assert is_dataclass(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SpeechtlError(f"{where or cls.__name__}: unknown option(s) {unknown}; known: {sorted(names)}")
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
