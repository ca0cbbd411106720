"""What the Trainer minimizes on labelled batches: CTC over units, or one label per utterance.

An objective turns a batch's network outputs and supervisions into a loss, and
says what its outputs mean (``token2id``: unit or class symbols, stored in
checkpoints so transfer can map output rows by symbol). Methods, data
streams, DDP, checkpoints and logs are the Trainer's and do not change with it.
"""

from collections.abc import Sequence

import torch

from speechtl.errors import SpeechtlError
from speechtl.train.data import encode_targets

#: Which supervision field labels an utterance, per classification task.
TASK_FIELDS = {"classify-digit": "text", "classify-speaker": "speaker"}


class CtcObjective:
    """CTC over the units of a lang dir; losses are summed over frames' alignments."""

    metric = "ctc"  # per frame
    unit = "frame"

    def __init__(self, lang):
        self.lang = lang
        self.token2id = lang.token2id
        self.vocab_size = lang.vocab_size

    def loss(self, ctx, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(weighted loss sum, unweighted loss sum for logs, frames)."""
        targets, target_lengths = encode_targets(self.lang, ctx.texts)
        args = (ctx.log_probs.transpose(0, 1), targets.to(ctx.device), ctx.out_lens, target_lengths.to(ctx.device))
        frames = int(ctx.out_lens.sum())
        if weights is None:
            total = torch.nn.functional.ctc_loss(*args, blank=0, reduction="sum", zero_infinity=True)
            return total, total.detach(), frames
        per_utt = torch.nn.functional.ctc_loss(*args, blank=0, reduction="none", zero_infinity=True)
        return (per_utt * weights).sum(), per_utt.sum().detach(), frames

    def checkpoint_info(self) -> dict:
        return {"tokens": self.token2id}


def task_field(task: str) -> str:
    if task not in TASK_FIELDS:
        raise SpeechtlError(f"unknown task {task!r}; known: asr, {', '.join(TASK_FIELDS)}")
    return TASK_FIELDS[task]


def label_of(cut, field: str) -> str:
    sup = cut.supervisions[0]
    value = getattr(sup, field, None)
    if not value:
        raise SpeechtlError(f"cut {cut.id} has no supervision {field}; classification by {field} needs one")
    return value


class ClassifyObjective:
    """Cross-entropy of one label per utterance: the supervision's ``field``
    (``text`` for digit classification, ``speaker`` for speaker identification)."""

    metric = "ce"  # per utterance
    unit = "utt"

    def __init__(self, task: str, classes: Sequence[str]):
        if len(classes) < 2:
            raise SpeechtlError(
                f"{task}: the training data has {len(classes)} class(es); classification needs 2 or more"
            )
        self.task = task
        self.field = task_field(task)
        self.classes = list(classes)
        self.token2id = {c: i for i, c in enumerate(self.classes)}
        self.vocab_size = len(self.classes)

    @classmethod
    def from_cuts(cls, task: str, cuts) -> "ClassifyObjective":
        """The classes are the sorted labels found in the training cuts."""
        field = task_field(task)
        return cls(task, sorted({label_of(c, field) for c in cuts}))

    def targets(self, cuts: list) -> torch.Tensor:
        ids = []
        for c in cuts:
            label = label_of(c, self.field)
            if label not in self.token2id:
                raise SpeechtlError(
                    f"cut {c.id}: {self.field} {label!r} is not one of the {self.vocab_size} classes "
                    f"the model was built for ({self.classes[:10]})"
                )
            ids.append(self.token2id[label])
        return torch.tensor(ids, dtype=torch.long)

    def loss(self, ctx, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        per_utt = torch.nn.functional.nll_loss(ctx.log_probs, self.targets(ctx.cuts).to(ctx.device), reduction="none")
        main = per_utt.sum() if weights is None else (per_utt * weights).sum()
        return main, per_utt.sum().detach(), len(ctx.cuts)

    def checkpoint_info(self) -> dict:
        return {"tokens": self.token2id, "task": self.task, "classes": self.classes}
