"""The method interface and registry, with ``scratch`` (train on the target data alone)."""

from typing import Dict, List, Optional, Type

import torch
from torch import nn

from speechtl.errors import SpeechtlError

METHODS: Dict[str, Type["Method"]] = {}


def register_method(cls: Type["Method"]) -> Type["Method"]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, **options) -> "Method":
    if name not in METHODS:
        raise SpeechtlError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name](**options)


class Method:
    """Hooks the Trainer calls; the defaults train every parameter from random init."""

    name = "base"

    def prepare(self, model: nn.Module) -> None:
        """Change the model before training (load weights, freeze, add modules)."""

    def param_groups(self, model: nn.Module, lr: float) -> List[dict]:
        """Optimizer parameter groups: every trainable parameter at ``lr``."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]

    def extra_loss(self, model: nn.Module, batch: dict, log_probs: torch.Tensor) -> Optional[torch.Tensor]:
        """A loss term added to CTC for this batch, or None."""
        return None


@register_method
class Scratch(Method):
    """Target-only baseline: random initialisation, all parameters trained."""

    name = "scratch"
