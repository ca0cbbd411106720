"""The method interface and registry, with ``scratch`` (train on the target data alone).

A method is a small class with typed ``Options`` (a dataclass, filled from the
``methods: {name: {options: ...}}`` section of a recipe's conf). The Trainer
calls its hooks; what a method changes is said in its docstring and shown by a
test that fails if the method were a no-op.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Type

import torch
from torch import nn

from speechtl.config import from_dict
from speechtl.errors import SpeechtlError

METHODS: Dict[str, Type["Method"]] = {}


def register_method(cls: Type["Method"]) -> Type["Method"]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, options: Optional[Dict[str, Any]] = None) -> "Method":
    """The method ``name`` with ``options`` (checked against its Options fields)."""
    if name not in METHODS:
        raise SpeechtlError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    return cls(from_dict(cls.Options, dict(options or {}), f"options of method {name}"))


@dataclass
class NoOptions:
    pass


class Method:
    """Hooks the Trainer calls; the defaults train every parameter from random init."""

    name = "base"
    Options: Type = NoOptions
    #: Starts from the source model's weights (needs a source checkpoint).
    uses_source = False
    #: Parameter-name prefixes left at their fresh values when loading the source.
    init_exclude: Tuple[str, ...] = ()

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    def prepare(self, model: nn.Module) -> None:
        """Change the model before training (freeze, add modules); weights are loaded already."""

    def param_groups(self, model: nn.Module, lr: float) -> List[dict]:
        """Optimizer parameter groups: every trainable parameter at ``lr``."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]

    def extra_loss(self, model: nn.Module, batch: dict, log_probs: torch.Tensor) -> Optional[torch.Tensor]:
        """A loss term added to CTC for this batch, or None."""
        return None


@register_method
class Scratch(Method):
    """Target-only baseline: random initialisation, all parameters trained.

    Given a source checkpoint it takes the source *architecture* only, so the
    baseline and the transfer methods differ in their initialisation alone.
    """

    name = "scratch"
