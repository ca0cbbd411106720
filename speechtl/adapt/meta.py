"""Meta-learned initialization: ``reptile`` and ``fomaml``.

Tasks are groups of the labelled cuts (by speaker, i.e. voice, or language).
Starting from the source model, each outer step adapts a copy of the weights to
one task with a few SGD steps; Reptile (Nichol et al., 2018) then moves the
weights toward the adapted ones, first-order MAML (Finn et al., 2017) applies
the adapted weights' gradient on a held-out batch of the same task. The result
is an initialization that fine-tuning (the main loop, all parameters) adapts.
"""

import abc
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from lhotse import CutSet

from speechtl.adapt.base import Method, register_method
from speechtl.errors import SpeechtlError


@dataclass
class MetaOptions:
    outer_steps: int = 30
    inner_steps: int = 3
    inner_lr: float = 0.01
    #: Reptile's step size epsilon (fraction of the way to the adapted weights);
    #: FOMAML's outer learning rate.
    meta_lr: float = 0.5
    #: Supervision field that defines a task: "speaker" or "language".
    task_key: str = "speaker"


@dataclass
class FomamlOptions(MetaOptions):
    #: FOMAML's outer learning rate: a plain SGD step on the held-out batch's gradient. Reptile's
    #: 0.5 (a fraction of the way) made that step diverge (non-finite losses at once, fsdd).
    meta_lr: float = 0.001


def task_groups(cuts: CutSet, key: str) -> dict[str, CutSet]:
    if key not in ("speaker", "language"):
        raise SpeechtlError(f"task_key must be 'speaker' or 'language', got {key!r}")
    groups: dict[str, list] = {}
    for c in cuts:
        groups.setdefault(str(getattr(c.supervisions[0], key)), []).append(c)
    return {k: CutSet.from_cuts(v) for k, v in sorted(groups.items())}


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def reptile_update(model: torch.nn.Module, adapted: dict[str, torch.Tensor], epsilon: float) -> None:
    """theta <- theta + epsilon (theta_adapted - theta), in place."""
    with torch.no_grad():
        for n, p in trainable(model).items():
            p.add_(adapted[n].to(p.device) - p, alpha=epsilon)


class _Meta(Method, abc.ABC):
    Options = MetaOptions
    uses_source = True

    def inner_loop(self, trainer, batches: Iterator[dict]) -> None:
        """``inner_steps`` SGD steps on ``batches``, in place."""
        opt = torch.optim.SGD(list(trainable(trainer.model).values()), lr=self.options.inner_lr)
        for _ in range(self.options.inner_steps):
            loss, _, _ = trainer._loss(next(batches), trainer.model, hooks=False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), 5.0)
            opt.step()

    def outer_step(self, trainer, batches: Iterator[dict]) -> dict[str, torch.Tensor]:
        """One meta update on one task: adapt a copy of the weights with the inner loop,
        restore the start weights, then apply this method's update; returns the adapted weights."""
        params = trainable(trainer.model)
        start = {n: p.detach().clone() for n, p in params.items()}
        self.inner_loop(trainer, batches)
        adapted = {n: p.detach().clone() for n, p in params.items()}
        grads = self.outer_gradient(trainer, params, batches)  # at the adapted weights, if the method uses one
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(start[n])
        self.meta_update(trainer.model, adapted, grads)
        return adapted

    @abc.abstractmethod
    def outer_gradient(self, trainer, params: dict[str, torch.nn.Parameter], batches: Iterator[dict]):
        """What the update needs from the adapted weights before they are restored (or None)."""

    @abc.abstractmethod
    def meta_update(self, model: torch.nn.Module, adapted: dict[str, torch.Tensor], grads) -> None:
        """Move the (restored) start weights."""

    def before_training(self, trainer, cuts: CutSet, aux_cuts) -> None:
        o = self.options
        tasks = task_groups(cuts, o.task_key)
        if len(tasks) < 2:
            logging.warning(f"{self.name}: only {len(tasks)} task(s) by {o.task_key}; meta-learning needs several")
        iters = {k: trainer.aux_batches(v, trainer.cfg.seed + 100 + i) for i, (k, v) in enumerate(tasks.items())}
        rng = random.Random(trainer.cfg.seed)
        trainer.model.train()
        for _step in range(o.outer_steps):
            self.outer_step(trainer, iters[rng.choice(sorted(iters))])
        logging.info(
            f"{self.name}: {o.outer_steps} outer steps over {len(tasks)} tasks ({o.task_key}); "
            "fine-tuning from the meta-learned weights"
        )


@register_method
class Reptile(_Meta):
    """Start from the source; Reptile meta-learning over tasks (voices) moves the weights
    toward each task's few-step-adapted weights by meta_lr, then everything is fine-tuned."""

    name = "reptile"

    def outer_gradient(self, trainer, params, batches):
        return None

    def meta_update(self, model, adapted, grads):
        reptile_update(model, adapted, self.options.meta_lr)


@register_method
class Fomaml(_Meta):
    """Start from the source; first-order MAML over tasks (voices): the gradient of a
    held-out batch at the task-adapted weights updates the initial weights, then
    everything is fine-tuned."""

    name = "fomaml"
    Options = FomamlOptions

    def outer_gradient(self, trainer, params, batches):
        loss, _, _ = trainer._loss(next(batches), trainer.model, hooks=False)
        return torch.autograd.grad(loss, list(params.values()), allow_unused=True)

    def meta_update(self, model, adapted, grads):
        with torch.no_grad():
            for p, g in zip(trainable(model).values(), grads, strict=False):
                if g is not None:
                    p.add_(g, alpha=-self.options.meta_lr)
