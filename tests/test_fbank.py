import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf
import torch

from speechtl.features import BatchedFbank, FbankConfig
from speechtl.features.fbank import kaldi_num_frames


def kaldi_reference(wave: np.ndarray, cfg: FbankConfig) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = cfg.dither
    opts.frame_opts.samp_freq = cfg.sampling_rate
    opts.frame_opts.frame_length_ms = cfg.frame_length * 1000
    opts.frame_opts.frame_shift_ms = cfg.frame_shift * 1000
    opts.frame_opts.snip_edges = cfg.snip_edges
    opts.frame_opts.remove_dc_offset = cfg.remove_dc_offset
    opts.frame_opts.preemph_coeff = cfg.preemph_coeff
    opts.frame_opts.round_to_power_of_two = cfg.round_to_power_of_two
    opts.frame_opts.window_type = cfg.window_type
    opts.mel_opts.num_bins = cfg.num_mel_bins
    opts.mel_opts.low_freq = cfg.low_freq
    opts.mel_opts.high_freq = cfg.high_freq
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(cfg.sampling_rate, wave.tolist())
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def real_waves(yesno_dir, fsdd_dir):
    files = sorted(yesno_dir.glob("*.wav"))[:3] + sorted(fsdd_dir.glob("*.wav"))[::400]
    return [sf.read(str(f), dtype="float32")[0] for f in files]


def assert_batch_equals_kaldi(cfg, waves):
    """One BatchedFbank call over all ``waves``; each utterance within 1e-3 of kaldi-native-fbank."""
    feats = BatchedFbank(cfg)([torch.from_numpy(w) for w in waves])
    for w, f in zip(waves, feats, strict=False):
        ref = kaldi_reference(w, cfg)
        assert f.shape == ref.shape
        assert np.abs(f.numpy() - ref).max() <= 1e-3


@pytest.mark.parametrize("backend", ["speechtl", "lhotse"])
@pytest.mark.parametrize("high_freq,bins", [(-400.0, 23), (0.0, 80)])
def test_batched_fbank_equals_kaldi_native_fbank_on_real_audio(yesno_dir, fsdd_dir, high_freq, bins, backend):
    cfg = FbankConfig(sampling_rate=8000, num_mel_bins=bins, high_freq=high_freq, backend=backend)
    waves = real_waves(yesno_dir, fsdd_dir)
    assert len({len(w) for w in waves}) > 3, "the batch must mix lengths"
    assert_batch_equals_kaldi(cfg, waves)


def test_fbank_at_16k_equals_kaldi_native_fbank(yesno_dir):
    import torchaudio

    cfg = FbankConfig(sampling_rate=16000, num_mel_bins=80)
    w8, _ = sf.read(str(sorted(yesno_dir.glob("*.wav"))[5]), dtype="float32")
    w = torchaudio.functional.resample(torch.from_numpy(w8), 8000, 16000)
    ours = BatchedFbank(cfg)([w])[0]
    ref = kaldi_reference(w.numpy(), cfg)
    assert ours.shape == ref.shape and np.abs(ours.numpy() - ref).max() <= 1e-3


def test_fbank_batch_equals_one_at_a_time(fsdd_dir):
    cfg = FbankConfig(sampling_rate=8000, num_mel_bins=40)
    fb = BatchedFbank(cfg)
    waves = [torch.from_numpy(sf.read(str(f), dtype="float32")[0]) for f in sorted(fsdd_dir.glob("*.wav"))[:6]]
    batched = fb(waves)
    for w, b in zip(waves, batched, strict=False):
        torch.testing.assert_close(b, fb([w])[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "options",
    [
        dict(snip_edges=True),
        dict(remove_dc_offset=False),
        dict(preemph_coeff=0.0),
        dict(preemph_coeff=0.5, remove_dc_offset=False, snip_edges=True),
        dict(round_to_power_of_two=False),  # a 200-point FFT
        dict(low_freq=100.0, high_freq=3000.0, num_mel_bins=30),
        dict(frame_length=0.032, frame_shift=0.015),  # 256 / 120 samples: frame means from 8-sample blocks
        dict(frame_length=0.0251, frame_shift=0.01),  # Kaldi truncates: 200 samples, not 201
        dict(frame_length=0.02, frame_shift=0.00875),  # 160 / 70 samples: 10-sample blocks
        dict(frame_length=0.025125, frame_shift=0.01),  # 201 / 80 samples: no common block, odd length
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_kaldi_options_equal_kaldi_native_fbank(yesno_dir, fsdd_dir, options):
    cfg = FbankConfig(**{"sampling_rate": 8000, "num_mel_bins": 23, **options})
    assert_batch_equals_kaldi(cfg, real_waves(yesno_dir, fsdd_dir))


def test_blocks_of_frames_do_not_change_the_result(yesno_dir):
    """The CPU kernel runs frames in cache-sized blocks; block edges must not show."""
    cfg = FbankConfig(sampling_rate=8000, num_mel_bins=40)
    waves = [torch.from_numpy(sf.read(str(f), dtype="float32")[0]) for f in sorted(yesno_dir.glob("*.wav"))[:3]]
    whole, blocked = BatchedFbank(cfg), BatchedFbank(cfg)
    whole.kernel.block_frames, blocked.kernel.block_frames = 10**9, 37
    for a, b in zip(whole(waves), blocked(waves), strict=False):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_dither_matches_kaldi_statistically():
    """Dither is random, so compare the mean log energy per bin over 30 s of
    digital silence, where dither is all there is, with kaldi-native-fbank's."""
    cfg = FbankConfig(sampling_rate=16000, num_mel_bins=40, dither=1e-3)
    silence = np.zeros(30 * 16000, dtype=np.float32)
    torch.manual_seed(0)
    ours = BatchedFbank(cfg)([torch.from_numpy(silence)])[0].numpy()
    ref = kaldi_reference(silence, cfg)
    assert ours.shape == ref.shape
    assert np.abs(ours.mean(0) - ref.mean(0)).max() < 0.15  # measured: 0.05 for any seed
    undithered = BatchedFbank(FbankConfig(sampling_rate=16000, num_mel_bins=40))([torch.from_numpy(silence)])[0]
    assert (ours.mean(0) > undithered.numpy().mean(0) + 0.5).all()


def test_frame_counts_follow_kaldi():
    assert kaldi_num_frames(16000, 400, 160, snip_edges=False) == 100
    assert kaldi_num_frames(16000, 400, 160, snip_edges=True) == 98
    assert kaldi_num_frames(100, 400, 160, snip_edges=True) == 0
    fb = BatchedFbank(FbankConfig(sampling_rate=16000))
    out = fb([torch.zeros(0), torch.randn(50), torch.randn(16000)])
    assert [o.shape[0] for o in out] == [0, 0, 100]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fbank_cuda_matches_cpu(fsdd_dir):
    cfg = FbankConfig(sampling_rate=8000, num_mel_bins=23)
    waves = [torch.from_numpy(sf.read(str(f), dtype="float32")[0]) for f in sorted(fsdd_dir.glob("*.wav"))[:8]]
    cpu = BatchedFbank(cfg)(waves)
    gpu = BatchedFbank(cfg).to("cuda")(waves)
    for c, g in zip(cpu, gpu, strict=False):
        assert g.is_cuda
        torch.testing.assert_close(g.cpu(), c, atol=1e-3, rtol=0)
