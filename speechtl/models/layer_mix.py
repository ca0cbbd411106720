"""A learned weighted sum of every layer of a pretrained encoder, as the model's encoder output.

Self-supervised encoders do not put what ASR needs in their last layer: in
wav2vec2 and HuBERT the phonetic content peaks in the middle layers and the top
ones specialise to the pretraining target (Pasad et al., 2021), and SUPERB
(Yang et al., 2021) probes every upstream through a softmax-weighted sum of all
its hidden states for that reason. ``model: {layer_mix: true}`` in an adapt
conf gives the CTC head that sum instead of the last layer: one weight per state
(the input to the first layer, then each layer's output; zeros at the start, so
every state counts alike), each state layer-normalised without parameters
first, since the residual streams of the layers differ in scale. The weights
belong to the head: ``linear-probe`` trains them with the output layer (a probe
of the encoder's best mixture, not only its top), freeze and layer-wise LR treat
them as the head. Training logs the final (averaged) model's shares (which layers
the target used); they are ``layer_mix.weights`` (softmax) in every checkpoint. A
wav2vec2-family encoder trains without LayerDrop under a mix (a dropped layer records
no state in transformers).
"""

from collections.abc import Sequence

import torch
from torch import nn


class LayerMix(nn.Module):
    """(states of shape (batch, frames, dim), ``num_states`` of them) -> their learned weighted sum."""

    def __init__(self, num_states: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_states))

    def forward(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(states) != self.weights.numel():
            raise ValueError(f"layer mix of {self.weights.numel()} states got {len(states)}")
        stacked = torch.stack(list(states))  # (states, batch, frames, dim)
        normed = nn.functional.layer_norm(stacked, stacked.shape[-1:])
        return torch.einsum("s,sbtd->btd", self.weights.softmax(0).to(normed.dtype), normed)

    def shares(self) -> list[float]:
        """Each state's weight in the sum (they add to 1), the first layer's input first."""
        return layer_shares(self.weights)


def layer_shares(weights: torch.Tensor) -> list[float]:
    """The shares of a mix's ``weights`` (a module's or a checkpoint's ``layer_mix.weights``)."""
    return weights.detach().softmax(0).tolist()


def with_layer_mix_group(groups: list[dict], model: nn.Module, lr: float) -> list[dict]:
    """``groups`` with a layer mix's trainable weights in a group of their own at ``lr`` without weight
    decay (``lr`` 0, or no mix or a frozen one: ``groups`` as they are)."""
    mix = getattr(model, "layer_mix", None)
    if not lr or mix is None or not mix.weights.requires_grad:
        return groups
    out = [{**g, "params": [p for p in g["params"] if p is not mix.weights]} for g in groups]
    out = [g for g in out if g["params"]]
    return [*out, {"params": [mix.weights], "lr": lr, "weight_decay": 0.0, "name": "layer_mix"}]
