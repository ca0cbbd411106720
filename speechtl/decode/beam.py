"""CTC prefix beam search (Hannun et al., 2014), without an LM.

Greedy search takes the best unit per frame; a prefix's probability is the sum
over *all* its alignments, which greedy ignores. Prefix beam search keeps the
``beam`` best prefixes, each with the probability of ending in blank and in
its last unit, and merges alignments of the same prefix. Units below
``prune`` (log-probability) at a frame are not extended. LM-weighted search is
HLG's job (:mod:`speechtl.decode.hlg`).

:func:`ctc_prefix_beam_search` runs the batched tensor search
(:func:`batched_prefix_beam_search`): every utterance and every hypothesis of a
batch advance together, one frame per step, on the log-probs' device.
:func:`prefix_beam_search_one` is the plain per-utterance reference it is tested
against.
"""

import math

import numpy as np
import torch

NEG_INF = -math.inf

# Prefix identity in the batched search: two polynomial hashes modulo primes
# below 2**31 (products stay below 2**62, so int64 never overflows, on any
# device). Two prefixes are taken as equal when both hashes agree.
_HASH_MODS = (2147483647, 2147483629)
_HASH_BASES = (911382323, 972663749)


def _lse(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search_one(log_probs: np.ndarray, beam: int = 8, blank: int = 0, prune: float = -10.0) -> list[int]:
    """Best unit sequence of one utterance's (frames, vocab) log-probs.

    The readable reference: prefixes are tuples in a dict. The batched search
    (:func:`batched_prefix_beam_search`) is tested against it.
    """
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (log p_blank, log p_unit)
    for frame in log_probs:
        units = [int(u) for u in np.nonzero(frame >= prune)[0]] or [int(frame.argmax())]
        nxt: dict[tuple[int, ...], tuple[float, float]] = {}

        def add(prefix, pb, pu, nxt=nxt):
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
                    add((*prefix, u), NEG_INF, pb + p)  # a new one after a blank
                else:
                    add((*prefix, u), NEG_INF, total + p)
        beams = dict(sorted(nxt.items(), key=lambda kv: _lse(*kv[1]), reverse=True)[:beam])
    return list(max(beams.items(), key=lambda kv: _lse(*kv[1]))[0])


def batched_prefix_beam_search(
    log_probs: torch.Tensor, lengths: torch.Tensor, beam: int = 8, blank: int = 0, prune: float = -10.0
) -> list[list[int]]:
    """:func:`prefix_beam_search_one` for a whole batch at once, with tensor ops.

    Each utterance has ``beam`` hypothesis slots: log p_blank, log p_unit, the
    last unit, a hash of the prefix and a hash of the prefix without its last
    unit. Each frame scores, for all utterances and slots at once, the "stay"
    candidates (the same prefix: a blank, or the last unit repeated) and the
    extensions by each unit that passes ``prune``; an extension of slot A that
    spells slot B's prefix is summed into B's stay candidate; the ``beam``
    best candidates become the new slots. A parent slot and emitted unit per
    frame and slot give the prefixes back at the end. Utterances run in order
    of length and leave the batch after their last frame. Scores are float64
    (float32 on MPS); the search syncs the device at its start and end only.

    Prefixes are told apart by two 31-bit polynomial hashes and not compared
    unit by unit: two different prefixes with equal hashes (about 1 chance in
    4e18 per compared pair) would be merged. On CPU the tensors are small, so
    one torch thread (``torch.set_num_threads(1)``) is as fast as more, and
    much faster when other processes keep the cores busy. One utterance at a
    time gains little over :func:`prefix_beam_search_one`: the speed comes from
    decoding many at once.

    Args:
      log_probs: (batch, frames, vocab).
      lengths: (batch,) valid frames per row.
    Returns:
      One unit-id list per row.
    """
    B, T, V = log_probs.shape
    dev = log_probs.device
    K = int(beam)
    if K < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    lens = lengths.detach().cpu().long().clamp(0, T)
    order = torch.argsort(lens, descending=True, stable=True)  # rows leave from the end
    lens = lens[order]
    steps = int(lens[0]) if B else 0
    if steps == 0:
        return [[] for _ in range(B)]
    rows_at = (lens[None, :] > torch.arange(steps + 1)[:, None]).sum(1).tolist()  # rows still in at frame t
    fdtype = torch.float32 if dev.type == "mps" else torch.float64
    neg_inf = torch.tensor(NEG_INF, dtype=fdtype, device=dev)

    # Per frame (frames first, rows by length): which units may be used -- those
    # >= prune, else the frame's best one -- and their log-probs.
    x = log_probs.detach()[:, :steps].index_select(0, order.to(dev)).float().transpose(0, 1)  # (steps, B, V)
    allowed = x >= prune
    allowed |= ~allowed.any(-1, keepdim=True) & torch.nn.functional.one_hot(x.argmax(-1), V).bool()
    in_utt = (torch.arange(steps)[:, None] < lens[None, :]).to(dev)  # (steps, B)
    lp = x.to(fdtype)
    blank_lp = lp[..., blank].masked_fill(~allowed[..., blank], NEG_INF)  # (steps, B)
    # log-prob of each non-blank unit, -inf if not allowed; column V (no last unit) is -inf
    unit_lp = torch.cat([lp, lp.new_full((steps, B, 1), NEG_INF)], -1)
    unit_lp.masked_fill_(torch.nn.functional.pad(~allowed, (0, 1), value=True) | ~in_utt[..., None], NEG_INF)
    unit_lp[..., blank] = NEG_INF
    # Candidate columns per slot: 0 stays (after a blank), 1..U extend by the frame's
    # U best allowed units, U the most any frame allows (unit -1: none).
    U = max(1, int((unit_lp > NEG_INF).sum(-1).max()))
    ext_lp, ext_unit = unit_lp[..., :V].topk(min(U, V), dim=-1)
    ext_unit.masked_fill_(ext_lp == NEG_INF, -1)
    col_lp = torch.cat([blank_lp[..., None], ext_lp], -1)  # (steps, B, C)
    col_unit = torch.nn.functional.pad(ext_unit, (1, 0), value=-1)
    C = col_lp.size(-1)

    # Slot state: pb, pu and ints (last unit, prefix hash h1 h2, parent hash g1 g2).
    # Empty slots: -inf, hash -1, parent hash -2, so that they match nothing.
    empty = torch.tensor([V, -1, -1, -2, -2], device=dev)
    mods = torch.tensor(_HASH_MODS, device=dev)
    bases = torch.tensor(_HASH_BASES, device=dev)
    pb = torch.full((B, K), NEG_INF, dtype=fdtype, device=dev)
    pb[:, 0] = 0.0
    pu = torch.full_like(pb, NEG_INF)
    state = empty.repeat(B, K, 1)
    state[:, 0] = torch.tensor([V, 0, 0, -2, -2], device=dev)  # slot 0: the empty prefix
    stay_col = torch.arange(K, device=dev) * C
    frames = zip(
        blank_lp[..., None].unbind(0), unit_lp.unbind(0), col_unit.unbind(0), col_lp[:, :, None].unbind(0), strict=False
    )
    parents, emitted, best = [], [], []

    for t in range(steps + 1):
        n = rows_at[t]
        if n < pb.size(0):  # rows whose last frame was t - 1: note their best slot
            best.append(torch.logaddexp(pb[n:], pu[n:]).argmax(1))
            pb, pu, state = pb[:n], pu[:n], state[:n]
        if t == steps:
            break
        f_blank, f_unit_lp, f_unit, f_lp = next(frames)
        if n < B:
            f_blank, f_unit_lp, f_unit, f_lp = f_blank[:n], f_unit_lp[:n], f_unit[:n], f_lp[:n]
        last, hashes, parent_hashes = state[..., 0], state[..., 1:3], state[..., 3:5]
        total = torch.logaddexp(pb, pu)
        s_pb = total + f_blank
        s_pu = pu + f_unit_lp.gather(1, last)
        # (n, K, C): column 0 the blank, then the extensions; a repeat of the last unit needs a blank between
        repeat = f_unit[:, None, :] == last[..., None]
        cand = torch.where(repeat, pb[..., None], total[..., None]) + f_lp
        flat = cand.view(n, K * C)
        # Merge: slot A extended by slot B's last unit spells B's prefix -> into B's stay.
        parent_of = (hashes[:, None, :, :] == parent_hashes[:, :, None, :]).all(-1)  # [row, B, A]
        a = parent_of.int().argmax(-1)  # (Tensor.max(dim) is slow on CPU with threads busy elsewhere)
        j = repeat.int().argmax(-1)  # column 0 (no unit) never repeats: 0 says the unit is not in this frame
        merge = parent_of.any(-1) & (j > 0)
        at = a * C + j
        s_pu = torch.logaddexp(s_pu, torch.where(merge, flat.gather(1, at), neg_inf))
        flat.scatter_(1, torch.where(merge, at, stay_col), NEG_INF)
        cand[..., 0] = torch.logaddexp(s_pb, s_pu)
        # The beam best candidates.
        top, pick = flat.topk(K, dim=1)
        src = torch.div(pick, C, rounding_mode="floor")
        col = pick - src * C
        unit = f_unit.gather(1, col)
        is_ext = col > 0
        pb = torch.where(is_ext, neg_inf, s_pb.gather(1, src))
        pu = torch.where(is_ext, top, s_pu.gather(1, src))
        kept = state.gather(1, src[..., None].expand(-1, -1, 5))
        h = kept[..., 1:3]
        u = unit[..., None]
        grown = torch.cat([u, (h * bases + u + 1) % mods, h], -1)
        state = torch.where(is_ext[..., None], grown, kept)
        state = torch.where((top == NEG_INF)[..., None], empty, state)
        parents.append(src)
        emitted.append(unit)

    # Back from each row's best slot: the units its prefix emitted, last frame first.
    k = torch.cat(best[::-1]).cpu().numpy()
    sizes = [rows_at[t] * K for t in range(steps)]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    parents_np = torch.cat([p.reshape(-1) for p in parents]).cpu().numpy()
    emitted_np = torch.cat([e.reshape(-1) for e in emitted]).cpu().numpy()
    out = np.full((steps, B), -1, dtype=np.int64)
    for t in range(steps - 1, -1, -1):
        n = rows_at[t]
        at = offsets[t] + np.arange(n) * K + k[:n]
        out[t, :n] = emitted_np[at]
        k[:n] = parents_np[at]
    hyps: list[list[int]] = [[] for _ in range(B)]
    for i, row in enumerate(order.tolist()):
        col = out[: int(lens[i]), i]
        hyps[row] = col[col >= 0].tolist()
    return hyps


def ctc_prefix_beam_search(
    log_probs: torch.Tensor, lengths: torch.Tensor, beam: int = 8, blank: int = 0, prune: float = -10.0
) -> list[list[int]]:
    """One unit list per row of (batch, frames, vocab) log-probs; the batched search on their device."""
    return batched_prefix_beam_search(log_probs, lengths, beam, blank, prune)
