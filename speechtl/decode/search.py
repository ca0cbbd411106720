"""HLG search over many utterances, in ``nj`` processes.

kaldi-decoder's bindings hold the GIL while decoding (no ``gil_scoped_release``
on ``decode``), so threads cannot run searches in parallel: processes do. Each
utterance's search is independent and deterministic, so the output is the
same for any ``nj``.
"""

import multiprocessing as mp
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from speechtl.decode.hlg import HlgDecoder

_decoder: HlgDecoder | None = None


def _init(hlg: str, words: str, beam: float, max_active: int, skip_blank: float) -> None:
    global _decoder
    _decoder = HlgDecoder(Path(hlg), Path(words), beam=beam, max_active=max_active, skip_blank=skip_blank)


def search_with(decoder: HlgDecoder, items: list[tuple[str, np.ndarray]], lm_scales: tuple[float, ...] | None):
    """One-best words per utterance, or with ``lm_scales`` {scale: words} from its lattice."""
    if lm_scales is None:
        return [(k, decoder.decode(lp)) for k, lp in items]
    return [(k, decoder.rescore(decoder.lattice(lp), lm_scales)) for k, lp in items]


def _search(items, lm_scales):
    """In a worker process: search with the decoder its initializer loaded."""
    return search_with(_decoder, items, lm_scales)


class HlgSearch:
    """A pool of ``nj`` searchers that load HLG once each; ``nj=1`` searches in-process."""

    def __init__(
        self, hlg: Path, words: Path, nj: int = 1, beam: float = 16.0, max_active: int = 3000, skip_blank: float = 0.0
    ):
        self.nj = max(1, nj)
        args = (str(hlg), str(words), beam, max_active, skip_blank)
        self.decoder = None
        self.pool = None
        if self.nj == 1:
            self.decoder = HlgDecoder(Path(hlg), Path(words), beam=beam, max_active=max_active, skip_blank=skip_blank)
        else:
            self.pool = ProcessPoolExecutor(
                self.nj, mp_context=mp.get_context("spawn"), initializer=_init, initargs=args
            )

    def run(self, log_probs: dict[str, np.ndarray], lm_scales: Sequence[float] | None = None) -> dict:
        items = sorted(log_probs.items())
        scales = tuple(lm_scales) if lm_scales is not None else None
        if self.pool is None:
            return dict(search_with(self.decoder, items, scales))
        # Interleaved chunks balance utterance lengths across workers.
        chunks = [items[j :: self.nj] for j in range(self.nj)]
        out = {}
        for part in self.pool.map(_search, chunks, [scales] * self.nj):
            out.update(part)
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def search_chunk(
    hlg: str,
    words: str,
    beam: float,
    max_active: int,
    skip_blank: float,
    items: list[tuple[str, np.ndarray]],
    lm_scales: tuple[float, ...] | None,
):
    """One job's share of the utterances (for job runners such as Slurm): load HLG, search."""
    decoder = HlgDecoder(Path(hlg), Path(words), beam=beam, max_active=max_active, skip_blank=skip_blank)
    return search_with(decoder, items, lm_scales)


class ExecutorSearch:
    """HLG search split into ``nj`` jobs of a job runner (``--cmd``): Kaldi's decode --nj."""

    def __init__(
        self,
        hlg: Path,
        words: Path,
        nj: int,
        cmd: str,
        log_dir: Path,
        beam: float = 16.0,
        max_active: int = 3000,
        skip_blank: float = 0.0,
    ):
        from speechtl.cluster import get_executor

        self.nj = max(1, nj)
        self.args = (str(hlg), str(words), beam, max_active, skip_blank)
        self.executor = get_executor(cmd, self.nj, log_dir, "decode")

    def run(self, log_probs: dict[str, np.ndarray], lm_scales: Sequence[float] | None = None) -> dict:
        items = sorted(log_probs.items())
        scales = tuple(lm_scales) if lm_scales is not None else None
        n = max(1, min(self.nj, len(items)))
        out = {}
        for part in self.executor.map(search_chunk, [(*self.args, items[j::n], scales) for j in range(n)]):
            out.update(part)
        return out

    def close(self) -> None:
        pass
