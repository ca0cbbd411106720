"""The method interface and registry, with ``scratch`` (train on the target data alone).

A method is a small class with typed ``Options`` (a dataclass, filled from the
``methods: {name: {options: ...}}`` section of a recipe's conf). The Trainer
calls its hooks; what a method changes is said in its docstring and shown by a
test that fails if the method were a no-op.
"""

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechtl.config import from_dict
from speechtl.errors import SpeechtlError

METHODS: dict[str, type["Method"]] = {}


def register_method(cls: type["Method"]) -> type["Method"]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, options: dict[str, Any] | None = None) -> "Method":
    """The method ``name`` with ``options`` (checked against its Options fields)."""
    if name not in METHODS:
        raise SpeechtlError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    return cls(from_dict(cls.Options, dict(options or {}), f"options of method {name}"))


def needs_teacher(cls: type["Method"]) -> bool:
    """A method whose options name a teacher checkpoint (kd and the pseudo-labels): it runs only
    after its teacher system has trained."""
    return any(f.name == "teacher" for f in fields(cls.Options))


@dataclass
class NoOptions:
    pass


class Method:
    """Hooks the Trainer calls; the defaults train every parameter from random init."""

    name = "base"
    Options: type = NoOptions
    #: Starts from the source model's weights (needs a source checkpoint).
    uses_source = False
    #: Parameter-name prefixes left at their fresh values when loading the source.
    init_exclude: tuple[str, ...] = ()
    #: Auxiliary cut sets it trains on besides the labelled data: "unlabelled"
    #: (target audio; transcripts unused) and/or "source". One batch of each per
    #: step goes through the same forward pass (``StepContext.aux``).
    aux_data: tuple[str, ...] = ()
    #: Works on frame-level unit posteriors (a CTC teacher's, CTC transcripts), so it
    #: cannot train an utterance classifier.
    ctc_only = False

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    def prepare(self, model: nn.Module) -> None:
        """Change the model before training (freeze, add modules); weights are loaded already."""

    def modules(self) -> nn.Module | None:
        """The method's own trainable modules (a domain classifier...): optimized with the
        model, kept in epoch checkpoints for resuming, never in the model."""
        return None

    def before_training(self, trainer, cuts, aux_cuts: dict[str, Any]) -> None:
        """Work on the model before the main loop (self-supervised or meta-learned init)."""

    def prepare_data(self, trainer, cuts, aux_cuts: dict[str, Any]):
        """The labelled cuts the main loop trains on (pseudo-labelling adds to them)."""
        return cuts

    def param_groups(self, model: nn.Module, lr: float) -> list[dict]:
        """Optimizer parameter groups: every trainable parameter at ``lr``."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]

    def utterance_weights(self, ctx) -> torch.Tensor | None:
        """Per-utterance weights of the labelled batch's CTC terms, or None (all 1)."""
        return None

    def extra_loss(self, ctx) -> torch.Tensor | None:
        """A loss term added to the batch's mean CTC (``ctx``: a StepContext), or None."""
        return None

    def finalize(self, trainer, final: Path) -> None:
        """After the last epoch and averaging (export adapters...)."""


@register_method
class Scratch(Method):
    """Target-only baseline: random initialisation, all parameters trained.

    Given a source checkpoint it takes the source *architecture* only, so the
    baseline and the transfer methods differ in their initialisation alone.
    """

    name = "scratch"
