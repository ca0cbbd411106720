"""CTC prefix beam search: sums alignments where greedy takes one path."""

import itertools
import math

import numpy as np
import pytest
import torch

from speechtl.decode.beam import batched_prefix_beam_search, ctc_prefix_beam_search, prefix_beam_search_one
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


def random_log_probs(seed, batch, frames, vocab, scale, blank=0, blank_bias=0.0):
    """(batch, frames, vocab) log-softmax of scaled Gaussian logits, and ragged lengths (row 0 full, some 0)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, vocab, generator=g) * scale
    logits[..., blank] += blank_bias
    lengths = torch.randint(0, frames + 1, (batch,), generator=g)
    lengths[0] = frames
    return torch.log_softmax(logits, -1), lengths


def reference(log_probs, lengths, **kw):
    x = log_probs.numpy()
    return [prefix_beam_search_one(x[i, : int(n)], **kw) for i, n in enumerate(lengths.tolist())]


@pytest.mark.parametrize("beam", [1, 4, 8])
def test_batched_equals_reference_on_random_ragged_batches(beam):
    cases = itertools.product([1, 3, 6], [6, 13, 30], [(0.5, 0.0), (3.0, 0.0), (4.0, 3.0)], [-10.0, -0.5])
    for seed, (batch, vocab, (scale, blank_bias), prune) in enumerate(cases):
        blank = 0 if seed % 3 else vocab - 1
        lp, n = random_log_probs(seed, batch, 20, vocab, scale, blank, blank_bias)  # flat, peaky, mostly blank
        kw = dict(beam=beam, blank=blank, prune=prune)  # prune -0.5: frames with no unit above it use their best
        assert batched_prefix_beam_search(lp, n, **kw) == reference(lp, n, **kw), (seed, batch, vocab, scale, prune)


def test_batched_equals_reference_on_long_utterances_with_few_units():
    # deep prefixes, many sharing all but their last units: what the prefix hashes must tell apart
    for seed, (vocab, scale) in enumerate([(2, 1.0), (3, 0.3), (4, 2.0), (6, 1.0)]):
        lp, n = random_log_probs(100 + seed, 3, 300, vocab, scale)
        for beam in (4, 16):
            out = batched_prefix_beam_search(lp, n, beam, prune=-1e9)
            assert out == reference(lp, n, beam=beam, prune=-1e9)
            assert max(map(len, out)) > 50


def test_merging_alignments_beats_greedy_even_with_beam_1():
    # frame 2: "b" is the best unit, but blank + "a" (0.6) keep the prefix "a", which is the best sequence
    probs = np.array([[0.05, 0.9, 0.05], [0.3, 0.3, 0.4]])
    lp = torch.tensor(np.log(probs), dtype=torch.float32)[None]
    n = torch.tensor([2])
    assert ctc_greedy_search(lp, n) == [[1, 2]]
    assert brute_force_best(probs) == (1,)
    for beam in (1, 2, 4):
        assert prefix_beam_search_one(lp[0].numpy(), beam) == [1]
        assert ctc_prefix_beam_search(lp, n, beam=beam) == [[1]]


def test_one_hot_posteriors_give_the_greedy_sequence_at_any_beam():
    # one alignment has all the probability (log 0 = -inf elsewhere): every beam must find its sequence
    g = torch.Generator().manual_seed(7)
    best = torch.randint(0, 5, (4, 40), generator=g)
    best[:, ::3] = 0  # enough blanks for repeats
    lp = torch.full((4, 40, 5), -math.inf).scatter(2, best[..., None], 0.0)
    n = torch.tensor([40, 33, 1, 17])
    for beam in (1, 4, 8):
        assert ctc_prefix_beam_search(lp, n, beam=beam) == ctc_greedy_search(lp, n)


def test_each_utterance_decodes_the_same_alone_and_in_any_batch():
    lp, n = random_log_probs(3, 6, 30, 12, 2.0)
    n = torch.tensor([30, 12, 0, 25, 1, 29])
    lp[torch.arange(30)[None, :] >= n[:, None]] = torch.log_softmax(torch.randn(12), -1)  # padding: any junk
    alone = [batched_prefix_beam_search(lp[i : i + 1, : int(k)], n[i : i + 1], beam=6)[0] for i, k in enumerate(n)]
    assert batched_prefix_beam_search(lp, n, beam=6) == alone
    order = torch.tensor([4, 0, 5, 2, 3, 1])
    assert batched_prefix_beam_search(lp[order], n[order], beam=6) == [alone[i] for i in order.tolist()]
    assert batched_prefix_beam_search(lp[3:4], n[3:4], beam=6) == alone[3:4]  # padded to 30 frames, length 25
    assert alone[2] == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_batched_search_on_cuda_equals_cpu():
    lp, n = random_log_probs(11, 16, 120, 30, 3.0, blank_bias=2.0)
    assert batched_prefix_beam_search(lp.cuda(), n.cuda(), beam=8) == batched_prefix_beam_search(lp, n, beam=8)
