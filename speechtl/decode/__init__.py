"""Decoders over CTC log-probabilities: batched greedy search and HLG with kaldi-decoder."""

from speechtl.decode.greedy import ctc_greedy_search
from speechtl.decode.hlg import HlgDecoder

__all__ = ["HlgDecoder", "ctc_greedy_search"]
