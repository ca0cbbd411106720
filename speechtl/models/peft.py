"""Parameter-efficient modules: bottleneck adapters and LoRA, added to a built model.

Both are described in the model config (``ModelConfig.peft``) so a checkpoint
rebuilds the same network before its weights load. Adapters (Houlsby et al.,
2019) follow every encoder layer: x + up(relu(down(norm(x)))), the up
projection zero-initialized so a fresh adapter is the identity. LoRA (Hu et
al., 2021) adds scale * B @ A to chosen weight matrices through
``torch.nn.utils.parametrize``, B zero-initialized, so training starts from
the source function exactly.
"""

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from speechtl.config import from_dict
from speechtl.errors import SpeechtlError

ADAPTER = "adapters."
#: Conformer (attention in/out, both feed-forward linears); Whisper and wav2vec2 / HuBERT /
#: WavLM (q/k/v/out projections; fc1/fc2 or intermediate/output dense).
LORA_TARGETS = (
    "in_proj_weight",
    "out_proj.weight",
    "net.1.weight",
    "net.4.weight",
    "q_proj.weight",
    "k_proj.weight",
    "v_proj.weight",
    "fc1.weight",
    "fc2.weight",
    "feed_forward.intermediate_dense.weight",
    "feed_forward.output_dense.weight",
)


@dataclass
class PeftConfig:
    #: "adapter" or "lora".
    kind: str = "adapter"
    #: adapter bottleneck width / LoRA rank.
    dim: int = 16
    #: LoRA: scale = alpha / rank.
    alpha: float = 16.0
    #: LoRA: weight names (suffixes) inside encoder layers to adapt: the attention and
    #: feed-forward linears of the Conformer, the Whisper encoder and the wav2vec2 family.
    targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))


class Adapter(nn.Module):
    def __init__(self, d: int, bottleneck: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.down = nn.Linear(d, bottleneck)
        self.up = nn.Linear(bottleneck, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(self.norm(x))))


class LoraDelta(nn.Module):
    """A parametrization W -> W + scale * B @ A (B starts at zero)."""

    def __init__(self, shape: torch.Size, rank: int, alpha: float):
        super().__init__()
        out_f, in_f = shape
        self.lora_a = nn.Parameter(torch.empty(rank, in_f))
        self.lora_b = nn.Parameter(torch.zeros(out_f, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + self.scale * (self.lora_b @ self.lora_a)


def _adapter_hook(adapter: Adapter):
    def hook(module, inputs, output):
        if isinstance(output, tuple):  # (x, lengths)-style layers
            return (adapter(output[0]), *tuple(output[1:]))
        return adapter(output)

    return hook


def add_peft(model: nn.Module, spec: dict) -> PeftConfig:
    """Add adapters or LoRA to ``model.encoder.layers`` as ``spec`` (a PeftConfig mapping) says."""
    cfg = from_dict(PeftConfig, dict(spec), "peft")
    layers = getattr(model.encoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise SpeechtlError(f"{type(model.encoder).__name__} has no layers list to add {cfg.kind} modules to")
    if cfg.kind == "adapter":
        d = model.encoder.output_dim
        model.adapters = nn.ModuleList(Adapter(d, cfg.dim) for _ in layers)
        for layer, adapter in zip(layers, model.adapters, strict=False):
            layer.register_forward_hook(_adapter_hook(adapter))
    elif cfg.kind == "lora":
        n = 0
        for _lname, layer in layers.named_children():
            for pname, p in list(layer.named_parameters()):
                if p.dim() == 2 and any(pname == t or pname.endswith("." + t) for t in cfg.targets):
                    owner = layer.get_submodule(pname.rsplit(".", 1)[0]) if "." in pname else layer
                    parametrize.register_parametrization(
                        owner, pname.rsplit(".", 1)[-1], LoraDelta(p.shape, cfg.dim, cfg.alpha)
                    )
                    n += 1
        if n == 0:
            raise SpeechtlError(f"lora: no encoder-layer weight matches targets {cfg.targets}")
    else:
        raise SpeechtlError(f"peft kind must be 'adapter' or 'lora', got {cfg.kind!r}")
    return cfg


def peft_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters adapters/LoRA added."""
    return [n for n, _ in model.named_parameters() if n.startswith(ADAPTER) or ".lora_" in n]
