"""Whisper's audio encoder in our own torch, loading Hugging Face and OpenAI checkpoints.

The network is OpenAI's (Radford et al., 2022): two convolutions (the second
stride 2) with GELU over the log-mel frames, sinusoidal positions, pre-LN
transformer blocks, a final LayerNorm. What differs from ``transformers``'
``WhisperEncoder`` is the input length: that one demands exactly 3000 frames
(30 s; shorter audio padded, and the padding attended to), which makes a
fine-tuning update on half a second of speech cost as much as one on 30 s. Here
the positional table is sliced to the input's length and the padding of a
batch is masked (zeroed before each convolution, excluded as attention keys),
so an utterance gives the same output alone or in any batch, at the cost of
its own length. On a full 30-s input the two are the same function
(``tests/test_whisper.py``).

Checkpoints: a Hugging Face directory (``config.json`` + ``model.safetensors``,
sharded or not, or ``pytorch_model.bin``; ``WhisperModel`` or
``WhisperForConditionalGeneration``), a hub id (through ``huggingface_hub``,
which honours ``HF_HUB_OFFLINE``), or OpenAI's original ``.pt`` (``dims`` +
``model_state_dict``); any size; weights are cast to float32.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from speechtl.errors import SpeechtlError
from speechtl.features.inputs import InputSpec
from speechtl.models.hub import is_hub_id

#: Whisper's front end: 16 kHz audio, 10 ms frames; two frames per encoder output.
SAMPLING_RATE = 16000
HOP_SECONDS = 0.01


@dataclass
class WhisperEncoderConfig:
    """Sizes of a Whisper encoder (tiny: 384/4/6/1536, base 512/6/8/2048, ... large 1280/32/20/5120)."""

    d_model: int = 384
    num_layers: int = 4
    num_heads: int = 6
    ffn_dim: int = 1536
    #: Mel bins of the input (80; 128 for large-v3).
    num_mels: int = 80
    #: Encoder frames the positional table covers (1500 = 30 s).
    max_positions: int = 1500
    dropout: float = 0.0
    attention_dropout: float = 0.0


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's positional table: sines then cosines at geometric timescales, (length, channels)."""
    step = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-step * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([t.sin(), t.cos()], dim=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with Whisper's projections (no bias on the keys)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise SpeechtlError(f"whisper encoder: d_model {d} is not a multiple of num_heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = nn.functional.scaled_dot_product_attention(
            split(self.q_proj(x)),
            split(self.k_proj(x)),
            split(self.v_proj(x)),
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class WhisperBlock(nn.Module):
    """x + attn(norm(x)), then x + fc2(gelu(fc1(norm(x))))."""

    def __init__(self, c: WhisperEncoderConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(c.d_model)
        self.attn = SelfAttention(c.d_model, c.num_heads, c.attention_dropout)
        self.ffn_norm = nn.LayerNorm(c.d_model)
        self.fc1 = nn.Linear(c.d_model, c.ffn_dim)
        self.fc2 = nn.Linear(c.ffn_dim, c.d_model)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), mask))
        return x + self.dropout(self.fc2(nn.functional.gelu(self.fc1(self.ffn_norm(x)))))


class WhisperEncoder(nn.Module):
    """(batch, frames, num_mels) Whisper log-mel -> (batch, ceil(frames / 2), d_model)."""

    Config = WhisperEncoderConfig

    def __init__(self, num_features: int, config: WhisperEncoderConfig):
        super().__init__()
        if num_features != config.num_mels:
            raise SpeechtlError(
                f"whisper encoder: the model's num_features ({num_features}) must equal num_mels ({config.num_mels})"
            )
        self.config = config
        self.conv1 = nn.Conv1d(config.num_mels, config.d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, 3, stride=2, padding=1)
        self.register_buffer("positions", sinusoids(config.max_positions, config.d_model))
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(WhisperBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.output_dim = config.d_model
        #: What the data path must deliver (see :mod:`speechtl.features.inputs`).
        self.input_spec = InputSpec("whisper-mel", SAMPLING_RATE, config.num_mels)

    def post_layer_modules(self) -> list[nn.Module]:
        """Modules above the last layer: layer-wise methods count them with it, not the front end."""
        return [self.norm]

    @property
    def max_input_seconds(self) -> float:
        """The longest audio the positional table covers (30 s for OpenAI's checkpoints): two
        10-ms mel frames per position. Longer recordings are transcribed in pieces
        (:mod:`speechtl.decode.longform`)."""
        return self.positions.size(0) * 2 * HOP_SECONDS

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, all_layers: bool = False
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        """The last layer's output (normalized), or with ``all_layers`` every hidden state as
        transformers lists them: the first layer's input, each layer's output, the last one normalized."""
        lengths = lengths.to(x.device)
        keep = (torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None])[:, None, :].to(x.dtype)
        y = nn.functional.gelu(self.conv1(x.transpose(1, 2) * keep)) * keep
        y = nn.functional.gelu(self.conv2(y)).transpose(1, 2)
        t = y.size(1)
        if t > self.positions.size(0):
            raise SpeechtlError(
                f"whisper encoder: {t} frames after the front end but positions for {self.positions.size(0)} "
                f"({self.positions.size(0) * 2 // 100} s). Fix: split inputs longer than that."
            )
        out_lens = (lengths + 1) // 2
        h = self.dropout(y + self.positions[:t])
        valid = torch.arange(t, device=x.device)[None, :] < out_lens[:, None]
        # Exported graphs (one utterance, no padding) keep the mask: torch.export cannot branch on values.
        mask = None if not torch.compiler.is_exporting() and bool(valid.all()) else valid[:, None, None, :]
        states = [h]
        for layer in self.layers:
            h = layer(h, mask)
            states.append(h)
        states[-1] = self.norm(h)
        return (states if all_layers else states[-1]), out_lens


