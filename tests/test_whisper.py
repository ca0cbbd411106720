"""Whisper: our encoder and log-mel equal transformers', any input length, checkpoints of both formats,
and a Whisper-based CTC model through training, decode and transcribe."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speechtl.errors import SpeechtlError
from speechtl.features.whisper_mel import BatchedWhisperMel
from speechtl.models.whisper import WhisperEncoder, load_whisper_encoder

REAL = Path(__file__).resolve().parents[2] / "shared" / "models" / "whisper-tiny.en"


def tiny_whisper_config(**kw):
    from transformers import WhisperConfig

    base = dict(
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        vocab_size=64,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    return WhisperConfig(**{**base, **kw})


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    """A random tiny WhisperForConditionalGeneration saved as a Hugging Face directory."""
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-whisper")
    WhisperForConditionalGeneration(tiny_whisper_config()).save_pretrained(d)
    return d


def hf_encoder(path: Path):
    from transformers import WhisperModel

    return WhisperModel.from_pretrained(path, dtype=torch.float32).encoder.eval()


def ours(path) -> WhisperEncoder:
    cfg, state = load_whisper_encoder(path)
    enc = WhisperEncoder(cfg.num_mels, cfg)
    enc.load_state_dict(state)
    return enc.eval()


def wave(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a louder and a near-silent stretch (the 8-dB clamp then matters)."""
    g = np.random.default_rng(seed)
    x = (0.1 * g.standard_normal(int(seconds * 16000))).astype(np.float32)
    x[: len(x) // 4] *= 1e-3
    return x


def hf_mel(x: np.ndarray) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=80)(x, sampling_rate=16000, return_tensors="np").input_features[0].T


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
)
def test_log_mel_equals_transformers_on_30_seconds(device):
    x = wave(30.0)
    got = BatchedWhisperMel().to(device)([torch.from_numpy(x).to(device)])[0].cpu().numpy()
    ref = hf_mel(x)
    assert got.shape == ref.shape == (3000, 80)
    assert np.abs(got - ref).max() <= 1e-4


def test_unpadded_log_mel_differs_from_the_padded_one_only_at_the_end():
    """The documented difference: a 1.03-s wave's frames are the padded 30 s's first frames
    but the last (its window reaches past the wave: zeros there, the reflected wave here)."""
    x = wave(1.03, seed=1)
    got = BatchedWhisperMel()([torch.from_numpy(x)])[0].numpy()
    ref = hf_mel(x)
    n = len(x) // 160
    assert got.shape == (n, 80)
    assert np.abs(got[: n - 1] - ref[: n - 1]).max() <= 1e-4
    assert np.abs(got[n - 1] - ref[n - 1]).max() > 1e-3
    # what padding adds: frames of the clamped floor, (max - 8 + 4) / 4, that the encoder would attend to
    floor = (ref.max() * 4 - 4 - 8 + 4) / 4
    np.testing.assert_allclose(ref[n + 2 :], floor, atol=1e-5)


