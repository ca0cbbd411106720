"""Labelled-data amounts: nested subsets of a training pool, by duration or by shots.

The pool is shuffled once with a fixed seed and cut at the first N minutes,
so ``5min`` is a subset of ``30min``: a data-efficiency curve then measures
more data, not different data. Few-shot amounts (``5shots``) take the first N
utterances of every (speaker, transcript) class in the same way, so 1 shot is
inside 5. Speed-perturbed copies (``<id>_sp0.9``) follow their original and
do not count toward the amount.

What the shots leave of the pool gives a dev set and untranscribed audio
(:func:`split_rest`): the *last* utterances of every class in the same order
are dev, so no shot subset up to the rest's size can reach them.
"""

import logging
import random
import re
from pathlib import Path

from lhotse import CutSet
from lhotse.utils import fastcopy

from speechtl.atomic import atomic_path
from speechtl.errors import SpeechtlError

_PERTURBED = re.compile(r"_sp\d+(?:\.\d+)?$")


def original_id(cut_id: str) -> str:
    return _PERTURBED.sub("", cut_id)


def _by_original(cuts: CutSet) -> tuple[dict[str, list], list]:
    """(original id -> the original and its perturbed copies, the original cuts)."""
    groups: dict[str, list] = {}
    originals = []
    for c in cuts:
        groups.setdefault(original_id(c.id), []).append(c)
        if original_id(c.id) == c.id:
            originals.append(c)
    if not originals:
        raise SpeechtlError("no original (unperturbed) cuts to take a subset of")
    return groups, originals


def subset_by_minutes(cuts: CutSet, minutes: float, seed: int = 0) -> CutSet:
    """The first ``minutes`` of original audio of ``cuts`` in a seeded order, with their perturbed copies."""
    groups, found = _by_original(cuts)
    duration = {c.id: c.duration for c in found}
    originals = sorted(duration)
    random.Random(seed).shuffle(originals)
    total, chosen = sum(duration.values()), []
    if minutes * 60 > total + 1e-6:
        raise SpeechtlError(
            f"asked for {minutes:g} min of labelled data but the pool has {total / 60:.1f} min. "
            "Fix: lower the amount or synthesize a larger target_train pool."
        )
    acc = 0.0
    for k in originals:
        if acc >= minutes * 60:
            break
        acc += duration[k]
        chosen.append(k)
    logging.info(f"subset: {len(chosen)} utterances, {acc / 60:.2f} min of {total / 60:.1f} min")
    if acc > 1.5 * minutes * 60:  # the nested amounts and their labels assume the subset is about its size
        longest = max(chosen, key=lambda k: duration[k])
        logging.warning(
            f"the {minutes:g}-min subset holds {acc / 60:.2f} min: its utterances are long for the amount "
            f"({longest}: {duration[longest]:.1f} s), and its systems and rows are still labelled {minutes:g} min. "
            "Fix: a larger amount, or shorter utterances (segment the long recordings)"
        )
    return CutSet.from_cuts(c for k in sorted(chosen) for c in groups[k])


def untranscribed(cut):
    """``cut`` with the texts of its supervisions removed (audio for the unlabelled-audio methods)."""
    return fastcopy(cut, supervisions=[fastcopy(s, text="") for s in cut.supervisions])


def _classes(originals: list, seed: int) -> dict[tuple, list[str]]:
    """(speaker, transcript) -> its original cut ids in the seeded order :func:`subset_by_shots` takes."""
    classes: dict[tuple, list[str]] = {}
    for c in originals:
        sup = c.supervisions[0]
        classes.setdefault((sup.speaker or "", sup.text or ""), []).append(c.id)
    for (speaker, text), ids in classes.items():
        ids.sort()
        random.Random(f"{seed}:{speaker}:{text}").shuffle(ids)
    return classes


