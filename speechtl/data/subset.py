"""Labelled-data amounts: nested subsets of a training pool, by duration or by shots.

The pool is shuffled once with a fixed seed and cut at the first N minutes,
so ``5min`` is a subset of ``30min``: a data-efficiency curve then measures
more data, not different data. Few-shot amounts (``5shots``) take the first N
utterances of every (speaker, transcript) class in the same way, so 1 shot is
inside 5. Speed-perturbed copies (``<id>_sp0.9``) follow their original and
do not count toward the amount.
"""

import logging
import random
import re
from pathlib import Path

from lhotse import CutSet

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
    return CutSet.from_cuts(c for k in sorted(chosen) for c in groups[k])


def subset_by_shots(cuts: CutSet, shots: int, seed: int = 0) -> CutSet:
    """``shots`` original utterances of every (speaker, transcript) pair, with their perturbed copies.

    Each pair's utterances are shuffled by an RNG keyed on (seed, speaker,
    transcript), so the choice of one pair does not depend on the others and
    ``n`` shots are the first ``n`` of ``n + 1``.
    """
    if shots < 1:
        raise SpeechtlError(f"shots must be >= 1, got {shots}")
    groups, originals = _by_original(cuts)
    classes: dict[tuple, list[str]] = {}
    for c in originals:
        sup = c.supervisions[0]
        classes.setdefault((sup.speaker or "", sup.text or ""), []).append(c.id)
    short = {k: len(v) for k, v in classes.items() if len(v) < shots}
    if short:
        raise SpeechtlError(
            f"{len(short)} (speaker, transcript) class(es) have fewer than {shots} utterances, e.g. "
            f"{sorted(short.items())[:3]}. Fix: ask for fewer shots."
        )
    chosen = []
    for (speaker, text), ids in sorted(classes.items()):
        ids = sorted(ids)
        random.Random(f"{seed}:{speaker}:{text}").shuffle(ids)
        chosen += ids[:shots]
    logging.info(
        f"subset: {shots} shot(s) of each of {len(classes)} (speaker, transcript) classes: {len(chosen)} utterances"
    )
    return CutSet.from_cuts(c for k in sorted(chosen) for c in groups[k])


def write_subset(cuts_path: Path, out: Path, minutes: float = 0.0, shots: int = 0, seed: int = 0) -> Path:
    """Write the subset of ``minutes`` or of ``shots`` (exactly one of them) of ``cuts_path``."""
    if (minutes > 0) == (shots > 0):
        raise SpeechtlError("give exactly one of --minutes and --shots")
    cuts = CutSet.from_file(cuts_path)
    with atomic_path(Path(out)) as tmp:
        (subset_by_shots(cuts, shots, seed) if shots else subset_by_minutes(cuts, minutes, seed)).to_file(tmp)
    return out