def test_batched_log_mel_equals_one_wave_at_a_time():
    waves = [torch.from_numpy(wave(s, seed=i)) for i, s in enumerate([0.3, 1.2, 0.011, 0.7])]
    mel = BatchedWhisperMel()
    batch = mel(waves)
    for w, b in zip(waves, batch, strict=True):
        one = mel([w])[0]
        assert b.shape == (w.numel() // 160, 80)
        torch.testing.assert_close(b, one, atol=1e-5, rtol=0)


def test_encoder_equals_transformers_on_30_seconds(tiny_whisper_dir):
    x = torch.from_numpy(hf_mel(wave(30.0)))[None]
    with torch.no_grad():
        ref = hf_encoder(tiny_whisper_dir)(x.transpose(1, 2)).last_hidden_state
        got, lens = ours(tiny_whisper_dir)(x, torch.tensor([3000]))
    assert got.shape == ref.shape == (1, 1500, 16) and lens.tolist() == [1500]
    assert (got - ref).abs().max() <= 1e-4


def openai_state(hf_dir: Path) -> dict:
    """An OpenAI-format checkpoint of the same weights (their names, written out here)."""
    from transformers import WhisperModel

    hf = WhisperModel.from_pretrained(hf_dir, dtype=torch.float32).encoder.state_dict()
    names = {
        "conv1.weight": "conv1.weight",
        "conv1.bias": "conv1.bias",
        "conv2.weight": "conv2.weight",
        "conv2.bias": "conv2.bias",
        "embed_positions.weight": "positional_embedding",
        "layer_norm.weight": "ln_post.weight",
        "layer_norm.bias": "ln_post.bias",
    }
    per_layer = {
        "self_attn.q_proj": "attn.query",
        "self_attn.k_proj": "attn.key",
        "self_attn.v_proj": "attn.value",
        "self_attn.out_proj": "attn.out",
        "self_attn_layer_norm": "attn_ln",
        "fc1": "mlp.0",
        "fc2": "mlp.2",
        "final_layer_norm": "mlp_ln",
    }
    out = {}
    for k, v in hf.items():
        if k in names:
            out["encoder." + names[k]] = v.half()
            continue
        _, i, rest = k.split(".", 2)
        module, param = rest.rsplit(".", 1)
        out[f"encoder.blocks.{i}.{per_layer[module]}.{param}"] = v.half()
    out["decoder.token_embedding.weight"] = torch.zeros(4, 16)  # decoder weights are ignored
    return out


def test_encoder_loads_openai_checkpoints(tiny_whisper_dir, tmp_path):
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 16, "n_audio_head": 2, "n_audio_layer": 2}
    dims.update({"n_vocab": 64, "n_text_ctx": 16, "n_text_state": 16, "n_text_head": 2, "n_text_layer": 1})
    torch.save({"dims": dims, "model_state_dict": openai_state(tiny_whisper_dir)}, tmp_path / "tiny.pt")
    x, n = torch.randn(2, 300, 80), torch.tensor([300, 211])
    with torch.no_grad():
        # fp16 weights in the .pt: the same as the HF (fp32) ones rounded to fp16
        torch.testing.assert_close(
            ours(tmp_path / "tiny.pt")(x, n)[0], ours(tiny_whisper_dir)(x, n)[0], atol=2e-2, rtol=0
        )
    enc = ours(tmp_path / "tiny.pt")
    assert all(p.dtype == torch.float32 for p in enc.parameters())
    with pytest.raises(SpeechtlError, match="dims"):
        torch.save({"model_state_dict": {}}, tmp_path / "bad.pt")
        load_whisper_encoder(tmp_path / "bad.pt")


def test_any_length_and_batch_independence(tiny_whisper_dir):
    enc = ours(tiny_whisper_dir)
    x = torch.randn(3, 301, 80)
    lens = torch.tensor([301, 120, 57])
    with torch.no_grad():
        batch, out_lens = enc(x, lens)
        assert out_lens.tolist() == [151, 60, 29]
        for i, n in enumerate(lens.tolist()):
            alone, _ = enc(x[i : i + 1, :n], torch.tensor([n]))
            torch.testing.assert_close(batch[i, : out_lens[i]], alone[0], atol=1e-5, rtol=0)
    with pytest.raises(SpeechtlError, match="positions for 1500"):
        enc(torch.randn(1, 3002, 80), torch.tensor([3002]))


@pytest.mark.skipif(not REAL.is_dir(), reason=f"no {REAL}")
def test_real_whisper_tiny_en_equals_transformers():
    x = torch.from_numpy(hf_mel(wave(30.0)))[None]
    with torch.no_grad():
        ref = hf_encoder(REAL)(x.transpose(1, 2)).last_hidden_state
        got, _ = ours(REAL)(x, torch.tensor([3000]))
    assert (got - ref).abs().max() <= 1e-4


