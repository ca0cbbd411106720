"""CTC prefix beam search: sums alignments where greedy takes one path."""

import itertools
import math

import numpy as np
import torch

from speechtl.decode.beam import ctc_prefix_beam_search, prefix_beam_search_one
from speechtl.decode.greedy import ctc_greedy_search


def collapse(path, blank=0):
    out, prev = [], None
    for u in path:
        if u != prev and u != blank:
            out.append(u)
        prev = u
    return tuple(out)


def brute_force_best(probs):
    """The unit sequence with the highest total probability over all alignments."""
    totals = {}
    for path in itertools.product(range(probs.shape[1]), repeat=probs.shape[0]):
        p = math.prod(probs[t, u] for t, u in enumerate(path))
        totals[collapse(path)] = totals.get(collapse(path), 0.0) + p
    return max(totals, key=totals.get)


def test_beam_finds_the_prefix_greedy_misses():
    probs = np.array([[0.6, 0.4], [0.6, 0.4]])  # greedy: blank blank -> ""; "a" totals 0.64
    lp = torch.tensor(np.log(probs), dtype=torch.float32)[None]
    n = torch.tensor([2])
    assert ctc_greedy_search(lp, n) == [[]]
    assert ctc_prefix_beam_search(lp, n, beam=4) == [[1]]


def test_beam_matches_exhaustive_search_on_random_posteriors():
    rng = np.random.default_rng(0)
    for _ in range(20):
        probs = rng.dirichlet(np.ones(3) * 0.7, size=5)
        best = prefix_beam_search_one(np.log(probs), beam=50, prune=-1e9)
        assert tuple(best) == brute_force_best(probs)


def test_repeats_need_a_blank_between():
    probs = np.array([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    assert prefix_beam_search_one(np.log(probs)) == [1, 1]
    probs = np.array([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05], [0.9, 0.05, 0.05]])
    assert prefix_beam_search_one(np.log(probs)) == [1]


def test_skip_blank_frames_keeps_a_separator_between_repeats():
    from speechtl.decode.hlg import skip_blank_frames

    b, a = [0.999, 0.0005, 0.0005], [0.01, 0.98, 0.01]
    lp = np.log(np.array([b, a, b, b, a, b, [0.3, 0.1, 0.6], b]))
    out = skip_blank_frames(lp, 0.99)
    best = out.argmax(1).tolist()
    assert best == [1, 0, 1, 2], best  # "a a c": one blank kept between the two a's
    assert collapse(best) == collapse(lp.argmax(1).tolist())
    assert skip_blank_frames(lp, 0.0) is lp
