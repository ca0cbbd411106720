"""Feature-domain noise augmentation (speechtl.train.augment)."""

import math

import pytest
import torch

from speechtl.errors import SpeechtlError
from speechtl.train.augment import MelNoise, MelNoiseConfig, mel_noise_config


def speech_and_pause(frames=40, bins=8):
    """One utterance: loud frames 0-19 (power 1), near-silent frames 20-39 (power 1e-6), log-mel."""
    power = torch.full((1, frames, bins), 1e-6)
    power[:, : frames // 2] = 1.0
    return power.log()


def noise_power(feats, noisy):
    return (noisy.exp() - feats.exp()).clamp(min=0)


def test_noise_fills_pauses_at_the_asked_snr():
    feats = speech_and_pause()
    cfg = MelNoiseConfig(snr=(10.0, 10.0), prob=1.0, tilt=(0.0, 0.0), jitter=0.0)
    noisy = MelNoise(cfg, torch.Generator().manual_seed(0))(feats)
    signal = feats.exp().mean()  # mean power per frame and bin
    added = noise_power(feats, noisy)
    torch.testing.assert_close(added.mean(), signal / 10.0, rtol=1e-4, atol=0)  # 10 dB below the signal
    assert float(noisy[0, 30].mean()) > float(feats[0, 30].mean()) + 10  # the pause is no longer silent
    assert float((noisy[0, 5] - feats[0, 5]).abs().max()) < math.log(1.1)  # speech frames barely move


def test_padding_outside_the_segments_and_unchosen_utterances_are_untouched():
    feats = torch.cat([speech_and_pause(), speech_and_pause()])
    segments = torch.tensor([[0, 0, 30], [1, 0, 40]])
    cfg = MelNoiseConfig(snr=(0.0, 0.0), prob=1.0)
    noisy = MelNoise(cfg, torch.Generator().manual_seed(1))(feats, supervision_segments=segments)
    assert torch.equal(noisy[0, 30:], feats[0, 30:])  # padding of the shorter utterance
    assert not torch.equal(noisy[1, 30:], feats[1, 30:])
    untouched = MelNoise(MelNoiseConfig(prob=0.0), torch.Generator().manual_seed(1))(feats, segments)
    assert torch.equal(untouched, feats)


def test_same_seed_same_noise_and_tilt_shapes_the_spectrum():
    feats = speech_and_pause()
    cfg = MelNoiseConfig(snr=(10.0, 10.0), prob=1.0, tilt=(2.0, 2.0), jitter=0.0)
    a = MelNoise(cfg, torch.Generator().manual_seed(7))(feats)
    b = MelNoise(cfg, torch.Generator().manual_seed(7))(feats)
    assert torch.equal(a, b)
    added = noise_power(feats, a)[0, 30]
    torch.testing.assert_close(added[-1] / added[0], torch.tensor(math.exp(2.0)), rtol=1e-3, atol=0)


def test_bad_options_are_named(small_yesno, tmp_path):
    from speechtl.adapt import get_method
    from speechtl.models import ModelConfig, build_model
    from speechtl.train import TrainConfig, Trainer

    assert mel_noise_config({"snr": [0, 20], "prob": 1}).snr == (0, 20)
    with pytest.raises(SpeechtlError, match=r"low <= high"):
        mel_noise_config({"snr": [20, 5]})
    _, _, lang = small_yesno
    model = build_model(ModelConfig(encoder="tdnn", num_features=23), lang.vocab_size)
    with pytest.raises(SpeechtlError, match=r"bad mel_noise options.*snr_db"):  # refused before any work
        Trainer(model, lang, get_method("scratch"), TrainConfig(mel_noise={"snr_db": [1, 2]}), tmp_path)
