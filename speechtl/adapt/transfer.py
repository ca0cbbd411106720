"""Initialize a target model from a source checkpoint (ESPnet's --init-param idea).

Parameters whose names and shapes match are copied; mismatches are skipped
and reported, never fatal. The output layer is matched by unit *symbol*:
the row of every target unit that the source also has (``<blk>``, shared
letters or pieces) is copied from the source, the other rows keep their fresh
initialization. This is vocabulary transfer when source and target units differ.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from speechtl.train.checkpoint import load_checkpoint

OUTPUT = "output."


@dataclass
class TransferReport:
    copied: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    shared_units: int = 0
    new_units: List[str] = field(default_factory=list)


def init_from_source(
    model: torch.nn.Module, checkpoint: Path, source_tokens: Dict[str, int], target_tokens: Dict[str, int],
    exclude: Sequence[str] = (),
) -> TransferReport:
    """Load ``checkpoint`` into ``model``; output rows mapped by unit symbol.

    ``exclude``: parameter-name prefixes to leave at their fresh values.
    """
    source = load_checkpoint(checkpoint)["model"]
    own = model.state_dict()
    report = TransferReport()
    for name, value in source.items():
        if name.startswith(OUTPUT) or any(name.startswith(p) for p in exclude):
            continue
        if name in own and own[name].shape == value.shape:
            own[name] = value.clone()
            report.copied.append(name)
        else:
            report.skipped.append(name)
    if not any(OUTPUT.startswith(p) or p.startswith(OUTPUT) for p in exclude):
        shared = [(t, i, source_tokens[t]) for t, i in target_tokens.items() if t in source_tokens]
        for suffix in ("weight", "bias"):
            key = OUTPUT + suffix
            if key in source and key in own:
                for _, ti, si in shared:
                    if ti < own[key].shape[0] and si < source[key].shape[0]:
                        own[key][ti] = source[key][si]
        report.shared_units = len(shared)
        report.new_units = sorted(t for t in target_tokens if t not in source_tokens)
    model.load_state_dict(own)
    logging.info(
        f"initialized from {checkpoint}: {len(report.copied)} tensors copied, {len(report.skipped)} skipped "
        f"(shape/name mismatch), {report.shared_units} shared output units, {len(report.new_units)} new"
    )
    return report
