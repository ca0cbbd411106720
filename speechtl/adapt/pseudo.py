"""Self-training: ``pseudo-label`` (noisy student).

A teacher transcribes unlabelled target audio; hypotheses it is confident
about join the labelled data, and the student (from the source model, with
SpecAugment and speed perturbation as its noise) trains on both. The kept
transcripts are written to ``<exp>/pseudo_labels.txt``.
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from lhotse import CutSet
from lhotse.utils import fastcopy

from speechtl.adapt.base import Method, register_method
from speechtl.adapt.finetune import probe_output_layer
from speechtl.adapt.groups import CONFIDENCE
from speechtl.errors import SpeechtlError


@dataclass
class PseudoLabelOptions:
    #: Teacher checkpoint (same units as the student).
    teacher: str = ""
    #: Keep a hypothesis when its confidence (geometric mean of the best path's
    #: posteriors at the frames that emit a unit) is at least this.
    threshold: float = 0.8
    #: Updates of the output layer alone before training (lp-ft's probe; 0: none). For a new
    #: head on a pretrained encoder (whisper:, hf:), which plain fine-tuning can leave on
    #: CTC's all-blank plateau.
    probe_steps: int = 0
    probe_lr: float = 0.005
    #: "none": the teacher's free best path. "transcripts": a closed prompt set: each utterance
    #: gets one of the labelled data's transcripts, balanced to their frequencies there
    #: (:mod:`speechtl.adapt.balance`); confidence is its probability in the balanced plan.
    balance: str = "none"
    #: With ``balance: transcripts``: average each utterance's transcript scores with those of
    #: its k nearest utterances of the same speaker, nearest by DTW of their fbank
    #: (:mod:`speechtl.adapt.neighbours`), so one word's recordings are labelled together.
    #: 0: each utterance alone.
    neighbours: int = 0
    #: With ``balance: transcripts``, how the transcripts are given out. "plan": utterance by
    #: utterance, by the balanced plan of the (neighbour-smoothed) scores. "groups": each speaker's
    #: utterances are first cut into as many groups as there are transcripts by DTW alone, the
    #: groups matched one to one to the transcripts by their mean scores, then refined over the
    #: ``neighbours`` (:mod:`speechtl.adapt.groups`): a teacher's confusion cannot travel round a
    #: cycle of words (the measurement is in that module's docstring).
    assign: str = "plan"
    #: With ``assign: groups``: neighbours per utterance in the graph that is cut into groups.
    group_neighbours: int = 10
    #: With ``assign: groups``: a label's confidence (what ``threshold`` keeps). "agreement": the
    #: probability the utterance-by-utterance plan (over the neighbour-smoothed scores) gives the
    #: group's label, so a label is kept where the two agree. "refined": its probability after the
    #: refinement, which keeps nearly every label.
    group_confidence: str = "agreement"

    def __post_init__(self):
        if self.balance not in BALANCE:
            raise SpeechtlError(f"pseudo-label: balance must be one of {', '.join(BALANCE)}, got {self.balance!r}")
        if self.neighbours < 0:
            raise SpeechtlError(f"pseudo-label: neighbours must be >= 0, got {self.neighbours}")
        if self.group_confidence not in CONFIDENCE:
            raise SpeechtlError(
                f"pseudo-label: group_confidence must be one of {', '.join(CONFIDENCE)}, got {self.group_confidence!r}"
            )
        if self.assign not in ASSIGN:
            raise SpeechtlError(f"pseudo-label: assign must be one of {', '.join(ASSIGN)}, got {self.assign!r}")
        if self.assign == "groups" and (
            self.balance != "transcripts" or self.neighbours < 1 or self.group_neighbours < 1
        ):
            raise SpeechtlError(
                "pseudo-label: assign: groups matches groups of a speaker's audio to a closed transcript set and "
                f"refines them over neighbours (got balance: {self.balance}, neighbours: {self.neighbours}, "
                f"group_neighbours: {self.group_neighbours}). Fix: balance: transcripts, neighbours >= 1 "
                "and group_neighbours >= 1, or assign: plan"
            )
        if self.neighbours and self.balance != "transcripts":
            raise SpeechtlError(
                "pseudo-label: neighbours smooths the scores of a closed transcript set. "
                "Fix: balance: transcripts (or the balanced-pseudo-label method), or neighbours: 0"
            )


BALANCE = ("none", "transcripts")
ASSIGN = ("plan", "groups")


def confidence(log_probs) -> tuple[list[int], float]:
    """Greedy CTC units and their confidence from one utterance's (frames, vocab) log-probs."""
    best, ids = log_probs.max(dim=-1)
    units, emit = [], []
    prev = 0
    for lp, i in zip(best.tolist(), ids.tolist(), strict=False):
        if i != 0 and i != prev:
            units.append(i)
            emit.append(lp)
        prev = i
    return units, (math.exp(sum(emit) / len(emit)) if emit else 0.0)


def select_confident(hyps: Sequence[tuple[str, str, float]], threshold: float) -> list[tuple[str, str, float]]:
    """The (id, text, confidence) hypotheses with text and confidence >= threshold."""
    return [h for h in hyps if h[1].strip() and h[2] >= threshold]


