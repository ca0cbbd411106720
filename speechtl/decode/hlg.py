"""HLG decoding with kaldi-decoder's FasterDecoder (one-best)."""

from pathlib import Path
from typing import List

import kaldifst
import numpy as np
from kaldi_decoder import DecodableCtc, FasterDecoder, FasterDecoderOptions

from speechtl.errors import SpeechtlError
from speechtl.lang.symbols import read_symbols


class HlgDecoder:
    """Decodes one utterance's (frames, vocab) log-probs into words with HLG.fst."""

    def __init__(self, hlg: Path, words_txt: Path, beam: float = 16.0, max_active: int = 3000):
        if not Path(hlg).is_file():
            raise SpeechtlError(f"{hlg} is missing. Fix: run the lang stage (steps/prepare_lang.sh).")
        self.fst = kaldifst.StdVectorFst.read(str(hlg))
        self.id2word = {i: w for w, i in read_symbols(Path(words_txt)).items()}
        self.options = FasterDecoderOptions(beam=beam, max_active=max_active)

    def decode(self, log_probs: np.ndarray) -> List[str]:
        """Words of the best path; empty if no path reaches a final state."""
        if log_probs.shape[0] == 0:
            return []
        decoder = FasterDecoder(self.fst, self.options)
        decoder.decode(DecodableCtc(np.ascontiguousarray(log_probs, dtype=np.float32)))
        if not decoder.reached_final():
            return []
        ok, best = decoder.get_best_path()
        if not ok:
            return []
        ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(best)
        return [self.id2word[i] for i in olabels] if ok else []
