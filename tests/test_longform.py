"""Long recordings are split at pauses into pieces a model can take (speechtl.decode.longform)."""

import itertools

import numpy as np
import pytest

from speechtl.decode.longform import decode_pieces, piece_limit, split_points
from speechtl.errors import SpeechtlError

SR = 8000


def speech_with_pauses(seed: int, n: int = 10, pause: float = 0.4, floor: float = 0.0):
    """Bursts of 1.5-4 s of loud noise ("speech") with ``pause`` s of quiet between them, so any
    5 s holds a whole pause: (wave, list of (start, end) samples of the pauses)."""
    g = np.random.default_rng(seed)
    parts, pauses, pos = [], [], 0
    for _ in range(n):
        burst = g.normal(0, 0.3, int(SR * g.uniform(1.5, 4)))
        parts.append(burst)
        pos += len(burst)
        gap = g.normal(0, floor, int(SR * pause)) if floor else np.zeros(int(SR * pause))
        parts.append(gap)
        pauses.append((pos, pos + len(gap)))
        pos += len(gap)
    return np.concatenate(parts).astype(np.float32), pauses


@pytest.mark.parametrize("floor", [0.0, 0.002])  # digital silence; a noise floor 44 dB below the speech
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cuts_fall_inside_pauses_and_pieces_fit(seed, floor):
    wave, pauses = speech_with_pauses(seed, n=14, floor=floor)
    ranges = split_points(wave, SR, 10.0)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(wave)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # they tile the wave
    assert all(e - s <= 10.0 * SR for s, e in ranges)
    assert all(e - s >= 5.0 * SR for s, e in ranges[:-1])  # no crumbs: at least half the length
    margin = int(0.1 * SR)  # a cut is well inside a pause, not at a word's edge
    for cut in (e for _, e in ranges[:-1]):
        assert any(a + margin <= cut <= b - margin for a, b in pauses), (
            cut / SR,
            [(a / SR, b / SR) for a, b in pauses],
        )


def test_the_latest_pause_is_taken_for_the_longest_piece():
    wave, pauses = speech_with_pauses(0, floor=0.002)
    (_, cut), *_ = split_points(wave, SR, 10.0)
    later = [a for a, _ in pauses if cut < a and a + 0.2 * SR < 10.0 * SR]
    assert not later, "a pause later in the allowed span was passed over"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_pause_between_sentences_beats_a_later_gap_between_words(seed):
    """Sentences of 3-6 words (0.3-0.6 s each, gaps of 0.25 s between them, as quiet as any pause over
    the 0.2-s window) with 1-s pauses between sentences: every cut falls in a sentence pause. Before,
    the latest quiet stretch was cut, often a gap inside a sentence (a new user's 29.77 s)."""
    g = np.random.default_rng(seed)
    parts, sentence_pauses, pos = [], [], 0
    while pos < 60 * SR:
        for w in range(int(g.integers(3, 7))):
            if w:
                parts.append(np.zeros(int(0.25 * SR)))
                pos += int(0.25 * SR)
            word = g.normal(0, 0.3, int(SR * g.uniform(0.3, 0.6)))
            parts.append(word)
            pos += len(word)
        parts.append(np.zeros(SR))
        sentence_pauses.append((pos, pos + SR))
        pos += SR
    wave = np.concatenate(parts).astype(np.float32)
    ranges = split_points(wave, SR, 10.0)
    for _, cut in ranges[:-1]:
        assert any(a <= cut <= b for a, b in sentence_pauses), cut / SR


def test_short_waves_stay_whole_and_speech_without_pauses_still_fits():
    wave, _ = speech_with_pauses(3, n=2)
    assert split_points(wave, SR, len(wave) / SR) == [(0, len(wave))]
    loud = np.random.default_rng(0).normal(0, 0.3, SR * 25).astype(np.float32)
    ranges = split_points(loud, SR, 10.0)
    assert len(ranges) >= 3 and all(5 * SR <= e - s <= 10 * SR for s, e in ranges[:-1])
    with pytest.raises(SpeechtlError, match="above 0"):
        split_points(loud, SR, 0)


def test_piece_limit_is_the_users_within_the_models():
    assert piece_limit(30.0, None) == 30.0
    assert piece_limit(0.0, None) == float("inf")  # 0: only where the model needs it
    assert piece_limit(0.0, 30.0) == 30.0 and piece_limit(45.0, 30.0) == 30.0 and piece_limit(10.0, 30.0) == 10.0
    assert piece_limit(0.0, 30.0, pad=0.5) == 29.0  # the model's input pad takes room at both ends
    with pytest.raises(SpeechtlError, match="--max-seconds -1"):
        piece_limit(-1, None)


def test_decode_pieces_keeps_times_and_order():
    wave, _ = speech_with_pauses(1)
    seen = []

    def decode(waves):
        seen.extend(len(w) for w in waves)
        return [[f"w{i}"] for i in range(len(waves))]

    pieces = decode_pieces(wave, SR, 10.0, decode)
    assert [p.words for p in pieces] == [(f"w{i}",) for i in range(len(pieces))] and len(pieces) > 2
    assert pieces[0].start == 0 and pieces[-1].end == pytest.approx(len(wave) / SR)
    assert sum(seen) == len(wave) and [round((p.end - p.start) * SR) for p in pieces] == seen
    assert len(decode_pieces(wave, SR, float("inf"), decode)) == 1


def test_cuts_longer_than_the_encoder_takes_stop_before_any_work():
    """A Whisper-source recipe with --max-duration raised to 100 trained for minutes and then stopped
    with 'whisper encoder: 2417 frames ... positions for 1500', naming no file."""
    from types import SimpleNamespace

    from speechtl.decode.longform import check_cuts_fit

    whisper_like = SimpleNamespace(encoder=SimpleNamespace(max_input_seconds=30.0), input_spec=SimpleNamespace(pad=0.5))
    cuts = [SimpleNamespace(id=f"u{i}", duration=d) for i, d in enumerate([5.0, 28.5, 48.3, 12.0, 85.0])]
    with pytest.raises(SpeechtlError, match=r"2 training cut\(s\) are longer than the 29 s .*: u2 \(48.3 s\), u4"):
        check_cuts_fit(cuts, whisper_like, "training")
    check_cuts_fit(cuts[:2], whisper_like, "training")  # 28.5 s fits 30 s less the 0.5-s pad at each end
    check_cuts_fit(cuts, SimpleNamespace(encoder=SimpleNamespace(), input_spec=SimpleNamespace(pad=0.0)), "test")


@pytest.mark.parametrize("seed", range(40))
def test_a_wave_just_over_the_length_leaves_no_crumb(seed):
    """30.02 s of speech without pauses split at 30 s: the last piece was as short as 35 ms, and a
    Conformer stopped on it (fewer fbank frames than its kernel). The last is now at least 2 s."""
    g = np.random.default_rng(seed)
    n = int(SR * g.uniform(10.01, 25.0))
    wave = (g.normal(0, 0.3, n) * (1 + np.sin(np.arange(n) / SR * g.uniform(2, 9)))).astype(np.float32)
    ranges = split_points(wave, SR, 10.0)
    lengths = [(e - s) / SR for s, e in ranges]
    assert all(4.99 <= x <= 10.0 for x in lengths[:-1]) and 1.99 <= lengths[-1] <= 10.0, lengths
