"""An HLG with every word label on a token arc, where sherpa-onnx reads it (``--graph undeterminized``).

sherpa-onnx's CTC FST decoder walks the best path and takes a word label only
from an arc whose input is a non-blank token different from the previous arc's
(``offline-ctc-fst-decoder.cc``): labels on epsilon or blank arcs are dropped.
kaldi-decoder keeps every output label, and so does
:class:`speechtl.decode.HlgDecoder`. The lang dir's HLG (``speechtl.lang.graph``)
determinizes L∘G, which may delay a word onto G's back-off arc; once the
disambiguation symbols become epsilon, such a word sits on an epsilon arc. On
the tts_xling Irish lang, 1600 of its 287k arcs are such arcs: sherpa-onnx
would delete those words.

The graph built here is H∘(L∘G) without determinization: L puts each word on
its first token, and H outputs a token only on the arc entering it, so every
word label ends up on a token-entering arc. It describes the same weighted
relation as the lang dir's HLG (determinization and minimization preserve it),
so a Viterbi search finds the same best path up to ties and pruning; it is
bigger (tts_xling's Irish: 139k states, 465k arcs instead of 101k, 287k).

Measured on tts_xling's target_test (a scratch 30-minute model, 150 utterances):
sherpa-onnx on the lang dir's HLG gave the torch decode's hypotheses for every
utterance (the affected arcs were on no best path), while this graph's different
pruning changed 3 of 1495 words; so exports ship the lang dir's HLG by default
and warn about the arc count.
"""

from pathlib import Path

import kaldifst

from speechtl.errors import SpeechtlError
from speechtl.lang.graph import make_ctc_topo
from speechtl.lang.symbols import read_symbols

BLANK_ILABEL = 1  # blank (token 0) + 1: H's input labels are token ids + 1


def word_arcs_sherpa_drops(fst: kaldifst.StdVectorFst) -> int:
    """Arcs with a word label on an epsilon or blank input: words sherpa-onnx's readout loses."""
    return sum(
        1
        for state in kaldifst.StateIterator(fst)
        for arc in kaldifst.ArcIterator(fst, state)
        if arc.olabel != 0 and arc.ilabel in (0, BLANK_ILABEL)
    )


def sherpa_hlg(lang_dir: Path) -> kaldifst.StdVectorFst:
    """H∘(L∘G) from the lang dir's L_disambig.fst and G.fst, disambiguation symbols removed."""
    lang_dir = Path(lang_dir)
    for name in ("L_disambig.fst", "G.fst", "tokens.txt"):
        if not (lang_dir / name).is_file():
            raise SpeechtlError(f"{lang_dir / name} is missing. Fix: run the lang stage (steps/prepare_lang.sh).")
    token2id = read_symbols(lang_dir / "tokens.txt")
    disambig = tuple(i for t, i in token2id.items() if t.startswith("#"))
    max_token_id = max(i for t, i in token2id.items() if not t.startswith("#"))
    L = kaldifst.StdVectorFst.read(str(lang_dir / "L_disambig.fst"))
    G = kaldifst.StdVectorFst.read(str(lang_dir / "G.fst"))
    kaldifst.arcsort(L, sort_type="olabel")
    kaldifst.arcsort(G, sort_type="ilabel")
    LG = kaldifst.StdVectorFst(kaldifst.compose(L, G))
    kaldifst.connect(LG)
    kaldifst.arcsort(LG, sort_type="ilabel")
    H = make_ctc_topo(max_token_id, disambig)
    kaldifst.arcsort(H, sort_type="olabel")
    HLG = kaldifst.StdVectorFst(kaldifst.compose(H, LG))
    kaldifst.connect(HLG)
    if disambig:
        lo, hi = min(disambig) + 1, max(disambig) + 1
        for state in kaldifst.StateIterator(HLG):
            for arc in kaldifst.ArcIterator(HLG, state):
                if lo <= arc.ilabel <= hi:
                    arc.ilabel = 0
    kaldifst.arcsort(HLG, sort_type="ilabel")
    return HLG