def subset_by_shots(cuts: CutSet, shots: int, seed: int = 0) -> CutSet:
    """``shots`` original utterances of every (speaker, transcript) pair, with their perturbed copies.

    Each pair's utterances are shuffled by an RNG keyed on (seed, speaker,
    transcript), so the choice of one pair does not depend on the others and
    ``n`` shots are the first ``n`` of ``n + 1``.
    """
    if shots < 1:
        raise SpeechtlError(f"shots must be >= 1, got {shots}")
    groups, originals = _by_original(cuts)
    classes = _classes(originals, seed)
    short = {k: len(v) for k, v in classes.items() if len(v) < shots}
    if short:
        raise SpeechtlError(
            f"{len(short)} (speaker, transcript) class(es) have fewer than {shots} utterances, e.g. "
            f"{sorted(short.items())[:3]}. Fix: ask for fewer shots."
        )
    chosen = []
    for _, ids in sorted(classes.items()):
        chosen += ids[:shots]
    logging.info(
        f"subset: {shots} shot(s) of each of {len(classes)} (speaker, transcript) classes: {len(chosen)} utterances"
    )
    return CutSet.from_cuts(c for k in sorted(chosen) for c in groups[k])


def split_rest(
    cuts: CutSet, labelled_shots: int, dev_shots: int, seed: int = 0, strict: bool = False
) -> tuple[CutSet, CutSet]:
    """(dev, unlabelled): what ``labelled_shots`` shots per (speaker, transcript) leave of ``cuts``.

    In :func:`subset_by_shots`' order, the last ``dev_shots`` originals of every class are
    dev (transcribed: for choosing options), and the originals between the first
    ``labelled_shots`` and them are untranscribed audio (texts removed). Neither part has
    speed-perturbed copies, and neither meets any shot subset of up to ``labelled_shots``.
    A class with fewer than ``labelled_shots + dev_shots`` utterances gives dev what its shots
    leave (and no untranscribed audio), with a warning; ``strict`` makes that an error.
    """
    if labelled_shots < 1 or dev_shots < 1:
        raise SpeechtlError(f"labelled and dev shots must be >= 1, got {labelled_shots} and {dev_shots}")
    _, originals = _by_original(cuts)
    classes = _classes(originals, seed)
    need = labelled_shots + dev_shots
    short = {k: len(v) for k, v in classes.items() if len(v) < need}
    if short:
        msg = (
            f"{len(short)} of {len(classes)} (speaker, transcript) class(es) have fewer than {labelled_shots} "
            f"labelled + {dev_shots} dev utterances, e.g. {sorted(short.items())[:3]}"
        )
        if strict:
            raise SpeechtlError(f"{msg}. Fix: ask for fewer dev shots or fewer labelled shots.")
        logging.warning(f"{msg}: their dev part is what the shots leave, and they give no untranscribed audio")
    by_id = {c.id: c for c in originals}
    dev, rest = [], []
    for _, ids in sorted(classes.items()):
        n_dev = min(dev_shots, max(0, len(ids) - labelled_shots))
        dev += ids[len(ids) - n_dev :]
        rest += ids[labelled_shots : len(ids) - n_dev]
    logging.info(
        f"rest of {labelled_shots} shot(s): {len(dev)} dev utterances (up to {dev_shots} per class), "
        f"{len(rest)} untranscribed"
    )
    return (
        CutSet.from_cuts(by_id[i] for i in sorted(dev)),
        CutSet.from_cuts(untranscribed(by_id[i]) for i in sorted(rest)),
    )


def write_rest(
    cuts_path: Path, dev_out: Path, unlabelled_out: Path, labelled_shots: int, dev_shots: int, seed: int = 0
) -> tuple[Path, Path]:
    """Write :func:`split_rest` of ``cuts_path`` as ``dev_out`` and ``unlabelled_out``."""
    dev, unlabelled = split_rest(CutSet.from_file(cuts_path), labelled_shots, dev_shots, seed)
    with atomic_path(Path(dev_out)) as tmp:
        dev.to_file(tmp)
    with atomic_path(Path(unlabelled_out)) as tmp:
        unlabelled.to_file(tmp)
    return dev_out, unlabelled_out


def write_subset(cuts_path: Path, out: Path, minutes: float = 0.0, shots: int = 0, seed: int = 0) -> Path:
    """Write the subset of ``minutes`` or of ``shots`` (exactly one of them) of ``cuts_path``."""
    if (minutes > 0) == (shots > 0):
        raise SpeechtlError("give exactly one of --minutes and --shots")
    cuts = CutSet.from_file(cuts_path)
    with atomic_path(Path(out)) as tmp:
        (subset_by_shots(cuts, shots, seed) if shots else subset_by_minutes(cuts, minutes, seed)).to_file(tmp)
    return out
