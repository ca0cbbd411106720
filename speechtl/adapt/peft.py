"""Parameter-efficient transfer: ``adapter`` and ``lora``.

Only the added modules train (plus the output layer, when ``train_head``:
a new language's units need their rows learned). The base network stays
bitwise the source's, so one source model can serve many targets, each a small
``adapter.pt`` (the added tensors alone, and the head when it trained).
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from speechtl.adapt.base import Method, register_method
from speechtl.adapt.finetune import HEAD
from speechtl.models.peft import add_peft, peft_parameter_names


@dataclass
class AdapterOptions:
    #: Bottleneck width (adapter) or rank (lora).
    dim: int = 32
    #: LoRA scale numerator: updates are scaled by alpha / dim.
    alpha: float = 32.0
    #: Also train the output layer (needed when target units differ from the source's).
    train_head: bool = True


class _Peft(Method):
    kind = ""
    Options = AdapterOptions
    uses_source = True

    def prepare(self, model: nn.Module) -> None:
        o = self.options
        spec: dict = {"kind": self.kind, "dim": o.dim}
        if self.kind == "lora":
            spec["alpha"] = o.alpha
        add_peft(model, spec)
        model.config.peft = spec  # checkpoints rebuild the same modules
        added = set(peft_parameter_names(model))
        for name, p in model.named_parameters():
            p.requires_grad_(name in added or (o.train_head and name.startswith(HEAD)))

    def finalize(self, trainer, final: Path) -> None:
        from speechtl.train.checkpoint import load_checkpoint  # speechtl.train imports this package

        model = trainer.model
        state = load_checkpoint(final)
        names = peft_parameter_names(model)
        out = {"peft": model.config.peft, "adapter": {n: state["model"][n] for n in names}}
        if self.options.train_head:
            out["head"] = {n: v for n, v in state["model"].items() if n.startswith(HEAD)}
        torch.save(out, trainer.exp_dir / "adapter.pt")


@register_method
class Adapter(_Peft):
    """Bottleneck adapters after every encoder layer (zero-initialized, so training
    starts from the source function); only they and the head train."""

    name = "adapter"
    kind = "adapter"


@register_method
class Lora(_Peft):
    """Low-rank updates (B @ A, B zero-initialized) of every attention and
    feed-forward weight of the encoder layers; only they and the head train."""

    name = "lora"
    kind = "lora"
