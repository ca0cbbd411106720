"""The fine-tuning family: start from the source model, choose what trains and how fast.

All of them load the source weights (output rows of shared units included,
see :mod:`speechtl.adapt.transfer`) and then differ only in which parameters
the optimizer sees and at what learning rate.
"""

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from speechtl.adapt.base import Method, register_method
from speechtl.adapt.param_options import freeze_params as freeze
from speechtl.errors import SpeechtlError
from speechtl.models.layer_mix import with_layer_mix_group

#: Name prefixes of the head: the output layer, and the layer mix under it (``model.layer_mix``).
HEAD = ("output.", "layer_mix.")


def layer_stack(model: nn.Module) -> list[list[tuple[str, nn.Parameter]]]:
    """Named parameters grouped bottom to top: front end, each encoder layer, head.

    The front end is every encoder parameter outside ``encoder.layers`` (the
    subsampling, input projections); the head is the output layer. Layers are
    found by module, not by name, so a wrapped pretrained model whose layers live
    deeper (``encoder.hf.encoder.layers``) groups the same way; what an encoder's
    ``post_layer_modules()`` names (a final LayerNorm) goes with its last layer.
    """
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise SpeechtlError(f"{type(model).__name__} has no encoder.layers list; layer-wise methods need one")
    depth = {id(p): 1 + i for i, layer in enumerate(layers) for p in layer.parameters()}
    post = getattr(encoder, "post_layer_modules", list)()
    depth.update({id(p): len(layers) for m in post for p in m.parameters()})
    stack: list[list[tuple[str, nn.Parameter]]] = [[] for _ in range(len(layers) + 2)]
    for name, p in model.named_parameters():
        stack[-1 if name.startswith(HEAD) else depth.get(id(p), 0)].append((name, p))
    return stack


@register_method
class Finetune(Method):
    """Start from the source model and train every parameter on the target data."""

    name = "finetune"
    uses_source = True


@dataclass
class FreezeOptions:
    #: Freeze the front end and the lowest N encoder layers.
    bottom_layers: int = 0
    #: ...and/or every parameter under these name prefixes (e.g. ``encoder.subsampling``).
    prefixes: list[str] = field(default_factory=list)


@register_method
class Freeze(Method):
    """Start from the source model; frozen parameters never change, the rest train.

    Low layers hold language-independent acoustics: keeping them fixed guards
    against overfitting a few minutes of target speech.
    """

    name = "freeze"
    Options = FreezeOptions
    uses_source = True

    def prepare(self, model: nn.Module) -> None:
        o = self.options
        prefixes = list(o.prefixes)
        if o.bottom_layers:
            stack = layer_stack(model)
            if o.bottom_layers > len(stack) - 2:
                raise SpeechtlError(
                    f"freeze: bottom_layers={o.bottom_layers} but the encoder has {len(stack) - 2} layers. "
                    f"Fix: bottom_layers at most {len(stack) - 2} (--option bottom_layers=N, or the method's "
                    "options in the recipe's conf)"
                )
            if o.bottom_layers == len(stack) - 2:
                logging.warning(
                    f"freeze: bottom_layers={o.bottom_layers} is every layer of this encoder (a final norm goes "
                    "with the last): only the output layer trains, as in linear-probe"
                )
            prefixes += [n for group in stack[: 1 + o.bottom_layers] for n, _ in group]
        if not prefixes:
            raise SpeechtlError("freeze needs bottom_layers > 0 or prefixes; as configured it would train everything")
        freeze(model, prefixes)


@register_method
class LinearProbe(Method):
    """The whole encoder frozen; a new output layer trained from scratch on top of it.

    It measures how linearly decodable the target units are from the source
    features, the feature-extraction end of the transfer spectrum.
    """

    name = "linear-probe"
    uses_source = True
    init_exclude = HEAD

    def prepare(self, model: nn.Module) -> None:
        freeze(model, [n for n, _ in model.named_parameters() if not n.startswith(HEAD)])


@dataclass
class LayerwiseLrOptions:
    #: Each step down from the head multiplies the learning rate by this.
    decay: float = 0.7


@register_method
class LayerwiseLr(Method):
    """Discriminative learning rates (ULMFiT): the head at ``lr``, each layer below
    it at ``decay`` times the one above, the front end lowest.

    General low layers move little, task-specific top layers adapt freely.
    """

    name = "layerwise-lr"
    Options = LayerwiseLrOptions
    uses_source = True

    def param_groups(self, model: nn.Module, lr: float) -> list[dict]:
        if not 0 < self.options.decay <= 1:
            raise SpeechtlError(f"layerwise-lr: decay must be in (0, 1], got {self.options.decay}")
        stack = layer_stack(model)
        groups = []
        for depth, group in enumerate(reversed(stack)):
            params = [p for _, p in group if p.requires_grad]
            if params:
                groups.append(
                    {"params": params, "lr": lr * self.options.decay**depth, "name": group[0][0].rsplit(".", 1)[0]}
                )
        return groups


def probe_output_layer(trainer, cuts, steps: int, lr: float, who: str) -> None:
    """Train the output layer alone for ``steps`` updates at ``lr`` on ``cuts``, everything
    below it fixed (lp-ft's probe; pseudo-label takes it as an option, for a new head on a
    pretrained encoder). ``who`` names the method in errors and the log."""
    if steps < 0 or lr <= 0:
        raise SpeechtlError(f"{who}: probe_steps must be >= 0 and probe_lr > 0, got {steps}, {lr}")
    if steps == 0:
        return
    model = trainer.model
    head = [p for n, p in model.named_parameters() if n.startswith(HEAD) and p.requires_grad]
    if not head:
        raise SpeechtlError(f"{who}: {type(model).__name__} has no trainable output layer (output.*) to probe")
    trains = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith(HEAD) and trains[n])
    groups = with_layer_mix_group([{"params": head, "lr": lr}], model, trainer.cfg.layer_mix_lr)
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=trainer.cfg.weight_decay)
    batches = trainer.aux_batches(cuts, trainer.cfg.seed + 11)
    model.train()
    first = last = None
    try:
        for _step in range(steps):
            loss, _, _ = trainer._loss(next(batches), model, hooks=False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head, trainer.cfg.grad_clip)
            opt.step()
            last = float(loss.detach())
            first = last if first is None else first
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(trains[n])
    logging.info(f"{who}: {steps} updates of the output layer alone, loss {first:.4f} -> {last:.4f}")


@dataclass
class LpFtOptions:
    #: Updates of the output layer alone (everything below it fixed) before the fine-tune.
    probe_steps: int = 100
    #: The output layer's learning rate during them: a head on fixed features takes large steps.
    probe_lr: float = 0.005


@register_method
class LpFt(Method):
    """Linear probing, then fine-tuning (LP-FT, Kumar et al. 2022): the output layer is first
    trained alone on the fixed source features, then every parameter is fine-tuned from there.

    Fine-tuning under a random head sends the head's noise into the pretrained features, and
    a new CTC head on a pretrained encoder at fine-tuning's small learning rate can sit on the
    all-blank plateau for hundreds of updates. A probed head starts the fine-tune already
    emitting units. The probe's updates are counted in ``probe_steps`` (like ssl's and the
    meta-learners' own loops), not in the Trainer's budget.
    """

    name = "lp-ft"
    Options = LpFtOptions
    uses_source = True

    def before_training(self, trainer, cuts, aux_cuts) -> None:
        probe_output_layer(trainer, cuts, self.options.probe_steps, self.options.probe_lr, self.name)
