"""wav2vec2, HuBERT, WavLM and XLS-R encoders through ``transformers``.

The encoder reads the raw waveform (16 kHz; the data path delivers it as a
one-channel (batch, samples, 1) input, see :mod:`speechtl.features.inputs`) and
returns the transformer's last hidden states (one frame per 20 ms). Three
choices follow what fine-tuning these models needs (Baevski et al., 2020, and
every toolkit that fine-tunes them):

- the CNN feature encoder is frozen by default (``freeze_feature_encoder``):
  its parameters never get a gradient, so every method leaves them bitwise as
  pretrained (and a method that trains "everything" trains the transformer);
- the model's own time masking (``mask_time_prob`` of its config, or the
  option here) masks spans of frames with its learned embedding, in training
  mode only: it is the SpecAugment of raw-waveform models;
- the padding of a batch is given to the model as its attention mask.

The whole Hugging Face config is kept in ``encoder_options.config``, so a
checkpoint rebuilds the network without the pretrained files; the pretrained
weights are loaded once, by :func:`load_hf_encoder`, when a source is given
as ``hf:PATH_OR_ID`` (a local directory, or a hub id; ``HF_HUB_OFFLINE=1``
makes it a cache lookup, as everywhere in ``transformers``).
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechtl.errors import SpeechtlError
from speechtl.features.inputs import InputSpec
from speechtl.models.hub import is_hub_id, quiet_transformers

#: The Hugging Face model types this encoder is tested with (any Wav2Vec2-like base model loads).
MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "wav2vec2-conformer", "data2vec-audio")


@dataclass
class HfSslConfig:
    #: The Hugging Face config as a dict (``model_type`` included).
    config: dict[str, Any] = field(default_factory=dict)
    freeze_feature_encoder: bool = True
    #: Time masking while training; None: the config's own mask_time_prob.
    mask_time_prob: float | None = None
    #: LayerDrop while training; None: the config's own layerdrop.
    layerdrop: float | None = None
    #: The rate the model was pretrained at (its feature extractor's sampling_rate): audio is resampled to it.
    sampling_rate: int = 16000


def hf_config(options: dict[str, Any]):
    from transformers import AutoConfig

    options = dict(options)
    model_type = options.pop("model_type", None)
    if not model_type:
        raise SpeechtlError("hf-ssl encoder_options.config needs a model_type (e.g. wav2vec2, hubert, wavlm)")
    for key in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        options.pop(key, None)
    return AutoConfig.for_model(model_type, **options)


class HfSslEncoder(nn.Module):
    """(batch, samples, 1) waveform -> (batch, frames, hidden_size) through a transformers model."""

    Config = HfSslConfig

    def __init__(self, num_features: int, config: HfSslConfig):
        super().__init__()
        from transformers import AutoModel

        if num_features != 1:
            raise SpeechtlError(f"hf-ssl encoder reads the waveform: num_features must be 1, got {num_features}")
        cfg = hf_config(config.config)
        if config.mask_time_prob is not None:
            cfg.mask_time_prob = config.mask_time_prob
        if config.layerdrop is not None:
            cfg.layerdrop = config.layerdrop
        self.hf = AutoModel.from_config(cfg)
        if not hasattr(self.hf, "feature_extractor") or not hasattr(self.hf, "encoder"):
            raise SpeechtlError(f"hf-ssl: {cfg.model_type} is no wav2vec2-style model; known to work: {MODEL_TYPES}")
        if config.freeze_feature_encoder:
            for p in self.hf.feature_extractor.parameters():
                p.requires_grad_(False)
            # transformers' feature encoder otherwise makes its input require a gradient in training
            # mode, and backward then runs through every convolution for nothing.
            self.hf.feature_extractor._requires_grad = False
        self.output_dim = cfg.hidden_size
        self.input_spec = InputSpec("samples", config.sampling_rate, 1)
        self._lengths: torch.Tensor | None = None
        first = self.hf.feature_extractor.conv_layers[0]
        norm = getattr(first, "layer_norm", None)
        if isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels:
            # "group" models (wav2vec2-base, HuBERT and WavLM base): see feature_encoder_forward
            self.hf.feature_extractor.forward = self.feature_encoder_forward

    def prepare_all_layers(self) -> None:
        """Before a layer mix reads every hidden state: LayerDrop off. transformers records a hidden state
        only for a layer that ran, so a dropped layer (wav2vec2, HuBERT and XLS-R ship with layerdrop 0.1)
        would leave the mix a state short in training."""
        if self.hf.config.layerdrop:
            logging.info(f"layer mix: LayerDrop {self.hf.config.layerdrop} off, so that every layer gives its state")
            self.hf.config.layerdrop = 0.0

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer layers (for freeze, layer-wise LR, adapters, LoRA)."""
        return self.hf.encoder.layers

    def post_layer_modules(self) -> list[nn.Module]:
        """The stable-layer-norm variants (large models, XLS-R) normalize after the last layer."""
        return [self.hf.encoder.layer_norm] if getattr(self.hf.config, "do_stable_layer_norm", False) else []

    def feature_encoder_forward(self, wave: torch.Tensor) -> torch.Tensor:
        """The CNN feature encoder of a "group" model, each utterance as if it were alone.

        Its first layer's GroupNorm (one group per channel) normalizes over time, and in a
        padded batch transformers takes the padding's zeros into those statistics: a shorter
        utterance's log-probabilities moved by up to 1.5 with the batch it was decoded in (a
        tiny wav2vec2, yesno). Here the statistics are over each utterance's own frames; the
        layers above are local and see only frames computed from its own samples."""
        first, *rest = self.hf.feature_extractor.conv_layers
        h = first.conv(wave[:, None])
        lengths = self._lengths if self._lengths is not None else torch.full_like(wave[:, 0], wave.size(1)).long()
        k, stride = first.conv.kernel_size[0], first.conv.stride[0]
        frames = torch.div(lengths - k, stride, rounding_mode="floor") + 1
        valid = (torch.arange(h.size(2), device=h.device)[None, :] < frames[:, None])[:, None, :].to(h.dtype)
        count = valid.sum(dim=2, keepdim=True).clamp(min=1)
        mean = (h * valid).sum(dim=2, keepdim=True) / count
        var = ((h - mean).square() * valid).sum(dim=2, keepdim=True) / count
        norm = first.layer_norm
        h = (h - mean) / torch.sqrt(var + norm.eps) * norm.weight[:, None] + norm.bias[:, None]
        h = first.activation(h)
        for layer in rest:
            h = layer(h)
        return h

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor, all_layers: bool = False
    ) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        """The last hidden state, or with ``all_layers`` all of them (the first layer's input, then each
        layer's output)."""
        lengths = lengths.to(x.device)
        wave = x[..., 0]
        mask = (torch.arange(wave.size(1), device=x.device)[None, :] < lengths[:, None]).long()
        self._lengths = lengths  # for feature_encoder_forward, which transformers calls with the wave alone
        try:
            result = self.hf(wave, attention_mask=mask, output_hidden_states=all_layers)
        finally:
            self._lengths = None
        out = result.last_hidden_state
        out_lens = self.hf._get_feat_extract_output_lengths(lengths).long().clamp(max=out.size(1))
        return (list(result.hidden_states) if all_layers else out), out_lens


