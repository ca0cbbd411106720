"""Activation checkpointing (``train.activation_checkpointing``): keep only each encoder
layer's inputs in forward and recompute its insides in backward, trading about one
extra forward pass for activation memory that no longer grows with depth.

The contract an encoder meets to be checkpointed (every encoder in
:mod:`speechtl.models` should): it exposes its repeated blocks as ``encoder.layers``,
an ``nn.ModuleList``, and calls each block once per forward. A block may take any
arguments (``layer(x)``, ``layer(x, pad)``, keywords) and return a tensor or a tuple of
them; it must not depend on state that changes between forward and backward other
than the RNG (dropout draws are replayed: torch's checkpoint saves the RNG state) and
normalization running statistics (the recomputation leaves them as the first pass
set them, so BatchNorm's running mean and variance move once per step as without
checkpointing). A pretrained wrapper whose blocks sit deeper (a Hugging Face model's
``encoder.layers``) exposes them as a ``layers`` property.

The block itself is left in place (the same object, the same parameter names in
checkpoints); only its ``forward`` is routed through ``torch.utils.checkpoint``, so
forward hooks (adapters) and parametrizations (LoRA) on it keep working.
"""

import contextlib
import types

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.utils.checkpoint import checkpoint

from speechtl.errors import SpeechtlError


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """``model.encoder.layers``, the blocks checkpointing wraps; an error naming the contract otherwise."""
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise SpeechtlError(
            f"activation_checkpointing: {type(encoder).__name__} exposes no `layers` ModuleList of blocks. "
            "Fix: set train.activation_checkpointing: false, or give the encoder a `layers` attribute "
            "(see speechtl/train/activation_checkpointing.py)"
        )
    return layers


def running_stats(module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Copies of the running statistics of ``module``'s normalization layers (BatchNorm's
    mean, variance and count), the buffers a training forward pass changes."""
    return [
        (buf, buf.clone())
        for m in module.modules()
        if isinstance(m, _NormBase) and m.track_running_stats
        for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
        if buf is not None
    ]


def restore_running_stats(saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Put back what :func:`running_stats` copied (a skipped update, a recomputation)."""
    with torch.no_grad():
        for buf, value in saved:
            buf.copy_(value)


@contextlib.contextmanager
def kept_running_stats(module: nn.Module):
    """Undo what a pass through ``module`` does to its normalization layers' running statistics."""
    saved = running_stats(module)
    try:
        yield
    finally:
        restore_running_stats(saved)


def _checkpointed_forward(self: nn.Module, *args, **kwargs):
    inner = type(self).forward
    if not (self.training and torch.is_grad_enabled()):
        return inner(self, *args, **kwargs)
    passes = []

    def run(*a, **k):
        if passes:  # the recomputation in backward
            with kept_running_stats(self):
                return inner(self, *a, **k)
        passes.append(1)
        return inner(self, *a, **k)

    return checkpoint(run, *args, use_reentrant=False, **kwargs)


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Route every encoder block's forward through checkpointing; returns how many blocks.

    Set as a bound method on each block (not a wrapper module), so state-dict keys do
    not change and ``copy.deepcopy`` of the model binds the copies' own blocks."""
    layers = encoder_layers(model)
    for layer in layers:
        layer.forward = types.MethodType(_checkpointed_forward, layer)
    return len(layers)
