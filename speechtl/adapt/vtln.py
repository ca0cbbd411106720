"""``vtln``: vocal tract length normalization of a new speaker, from untranscribed audio.

The classic speaker adaptation of HMM systems (Lee and Rose, 1998; Kaldi's
``lvtln``): a voice differs from the voices a model knows largely by the length
of its vocal tract, which scales every formant by one factor, so one number per
speaker, chosen on that speaker's own audio without transcripts, undoes much of
the mismatch. Here the model trains as ``finetune`` does on the labelled data;
then every factor of a grid warps the new speaker's untranscribed audio
(:mod:`speechtl.features.warp`) and the factor under which the adapted model is
most certain of what it hears is kept in the model (``ModelConfig.input_warp``):
decode, transcribe and ONNX export apply it with no flag of their own.

"Most certain" is, by ``criterion``, the lowest mean frame entropy of the CTC
posteriors ("entropy") or the highest mean log-probability of the best path
("best-path", the posterior analogue of VTLN's maximum-likelihood choice). The
unlabelled audio is taken as one voice (one factor for all of it): the
leave-one-speaker-out folds' held-out speaker, or a user's own recordings. The
scores of every factor go to ``vtln.tsv`` in the experiment directory.

A source trained with random warps (``train: {vtlp: ...}``) has seen every
factor of the grid on some voice, so its certainty is a fair judge of them.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from lhotse import CutSet

from speechtl.adapt.alignment import frame_mask
from speechtl.adapt.base import Method, register_method
from speechtl.errors import SpeechtlError

CRITERIA = ("entropy", "best-path")


@dataclass
class VtlnOptions:
    #: The factor grid: low, low + step, ..., high (1.0 is always tried).
    low: float = 0.8
    high: float = 1.2
    step: float = 0.02
    criterion: str = "entropy"
    #: Of the unlabelled audio, at most this many utterances (the first by id) score each factor.
    max_utterances: int = 300

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise SpeechtlError(f"vtln: criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if not (0.5 <= self.low <= 1.0 <= self.high <= 2.0) or self.step <= 0:
            raise SpeechtlError(f"vtln: need 0.5 <= low <= 1 <= high <= 2 and step > 0, got {self}")


def factor_grid(o: VtlnOptions) -> list[float]:
    n = round((o.high - o.low) / o.step)
    grid = {round(o.low + i * o.step, 4) for i in range(n + 1)} | {1.0}
    return sorted(f for f in grid if o.low <= f <= o.high)


def certainty(log_probs: torch.Tensor, lens: torch.Tensor, criterion: str) -> tuple[float, int]:
    """(sum over valid frames of the per-frame score, frame count); higher = more certain."""
    mask = frame_mask(lens.to(log_probs.device), log_probs.size(1))
    if criterion == "entropy":
        score = (log_probs.exp() * log_probs).sum(-1)  # minus the entropy
    else:
        score = log_probs.max(-1).values
    return float((score * mask).sum()), int(mask.sum())


def score_factors(model, cuts: CutSet, factors: list[float], geometry, criterion: str) -> dict[float, float]:
    """Mean per-frame certainty of ``model`` on ``cuts`` under each warp factor (features read once)."""
    from speechtl.features.inputs import mark_cuts
    from speechtl.features.warp import input_warp
    from speechtl.train.data import eval_dataloader, unpack

    device = next(model.parameters()).device
    totals = {f: [0.0, 0] for f in factors}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in eval_dataloader(mark_cuts(cuts, model.input_spec), 200.0):
                feats, lengths, _, _ = unpack(batch)
                feats, lengths = feats.to(device), lengths.to(device)
                for f in factors:
                    model.set_input_warp(input_warp(geometry, f))
                    log_probs, out_lens = model(feats, lengths)
                    s, n = certainty(log_probs.float(), out_lens, criterion)
                    totals[f][0] += s
                    totals[f][1] += n
    finally:
        model.train(was_training)
    return {f: s / max(n, 1) for f, (s, n) in totals.items()}


@register_method
class Vtln(Method):
    """Start from the source and fine-tune on the labelled data; then choose the warp factor
    of the unlabelled audio's voice by the adapted model's certainty and keep it in the model."""

    name = "vtln"
    Options = VtlnOptions
    uses_source = True
    ctc_only = True

    def __init__(self, options=None):
        super().__init__(options)
        self.unlabelled: CutSet | None = None

    def before_training(self, trainer, cuts, aux_cuts) -> None:
        if "unlabelled" not in aux_cuts:
            raise SpeechtlError(
                "vtln chooses its warp on the new speaker's untranscribed audio. Fix: give --unlabelled-cuts"
            )
        from speechtl.features.warp import model_geometry

        self.unlabelled = aux_cuts["unlabelled"]
        model_geometry(trainer.model, self.unlabelled)  # a model on raw samples is refused before training

    def finalize(self, trainer, final) -> None:
        warp_checkpoint(final, self.unlabelled, final, self.options, trainer.exp_dir / "vtln.tsv", str(trainer.device))


def warp_checkpoint(
    checkpoint: Path,
    cuts: CutSet,
    output: Path,
    options: VtlnOptions | None = None,
    table: Path | None = None,
    device: str | None = None,
) -> float:
    """Choose the warp factor of ``cuts``' voice for the model of ``checkpoint`` (any trained
    speechtl CTC checkpoint on fbank or Whisper log-mel) and write the model with it kept to
    ``output`` (may be ``checkpoint`` itself); the scores of every factor to ``table``. Returns
    the factor. Without training this is test-time VTLN: one number per new user, from their
    untranscribed recordings (``speechtl vtln``)."""
    from speechtl.features.compute import pick_device
    from speechtl.features.warp import input_warp, model_geometry
    from speechtl.train.checkpoint import load_checkpoint, model_from_state, save_checkpoint

    o = options or VtlnOptions()
    cuts = CutSet.from_cuts(sorted(cuts, key=lambda c: c.id)[: o.max_utterances])
    if not len(cuts):
        raise SpeechtlError("vtln: no untranscribed utterances to choose a warp on. Fix: give the speaker's audio")
    ckpt = load_checkpoint(checkpoint)
    model = model_from_state(ckpt).to(pick_device(device))
    model.set_input_warp(None)  # factors are chosen for the unwarped model (a warped one: from scratch)
    geometry = model_geometry(model, cuts)
    scores = score_factors(model, cuts, factor_grid(o), geometry, o.criterion)
    best = max(scores, key=lambda f: (scores[f], -abs(f - 1.0)))  # ties: the smaller warp
    if table is not None:
        table.write_text(
            f"factor\t{o.criterion}\n" + "".join(f"{f:.4f}\t{v:.6f}\n" for f, v in sorted(scores.items())),
            encoding="utf-8",
        )
    model.set_input_warp(input_warp(geometry, best))
    extra = {k: v for k, v in ckpt.items() if k not in ("model", "model_config", "vocab_size")}
    save_checkpoint(Path(output), model.cpu(), **extra)
    logging.info(
        f"vtln: warp factor {best} chosen on {len(cuts)} untranscribed utterances "
        f"({o.criterion} {scores[best]:.4f}, at 1.0: {scores[1.0]:.4f})"
        + (f"; every factor in {table}" if table else "")
        + f" -> {output}"
    )
    return best