def _resolve(source: str) -> str:
    p = Path(source).expanduser()
    if p.exists():
        return str(p)
    if not is_hub_id(source):
        raise SpeechtlError(f"pretrained model {source} does not exist (and is no hub id like facebook/wav2vec2-base)")
    return source


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for the Hugging Face cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def model_folder(source: str) -> str:
    """``source`` as ``from_pretrained`` takes it: an existing Hugging Face folder, or a hub id; a file, or a
    folder without config.json, is refused with the fix."""
    where = _resolve(source)
    local = Path(where)
    if local.is_file() or (local.is_dir() and not (local / "config.json").is_file()):
        folder = local.parent if local.is_file() else local
        raise SpeechtlError(
            f"{source} is no Hugging Face model folder (one holds config.json and model.safetensors or "
            f"pytorch_model.bin)"
            + (
                f". Fix: give the folder, hf:{folder}"
                if (folder / "config.json").is_file()
                else ". Fix: save the model with save_pretrained(), or give its hub id"
            )
        )
    return where


def load_error(source: str, where: str, e: Exception) -> SpeechtlError:
    """The error for a model that did not load, with the offline fix when the hub was out of reach."""
    if hub_offline() and where == source and not Path(source).exists():
        return SpeechtlError(
            f"cannot load pretrained model {source}: HF_HUB_OFFLINE is set and it is not in the Hugging Face "
            f"cache. Fix: on a machine with internet, `huggingface-cli download {source}` (then copy the cache, "
            f"~/.cache/huggingface), or pass hf:/path/to/a/local/copy"
        )
    return SpeechtlError(f"cannot load pretrained model {source}: {e}")


