"""Teacher-student distillation: ``kd``.

The student matches the teacher's frame posteriors, softened by a temperature,
on the labelled batch and on unlabelled target audio (Hinton et al., 2015,
applied frame-wise to CTC outputs). Teacher: any checkpoint with the same
units and frame rate, e.g. a model fine-tuned on the labelled target data
(semi-supervised use), or a large model for big-to-small compression with
``init: random`` and a small ``model:`` section in the config.
"""

from dataclasses import dataclass

import torch
from torch import nn

from speechtl.adapt.alignment import frame_mask
from speechtl.adapt.base import Method, register_method
from speechtl.errors import SpeechtlError


@dataclass
class KdOptions:
    #: Teacher checkpoint (same units as the student).
    teacher: str = ""
    temperature: float = 2.0
    #: Share of the distillation term: loss = (1 - weight) CTC + weight T^2 KL.
    weight: float = 0.5
    #: "source": the student starts from the source model; "random": from scratch.
    init: str = "source"


def frame_kl(
    teacher_lp: torch.Tensor, student_lp: torch.Tensor, lens: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over valid frames of KL(teacher_T || student_T), times T^2.

    The two may be padded to different lengths (the student's batch shares its
    padding with other streams); frames past ``lens`` never count.
    """
    n = min(teacher_lp.size(1), student_lp.size(1))
    teacher_lp, student_lp = teacher_lp[:, :n], student_lp[:, :n]
    t = torch.log_softmax(teacher_lp / temperature, dim=-1)
    s = torch.log_softmax(student_lp / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)
    mask = frame_mask(lens, kl.size(1)).to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1) * temperature**2


@register_method
class Kd(Method):
    """The student trains on CTC and on the teacher's temperature-softened frame posteriors,
    over the labelled batch and unlabelled target audio; the teacher is frozen."""

    name = "kd"
    ctc_only = True
    Options = KdOptions
    aux_data = ("unlabelled",)

    def __init__(self, options=None):
        super().__init__(options)
        if self.options.init not in ("source", "random"):
            raise SpeechtlError(f"kd: init must be 'source' or 'random', got {self.options.init!r}")
        if not 0 <= self.options.weight <= 1:
            raise SpeechtlError(f"kd: weight must be in [0, 1], got {self.options.weight}")
        self.uses_source = self.options.init == "source"
        self.teacher: nn.Module | None = None

    def prepare(self, model: nn.Module) -> None:
        from speechtl.train.checkpoint import model_from_checkpoint

        if not self.options.teacher:
            raise SpeechtlError("kd needs a teacher checkpoint: methods: {kd: {options: {teacher: PATH}}}")
        self.teacher = model_from_checkpoint(self.options.teacher).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        if self.teacher.input_spec != model.input_spec:
            raise SpeechtlError(
                f"kd: teacher {self.options.teacher} reads {self.teacher.input_spec}, the student "
                f"{model.input_spec}; they see the same batches. Fix: a teacher on the student's input "
                "(the same features and model input_pad)"
            )
        if self.teacher.vocab_size != model.vocab_size:
            raise SpeechtlError(
                f"kd: teacher {self.options.teacher} has {self.teacher.vocab_size} units, "
                f"the student {model.vocab_size}; they must share units"
            )

    def _teacher(self, feats, lens, student_lens, device):
        self.teacher.to(device)
        with torch.no_grad():
            lp, out_lens = self.teacher(feats, lens)
        if not torch.equal(out_lens, student_lens):
            raise SpeechtlError("kd: teacher and student frame rates differ (time_reduction); they must match")
        return lp

    def utterance_weights(self, ctx) -> torch.Tensor | None:
        return torch.full((ctx.feats.size(0),), 1.0 - self.options.weight, device=ctx.device)

    def extra_loss(self, ctx) -> torch.Tensor | None:
        o = self.options
        loss = frame_kl(
            self._teacher(ctx.feats, ctx.lengths, ctx.out_lens, ctx.device), ctx.log_probs, ctx.out_lens, o.temperature
        )
        feats, lens = ctx.aux_feats["unlabelled"]
        lp, out_lens, _ = ctx.aux["unlabelled"]
        loss = loss + frame_kl(self._teacher(feats, lens, out_lens, ctx.device), lp, out_lens, o.temperature)
        return o.weight * loss