def test_whisper_ctc_model_trains_decodes_and_transcribes(small_yesno, tiny_whisper_dir, tmp_path):
    """A whisper: source under yesno's units: training reads log-mel from the audio (the cuts hold
    23-bin fbank), the checkpoint says so, and decode and transcribe need no flag for it."""
    from speechtl.adapt import get_method
    from speechtl.adapt.transfer import build_model_for
    from speechtl.decode.run import decode_test_set
    from speechtl.decode.transcribe import transcribe
    from speechtl.features.inputs import mark_cuts
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.checkpoint import model_from_checkpoint
    from speechtl.train.trainer import seed_everything

    _, cuts, lang = small_yesno
    seed_everything(0)
    method = get_method("finetune")
    model = build_model_for(method, lang, None, f"whisper:{tiny_whisper_dir}")
    assert model.input_spec.kind == "whisper-mel" and model.output.out_features == lang.vocab_size
    pretrained = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    torch.testing.assert_close(pretrained["conv1.weight"], ours(tiny_whisper_dir).state_dict()["conv1.weight"])
    cfg = TrainConfig(num_steps=2, max_duration=400, num_buckets=2, average_last=1, lr=0.01)
    final = Trainer(model, lang, method, cfg, tmp_path / "exp").fit(mark_cuts(cuts, model.input_spec))
    rebuilt = model_from_checkpoint(final)
    assert rebuilt.input_spec == model.input_spec
    assert not torch.equal(rebuilt.encoder.state_dict()["layers.0.fc1.weight"], pretrained["layers.0.fc1.weight"])
    test_cuts = tmp_path / "test.jsonl.gz"
    cuts.subset(first=3).to_file(test_cuts)
    rows = decode_test_set(final, lang.dir, test_cuts, "test", tmp_path / "decode", decodings=("greedy", "hlg"))
    assert [r.decoding for r in rows] == ["greedy", "hlg"] and all(r.words > 0 for r in rows)
    assert (tmp_path / "decode" / "recogs-test-hlg.txt").is_file()
    files = [Path(c.recording.sources[0].source) for c in cuts.subset(first=2)]
    out = transcribe(tmp_path / "exp", lang.dir, files, "hlg")
    assert [r.path for r in out] == files and all(r.error is None and isinstance(r.words, list) for r in out)
    import soundfile as sf

    # 37 s: more than the encoder's 30-s positional table ("Fix: split inputs" before), so even with
    # no length of the user's (0) it is decoded in pieces of at most 30 s
    waves = [sf.read(str(p), dtype="float32")[0] for p in sorted(Path(files[0]).parent.glob("*.wav"))[:6]]
    sf.write(str(tmp_path / "long.wav"), np.concatenate(waves), 8000)
    [long] = transcribe(tmp_path / "exp", lang.dir, [tmp_path / "long.wav"], "greedy", max_seconds=0)
    assert long.error is None and len(long.pieces) == 2 and all(p.end - p.start <= 30 for p in long.pieces)


def test_zero_shot_normalizes_like_the_references():
    from speechtl.decode.zero_shot import normalize_hypothesis

    assert normalize_hypothesis(" Seven.") == ["seven"]
    assert normalize_hypothesis("7", spell_digits=True) == ["seven"]
    assert normalize_hypothesis("It's 7, 12!", spell_digits=True) == ["it's", "seven", "12"]


def test_zero_shot_normalizes_as_the_import_did(tmp_path, fsdd_dir):
    """A users' corpus: the hypotheses go through the importer's normalizer with the options the
    import was run with (its <prefix>_text_norm.json: here --map-chars), so Whisper's 'ş' is
    scored against references written with 'ș'."""
    import json

    from speechtl.data.corpora.folder import prepare_folder
    from speechtl.decode.zero_shot import _normalizer, normalize_hypothesis

    root = tmp_path / "c"
    root.mkdir()
    for d in range(6):
        shutil.copy(fsdd_dir / f"{d}_george_0.wav", root / f"{d}.wav")
        (root / f"{d}.txt").write_text("Şase\n")
    prepare_folder(root, tmp_path / "m", map_chars="ş=ș", dev_fraction=0.2, test_fraction=0.2)
    conf = tmp_path / "m" / "folder_text_norm.json"
    assert json.loads(conf.read_text())["map"] == "ş=ș"
    norm = _normalizer("import", conf)
    assert normalize_hypothesis("Şapte-zeci, t-athair!", norm=norm) == ["șapte-zeci", "t-athair"]
    assert normalize_hypothesis("Şapte-zeci, t-athair!", norm=_normalizer("tts")) != ["șapte-zeci", "t-athair"]
    with pytest.raises(SpeechtlError, match="does not exist"):
        _normalizer("import", tmp_path / "none.json")


