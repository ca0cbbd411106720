"""Long recordings in pieces: split at the quietest moments, decode each piece, join the words.

Why: a model should meet at decoding what it met in training. The importers keep
utterances of at most 30 s (``speechtl validate``'s ``max_duration``), a Whisper
encoder's positional table ends at 30 s, and a Conformer's self-attention grows with
the square of the length. A lecture, an interview or an hour of field recording is
none of that: decoded whole, it fails (Whisper) or needs memory in proportion to the
square of its length and meets a context the model never saw (the others).

So ``transcribe`` splits a recording longer than ``max_seconds`` where its signal is
quietest: in the middle of the longest (of those, the latest) stretch within 3 dB of the
quietest 0.2 s (mean energy of 10-ms frames) in the second half of each piece's allowed span. No model is needed for it, every piece
but the last is between half and all of ``max_seconds`` long, and a cut falls in a
pause between words wherever the recording has one. Each piece is decoded on its own
and keeps its times, so ``speechtl transcribe --segments`` can print them.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from speechtl.errors import SpeechtlError

#: Pieces of at most this many seconds by default: ``speechtl validate``'s ``max_duration``, so
#: no piece is longer than the longest utterance a recipe trains on.
DEFAULT_MAX_SECONDS = 30.0
FRAME_SECONDS = 0.01
#: Length of the quiet stretch a cut is centred in.
SMOOTH_SECONDS = 0.2
#: The last piece is at least this long (or half the piece length, if that is less).
MIN_LAST_SECONDS = 2.0
#: Stretches within this many dB of the quietest count as equally quiet: the longest is cut (of
#: equal ones the latest, for the longest piece), in its middle.
NEAR_DB = 3.0


@dataclass(frozen=True)
class Piece:
    """One decoded piece of a recording: its span in seconds and its words."""

    start: float
    end: float
    words: tuple[str, ...]


def split_points(wave: np.ndarray, sampling_rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """(start, end) sample ranges that tile ``wave``, each at most ``max_seconds`` long; each but the
    last at least half of it, and the last at least ``MIN_LAST_SECONDS`` (or that half).

    A wave no longer than ``max_seconds`` is one range. Otherwise each cut is the centre of
    the longest (:func:`longest_run`) stretch of 10-ms frames whose surrounding 0.2 s is within
    ``NEAR_DB`` of the least mean energy among the frames in the second half of the range's allowed span.
    """
    if not max_seconds > 0:
        raise SpeechtlError(f"pieces of {max_seconds} s: the length must be above 0")
    n = len(wave)
    max_len = int(max_seconds * sampling_rate)
    if n <= max_len:
        return [(0, n)]
    hop = max(1, round(FRAME_SECONDS * sampling_rate))
    if max_len < 4 * hop:
        raise SpeechtlError(f"pieces of {max_seconds} s are too short to split at a pause; use at least 0.05 s")
    frames = n // hop
    energy = np.square(np.asarray(wave[: frames * hop], dtype=np.float64)).reshape(frames, hop).mean(axis=1)
    k = round(SMOOTH_SECONDS / FRAME_SECONDS) // 2 * 2 + 1  # odd: centred on its frame
    quiet_db = 10 * np.log10(np.convolve(energy, np.ones(k) / k, mode="same") + 1e-10)
    # Each cut leaves at least this many samples after it: a 35-ms last piece stopped a Conformer
    # (fewer frames than its convolution's kernel).
    min_last = min(max_len / 2, MIN_LAST_SECONDS * sampling_rate)
    ranges = []
    start = 0
    while n - start > max_len:
        low, high = start + max_len / 2, min(start + max_len, n - min_last)
        # frame f is cut at its centre f * hop + hop // 2
        lo = min(frames - 1, math.ceil((low - hop // 2) / hop))
        hi = max(lo, min(frames - 1, int((high - hop // 2) // hop)))
        near = quiet_db[lo : hi + 1] <= quiet_db[lo : hi + 1].min() + NEAR_DB
        first, last = longest_run(near)
        cut = (lo + (first + last) // 2) * hop + hop // 2
        ranges.append((start, cut))
        start = cut
    ranges.append((start, n))
    return ranges


def longest_run(near: np.ndarray) -> tuple[int, int]:
    """``(first, last)`` index of the longest run of True in ``near`` (the latest of the longest): the
    longest quiet stretch is the pause between sentences, not a gap between two words, which can be
    as quiet over its 0.2 s; the latest of equal ones leaves the longest piece. ``near`` holds a True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], near.astype(np.int8), [0]))))
    starts, ends = edges[::2], edges[1::2] - 1  # runs [start, end]
    lengths = ends - starts
    best = len(lengths) - 1 - int(np.argmax(lengths[::-1]))
    return int(starts[best]), int(ends[best])


def piece_limit(max_seconds: float, model_max_seconds: float | None, pad: float = 0.0) -> float:
    """The longest piece to decode: ``max_seconds`` (0: no limit of the user's), never more than the
    model takes (``model_max_seconds`` less the silence ``pad`` added at each end of its input)."""
    if max_seconds < 0:
        raise SpeechtlError(f"--max-seconds {max_seconds}: must be >= 0 (0: split only where the model needs it)")
    limit = max_seconds if max_seconds > 0 else math.inf
    if model_max_seconds:
        limit = min(limit, model_max_seconds - 2 * pad)
    return limit


def model_max_seconds(model) -> float | None:
    """The longest input ``model`` (a CtcModel or its encoder) can take, in seconds; None: any."""
    encoder = getattr(model, "encoder", model)
    return getattr(encoder, "max_input_seconds", None)


def decode_pieces(
    wave: np.ndarray,
    sampling_rate: int,
    max_seconds: float,
    decode: Callable[[Sequence[np.ndarray]], list[list[str]]],
) -> list[Piece]:
    """``wave`` split by :func:`split_points` (no split when ``max_seconds`` is infinite), each piece
    decoded by ``decode`` (waves in, words out, in order)."""
    ranges = [(0, len(wave))] if math.isinf(max_seconds) else split_points(wave, sampling_rate, max_seconds)
    words = decode([wave[s:e] for s, e in ranges])
    return [Piece(s / sampling_rate, e / sampling_rate, tuple(w)) for (s, e), w in zip(ranges, words, strict=True)]


def check_cuts_fit(cuts, model, what: str) -> None:
    """Stop before any work when cuts are longer than ``model`` takes (a Whisper encoder's 30 s,
    less its input pad): otherwise training or a decode fails on the first batch holding one.
    ``what``: the cuts' role for the message ("training", "test")."""
    limit = piece_limit(0.0, model_max_seconds(model), getattr(model.input_spec, "pad", 0.0))
    if math.isinf(limit):
        return
    long = [(c.id, c.duration) for c in cuts if c.duration > limit]
    if long:
        listing = ", ".join(f"{i} ({d:.1f} s)" for i, d in long[:3])
        raise SpeechtlError(
            f"{len(long)} {what} cut(s) are longer than the {limit:g} s this model's encoder takes: {listing}"
            f"{', ...' if len(long) > 3 else ''}. Fix: split those recordings into utterances (Kaldi segments, or "
            "shorter files), or leave them out at import: --max-duration at most 30 (the default; in a generated "
            "recipe, in prepare_opts and validate_opts of conf/recipe.conf) with --skip-bad (skip_bad=true), which "
            "lists them in bad_audio.txt"
        )
