"""CTC prefix beam search (Hannun et al., 2014), without an LM.

Greedy search takes the best unit per frame; a prefix's probability is the sum
over *all* its alignments, which greedy ignores. Prefix beam search keeps the
``beam`` best prefixes, each with the probability of ending in blank and in
its last unit, and merges alignments of the same prefix. Units below
``prune`` (log-probability) at a frame are not extended. LM-weighted search is
HLG's job (:mod:`speechtl.decode.hlg`).
"""

import math
from typing import Dict, List, Tuple

import numpy as np
import torch

NEG_INF = -math.inf


def _lse(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search_one(log_probs: np.ndarray, beam: int = 8, blank: int = 0, prune: float = -10.0) -> List[int]:
    """Best unit sequence of one utterance's (frames, vocab) log-probs."""
    beams: Dict[Tuple[int, ...], Tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (log p_blank, log p_unit)
    for frame in log_probs:
        units = [int(u) for u in np.nonzero(frame >= prune)[0]] or [int(frame.argmax())]
        nxt: Dict[Tuple[int, ...], Tuple[float, float]] = {}

        def add(prefix, pb, pu):
            ob, ou = nxt.get(prefix, (NEG_INF, NEG_INF))
            nxt[prefix] = (_lse(ob, pb), _lse(ou, pu))

        for prefix, (pb, pu) in beams.items():
            total = _lse(pb, pu)
            last = prefix[-1] if prefix else None
            for u in units:
                p = float(frame[u])
                if u == blank:
                    add(prefix, total + p, NEG_INF)
                elif u == last:
                    add(prefix, NEG_INF, pu + p)  # the same unit continues
                    add(prefix + (u,), NEG_INF, pb + p)  # a new one after a blank
                else:
                    add(prefix + (u,), NEG_INF, total + p)
        beams = dict(sorted(nxt.items(), key=lambda kv: _lse(*kv[1]), reverse=True)[:beam])
    return list(max(beams.items(), key=lambda kv: _lse(*kv[1]))[0])


def ctc_prefix_beam_search(log_probs: torch.Tensor, lengths: torch.Tensor, beam: int = 8, blank: int = 0,
                           prune: float = -10.0) -> List[List[int]]:
    """One unit list per row of (batch, frames, vocab) log-probs."""
    lp = log_probs.detach().float().cpu().numpy()
    return [prefix_beam_search_one(lp[i, : int(n)], beam, blank, prune) for i, n in enumerate(lengths.tolist())]
