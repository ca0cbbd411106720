"""Kaldi-compatible batched fbank (CPU/GPU) and its computation over a CutSet."""

from speechtl.features.fbank import BatchedFbank, FbankConfig

__all__ = ["BatchedFbank", "FbankConfig"]
