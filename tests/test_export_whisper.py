"""Whisper-source models exported for sherpa-onnx: the log-mel in the graph equals ours, the level
sherpa-onnx takes away is restored, sherpa-onnx decodes as torch does, int8 keeps the front end float."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import decode_torch_and_onnx
from test_whisper import REAL, tiny_whisper_dir, wave  # noqa: F401  (a fixture)

from speechtl.adapt import get_method
from speechtl.adapt.transfer import build_model_for
from speechtl.export.wave import DEFAULT_LEVEL, normalize_like_sherpa
from speechtl.export.whisper import GraphWhisperMel
from speechtl.features.whisper_mel import BatchedWhisperMel, WhisperMelConfig
from speechtl.train.checkpoint import load_checkpoint, save_checkpoint
from speechtl.train.trainer import seed_everything


@pytest.mark.parametrize("seconds", [0.5, 1.0037, 3.3])
def test_graph_log_mel_equals_ours(seconds):
    """The graph's DFT-as-convolution log-mel is BatchedWhisperMel's (which equals transformers'), on
    noise with a near-silent stretch (so the 80-dB clamp acts) at lengths that are no multiple of 160."""
    x = torch.from_numpy(wave(seconds, seed=3))
    ours = BatchedWhisperMel()([x])[0]
    graph = GraphWhisperMel(WhisperMelConfig())(x[None])[0]
    assert graph.shape == ours.shape == (len(x) // 160, 80)
    torch.testing.assert_close(graph, ours, atol=1e-4, rtol=0)


def ctc_model(lang, source: str, pad: float = 0.0):
    """A Whisper-source CTC model whose output layer is random and large: every utterance decodes to
    many tokens (a model that outputs only blank would agree with anything)."""
    seed_everything(0)
    model = build_model_for(get_method("finetune"), lang, None, source).eval()
    if pad:
        model.config.input_pad = pad
        model.encoder.input_spec = dataclasses.replace(model.encoder.input_spec, pad=pad)
    with torch.no_grad():
        model.output.weight.normal_(0, 3.0)
        model.output.bias.zero_()
    return model


def unit_level_cuts(cuts, out: Path):
    """``cuts``' audio at 16 kHz with zero mean and unit variance, written as float wavs: the level at
    which sherpa-onnx's normalization changes nothing, so a model exported at level 1 hears what torch hears."""
    import soundfile as sf
    from lhotse import CutSet, Recording

    from speechtl.features.inputs import audio_at

    out.mkdir(parents=True)
    new = []
    for c in cuts:
        x = audio_at(c, 16000).load_audio()[0].astype(np.float64)
        x = (x - x.mean()) / math.sqrt(x.var() + 1e-5)
        sf.write(str(out / f"{c.id}.wav"), x.astype(np.float32), 16000, subtype="FLOAT")
        rec = Recording.from_file(out / f"{c.id}.wav", recording_id=c.id)
        cut = rec.to_cut()
        cut.supervisions = [dataclasses.replace(c.supervisions[0], start=0.0, duration=rec.duration, recording_id=c.id)]
        new.append(cut)
    return CutSet.from_cuts(new)


@pytest.mark.parametrize("pad", [0.0, 0.25])
def test_sherpa_onnx_decodes_a_whisper_model_as_torch_does(pad, small_yesno, tiny_whisper_dir, tmp_path):  # noqa: F811
    """Whisper-source models were refused by export-onnx ("not exported yet"). They now run as
    sherpa-onnx's raw-waveform CTC type with the log-mel in the graph: at the level the graph restores,
    greedy and HLG words equal the torch decode's utterance by utterance, input pad included; the
    metadata holds the level and the longest wave; sherpa-onnx's own API loads the dir."""
    import sherpa_onnx

    from speechtl.export import export_onnx
    from speechtl.export.sherpa import read_metadata

    _, cuts, lang = small_yesno
    model = ctc_model(lang, f"whisper:{tiny_whisper_dir}", pad)
    ckpt = tmp_path / "final.pt"
    save_checkpoint(ckpt, model, method="finetune", input_level=1.0)
    test_cuts = tmp_path / "test.jsonl.gz"
    unit_level_cuts(cuts.subset(first=4), tmp_path / "wav").to_file(test_cuts)
    onnx_dir = export_onnx(ckpt, lang.dir, tmp_path / "onnx").out_dir
    meta = read_metadata(onnx_dir / "model.onnx")
    assert meta["encoder"] == "whisper" and meta["subsampling_factor"] == "320"
    assert float(meta["input_level"]) == 1.0 and float(meta["max_seconds"]) == pytest.approx(30 - 2 * pad)
    torch_rows = decode_torch_and_onnx(ckpt, lang.dir, onnx_dir, test_cuts, tmp_path)
    assert torch_rows[0].errors > 0  # many inserted tokens: the comparison is not of empty outputs
    rec = sherpa_onnx.OfflineRecognizer.from_omnilingual_asr_ctc(
        model=str(onnx_dir / "model.onnx"), tokens=str(onnx_dir / "tokens.txt")
    )
    stream = rec.create_stream()
    stream.accept_waveform(16000, np.zeros(16000, dtype=np.float32) + 0.01 * np.sin(np.arange(16000) / 7))
    rec.decode_stream(stream)
    assert isinstance(stream.result.text, str)


def test_the_graph_brings_any_level_to_the_training_level(small_yesno, tiny_whisper_dir, tmp_path):  # noqa: F811
    """sherpa-onnx hands the graph a unit-variance wave whatever the recording's level; the graph's
    output is the torch model's on that wave at the checkpoint's input_level, for a soft and a loud
    copy of one wave alike; int8 quantization leaves the log-mel front end in float (its DFT and
    mel weights in int8 moved the features of every frame)."""
    import onnx
    import onnxruntime as ort

    from speechtl.export import export_onnx

    _, _, lang = small_yesno
    model = ctc_model(lang, f"whisper:{tiny_whisper_dir}")
    ckpt = tmp_path / "final.pt"
    save_checkpoint(ckpt, model, method="finetune", input_level=0.04)
    out = export_onnx(ckpt, lang.dir, tmp_path / "onnx")
    x = torch.from_numpy(wave(2.0, seed=1))
    session = ort.InferenceSession(str(out.model))
    outputs = []
    for gain in (0.5, 3.0):
        heard = normalize_like_sherpa(gain * x)  # what sherpa-onnx hands the graph
        with torch.no_grad():
            feats = BatchedWhisperMel()([heard * 0.04])[0][None]
            expected = model(feats, torch.tensor([feats.size(1)]))[0][0].numpy()
        outputs.append(session.run(None, {"x": heard[None].numpy()})[0][0])
        np.testing.assert_allclose(outputs[-1], expected, atol=2e-3, rtol=0)
    # A soft and a loud copy decode (nearly) alike: sherpa-onnx's eps of 1e-5 on the variance leaves
    # the soft one 0.3% quieter. Torch on the copies themselves, at their own levels, differs far more.
    with torch.no_grad():
        raw = [BatchedWhisperMel()([g * x])[0][None] for g in (0.5, 3.0)]
        apart = [model(f, torch.tensor([f.size(1)]))[0][0] for f in raw]
    torch_gap, onnx_gap = float((apart[0] - apart[1]).abs().max()), float(np.abs(outputs[0] - outputs[1]).max())
    assert onnx_gap < 0.1 * torch_gap, (onnx_gap, torch_gap)
    int8 = onnx.load(str(out.model_int8))
    front = [n for n in int8.graph.node if {"mel.basis", "mel.filters"} & set(n.input)]
    assert {n.op_type for n in front} == {"Conv", "MatMul"}
    assert "ConvInteger" in {n.op_type for n in int8.graph.node}  # the encoder's convolutions are int8


def test_training_records_the_audio_level_and_export_defaults_without_it(small_yesno, tiny_whisper_dir, tmp_path):  # noqa: F811
    """The trainer records the median standard deviation of the training audio (at the model's 16 kHz)
    in the checkpoint; a checkpoint without it exports at -26 dBFS, with a warning."""
    from speechtl.export.wave import export_level
    from speechtl.features.inputs import audio_at, mark_cuts
    from speechtl.train import TrainConfig, Trainer

    _, cuts, lang = small_yesno
    model = build_model_for(get_method("finetune"), lang, None, f"whisper:{tiny_whisper_dir}")
    cfg = TrainConfig(num_steps=1, max_duration=400, num_buckets=2, average_last=1, lr=0.01)
    final = Trainer(model, lang, get_method("finetune"), cfg, tmp_path / "exp").fit(mark_cuts(cuts, model.input_spec))
    levels = [float(audio_at(c, 16000).load_audio()[0].std()) for c in cuts]
    ckpt = load_checkpoint(final)
    assert ckpt["input_level"] == pytest.approx(float(np.median(levels)), rel=1e-6)
    assert export_level(ckpt, final) == ckpt["input_level"]
    assert export_level({}, final) == pytest.approx(0.0501, abs=1e-4) == DEFAULT_LEVEL


def test_a_test_cut_longer_than_the_encoder_takes_is_named(small_yesno, tiny_whisper_dir, tmp_path):  # noqa: F811
    """A 31-s test cut failed inside onnxruntime with a shape error; now the decode stops first, naming
    the cut and `transcribe --onnx`, which splits long recordings into pieces the graph takes."""
    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment

    from speechtl.errors import SpeechtlError
    from speechtl.export import export_onnx
    from speechtl.export.sherpa import decode_onnx_test_set, transcribe_onnx

    _, _, lang = small_yesno
    ckpt = tmp_path / "final.pt"
    save_checkpoint(ckpt, ctc_model(lang, f"whisper:{tiny_whisper_dir}"), method="finetune", input_level=0.05)
    onnx_dir = export_onnx(ckpt, lang.dir, tmp_path / "onnx").out_dir
    long_wav = tmp_path / "long.wav"
    sf.write(str(long_wav), wave(31.0, seed=2), 16000)
    rec = Recording.from_file(long_wav)
    cut = rec.to_cut()
    cut.supervisions = [SupervisionSegment("s", rec.id, 0.0, rec.duration, text="YES")]
    CutSet.from_cuts([cut]).to_file(tmp_path / "long.jsonl.gz")
    with pytest.raises(SpeechtlError, match=r"longer than the 30 s .* transcribe --onnx"):
        decode_onnx_test_set(onnx_dir, tmp_path / "long.jsonl.gz", "test", tmp_path / "dec", ("onnx-greedy",))
    [t] = transcribe_onnx(onnx_dir, [long_wav], "greedy")
    assert t.error is None and len(t.pieces) == 2 and all(p.end - p.start <= 30 for p in t.pieces)


@pytest.mark.skipif(not REAL.is_dir(), reason="no ../shared/models/whisper-tiny.en")
def test_real_whisper_tiny_en_exports_within_1e_3(small_yesno, fsdd_dir, tmp_path):
    """whisper-tiny.en's real weights under a CTC head: onnxruntime's log-probabilities on a real FSDD
    recording equal torch's at the restored level within 1e-3 (log-probabilities of a large random head)."""
    import onnxruntime as ort
    import soundfile as sf
    import torchaudio

    from speechtl.export import ExportConfig, export_onnx

    _, _, lang = small_yesno
    model = ctc_model(lang, f"whisper:{REAL}")
    ckpt = tmp_path / "final.pt"
    save_checkpoint(ckpt, model, method="finetune", input_level=0.03)
    out = export_onnx(ckpt, lang.dir, tmp_path / "onnx", ExportConfig(int8=False))
    x, sr = sf.read(str(sorted(fsdd_dir.glob("*.wav"))[5]), dtype="float32")
    x = normalize_like_sherpa(torchaudio.functional.resample(torch.from_numpy(x), sr, 16000))
    with torch.no_grad():
        feats = BatchedWhisperMel()([x * 0.03])[0][None]
        expected = model(feats, torch.tensor([feats.size(1)]))[0][0].numpy()
    got = ort.InferenceSession(str(out.model)).run(None, {"x": x[None].numpy()})[0][0]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