# ---------------------------------------------------------------------------------------
# Checkpoints: names of the two formats -> ours.

#: (pattern, replacement) over Hugging Face encoder names (after "encoder.").
_HF_NAMES = [
    (r"^embed_positions\.weight$", "positions"),
    (r"^layer_norm\.", "norm."),
    (r"\.self_attn_layer_norm\.", ".attn_norm."),
    (r"\.final_layer_norm\.", ".ffn_norm."),
    (r"\.self_attn\.", ".attn."),
]
#: ...over OpenAI encoder names (after "encoder.").
_OPENAI_NAMES = [
    (r"^positional_embedding$", "positions"),
    (r"^ln_post\.", "norm."),
    (r"^blocks\.", "layers."),
    (r"\.attn_ln\.", ".attn_norm."),
    (r"\.mlp_ln\.", ".ffn_norm."),
    (r"\.attn\.query\.", ".attn.q_proj."),
    (r"\.attn\.key\.", ".attn.k_proj."),
    (r"\.attn\.value\.", ".attn.v_proj."),
    (r"\.attn\.out\.", ".attn.out_proj."),
    (r"\.mlp\.0\.", ".fc1."),
    (r"\.mlp\.2\.", ".fc2."),
]


def _rename(state: dict[str, torch.Tensor], prefix: str, rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    out = {}
    for name, value in state.items():
        if not name.startswith(prefix):
            continue
        new = name[len(prefix) :]
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        out[new] = value.float()
    return out


def _hf_config(cfg: dict, where: str) -> WhisperEncoderConfig:
    try:
        return WhisperEncoderConfig(
            d_model=cfg["d_model"],
            num_layers=cfg["encoder_layers"],
            num_heads=cfg["encoder_attention_heads"],
            ffn_dim=cfg["encoder_ffn_dim"],
            num_mels=cfg.get("num_mels", cfg.get("num_mel_bins", 80)),
            max_positions=cfg.get("max_source_positions", 1500),
        )
    except KeyError as e:
        raise SpeechtlError(
            f"{where} is not a Whisper config (no {e}). Fix: point at a Whisper model directory; a wav2vec2, "
            "HuBERT, WavLM or XLS-R folder is named hf:PATH"
        ) from e


def _read_hf_weights(d: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a Hugging Face model directory whose name has "encoder."."""
    from safetensors import safe_open

    index = d / "model.safetensors.index.json"
    files = (
        sorted({d / f for f in json.loads(index.read_text())["weight_map"].values()})
        if index.is_file()
        else [d / "model.safetensors"]
    )
    if all(f.is_file() for f in files):
        out = {}
        for f in files:
            with safe_open(str(f), "pt") as st:
                out.update({k: st.get_tensor(k) for k in st.keys() if "encoder." in k})  # noqa: SIM118
        return out
    if (d / "pytorch_model.bin").is_file():
        return torch.load(d / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise SpeechtlError(f"{d} has no model.safetensors (or pytorch_model.bin). Fix: a complete HF model directory")


def _encoder_prefix(state: dict[str, torch.Tensor], where: str) -> str:
    for name in state:
        if name.endswith("encoder.conv1.weight"):
            return name[: -len("conv1.weight")]
    raise SpeechtlError(f"{where} holds no Whisper encoder weights (no '...encoder.conv1.weight')")


def _resolve(source: str) -> Path:
    """A local file/directory, or a hub id fetched (or found in the cache) by huggingface_hub."""
    p = Path(source).expanduser()
    if p.exists():
        return p
    if not is_hub_id(source):
        raise SpeechtlError(f"whisper checkpoint {source} does not exist (and is no hub id like openai/whisper-tiny)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=["config.json", "*.safetensors", "*.json", "*.bin"]))
    except Exception as e:
        raise SpeechtlError(
            f"cannot get Whisper model {source} from the hub: {e}. Fix: download it and pass its directory"
        ) from e


def load_whisper_encoder(source: str | Path) -> tuple[WhisperEncoderConfig, dict[str, torch.Tensor]]:
    """The encoder config and state dict (our names, float32) of a Whisper checkpoint."""
    path = _resolve(str(source))
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise SpeechtlError(f"{path} has no config.json. Fix: a Hugging Face Whisper model directory")
        cfg = _hf_config(json.loads(cfg_file.read_text()), str(cfg_file))
        state = _read_hf_weights(path)
        return cfg, _rename(state, _encoder_prefix(state, str(path)), _HF_NAMES)
    if (path.parent / "config.json").is_file() and path.suffix in (".safetensors", ".bin"):
        # torch's "weights only load failed" below would advise weights_only=False, which is unsafe and wrong
        raise SpeechtlError(
            f"{path} is one file of a Hugging Face model folder. Fix: give the folder, whisper:{path.parent}"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SpeechtlError(f"cannot read {path} as an OpenAI Whisper checkpoint: {e}") from e
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise SpeechtlError(f"{path} is not an OpenAI Whisper checkpoint (needs 'dims' and 'model_state_dict')")
    dims, state = ckpt["dims"], ckpt["model_state_dict"]
    fc1 = state.get("encoder.blocks.0.mlp.0.weight")  # OpenAI's MLP is 4 x n_audio_state wide
    cfg = WhisperEncoderConfig(
        d_model=dims["n_audio_state"],
        num_layers=dims["n_audio_layer"],
        num_heads=dims["n_audio_head"],
        ffn_dim=fc1.shape[0] if fc1 is not None else 4 * dims["n_audio_state"],
        num_mels=dims["n_mels"],
        max_positions=dims["n_audio_ctx"],
    )
    return cfg, _rename(state, "encoder.", _OPENAI_NAMES)