def waveform_options(source: str, where: str) -> tuple[bool, int]:
    """(whether the model reads each utterance scaled to zero mean and unit variance, the sampling rate it
    was trained at), from its feature extractor config (wav2vec2's defaults, with a warning, without one)."""
    from transformers import AutoFeatureExtractor

    try:
        extractor = AutoFeatureExtractor.from_pretrained(where, local_files_only=hub_offline())
        return bool(getattr(extractor, "do_normalize", True)), int(getattr(extractor, "sampling_rate", None) or 16000)
    except Exception:
        logging.warning(
            f"{source}: no feature extractor config (preprocessor_config.json), so whether the model was trained on "
            "normalized waveforms is not known: each utterance is scaled to zero mean and unit variance (wav2vec2's "
            "default; HuBERT and WavLM base were trained without it). Fix, if that is wrong: add the model's "
            "preprocessor_config.json with its do_normalize"
        )
        return True, 16000


def load_hf_encoder(source: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], bool, int]:
    """(config dict, float32 state dict of the base model, whether its inputs are normalized, the sampling
    rate it was pretrained at) of a pretrained wav2vec2-family model: a local directory or a hub id."""
    from transformers import AutoModel

    where = model_folder(source)
    try:
        # quiet: of a fine-tuned Wav2Vec2ForCTC, transformers tables its lm_head as "UNEXPECTED ... not ok";
        # what matters, weights the checkpoint lacks, is checked below
        with quiet_transformers():
            model, info = AutoModel.from_pretrained(
                where, local_files_only=hub_offline(), dtype=torch.float32, output_loading_info=True
            )
    except Exception as e:
        raise load_error(source, where, e) from e
    if not hasattr(model, "feature_extractor"):
        raise SpeechtlError(
            f"{source} is a {model.config.model_type} model, not wav2vec2-style; use whisper: for Whisper"
        )
    normalize, rate = waveform_options(source, where)
    missing = list(info.get("missing_keys") or []) + [k for k, *_ in info.get("mismatched_keys") or []]
    if missing:
        raise SpeechtlError(
            f"{source} lacks {len(missing)} weight(s) of its own config ({', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): they would start at random. Fix: the checkpoint's files "
            "are incomplete or renamed; save the model again with save_pretrained()"
        )
    heads = [a for a in model.config.architectures or [] if a.endswith(("ForCTC", "ForPreTraining"))]
    if heads:
        logging.info(
            f"{source} is a {heads[0]}: its encoder is used and its own head left out (a CTC head's vocabulary "
            "with it; its zero-shot row: speechtl zero-shot); the target gets a new output layer for its units"
        )
    if rate != 16000:
        logging.info(f"{source} was pretrained at {rate} Hz (its feature extractor): audio is resampled to it")
    state = {k: v.float() for k, v in model.state_dict().items()}
    return model.config.to_dict(), state, normalize, rate