@pytest.mark.skipif(not REAL.is_dir(), reason=f"no {REAL}")
def test_zero_shot_rows_from_whispers_own_decoder(fsdd_dir, tmp_path):
    """Our 30-s log-mel gives Whisper the transcripts transformers' feature extractor does,
    and the row is scored on normalized words."""
    from lhotse import CutSet, Recording, SupervisionSegment
    from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

    from speechtl.decode.zero_shot import whisper_transcripts, zero_shot

    cuts = []
    for name, word in [("3_jackson_0", "THREE"), ("8_george_1", "EIGHT")]:
        rec = Recording.from_file(fsdd_dir / f"{name}.wav")
        cut = rec.to_cut()
        cut.supervisions = [SupervisionSegment(name, rec.id, 0.0, rec.duration, text=word)]
        cuts.append(cut)
    cuts = CutSet.from_cuts(cuts)
    ours = whisper_transcripts(f"whisper:{REAL}", cuts)
    fe = WhisperFeatureExtractor.from_pretrained(REAL)
    model = WhisperForConditionalGeneration.from_pretrained(REAL, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(REAL)
    for c in cuts:
        x = fe(c.resample(16000).load_audio()[0], sampling_rate=16000, return_tensors="pt").input_features
        with torch.no_grad():
            assert tok.batch_decode(model.generate(x, max_new_tokens=96), skip_special_tokens=True)[0] == ours[c.id]
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    row = zero_shot(f"whisper:{REAL}", tmp_path / "cuts.jsonl.gz", "t", tmp_path / "d", spell_digits=True)
    assert row.words == 2 and row.decoding == "whisper" and (tmp_path / "d" / "recogs-t-whisper.txt").is_file()


def test_padded_cuts_carry_the_input_mark_and_give_whisper_mel_of_the_padded_audio(small_yesno):
    """A mixed cut (here: padded with silence, as lhotse's cut.pad() makes it) has no custom field of
    its own: the mark goes on its speech track, and the model reads log-mel of the whole padded wave."""
    from speechtl.features.inputs import InputSpec, WaveInput, mark_cuts, spec_of

    _, cuts, _ = small_yesno
    spec = InputSpec("whisper-mel", 16000, 80)
    padded = cuts.subset(first=2).map(lambda c: c.pad(duration=c.duration + 1.0, direction="both"))
    marked = mark_cuts(padded, spec)
    assert type(next(iter(marked))).__name__ == "MixedCut" and spec_of(marked) == spec
    feats, lens = WaveInput(spec)(marked)
    _, plain_lens = WaveInput(spec)(mark_cuts(cuts.subset(first=2), spec))
    assert feats.shape[2] == 80 and all(p + 100 == q for p, q in zip(plain_lens.tolist(), lens.tolist(), strict=True))
    silence, speech = feats[0, 5:45], feats[0, 50 : lens[0] - 50]  # the leading 0.5 s is the zeros' floor
    assert silence.std() < 0.01 < speech.std() and silence.mean() < speech.mean()


def test_audio_is_read_at_its_own_rate_when_the_fbank_stage_resampled_it(fsdd_dir, tmp_path):
    """A generated recipe's fbank stage computes 16-kHz fbank of 8-kHz recordings: the stored cut then
    says 16 kHz (its features' rate) while its audio is 8 kHz. The model's log-mel must come from the
    audio resampled to 16 kHz (100 frames a second), and its frames must be the supervisions' (CTC
    read 34 frames as 17 before, and stopped)."""
    from lhotse import CutSet

    from speechtl.data.corpora.fsdd import prepare_fsdd
    from speechtl.features import FbankConfig
    from speechtl.features.compute import compute_fbank
    from speechtl.features.inputs import InputSpec, WaveInput, mark_cuts

    prepare_fsdd(fsdd_dir, tmp_path / "m", train_speakers=["george"], test_speakers=["jackson"])
    compute_fbank(tmp_path / "m", tmp_path / "f", "fsdd", ["test"], FbankConfig(sampling_rate=16000, num_mel_bins=80))
    cuts = CutSet.from_file(tmp_path / "f" / "fsdd_cuts_test.jsonl.gz").subset(first=3)
    c = next(iter(cuts))
    assert c.sampling_rate == 16000 and c.recording.sampling_rate == 8000  # the case this is about
    spec = InputSpec("whisper-mel", 16000, 80)
    wave_input = WaveInput(spec)
    feats, lens = wave_input(mark_cuts(cuts, spec))
    frames = wave_input.supervision_intervals(mark_cuts(cuts, spec))["num_frames"]
    assert lens.tolist() == frames.tolist() and feats.shape[:2] == (3, max(lens.tolist()))
    assert all(abs(n - 100 * c.duration) <= 1 for n, c in zip(lens.tolist(), cuts, strict=True))
    from speechtl.export.sherpa import cut_waves  # the ONNX check reads waves the same way

    waves = cut_waves(cuts, 16000)
    assert all(abs(len(waves[c.id]) - 16000 * c.duration) <= 16 for c in cuts)


def test_whisper_trains_on_cuts_without_fbank_and_on_padded_cuts(small_yesno, tiny_whisper_dir, tmp_path):
    """A model that reads log-mel from the audio needs no precomputed fbank (the checkpoint then
    records none), and trains on mixed cuts (padded with silence) as on plain ones."""
    from speechtl.adapt import get_method
    from speechtl.adapt.transfer import build_model_for
    from speechtl.features.inputs import mark_cuts
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.checkpoint import load_checkpoint
    from speechtl.train.trainer import seed_everything

    _, cuts, lang = small_yesno
    cfg = TrainConfig(num_steps=1, max_duration=400, num_buckets=2, average_last=1, lr=0.01)
    for name, these in [
        ("audio-only", cuts.drop_features()),
        ("padded", cuts.map(lambda c: c.pad(duration=c.duration + 0.5, direction="both"))),
    ]:
        seed_everything(0)
        model = build_model_for(get_method("finetune"), lang, None, f"whisper:{tiny_whisper_dir}")
        final = Trainer(model, lang, get_method("finetune"), cfg, tmp_path / name).fit(
            mark_cuts(these, model.input_spec)
        )
        recorded = load_checkpoint(final)["features"]
        assert (recorded is None) == (name == "audio-only"), name
    from speechtl.train.trainer import feature_info

    with pytest.raises(SpeechtlError, match=r"no features\. Fix: run the fbank stage"):
        feature_info(cuts.drop_features())  # a model on fbank still needs them


def test_input_pad_adds_silence_at_both_ends_and_checkpoints_keep_it(small_yesno, tiny_whisper_dir, tmp_path):
    """``model: {input_pad: S}``: every utterance's audio gets S seconds of zeros at each end before
    the log-mel (the same input lhotse's ``cut.pad`` gives), its supervision covers the padding, the
    checkpoint records it, and a model on precomputed fbank refuses it."""
    from speechtl.adapt import get_method
    from speechtl.adapt.transfer import build_model_for
    from speechtl.decode.run import compute_log_probs
    from speechtl.features.inputs import InputSpec, WaveInput, mark_cuts
    from speechtl.models.ctc import CtcModel, ModelConfig
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.checkpoint import model_from_checkpoint

    _, cuts, lang = small_yesno
    some = cuts.subset(first=3)
    plain, padded = InputSpec("whisper-mel", 16000, 80), InputSpec("whisper-mel", 16000, 80, pad=0.5)
    ours = WaveInput(padded)
    feats, lens = ours(mark_cuts(some, padded))
    by_lhotse = some.map(lambda c: c.pad(duration=c.duration + 1.0, direction="both"))
    ref, ref_lens = WaveInput(plain)(mark_cuts(by_lhotse, plain))
    assert lens.tolist() == ref_lens.tolist()
    torch.testing.assert_close(feats, ref, atol=1e-4, rtol=0)
    sup = ours.supervision_intervals(mark_cuts(some, padded))
    assert sup["start_frame"].tolist() == [0, 0, 0] and sup["num_frames"].tolist() == lens.tolist()

    model = build_model_for(get_method("finetune"), lang, ModelConfig(input_pad=0.5), f"whisper:{tiny_whisper_dir}")
    assert model.input_spec == padded
    cfg = TrainConfig(num_steps=1, max_duration=400, num_buckets=2, average_last=1, lr=0.01)
    final = Trainer(model, lang, get_method("finetune"), cfg, tmp_path / "exp").fit(mark_cuts(cuts, model.input_spec))
    assert model_from_checkpoint(final).input_spec == padded
    scores = compute_log_probs(final, some, "cpu")  # decoding pads too: the padded input's frames
    assert sorted(len(lp) for _, lp in scores.values()) == sorted(((lens + 1) // 2).tolist())
    with pytest.raises(SpeechtlError, match="input_pad: 0 for an encoder on precomputed fbank"):
        CtcModel(ModelConfig(num_features=23, input_pad=0.5), lang.vocab_size)


def test_zero_shot_language_of_an_english_only_whisper():
    """whisper-tiny.en with --whisper-language ru gave transformers' traceback; now the fix is named,
    and English (or none) is no language option at all for such a model."""
    from types import SimpleNamespace

    from speechtl.decode.zero_shot import generate_language

    english_only = SimpleNamespace(generation_config=SimpleNamespace(is_multilingual=False))
    multilingual = SimpleNamespace(generation_config=SimpleNamespace(is_multilingual=True, lang_to_id={"<|ru|>": 1}))
    outdated = SimpleNamespace(generation_config=SimpleNamespace(is_multilingual=True))  # no lang_to_id
    with pytest.raises(SpeechtlError, match=r"English-only Whisper .* cannot transcribe --language ru"):
        generate_language(english_only, "ru", "m/whisper-tiny.en")
    assert generate_language(english_only, "en", "m") == {} and generate_language(english_only, None, "m") == {}
    assert generate_language(multilingual, "ru", "m") == {"language": "ru", "task": "transcribe"}
    # transformers' "generation config is outdated" traceback stopped a recipe before its RESULTS.md
    with pytest.raises(SpeechtlError, match=r"older than generate's language option .* Fix: copy generation_config"):
        generate_language(outdated, "ru", "m")
    if REAL.is_dir():  # the real checkpoint says so in its generation_config
        from transformers import GenerationConfig

        real = SimpleNamespace(generation_config=GenerationConfig.from_pretrained(REAL))
        with pytest.raises(SpeechtlError, match="English-only"):
            generate_language(real, "ga", str(REAL))


def test_zero_shot_of_an_english_only_whisper_on_another_script_is_skipped(tmp_path, caplog):
    """whisper-tiny.en on a Thai test set wrote English for 12 minutes and gave a 1074% WER row (whose
    line set the plot's scale). An English-only checkpoint and references not in Latin letters now skip
    the row, saying why, before the model is loaded (this folder has no weights to load)."""
    import json
    import logging

    from lhotse import CutSet, Recording, SupervisionSegment

    from speechtl.decode.zero_shot import zero_shot

    model = tmp_path / "tiny.en"
    model.mkdir()
    (model / "generation_config.json").write_text(json.dumps({"is_multilingual": False}))
    import soundfile as sf

    sf.write(str(tmp_path / "a.wav"), wave(1.0), 16000)
    rec = Recording.from_file(tmp_path / "a.wav")
    cut = rec.to_cut()
    cut.supervisions = [SupervisionSegment("a", rec.id, 0.0, 1.0, text="วันนี้อากาศดีมาก")]
    CutSet.from_cuts([cut]).to_file(tmp_path / "cuts.jsonl.gz")
    with caplog.at_level(logging.WARNING):
        row = zero_shot(f"whisper:{model}", tmp_path / "cuts.jsonl.gz", "t", tmp_path / "d", text_norm="import")
    assert row is None and "English-only Whisper" in caplog.text
    cut.supervisions = [SupervisionSegment("a", rec.id, 0.0, 1.0, text="hello there")]
    CutSet.from_cuts([cut]).to_file(tmp_path / "en.jsonl.gz")
    with pytest.raises(SpeechtlError, match="cannot load Whisper model"):  # English references: it tries
        zero_shot(f"whisper:{model}", tmp_path / "en.jsonl.gz", "t", tmp_path / "d2", text_norm="import")


def test_hub_ids_named_en_are_english_only():
    from speechtl.decode.zero_shot import english_only

    assert english_only("whisper:openai/whisper-tiny.en") and not english_only("whisper:openai/whisper-tiny")


def test_one_file_of_a_whisper_folder_names_the_folder(tiny_whisper_dir):
    """whisper:.../model.safetensors gave torch's advice to load with weights_only=False."""
    with pytest.raises(
        SpeechtlError, match=rf"one file of a Hugging Face model folder. Fix: .*whisper:{tiny_whisper_dir}"
    ):
        load_whisper_encoder(tiny_whisper_dir / "model.safetensors")


def test_a_whisper_source_without_a_tokenizer_gives_no_zero_shot_row(tiny_whisper_dir, tmp_path, caplog):
    """A folder of weights without tokenizer files gave a 100% row of empty texts ("the model emits only
    blank"), and an OpenAI .pt stopped a generated recipe's stage 4 before RESULTS.md. Both are named
    with the fix; a recipe (skip_unavailable) leaves the row out and goes on."""
    import logging

    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment

    from speechtl.decode.zero_shot import Unavailable, zero_shot

    sf.write(str(tmp_path / "a.wav"), wave(1.0), 16000)
    rec = Recording.from_file(tmp_path / "a.wav")
    cut = rec.to_cut()
    cut.supervisions = [SupervisionSegment("a", rec.id, 0.0, 1.0, text="hello there")]
    CutSet.from_cuts([cut]).to_file(tmp_path / "cuts.jsonl.gz")
    cuts, tsv = tmp_path / "cuts.jsonl.gz", tmp_path / "results.tsv"
    with pytest.raises(Unavailable, match=r"no complete tokenizer .* Fix: copy vocab.json"):
        zero_shot(f"whisper:{tiny_whisper_dir}", cuts, "t", tmp_path / "d", results_tsv=tsv)
    pt = tmp_path / "tiny.pt"
    pt.write_bytes(b"not read")
    with pytest.raises(Unavailable, match=r"OpenAI's .pt.*no tokenizer.*Fix: for the zero-shot row"):
        zero_shot(f"whisper:{pt}", cuts, "t", tmp_path / "d", results_tsv=tsv)
    with caplog.at_level(logging.WARNING):
        row = zero_shot(f"whisper:{pt}", cuts, "t", tmp_path / "d", results_tsv=tsv, skip_unavailable=True)
    assert row is None and "zero-shot row left out, the other results stand" in caplog.text
    assert not tsv.exists()
    # a row of an earlier source under the same name would pass for this one's: it goes
    from speechtl.score.results import ResultRow, read_results, update_results

    update_results(
        tsv,
        [
            ResultRow("t", "zero-shot-whisper", "0", "whisper", 50.0, 1, 2),
            ResultRow("t", "m", "0", "greedy", 1.0, 1, 2),
        ],
    )
    zero_shot(f"whisper:{pt}", cuts, "t", tmp_path / "d", results_tsv=tsv, skip_unavailable=True)
    assert [r.method for r in read_results(tsv)] == ["m"]