def balanced_hypotheses(
    scores: dict,
    labelled: Sequence[tuple[str, str]],
    lang,
    cuts=None,
    neighbours: int = 0,
    assign: str = "plan",
    group_neighbours: int = 10,
    group_confidence: str = "agreement",
) -> list[tuple[str, str, float]]:
    """(id, transcript, confidence) for each utterance of ``scores`` (compute_log_probs'
    output): the balanced assignment of the ``labelled`` (cut id, transcript) pairs' transcripts
    (:mod:`speechtl.adapt.balance`); with ``neighbours`` > 0, over scores smoothed among the
    same speaker's ``cuts`` (:mod:`speechtl.adapt.neighbours`); with ``assign: groups``, per
    speaker, by groups of its ``cuts`` matched to the transcripts (:mod:`speechtl.adapt.groups`)."""
    import torch

    from speechtl.adapt.balance import closed_set, fitting, plan_labels, transcript_scores

    names, prior = closed_set(labelled)
    targets = [lang.encode(n) for n in names]
    ids = list(scores)
    matrix = torch.stack([transcript_scores(scores[i][1], targets) for i in ids])
    if assign == "groups":
        from speechtl.adapt.groups import group_assignment
        from speechtl.adapt.neighbours import speaker_distances

        if cuts is None:
            raise SpeechtlError("balanced pseudo-labels by groups compare the utterances' audio. Fix: pass their cuts")
        by_id = {c.id: c for c in cuts}
        speakers = list(speaker_distances([by_id[i] for i in ids], f"groups ({len(names)} transcripts)"))
        if any(not name for name, _, _ in speakers):
            logging.warning(
                "groups: some unlabelled cuts name no speaker; they are grouped as one speaker, whose recordings of a "
                "transcript need not sound alike. Fix: speakers in the supervisions, or assign: plan"
            )
        labels, conf = group_assignment(matrix, speakers, prior, group_neighbours, neighbours, group_confidence)
    else:
        smoothed = matrix
        if neighbours:
            from speechtl.adapt.neighbours import neighbour_smoothed

            by_id = {c.id: c for c in cuts}
            smoothed = neighbour_smoothed(matrix, [by_id[i] for i in ids], neighbours)
        labels, conf = plan_labels(smoothed, prior)
        conf = fitting(matrix, labels, conf)  # a transcript longer than the audio allows: never kept
    return [(i, names[lab], c) for i, lab, c in zip(ids, labels.tolist(), conf.tolist(), strict=True)]


@register_method
class PseudoLabel(Method):
    """Start from the source; train on the labelled data plus the unlabelled target audio
    a teacher transcribed with confidence >= threshold."""

    name = "pseudo-label"
    ctc_only = True
    Options = PseudoLabelOptions
    uses_source = True

    def before_training(self, trainer, cuts, aux_cuts) -> None:
        probe_output_layer(trainer, cuts, self.options.probe_steps, self.options.probe_lr, self.name)

    def prepare_data(self, trainer, cuts: CutSet, aux_cuts) -> CutSet:
        from speechtl.decode.run import compute_log_probs

        if not self.options.teacher:
            raise SpeechtlError(
                "pseudo-label needs a teacher checkpoint: methods: {pseudo-label: {options: {teacher: PATH}}}"
            )
        if "unlabelled" not in aux_cuts:
            raise SpeechtlError("pseudo-label transcribes unlabelled target audio. Fix: give --unlabelled-cuts")
        unlabelled = aux_cuts["unlabelled"]
        logging.info(f"{self.name}: the teacher {self.options.teacher} labels {len(unlabelled)} unlabelled utterances")
        scores = compute_log_probs(self.options.teacher, unlabelled, str(trainer.device))
        if self.options.balance == "transcripts":
            hyps = balanced_hypotheses(
                scores,
                [(c.id, c.supervisions[0].text) for c in cuts],
                trainer.lang,
                unlabelled,
                self.options.neighbours,
                self.options.assign,
                self.options.group_neighbours,
                self.options.group_confidence,
            )
        else:
            hyps = []
            for cut_id, (_, lp) in scores.items():
                units, conf = confidence(lp)
                hyps.append((cut_id, trainer.lang.text(trainer.lang.decode(units)), conf))
        kept = select_confident(hyps, self.options.threshold)
        (trainer.exp_dir / "pseudo_labels.txt").write_text(
            "".join(f"{i}\t{c:.3f}\t{t}\n" for i, t, c in sorted(kept)), encoding="utf-8"
        )
        logging.info(
            f"pseudo-label: kept {len(kept)} of {len(hyps)} unlabelled utterances "
            f"(confidence >= {self.options.threshold}"
            + (", balanced over the labelled transcripts" if self.options.balance == "transcripts" else "")
            + (
                f", scores shared with {self.options.neighbours} same-speaker neighbours"
                if self.options.neighbours and self.options.assign == "plan"
                else ""
            )
            + (
                f", by groups of each speaker's audio refined over {self.options.neighbours} neighbours"
                if self.options.assign == "groups"
                else ""
            )
            + f") -> {trainer.exp_dir / 'pseudo_labels.txt'}"
        )
        text = {i: t for i, t, _ in kept}
        extra = [
            fastcopy(c, supervisions=[fastcopy(c.supervisions[0], text=text[c.id])]) for c in unlabelled if c.id in text
        ]
        return cuts + CutSet.from_cuts(extra) if extra else cuts


@dataclass
class BalancedPseudoLabelOptions(PseudoLabelOptions):
    balance: str = "transcripts"


@register_method
class BalancedPseudoLabel(PseudoLabel):
    """pseudo-label over a closed prompt set: each untranscribed utterance gets one of the
    labelled transcripts, balanced to their labelled frequencies (``balance: transcripts``;
    speechtl.adapt.balance), so a teacher's systematic confusion on a new voice is not
    handed to the student."""

    name = "balanced-pseudo-label"
    Options = BalancedPseudoLabelOptions
