"""Rooms, microphone bands and silence trimming of synthetic speech (speechtl.data.channel)."""

import dataclasses
import math

import pytest
import torch

from speechtl.data.channel import band_limit, reverberate, room_impulse, trim_silence
from speechtl.data.corpora.tts_digits import TtsDigitsConfig, plan_digits

SR = 8000


def tone(freq, seconds=0.5, lead=0.5, tail=0.5):
    t = torch.arange(int(seconds * SR)) / SR
    return torch.cat(
        [torch.zeros(int(lead * SR)), 0.5 * torch.sin(2 * math.pi * freq * t), torch.zeros(int(tail * SR))]
    )


def test_trim_cuts_leading_and_trailing_silence_keeping_a_margin():
    w = tone(440)
    out = trim_silence(w, SR, margin=0.02)
    assert abs(out.numel() - int((0.5 + 0.04) * SR)) <= SR // 100 + 1
    assert trim_silence(tone(440, lead=0, tail=0), SR).numel() == int(0.5 * SR)  # nothing quiet: unchanged


def test_room_impulse_decays_60_db_over_its_rt60():
    h = room_impulse(0.4, SR, "r")
    assert h[0] == 1.0 and h.numel() == int(0.4 * SR)
    tail = h[1:].pow(2)
    first, last = tail[: SR // 20].mean(), tail[-SR // 20 :].mean()
    assert 10 * math.log10(first / last) > 40  # ~55 dB between the first and last 50 ms


def test_reverberation_spreads_energy_after_the_speech_and_is_seeded():
    w = tone(440, tail=0.5)
    wet = reverberate(w, 0.5, SR, "a")
    after = slice(int(1.05 * SR), int(1.3 * SR))  # just after the tone stops
    assert w[after].abs().max() == 0 and wet[after].pow(2).mean() > 1e-5
    assert torch.equal(wet, reverberate(w, 0.5, SR, "a")) and not torch.equal(wet, reverberate(w, 0.5, SR, "b"))
    assert wet.abs().max() == pytest.approx(float(w.abs().max()), rel=1e-5)


def test_band_limit_removes_what_is_outside_the_band():
    def power(x):
        return float(x[SR // 10 :].pow(2).mean())  # past the filters' start-up

    low, mid, high = (tone(f, lead=0, tail=0) for f in (60, 1000, 3700))
    assert power(band_limit(low, SR, 300, 3000)) < 0.1 * power(low)
    assert power(band_limit(high, SR, 300, 3000)) < 0.3 * power(high)
    assert power(band_limit(mid, SR, 300, 3000)) > 0.8 * power(mid)


def test_channel_draws_leave_the_other_draws_unchanged():
    base = TtsDigitsConfig(train_utterances=30, dev_utterances=2)
    wide = dataclasses.replace(base, reverb_prob=0.5, band_prob=0.5, trim_prob=0.5)
    a, b = plan_digits(base), plan_digits(wide)
    extra = ("rt60", "band", "trim")
    for ja, jb in zip(a["source_train"], b["source_train"], strict=True):
        assert {k: v for k, v in jb.items() if k not in extra} == ja
    got = b["source_train"]
    for k in extra:
        assert 0 < sum(k in j for j in got) < len(got), k
    assert all(0.15 <= j["rt60"] <= 0.6 for j in got if "rt60" in j)
