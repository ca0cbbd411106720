"""HLG decoding with kaldi-decoder: one-best (FasterDecoder) and lattices
(LatticeSimpleDecoder) with n-best lists and LM-scale sweeps.

A lattice arc's weight keeps two costs apart: value1 the graph cost (the LM's
and lexicon's, from HLG) and value2 the acoustic cost (minus the network's
log-probability). Rescoring at an LM scale s finds the path minimizing
``s * graph + acoustic``, as icefall's ``--lm-scale`` sweeps do.
"""

from collections.abc import Sequence
from pathlib import Path

import kaldifst
import numpy as np
from kaldi_decoder import (
    DecodableCtc,
    FasterDecoder,
    FasterDecoderOptions,
    LatticeSimpleDecoder,
    LatticeSimpleDecoderConfig,
)

from speechtl.errors import SpeechtlError
from speechtl.lang.symbols import read_symbols


def skip_blank_frames(log_probs: np.ndarray, min_blank_prob: float, blank: int = 0) -> np.ndarray:
    """Drop frames whose blank posterior is at least ``min_blank_prob`` (0 = keep all).

    CTC output is mostly confident blanks; the search gains nothing from them but
    time. One skipped frame is kept between two frames whose best unit is the
    same non-blank unit, so a doubled letter never merges into one.
    """
    if min_blank_prob <= 0 or log_probs.shape[0] == 0:
        return log_probs
    best = log_probs.argmax(axis=1)
    skip = log_probs[:, blank] >= np.log(min_blank_prob)
    keep = ~skip
    last, gap = -1, None  # last kept best unit (-1 after a kept blank); first skipped frame since
    for t in range(log_probs.shape[0]):
        if skip[t]:
            gap = t if gap is None else gap
            continue
        if best[t] != blank and best[t] == last and gap is not None:
            keep[gap] = True
        last = best[t] if best[t] != blank else -1
        gap = None
    return log_probs[keep]


class HlgDecoder:
    """Decodes one utterance's (frames, vocab) log-probs into words with HLG.fst."""

    def __init__(
        self,
        hlg: Path,
        words_txt: Path,
        beam: float = 16.0,
        max_active: int = 3000,
        lattice_beam: float = 8.0,
        skip_blank: float = 0.0,
    ):
        if not Path(hlg).is_file():
            raise SpeechtlError(f"{hlg} is missing. Fix: run the lang stage (steps/prepare_lang.sh).")
        self.fst = kaldifst.StdVectorFst.read(str(hlg))
        self.id2word = {i: w for w, i in read_symbols(Path(words_txt)).items()}
        self.options = FasterDecoderOptions(beam=beam, max_active=max_active)
        self.lattice_config = LatticeSimpleDecoderConfig(beam=beam, lattice_beam=lattice_beam)
        self.skip_blank = skip_blank

    def _decodable(self, log_probs: np.ndarray) -> DecodableCtc:
        log_probs = skip_blank_frames(log_probs, self.skip_blank)
        return DecodableCtc(np.ascontiguousarray(log_probs, dtype=np.float32))

    def _words(self, path) -> list[str] | None:
        ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(path)
        return [self.id2word[i] for i in olabels] if ok else None

    def decode(self, log_probs: np.ndarray) -> list[str]:
        """Words of the best path; empty if no path reaches a final state."""
        if log_probs.shape[0] == 0:
            return []
        decoder = FasterDecoder(self.fst, self.options)
        decoder.decode(self._decodable(log_probs))
        if not decoder.reached_final():
            return []
        ok, best = decoder.get_best_path()
        return (self._words(best) or []) if ok else []

    def lattice(self, log_probs: np.ndarray) -> kaldifst.Lattice | None:
        """The raw word lattice (graph and acoustic costs apart), or None if no path survives."""
        if log_probs.shape[0] == 0:
            return None
        decoder = LatticeSimpleDecoder(self.fst, self.lattice_config)
        decoder.decode(self._decodable(log_probs))
        ok, lat = decoder.get_raw_lattice()
        return lat if ok and lat.num_states > 0 else None

    def rescore(self, lat: kaldifst.Lattice | None, lm_scales: Sequence[float]) -> dict[float, list[str]]:
        """Best words at each LM scale (acoustic scale 1)."""
        out = {}
        for s in lm_scales:
            if lat is None:
                out[s] = []
                continue
            scaled = kaldifst.Lattice(lat)
            kaldifst.scale_lattice(kaldifst.lattice_scale(lmwt=s, acwt=1.0), scaled)
            out[s] = self._words(kaldifst.shortest_path(scaled)) or []
        return out

    def nbest(
        self, lat: kaldifst.Lattice | None, n: int, lm_scale: float = 1.0
    ) -> list[tuple[list[str], float, float]]:
        """Up to ``n`` distinct paths, best first: (words, graph cost, acoustic cost).

        Costs are as ranked: the graph cost is already multiplied by ``lm_scale``.
        """
        if lat is None:
            return []
        paths = kaldifst.lattice_to_nbest(lat, acoustic_scale=1.0, lm_scale=lm_scale, n=n)
        out = []
        for p in paths:
            ok, _, olabels, w = kaldifst.get_linear_symbol_sequence(p)
            if ok:
                out.append(([self.id2word[i] for i in olabels], w.value1, w.value2))
        return out
