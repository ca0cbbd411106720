"""wav2vec2-family encoders through transformers, and every method on a pretrained encoder.

Tiny random configs, saved as Hugging Face directories: nothing is downloaded.
"""

from pathlib import Path

import pytest
import torch
from conftest import decode_torch_and_onnx
from test_whisper import tiny_whisper_dir  # noqa: F401  (fixture)

from speechtl.adapt import METHODS, get_method
from speechtl.adapt.transfer import build_model_for
from speechtl.errors import SpeechtlError
from speechtl.features.inputs import mark_cuts
from speechtl.models.hf_ssl import load_hf_encoder
from speechtl.models.pretrained import parse_source
from speechtl.train import TrainConfig, Trainer
from speechtl.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from speechtl.train.trainer import seed_everything

NO_DROPOUT = dict(
    hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0
)


def tiny_config(model_type: str, **kw):
    """3 layers of width 16 over a 7-convolution front end of 8 channels (320 samples per frame)."""
    from transformers import AutoConfig

    base = dict(
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        mask_time_prob=0.1,
        mask_time_length=2,
        layerdrop=0.0,
        vocab_size=8,
        **NO_DROPOUT,
    )
    if model_type == "wavlm":
        base.update(num_buckets=8, max_bucket_distance=20)
    return AutoConfig.for_model(model_type, **{**base, **kw})


def save_tiny(d: Path, model_type: str, **kw) -> Path:
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    AutoModel.from_config(tiny_config(model_type, **kw)).save_pretrained(d)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_w2v_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-wav2vec2"), "wav2vec2")


def fe_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.encoder.hf.feature_extractor.state_dict().items()}


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
def test_pretrained_weights_load_and_give_transformers_outputs(model_type, small_yesno, tmp_path):
    from transformers import AutoModel

    d = save_tiny(tmp_path / model_type, model_type)
    _, _, lang = small_yesno
    model = build_model_for(get_method("finetune"), lang, None, f"hf:{d}").eval()
    assert model.input_spec.kind == "samples" and model.input_spec.sampling_rate == 16000
    assert model.config.input_norm == "mvn"  # the feature extractor's do_normalize
    ref = AutoModel.from_pretrained(d).eval()
    x = torch.randn(1, 16000)
    with torch.no_grad():
        enc, lens = model.encoder(x[..., None], torch.tensor([16000]))
        torch.testing.assert_close(enc, ref(x).last_hidden_state)
    assert lens.tolist() == [enc.size(1)] == [49]
    # the checkpoint rebuilds the network from its own config, without the pretrained directory
    save_checkpoint(tmp_path / "m.pt", model)
    rebuilt = model_from_checkpoint(tmp_path / "m.pt").eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.encoder(x[..., None], torch.tensor([16000]))[0], enc)


def test_training_leaves_the_feature_encoder_bitwise_unchanged(small_yesno, tiny_w2v_dir, tmp_path):
    _, cuts, lang = small_yesno
    seed_everything(0)
    method = get_method("finetune")
    model = build_model_for(method, lang, None, f"hf:{tiny_w2v_dir}")
    fe, layer = fe_state(model), model.encoder.layers[0].attention.q_proj.weight.detach().clone()
    cfg = TrainConfig(num_steps=3, max_duration=100, num_buckets=2, average_last=1, lr=0.01)
    final = Trainer(model, lang, method, cfg, tmp_path / "exp").fit(mark_cuts(cuts, model.input_spec))
    trained = model_from_checkpoint(final)
    for k, v in fe_state(trained).items():
        assert torch.equal(v, fe[k]), k
    assert not torch.equal(trained.encoder.layers[0].attention.q_proj.weight, layer)


def test_time_masking_in_training_only(small_yesno, tiny_w2v_dir):
    _, _, lang = small_yesno
    model = build_model_for(get_method("finetune"), lang, None, f"hf:{tiny_w2v_dir}")
    model.encoder.hf.config.mask_time_prob = 0.5
    x, n = torch.randn(2, 16000, 1), torch.tensor([16000, 12000])
    with torch.no_grad():
        model.eval()
        a, b = model(x, n)[0], model(x, n)[0]
        model.train()
        torch.manual_seed(0)
        masked = model(x, n)[0]
        model.encoder.hf.config.mask_time_prob = 0.0
        unmasked = model(x, n)[0]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(unmasked, a)  # no dropout in the tiny config: only masking differs
    assert (masked - a).abs().max() > 1e-3


