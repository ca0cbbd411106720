"""Labelled-data amounts: nested subsets of a training pool by duration.

The pool is shuffled once with a fixed seed and cut at the first N minutes,
so ``5min`` is a subset of ``30min``: a data-efficiency curve then measures
more data, not different data. Speed-perturbed copies (``<id>_sp0.9``) follow
their original and do not count toward the amount.
"""

import logging
import random
import re
from pathlib import Path
from typing import Dict, List

from lhotse import CutSet

from speechtl.errors import SpeechtlError

_PERTURBED = re.compile(r"_sp\d+(?:\.\d+)?$")


def original_id(cut_id: str) -> str:
    return _PERTURBED.sub("", cut_id)


def subset_by_minutes(cuts: CutSet, minutes: float, seed: int = 0) -> CutSet:
    """The first ``minutes`` of original audio of ``cuts`` in a seeded order, with their perturbed copies."""
    groups: Dict[str, List] = {}
    duration: Dict[str, float] = {}  # of each original cut
    for c in cuts:
        groups.setdefault(original_id(c.id), []).append(c)
        if original_id(c.id) == c.id:
            duration[c.id] = c.duration
    originals = sorted(duration)
    if not originals:
        raise SpeechtlError("no original (unperturbed) cuts to take a subset of")
    random.Random(seed).shuffle(originals)
    total, chosen = sum(duration.values()), []
    if minutes * 60 > total + 1e-6:
        raise SpeechtlError(f"asked for {minutes:g} min of labelled data but the pool has {total / 60:.1f} min. "
                            "Fix: lower the amount or synthesize a larger target_train pool.")
    acc = 0.0
    for k in originals:
        if acc >= minutes * 60:
            break
        acc += duration[k]
        chosen.append(k)
    logging.info(f"subset: {len(chosen)} utterances, {acc / 60:.2f} min of {total / 60:.1f} min")
    return CutSet.from_cuts(c for k in sorted(chosen) for c in groups[k])


def write_subset(cuts_path: Path, minutes: float, out: Path, seed: int = 0) -> Path:
    subset_by_minutes(CutSet.from_file(cuts_path), minutes, seed).to_file(out)
    return out
