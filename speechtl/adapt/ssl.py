"""Self-supervised pretraining on target audio: ``ssl``.

Before fine-tuning, the encoder (from the source model) learns to reconstruct
masked spans of the target's own fbank frames, labelled and unlabelled audio
alike (masked acoustic modelling, as in Mockingjay/TERA), so its features fit
the target's speakers before any label is used. A linear head predicts each
encoder frame's input frames (averaged over its time_reduction window); L1
loss on the frames under a mask. The head is discarded afterwards.
"""

import logging
from dataclasses import dataclass

import torch
from torch import nn

from speechtl.adapt.base import Method, register_method
from speechtl.errors import SpeechtlError
from speechtl.models.ctc import utterance_normalize


@dataclass
class SslOptions:
    steps: int = 100
    lr: float = 0.001
    #: Chance that a frame starts a masked span, and the span length in frames.
    mask_prob: float = 0.05
    mask_span: int = 10


def span_mask(lengths: torch.Tensor, frames: int, prob: float, span: int, generator=None) -> torch.Tensor:
    """(batch, frames) bool: spans of ``span`` frames starting with probability ``prob``, inside each length."""
    starts = torch.rand(lengths.size(0), frames, generator=generator) < prob
    mask = torch.zeros_like(starts)
    for k in range(span):
        mask[:, k:] |= starts[:, : frames - k]
    return mask & (torch.arange(frames)[None, :] < lengths[:, None])


@register_method
class Ssl(Method):
    """Start from the source; masked-frame reconstruction on labelled and unlabelled target
    audio adapts the encoder without labels, then everything is fine-tuned on the labels."""

    name = "ssl"
    Options = SslOptions
    uses_source = True

    def reconstruction_loss(self, model, head: nn.Module, feats, lengths, device) -> torch.Tensor:
        o = self.options
        norm = utterance_normalize(feats, lengths)
        mask = span_mask(lengths, feats.size(1), o.mask_prob, o.mask_span)
        masked = norm.masked_fill(mask.unsqueeze(-1), 0.0)  # 0 = the utterance mean after normalization
        _, _out_lens, enc = model(masked.to(device), lengths.to(device), return_encoder=True)
        r = max(1, round(feats.size(1) / enc.size(1)))
        t = enc.size(1) * r
        pad = max(0, t - feats.size(1))
        target = nn.functional.pad(norm, (0, 0, 0, pad))[:, :t].reshape(feats.size(0), enc.size(1), r, -1).mean(2)
        m = nn.functional.pad(mask, (0, pad))[:, :t].reshape(feats.size(0), enc.size(1), r).any(-1).to(device)
        err = (head(enc) - target.to(device)).abs().mean(-1)
        return (err * m).sum() / m.sum().clamp(min=1)

    def before_training(self, trainer, cuts, aux_cuts) -> None:
        from speechtl.train.data import unpack

        o = self.options
        model = trainer.model
        if model.input_spec.kind == "samples":
            raise SpeechtlError(
                "ssl reconstructs masked input frames, and this model reads the raw waveform (a wav2vec2-family "
                "source): its frames are single samples, so the masks would cover under a millisecond and the "
                "targets would be waveform means. Fix: adapt it with another unlabelled-audio method "
                "(dann, mmd, coral, entropy, pseudo-label, kd)"
            )
        data = cuts + aux_cuts["unlabelled"] if "unlabelled" in aux_cuts else cuts
        head = nn.Linear(model.encoder.output_dim, model.config.num_features).to(trainer.device)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad] + list(head.parameters()), lr=o.lr)
        batches = trainer.aux_batches(data, trainer.cfg.seed + 7)
        model.train()
        first = last = None
        for _step in range(o.steps):
            feats, lengths, _, _ = unpack(next(batches))
            loss = self.reconstruction_loss(model, head, feats, lengths, trainer.device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            first = float(loss) if first is None else first
            last = float(loss)
        logging.info(f"ssl: {o.steps} masked-reconstruction steps on {len(data)} cuts, L1 {first:.4f} -> {last:.4f}")