def test_sources_parse_and_offline_hub_ids_fail_clearly(monkeypatch):
    assert parse_source("whisper:../shared/models/whisper-tiny.en").kind == "whisper"
    assert parse_source("hf:facebook/wav2vec2-base").location == "facebook/wav2vec2-base"
    assert parse_source("exp/source/final.pt") is None and parse_source(None) is None
    with pytest.raises(SpeechtlError, match="names no model"):
        parse_source("hf:")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SpeechtlError, match="cannot load pretrained model speechtl-test/no-such-model: HF_HUB_OFFLINE"):
        load_hf_encoder("speechtl-test/no-such-model")  # before: transformers' "check your internet connection"


def test_a_hugging_face_folder_passed_as_a_checkpoint_says_hf(tiny_w2v_dir, tmp_path, caplog):
    """`speechtl train --source-checkpoint DIR` said "checkpoint DIR does not exist. Fix: run the
    training stage first" for an existing HF folder, and its model.safetensors gave "invalid load key";
    a folder without preprocessor_config.json was normalized per utterance without a word."""
    import logging
    import shutil

    for given in (tiny_w2v_dir, tiny_w2v_dir / "model.safetensors"):
        with pytest.raises(
            SpeechtlError, match=rf"Hugging Face model, not a speechtl checkpoint. Fix: .* hf:{tiny_w2v_dir}"
        ):
            load_checkpoint(given)
    bare = tmp_path / "bare"
    shutil.copytree(tiny_w2v_dir, bare)
    (bare / "preprocessor_config.json").unlink()
    caplog.set_level(logging.WARNING)
    assert load_hf_encoder(str(bare))[2] is True
    assert "no feature extractor config (preprocessor_config.json)" in caplog.text
    # a folder without config.json, or one file of a model folder, said transformers' "Should have a model_type"
    (bare / "config.json").unlink()
    with pytest.raises(
        SpeechtlError, match=r"no Hugging Face model folder .* Fix: save the model with save_pretrained"
    ):
        load_hf_encoder(str(bare))
    with pytest.raises(SpeechtlError, match=rf"Fix: give the folder, hf:{tiny_w2v_dir}$"):
        load_hf_encoder(str(tiny_w2v_dir / "model.safetensors"))
    # weights its config has but its files lack were left random without a word (the load report silenced)
    import safetensors.torch

    renamed = tmp_path / "renamed"
    shutil.copytree(tiny_w2v_dir, renamed)
    state = safetensors.torch.load_file(str(renamed / "model.safetensors"))
    state = {k.replace("encoder.layers.0.", "encoder.layerz.0."): v for k, v in state.items()}
    safetensors.torch.save_file(state, str(renamed / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(SpeechtlError, match=r"lacks \d+ weight\(s\) of its own config \(.*layers\.0\."):
        load_hf_encoder(str(renamed))


OPTIONS = {
    "freeze": {"bottom_layers": 1},
    "adapter": {"dim": 2},
    "lora": {"dim": 2, "alpha": 2.0},
    "reptile": {"outer_steps": 1, "inner_steps": 1},
    "fomaml": {"outer_steps": 1, "inner_steps": 1},
    "ssl": {"steps": 1},
    "lp-ft": {"probe_steps": 1},
    "pseudo-label": {"threshold": 0.0},
    "balanced-pseudo-label": {"threshold": 0.0},
}


def base_name(name: str) -> str:
    """A parameter's name before LoRA's parametrization renamed it."""
    return name.replace("parametrizations.", "").replace(".original", "")


@pytest.mark.parametrize("kind", ["whisper", "hf"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_on_a_pretrained_encoder(name, kind, small_yesno, tiny_whisper_dir, tiny_w2v_dir, tmp_path):  # noqa: F811
    """Each registered method, unchanged, on a pretrained encoder: what it freezes stays bitwise
    pretrained (the wav2vec2 feature encoder always), something trains, the result rebuilds."""
    _, cuts, lang = small_yesno
    cuts = cuts.subset(first=2)
    source = f"whisper:{tiny_whisper_dir}" if kind == "whisper" else f"hf:{tiny_w2v_dir}"
    options = dict(OPTIONS.get(name, {}))
    if name in ("kd", "pseudo-label", "balanced-pseudo-label"):
        teacher = tmp_path / "teacher.pt"
        save_checkpoint(teacher, build_model_for(get_method("finetune"), lang, None, source))
        options["teacher"] = str(teacher)
    method = get_method(name, options)
    seed_everything(0)
    model = build_model_for(method, lang, None, source)
    pretrained = build_model_for(get_method("finetune"), lang, None, source).encoder.state_dict()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    starts_pretrained = all(
        torch.equal(v, pretrained[k[len("encoder.") :]]) for k, v in start.items() if k.startswith("encoder.")
    )
    assert starts_pretrained == method.uses_source
    cfg = TrainConfig(num_steps=1, max_duration=100, num_buckets=2, average_last=1, lr=0.01)
    trainer = Trainer(model, lang, method, cfg, tmp_path / "exp")
    marked = mark_cuts(cuts, model.input_spec)
    refused = {"vtln": "no mel-frequency axis to warp", "ssl": "its frames are single samples"}
    if name in refused and kind == "hf":  # a waveform has no frequency axis to warp, nor frames to mask
        with pytest.raises(SpeechtlError, match=refused[name]):
            trainer.fit(marked, aux_cuts={"unlabelled": marked})
        return
    labelled = marked + marked.modify_ids(lambda i: "again-" + i) if name == "balanced-pseudo-label" else marked
    final = trainer.fit(labelled, aux_cuts={"unlabelled": marked})  # balanced: each prompt said twice
    after = dict(trainer.model.named_parameters())
    frozen = [n for n, p in after.items() if not p.requires_grad and base_name(n) in start]
    for n in frozen:
        assert torch.equal(after[n].detach().cpu(), start[base_name(n)]), f"{name}: frozen {n} changed"
    if kind == "hf":  # frozen as pretrained; the scratch baseline's random one trains (it was frozen too)
        trains = {p.requires_grad for p in trainer.model.encoder.hf.feature_extractor.parameters()}
        assert trains == {name == "scratch"}
    moved = [
        n
        for n, p in after.items()
        if p.requires_grad and (base_name(n) not in start or not torch.equal(p.detach().cpu(), start[base_name(n)]))
    ]
    assert moved, f"{name}: nothing trained"
    rebuilt = model_from_checkpoint(final)
    assert rebuilt.input_spec == model.input_spec
    x = torch.randn(1, *((16000, 1) if kind == "hf" else (100, 80)))
    assert torch.isfinite(rebuilt.eval()(x, torch.tensor([x.size(1)]))[0]).all()
    assert load_checkpoint(final)["method"] == name


def test_utterance_classifier_on_a_pretrained_encoder(small_yesno, tiny_w2v_dir, tmp_path):
    from speechtl.train.objectives import ClassifyObjective

    _, cuts, _ = small_yesno
    objective = ClassifyObjective.from_cuts("classify-digit", cuts)
    method = get_method("linear-probe")
    model = build_model_for(method, objective, None, f"hf:{tiny_w2v_dir}", head="stats")
    cfg = TrainConfig(num_steps=1, max_duration=100, num_buckets=2, average_last=1, lr=0.01)
    final = Trainer(model, None, method, cfg, tmp_path / "exp", objective).fit(mark_cuts(cuts, model.input_spec))
    rebuilt = model_from_checkpoint(final)
    assert rebuilt.config.head == "stats" and rebuilt.input_spec.kind == "samples"


def test_wav2vec2_checkpoint_decodes_and_transcribes(small_yesno, tiny_w2v_dir, tmp_path):
    from speechtl.decode.run import decode_test_set
    from speechtl.decode.transcribe import transcribe

    _, cuts, lang = small_yesno
    method = get_method("finetune")
    model = build_model_for(method, lang, None, f"hf:{tiny_w2v_dir}")
    cfg = TrainConfig(num_steps=1, max_duration=100, num_buckets=2, average_last=1, lr=0.01)
    final = Trainer(model, lang, method, cfg, tmp_path / "exp").fit(mark_cuts(cuts, model.input_spec))
    test_cuts = tmp_path / "test.jsonl.gz"
    cuts.subset(first=2).to_file(test_cuts)
    rows = decode_test_set(final, lang.dir, test_cuts, "test", tmp_path / "decode", decodings=("greedy",))
    assert rows[0].words > 0
    files = [Path(c.recording.sources[0].source) for c in cuts.subset(first=1)]
    [r] = transcribe(tmp_path / "exp", lang.dir, files, "greedy")
    assert r.path == files[0] and r.error is None and isinstance(r.words, list)


@pytest.fixture(scope="module")
def w2v_export(small_yesno, tiny_w2v_dir, tmp_path_factory):
    """(checkpoint, Lang, test cuts, onnx dir): a wav2vec2-source model whose output layer is
    random and large, so that every utterance decodes to many tokens and words (a model that
    outputs only blank would agree with anything), exported for sherpa-onnx."""
    from speechtl.export import export_onnx

    _, cuts, lang = small_yesno
    out = tmp_path_factory.mktemp("w2v-onnx")
    seed_everything(0)
    model = build_model_for(get_method("finetune"), lang, None, f"hf:{tiny_w2v_dir}").eval()
    with torch.no_grad():
        model.output.weight.normal_(0, 3.0)
        model.output.bias.zero_()
    ckpt = out / "final.pt"
    save_checkpoint(ckpt, model, train_config={"seed": 5}, method="finetune")
    test_cuts = out / "test.jsonl.gz"
    cuts.subset(first=4).to_file(test_cuts)
    return ckpt, lang, test_cuts, export_onnx(ckpt, lang.dir, out / "onnx").out_dir


def test_wav2vec2_model_exports_and_sherpa_onnx_decodes_it_as_torch_does(w2v_export, tmp_path):
    """A wav2vec2-family model was refused by export-onnx ("only fbank models export"). It now runs
    as sherpa-onnx's raw-waveform (Omnilingual-ASR CTC) model type: its greedy and HLG words equal
    the torch decode's, utterance by utterance, and sherpa-onnx's own Python API loads the dir."""
    import sherpa_onnx
    import soundfile as sf

    from speechtl.export.sherpa import read_metadata

    ckpt, lang, test_cuts, onnx_dir = w2v_export
    meta = read_metadata(onnx_dir / "model.onnx")
    assert meta["model_type"] == "speechtl_ctc_wave" and meta["subsampling_factor"] == "320"
    torch_rows = decode_torch_and_onnx(ckpt, lang.dir, onnx_dir, test_cuts, tmp_path)
    assert torch_rows[0].errors > 0  # many inserted tokens: the comparison is not of empty outputs
    rec = sherpa_onnx.OfflineRecognizer.from_omnilingual_asr_ctc(
        model=str(onnx_dir / "model.onnx"), tokens=str(onnx_dir / "tokens.txt")
    )
    from lhotse import CutSet

    cut = next(iter(CutSet.from_file(test_cuts)))
    samples, sr = sf.read(cut.recording.sources[0].source, dtype="float32")
    stream = rec.create_stream()
    stream.accept_waveform(sr, samples)
    rec.decode_stream(stream)
    assert len(stream.result.tokens) > 0


def test_a_waveform_model_on_unnormalized_audio_hears_the_training_level(small_yesno, tmp_path):
    """sherpa-onnx scales each waveform to unit variance. A model trained on unnormalized audio whose
    first convolution does not cancel the scale (here: a bias and LayerNorm, the large models' front
    end) was refused, and so were base models that a quiet wave's GroupNorm eps moved by 4e-3 (a
    new user's tiny HuBERT). Now the graph brings the unit-variance wave to the training audio's level
    (input_level), and onnxruntime's output is the torch model's on the wave at that level."""
    import numpy as np
    import onnxruntime as ort

    from speechtl.export import export_onnx
    from speechtl.export.wave import normalize_like_sherpa

    _, _, lang = small_yesno
    d = save_tiny(tmp_path / "w2v-layer", "wav2vec2", feat_extract_norm="layer", conv_bias=True)
    model = build_model_for(get_method("finetune"), lang, None, f"hf:{d}").eval()
    model.config.input_norm = "none"
    model.norm = "none"
    ckpt = tmp_path / "final.pt"
    save_checkpoint(ckpt, model, method="finetune", input_level=0.03)
    out = export_onnx(ckpt, lang.dir, tmp_path / "onnx")
    session = ort.InferenceSession(str(out.model))
    assert float(session.get_modelmeta().custom_metadata_map["input_level"]) == pytest.approx(0.03)
    g = torch.Generator().manual_seed(0)
    x = 0.2 * torch.randn(16000, generator=g)
    heard = normalize_like_sherpa(x)  # what sherpa-onnx hands the graph
    with torch.no_grad():
        expected = model((0.03 * heard)[None, :, None], torch.tensor([16000]))[0][0].numpy()
        loud = model(heard[None, :, None], torch.tensor([16000]))[0][0].numpy()
    got = session.run(None, {"x": heard[None].numpy()})[0][0]
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
    assert np.abs(loud - expected).max() > 10 * np.abs(got - expected).max()  # the level matters to this model
    from speechtl.train.trainer import training_level

    _, cuts, _ = small_yesno  # training records the level for such a model, and none for one that normalizes
    assert 0.001 < training_level(cuts, model) < 1.0
    model.norm = "mvn"
    assert training_level(cuts, model) is None


def test_a_model_pretrained_at_8khz_reads_8khz(small_yesno, tmp_path):
    """An 8-kHz wav2vec2 (its feature extractor's sampling_rate) was fed 16-kHz audio: twice the samples
    a second it was trained on, without a word. Now audio is resampled to its rate, and export, whose
    sherpa-onnx type feeds 16 kHz only, refuses it with the fix."""
    from transformers import Wav2Vec2FeatureExtractor

    from speechtl.export import export_onnx

    _, _, lang = small_yesno
    d = save_tiny(tmp_path / "w2v-8k", "wav2vec2")
    Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=8000).save_pretrained(d)
    model = build_model_for(get_method("finetune"), lang, None, f"hf:{d}").eval()
    assert model.input_spec.sampling_rate == 8000
    ckpt = tmp_path / "final.pt"
    save_checkpoint(ckpt, model, method="finetune")
    assert model_from_checkpoint(ckpt).input_spec.sampling_rate == 8000  # decode and transcribe read it
    from lhotse import CutSet

    from speechtl.features.inputs import WaveInput

    cut = next(iter(small_yesno[1]))  # yesno: 8-kHz recordings, read at the model's 8 kHz (16 kHz gave twice)
    assert int(WaveInput(model.input_spec)(CutSet.from_cuts([cut]))[1][0]) == round(cut.duration * 8000)
    with pytest.raises(SpeechtlError, match=r"reads waves at 8000 Hz.*16000 Hz only. Fix: decode and transcribe"):
        export_onnx(ckpt, lang.dir, tmp_path / "onnx")


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
def test_an_utterance_decodes_the_same_alone_or_in_a_padded_batch(model_type, small_yesno, tmp_path):
    """The base models' first GroupNorm normalizes over time, and transformers counts a padded batch's
    zeros in it: a shorter utterance's log-probabilities moved by up to 1.5 with its batch. Now each
    utterance's statistics are its own, and alone it still gives transformers' own outputs."""
    d = save_tiny(tmp_path / model_type, model_type)
    _, _, lang = small_yesno
    model = build_model_for(get_method("finetune"), lang, None, f"hf:{d}").eval()
    assert model.encoder.hf.config.feat_extract_norm == "group"
    g = torch.Generator().manual_seed(0)
    lens = torch.tensor([24000, 17000, 9000])
    x = torch.zeros(3, 24000, 1)
    for i, n in enumerate(lens.tolist()):
        x[i, :n, 0] = 0.1 * torch.randn(n, generator=g)
    with torch.no_grad():
        batch, out_lens = model(x, lens)
        for i, n in enumerate(lens.tolist()):
            alone, alone_lens = model(x[i : i + 1, :n], torch.tensor([n]))
            assert int(alone_lens[0]) == int(out_lens[i])
            torch.testing.assert_close(batch[i, : out_lens[i]], alone[0], atol=2e-4, rtol=0)


def test_a_waveform_model_trained_with_input_pad_exports_it(small_yesno, tiny_w2v_dir, tmp_path):
    """model.input_pad (silence added at both ends of every input in training, decode and transcribe)
    was left out of the exported graph: sherpa-onnx decoded other input than the torch model."""
    import dataclasses

    from speechtl.decode.run import decode_test_set
    from speechtl.export import export_onnx
    from speechtl.export.sherpa import decode_onnx_test_set

    _, cuts, lang = small_yesno
    seed_everything(0)
    model = build_model_for(get_method("finetune"), lang, None, f"hf:{tiny_w2v_dir}").eval()
    model.config.input_pad = 0.25
    model.encoder.input_spec = dataclasses.replace(model.encoder.input_spec, pad=0.25)
    with torch.no_grad():
        model.output.weight.normal_(0, 3.0)
    ckpt = tmp_path / "final.pt"
    save_checkpoint(ckpt, model, method="finetune")
    test_cuts = tmp_path / "test.jsonl.gz"
    cuts.subset(first=3).to_file(test_cuts)
    onnx_dir = export_onnx(ckpt, lang.dir, tmp_path / "onnx").out_dir
    decode_test_set(ckpt, lang.dir, test_cuts, "test", tmp_path / "torch", decodings=("greedy",))
    decode_onnx_test_set(onnx_dir, test_cuts, "test", tmp_path / "onnx", ("onnx-greedy",))
    ours = (tmp_path / "torch" / "recogs-test-greedy.txt").read_text().splitlines()
    theirs = (tmp_path / "onnx" / "recogs-test-onnx-greedy.txt").read_text().splitlines()
    assert [ln for ln in ours if "hyp=" in ln] == [ln for ln in theirs if "hyp=" in ln]


def test_only_lora_counts_as_lora_at_export(small_yesno, tiny_w2v_dir):
    """Export logged "merged 1 LoRA update(s)" for a plain wav2vec2 finetune: the weight norm of its
    positional convolution is a parametrization too. It is baked in all the same, and not counted."""
    from torch.nn.utils import parametrize

    from speechtl.export.onnx import merge_lora

    _, _, lang = small_yesno
    model = build_model_for(get_method("finetune"), lang, None, f"hf:{tiny_w2v_dir}").eval()
    assert any(parametrize.is_parametrized(m) for m in model.modules())
    assert merge_lora(model) == 0 and not any(parametrize.is_parametrized(m) for m in model.modules())


#: A character CTC vocabulary as Wav2Vec2CTCTokenizer writes it: blank (pad) first, "|" between words.
CTC_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "S": 6, "Y": 7, "N": 8, "O": 9}


def save_tiny_ctc(d: Path, tokenizer: str | None = "char", emit_unk: bool = False) -> Path:
    """A fine-tuned-looking Wav2Vec2ForCTC: random weights, a head that emits letters and word breaks
    (its special tokens other than the blank pushed down, as training leaves them, but for ``<unk>``
    with ``emit_unk``); ``tokenizer``: "char" (Wav2Vec2CTCTokenizer), "phoneme" or None (no files)."""
    import json

    from transformers import (
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2PhonemeCTCTokenizer,
    )

    torch.manual_seed(0)
    cfg = tiny_config("wav2vec2", vocab_size=len(CTC_VOCAB), pad_token_id=0, architectures=["Wav2Vec2ForCTC"])
    model = Wav2Vec2ForCTC(cfg)
    with torch.no_grad():
        model.lm_head.weight.mul_(40)
        model.lm_head.bias[1 : 3 if emit_unk else 4] = -100.0
    model.save_pretrained(d)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(d)
    if tokenizer:
        (d / "vocab.json").write_text(json.dumps(CTC_VOCAB))
        if tokenizer == "char":
            Wav2Vec2CTCTokenizer(str(d / "vocab.json"), word_delimiter_token="|").save_pretrained(d)
        else:
            Wav2Vec2PhonemeCTCTokenizer(str(d / "vocab.json"), do_phonemize=False).save_pretrained(d)
    return d


def test_a_ctc_fine_tuned_source_gives_a_zero_shot_row_from_its_own_head(small_yesno, tmp_path):
    """hf: models fine-tuned with a CTC head transcribe with it, as transformers' own processor decodes
    the same logits; the row is scored like every row (references' normalization, decoding greedy)."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    from speechtl.decode.ctc_head import ctc_head_transcripts
    from speechtl.decode.zero_shot import zero_shot
    from speechtl.score.results import read_results

    _, cuts, _ = small_yesno
    model_dir = save_tiny_ctc(tmp_path / "w2v-ctc")
    cuts = cuts.subset(first=4)
    texts = ctc_head_transcripts(str(model_dir), cuts)
    processor = Wav2Vec2Processor.from_pretrained(model_dir)
    model = Wav2Vec2ForCTC.from_pretrained(model_dir).eval()
    assert isinstance(processor.feature_extractor, Wav2Vec2FeatureExtractor)
    for c in cuts:
        wave = c.resample(16000).load_audio()[0]
        inputs = processor(wave, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            ids = model(inputs.input_values).logits.argmax(-1)
        assert texts[c.id].split() == processor.batch_decode(ids)[0].split()
    assert any(len(t.split()) > 1 for t in texts.values()), texts  # the head wrote words, not only blanks

    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    tsv = tmp_path / "results.tsv"
    row = zero_shot(f"hf:{model_dir}", tmp_path / "cuts.jsonl.gz", "t", tmp_path / "d", "hf-zero-shot", "0min", tsv)
    assert (row.method, row.decoding, row.words) == ("hf-zero-shot", "greedy", 8 * len(cuts))
    assert [(r.method, r.decoding) for r in read_results(tsv)] == [("hf-zero-shot", "greedy")]
    recogs = (tmp_path / "d" / "recogs-t-greedy.txt").read_text()
    first = sorted(texts)[0]
    assert f"hyp={texts[first].lower().split()}" in recogs  # the head's upper case, scored as the references' lower


def test_sources_without_a_ctc_head_or_tokenizer_give_no_zero_shot_row(small_yesno, tiny_w2v_dir, tmp_path, caplog):
    """A pretrained-only model has no decoder: no row, said at info level in a recipe; a CTC head without
    its vocab.json cannot be read: an error naming the files, a warning in a recipe."""
    import logging

    from speechtl.decode.zero_shot import zero_shot
    from speechtl.errors import NoOwnDecoder, Unavailable

    _, cuts, _ = small_yesno
    cuts.subset(first=2).to_file(tmp_path / "cuts.jsonl.gz")
    args = (tmp_path / "cuts.jsonl.gz", "t", tmp_path / "d", "hf-zero-shot", "0min", tmp_path / "results.tsv")
    with pytest.raises(NoOwnDecoder, match=r"Wav2Vec2Model\) has no CTC head of its own"):
        zero_shot(f"hf:{tiny_w2v_dir}", *args)
    with caplog.at_level(logging.INFO):
        assert zero_shot(f"hf:{tiny_w2v_dir}", *args, skip_unavailable=True) is None
    assert "no zero-shot row" in caplog.text and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    phones = save_tiny_ctc(tmp_path / "phonemes", tokenizer="phoneme")
    with pytest.raises(Unavailable, match=r"Wav2Vec2PhonemeCTCTokenizer\) has no word delimiter.*no zero-shot row"):
        zero_shot(f"hf:{phones}", *args)
    no_tok = save_tiny_ctc(tmp_path / "no-tokenizer", tokenizer=None)
    with pytest.raises(Unavailable, match=r"Wav2Vec2ForCTC but its tokenizer does not load.*Fix: copy .*vocab.json"):
        zero_shot(f"hf:{no_tok}", *args)
    caplog.clear()
    assert zero_shot(f"hf:{no_tok}", *args, skip_unavailable=True) is None
    assert "zero-shot row left out, the other results stand" in caplog.text
    assert not (tmp_path / "results.tsv").exists()


def test_special_tokens_a_ctc_head_emits_are_no_letters(small_yesno, tmp_path):
    """<unk> (which a fine-tuned head does emit) is left out of the words; the rest is the processor's."""
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    from speechtl.decode.ctc_head import ctc_head_transcripts

    _, cuts, _ = small_yesno
    model_dir = save_tiny_ctc(tmp_path / "w2v-unk", emit_unk=True)
    cuts = cuts.subset(first=3)
    texts = ctc_head_transcripts(str(model_dir), cuts)
    processor = Wav2Vec2Processor.from_pretrained(model_dir)
    model = Wav2Vec2ForCTC.from_pretrained(model_dir).eval()
    theirs = {}
    for c in cuts:
        inputs = processor(c.resample(16000).load_audio()[0], sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            theirs[c.id] = processor.batch_decode(model(inputs.input_values).logits.argmax(-1))[0]
    assert any("<unk>" in t for t in theirs.values()), theirs  # the case is there
    for k, t in theirs.items():
        assert "<unk>" not in texts[k] and texts[k].split() == t.replace("<unk>", "").split()
