"""Decoding graphs with kaldifst: H (CTC topology), L, G, and HLG = H∘L∘G.

Label conventions (icefall's and kaldi-decoder's): token ids come from
tokens.txt with ``<blk>`` = 0. OpenFst reserves label 0 for epsilon, so H's
*input* labels are ``token_id + 1`` (kaldi-decoder's DecodableCtc subtracts
1 when it looks up a frame's log-probability). H's output labels are token
ids, blank's 0 being epsilon since blank emits nothing.

As in Kaldi's mkgraph.sh, disambiguation symbols stay on the input side
through determinization (H passes them through with self-loops) and are
replaced by epsilon at the end.
"""

import logging
from collections.abc import Sequence

import kaldifst

from speechtl.lang.lexicon import Lexicon

Arc = kaldifst.StdArc


def make_lexicon_fst(
    entries: Lexicon,
    token2id: dict[str, int],
    word2id: dict[str, int],
    loop_disambig: bool = True,
    sil_token: str | None = None,
) -> kaldifst.StdVectorFst:
    """L: token sequences to words, one loop state (start and final).

    With ``loop_disambig``, a ``#0:#0`` self-loop lets G's back-off symbol through.
    With ``sil_token``, a ``SIL:<eps>`` self-loop makes silence optional before,
    between and after words (Kaldi's optional silence).
    """
    fst = kaldifst.StdVectorFst()
    loop = fst.add_state()
    fst.start = loop
    fst.set_final(state=loop, weight=0)
    for word, tokens in entries:
        src = loop
        for i, tok in enumerate(tokens):
            last = i == len(tokens) - 1
            dst = loop if last else fst.add_state()
            fst.add_arc(
                state=src,
                arc=Arc(ilabel=token2id[tok], olabel=word2id[word] if i == 0 else 0, weight=0, nextstate=dst),
            )
            src = dst
    if loop_disambig:
        fst.add_arc(state=loop, arc=Arc(ilabel=token2id["#0"], olabel=word2id["#0"], weight=0, nextstate=loop))
    if sil_token is not None:
        fst.add_arc(state=loop, arc=Arc(ilabel=token2id[sil_token], olabel=0, weight=0, nextstate=loop))
    return fst


def make_ctc_topo(max_token_id: int, disambig_ids: Sequence[int] = ()) -> kaldifst.StdVectorFst:
    """H: the standard CTC topology over tokens 0..max_token_id (0 = blank).

    One state per token; from any state, reading token k goes to state k and
    outputs k unless it repeats the token of the current state (a CTC repeat).
    Every state is final. Input labels are shifted by one (see module doc).
    Each disambiguation id d gets a self-loop ``d+1 : d`` on every state.
    """
    fst = kaldifst.StdVectorFst()
    n = max_token_id + 1
    for _ in range(n):
        s = fst.add_state()
        fst.set_final(state=s, weight=0)
    fst.start = 0
    for i in range(n):
        for k in range(n):
            fst.add_arc(state=i, arc=Arc(ilabel=k + 1, olabel=0 if i == k else k, weight=0, nextstate=k))
        for d in disambig_ids:
            fst.add_arc(state=i, arc=Arc(ilabel=d + 1, olabel=d, weight=0, nextstate=i))
    return fst


def _remove_input_labels(fst: kaldifst.StdVectorFst, lo: int, hi: int) -> int:
    """Replace input labels in [lo, hi] by epsilon; returns how many changed."""
    changed = 0
    for state in kaldifst.StateIterator(fst):
        for arc in kaldifst.ArcIterator(fst, state):
            if lo <= arc.ilabel <= hi:
                arc.ilabel = 0
                changed += 1
    return changed


def compose_lg(L: kaldifst.StdVectorFst, G: kaldifst.StdVectorFst) -> kaldifst.StdVectorFst:
    """det(min(L∘G)), input-label sorted; disambiguation symbols kept."""
    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.compose(L, G)
    LG = kaldifst.StdVectorFst(LG) if not isinstance(LG, kaldifst.StdVectorFst) else LG
    kaldifst.determinize_star(LG)
    kaldifst.minimize_encoded(LG)
    kaldifst.arcsort(LG, sort_type="ilabel")
    return LG


def compose_hlg(
    L: kaldifst.StdVectorFst, G: kaldifst.StdVectorFst, max_token_id: int, disambig_ids: tuple[int, ...]
) -> kaldifst.StdVectorFst:
    """HLG ready for kaldi-decoder: determinized, minimized, arc-sorted, no disambig symbols."""
    LG = compose_lg(L, G)
    H = make_ctc_topo(max_token_id, disambig_ids)
    kaldifst.arcsort(H, sort_type="olabel")
    HLG = kaldifst.compose(H, LG)
    HLG = kaldifst.StdVectorFst(HLG) if not isinstance(HLG, kaldifst.StdVectorFst) else HLG
    kaldifst.determinize_star(HLG)
    kaldifst.minimize_encoded(HLG)
    if disambig_ids:
        _remove_input_labels(HLG, min(disambig_ids) + 1, max(disambig_ids) + 1)
    kaldifst.arcsort(HLG, sort_type="ilabel")
    logging.info(f"HLG: {HLG.num_states} states")
    return HLG
