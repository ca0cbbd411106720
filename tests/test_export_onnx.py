"""ONNX export and sherpa-onnx decoding: the deployed model makes the torch model's errors.

One tiny TDNN is trained on yesno for a few epochs (module fixture); its export is
decoded by sherpa-onnx's Python API from the test audio, and the hypotheses are
compared with the torch decode of the stored features, utterance by utterance.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from speechtl.decode.run import decode_test_set
from speechtl.errors import SpeechtlError
from speechtl.export import ExportConfig, export_onnx
from speechtl.export.onnx import merge_lora
from speechtl.export.sherpa import SherpaCtc, decode_onnx_test_set, feature_config, read_metadata, transcribe_onnx
from speechtl.features import BatchedFbank, FbankConfig
from speechtl.features.compute import compute_fbank
from speechtl.models import ModelConfig, build_model
from speechtl.train.checkpoint import model_from_checkpoint, save_checkpoint
from speechtl.train.trainer import seed_everything

YESNO_FBANK = FbankConfig(sampling_rate=8000, num_mel_bins=23)


def fit_ctc(model, cuts, lang, steps: int, lr: float) -> None:
    """Full-batch CTC training of a tiny model on a few cuts held in memory (seconds, one thread).

    Not the Trainer: a deterministic handful of updates is all these tests need of a model.
    """
    feats = [torch.from_numpy(c.load_features()) for c in cuts]
    lens = torch.tensor([f.shape[0] for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    ys = [lang.encode(c.supervisions[0].text) for c in cuts]
    y, y_lens = torch.tensor([i for t in ys for i in t]), torch.tensor([len(t) for t in ys])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        log_probs, out_lens = model(x, lens)
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), y, out_lens, y_lens, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def yesno_system(small_yesno, tmp_path_factory):
    """(dir, checkpoint, Lang, test cuts path, onnx dir): a TDNN fitted to 8 training cuts
    (7.5% WER on the 30 test utterances here: a model that is right and wrong)."""
    d, cuts, lang = small_yesno
    out = tmp_path_factory.mktemp("onnx")
    compute_fbank(d / "manifests", out / "fbank", "yesno", ["test"], YESNO_FBANK)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed_everything(3)
        cfg = ModelConfig(encoder="tdnn", num_features=23, input_norm="mvn", encoder_options={"norm": "layer"})
        model = build_model(cfg, lang.vocab_size)
        fit_ctc(model, cuts, lang, steps=280, lr=0.05)
    finally:
        torch.set_num_threads(threads)
    ckpt = out / "model.pt"
    features = {"sampling_rate": 8000, "num_mel_bins": 23, "frame_shift": 0.01}
    save_checkpoint(ckpt, model, features=features, train_config={"seed": 3})
    onnx_dir = export_onnx(ckpt, lang.dir, out / "onnx").out_dir
    return out, ckpt, lang, out / "fbank" / "yesno_cuts_test.jsonl.gz", onnx_dir


def recogs(rows_dir, decoding):
    """{utterance: hypothesis line} of a recogs file."""
    lines = (rows_dir / f"recogs-test-{decoding}.txt").read_text().splitlines()
    return {ln.split(":")[0]: ln for ln in lines if "hyp=" in ln}


def test_export_writes_a_sherpa_onnx_dir(yesno_system):
    _, _, lang, _, onnx_dir = yesno_system
    for name in ("model.onnx", "model.int8.onnx", "tokens.txt", "words.txt", "HLG.fst"):
        assert (onnx_dir / name).is_file(), name
    assert not list(onnx_dir.glob("*.data")), "weights must be inside model.onnx (sherpa-onnx loads it from memory)"
    meta = read_metadata(onnx_dir / "model.int8.onnx")
    assert meta["vocab_size"] == str(lang.vocab_size) and meta["input_norm"] == "mvn"
    assert (meta["sample_rate"], meta["feature_dim"], meta["subsampling_factor"]) == ("8000", "23", "1")
    proto = onnx.load(str(onnx_dir / "model.onnx"))
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output]
    assert isinstance(dims[0][0], str) and isinstance(dims[0][1], str), dims  # dynamic batch and time
    assert dims[0][2] == lang.vocab_size, "sherpa-onnx reads the vocabulary size from the static last axis"
    assert (onnx_dir / "model.int8.onnx").stat().st_size < (onnx_dir / "model.onnx").stat().st_size


def test_onnx_decodes_make_the_torch_errors(yesno_system):
    """fp32 greedy and HLG through sherpa-onnx give the torch decode's hypotheses; int8 is within 0.5 points."""
    out, final, lang, test_cuts, onnx_dir = yesno_system
    dec = out / "decode"
    torch_rows = decode_test_set(final, lang.dir, test_cuts, "test", dec, ["greedy", "hlg"], results_tsv=out / "r.tsv")
    onnx_rows = decode_onnx_test_set(
        onnx_dir, test_cuts, "test", dec, ["onnx-greedy", "onnx-hlg", "onnx-int8-greedy", "onnx-int8-hlg"]
    )
    by = {r.decoding: r for r in torch_rows + onnx_rows}
    for d in ("greedy", "hlg"):
        torch_hyps, onnx_hyps = recogs(dec, d), recogs(dec, f"onnx-{d}")
        assert len(torch_hyps) == 30 and torch_hyps == onnx_hyps, d
        assert (by[d].errors, by[d].words) == (by[f"onnx-{d}"].errors, by[f"onnx-{d}"].words)
        assert abs(by[f"onnx-int8-{d}"].wer - by[d].wer) <= 0.5, (d, by[f"onnx-int8-{d}"].wer, by[d].wer)
    # The comparison means something: the model recognizes most words (an untrained one: ~100% WER).
    assert by["hlg"].wer < 50, by["hlg"]
    for kind in ("recogs", "errs", "wer-summary"):
        assert (dec / f"{kind}-test-onnx-int8-hlg.txt").is_file()


def test_rows_of_a_hand_decode_name_the_system(yesno_system):
    """README's `speechtl decode --onnx exp/X/onnx ... --results` (and --checkpoint) without --method
    and --data: the rows take the trained method and the amount of exp/<method>_<data>_s<seed>/;
    before, a finetune_5min model's rows read `scratch | all` in RESULTS.md."""
    import shutil

    from speechtl.cli import main
    from speechtl.score.results import read_results

    out, ckpt, lang, test_cuts, _ = yesno_system
    system = out / "exp" / "finetune_5min_s2"
    system.mkdir(parents=True)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    torch.save({**state, "method": "finetune"}, system / "avg-1.pt")
    (system / "final.pt").symlink_to("avg-1.pt")
    export_onnx(system / "final.pt", lang.dir, system / "onnx", ExportConfig(int8=False))
    results = out / "exp" / "results.tsv"
    common = ["--cuts", str(test_cuts), "--test-set", "test", "--results", str(results)]
    onnx_cmd = ["decode", "--onnx", str(system / "onnx"), "--decoding", "onnx-greedy", *common]
    assert main([*onnx_cmd, "--out-dir", str(system / "onnx" / "decode")]) == 0
    torch_cmd = ["decode", "--checkpoint", str(system / "final.pt"), "--lang-dir", str(lang.dir)]
    assert main([*torch_cmd, "--decoding", "greedy", *common, "--out-dir", str(system / "decode")]) == 0
    labels = {(r.decoding, r.method, r.data) for r in read_results(results)}
    assert labels == {("onnx-greedy", "finetune", "5min"), ("greedy", "finetune", "5min")}, labels
    # Given, they win; a dir named otherwise gives data "all" (not a piece of its name).
    assert main([*torch_cmd, "--decoding", "greedy", *common, "--out-dir", str(out / "d2"), "--data", "x"]) == 0
    assert ("greedy", "finetune", "x") in {(r.decoding, r.method, r.data) for r in read_results(results)}
    other = out / "exp" / "mine"
    shutil.copytree(system, other, symlinks=True)
    assert main([*torch_cmd[:2], str(other / "final.pt"), *torch_cmd[3:], "--decoding", "hlg", *common,
                 "--out-dir", str(other / "decode")]) == 0  # fmt: skip
    assert ("hlg", "finetune", "all") in {(r.decoding, r.method, r.data) for r in read_results(results)}


def test_export_and_transcribe_refuse_a_lang_dir_of_other_units(yesno_system, yesno_dir, tmp_path):
    """decode refused a checkpoint with another recipe's lang dir; export-onnx and transcribe took it
    and wrote fluent wrong words (zfiee for five)."""
    import shutil

    from speechtl.decode.transcribe import transcribe

    _, ckpt, lang, _, _ = yesno_system
    other = tmp_path / "other_lang"
    shutil.copytree(lang.dir, other)
    with open(other / "tokens.txt", "a") as f:
        f.write(f"k {lang.vocab_size}\n")
    with pytest.raises(
        SpeechtlError, match=r"has \d+ output units, .*tokens.txt has \d+\. Fix: decode with the lang dir"
    ):
        export_onnx(ckpt, other, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()  # refused before anything was written
    with pytest.raises(SpeechtlError, match="output units"):
        transcribe(ckpt, other, [yesno_dir / "0_0_1_0_1_0_1_1.wav"], decoding="greedy")
    assert transcribe(ckpt, lang.dir, [yesno_dir / "0_0_1_0_1_0_1_1.wav"], decoding="greedy")[0][1] is not None


def test_sherpa_python_api_and_transcribe(yesno_system, yesno_dir):
    """sherpa-onnx's own OfflineRecognizer.from_zipformer_ctc runs the exported dir, as a user would."""
    import sherpa_onnx
    import soundfile as sf

    _, _, _, _, onnx_dir = yesno_system
    wav = yesno_dir / "0_0_1_0_1_0_1_1.wav"
    rec = sherpa_onnx.OfflineRecognizer.from_zipformer_ctc(
        model=str(onnx_dir / "model.onnx"),
        tokens=str(onnx_dir / "tokens.txt"),
        sample_rate=8000,
        feature_dim=23,
        ctc_graph=str(onnx_dir / "HLG.fst"),
    )
    samples, sr = sf.read(str(wav), dtype="float32")
    stream = rec.create_stream()
    stream.accept_waveform(sr, samples)
    rec.decode_stream(stream)
    ids = list(stream.result.words)
    ours = transcribe_onnx(onnx_dir, [wav], decoding="hlg")[0]
    assert ours[2] is None and ids, ours
    id2word = {int(i): w for w, i in (ln.split() for ln in (onnx_dir / "words.txt").read_text().splitlines())}
    assert [id2word[i] for i in ids] == ours[1]


def test_sherpa_features_are_ours(yesno_system, yesno_dir):
    """The fbank sherpa-onnx is configured to compute (kaldi-native-fbank, the library it runs) is ours."""
    import kaldi_native_fbank as knf
    import soundfile as sf

    _, _, _, _, onnx_dir = yesno_system
    fc = feature_config(SherpaCtc(onnx_dir).fbank, onnx_dir / "model.onnx")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = fc.sampling_rate
    opts.frame_opts.dither = fc.dither
    opts.frame_opts.snip_edges = fc.snip_edges
    opts.mel_opts.num_bins = fc.feature_dim
    opts.mel_opts.low_freq = fc.low_freq
    opts.mel_opts.high_freq = fc.high_freq
    samples, _ = sf.read(str(yesno_dir / "0_0_1_0_1_0_1_1.wav"), dtype="float32")
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(fc.sampling_rate, samples.tolist())
    fb.input_finished()
    theirs = np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    ours = BatchedFbank(YESNO_FBANK)([torch.from_numpy(samples)])[0].numpy()
    assert theirs.shape == ours.shape
    assert np.abs(theirs - ours).max() < 1e-3


def test_fbank_options_sherpa_cannot_set_are_refused(yesno_system):
    _, _, _, _, onnx_dir = yesno_system
    fbank = dict(SherpaCtc(onnx_dir).fbank, window_type="hamming")
    with pytest.raises(SpeechtlError, match="window_type"):
        feature_config(fbank, onnx_dir / "model.onnx")


@pytest.mark.parametrize(
    "kind,norm,warp", [("lora", "mean", 1.0), ("adapter", "mvn", 1.12), ("adapter", "robust", 1.0)]
)
def test_conformer_with_peft_exports_with_dynamic_axes(tmp_path, kind, norm, warp):
    """A Conformer with LoRA (merged) or adapters (in the graph), one with a VTLN warp of its
    input: onnxruntime gives the torch log-probs and lengths for a padded batch, and each
    utterance alone decodes the same."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder="conformer",
        num_features=23,
        input_norm=norm,
        input_warp={} if warp == 1.0 else {"factor": warp, "sampling_rate": 16000, "num_bins": 23},
        peft={"kind": kind, "dim": 4},
        encoder_options=dict(d_model=32, num_heads=2, ffn_dim=64, num_layers=2, kernel_size=5, dropout=0.0),
    )
    model = build_model(cfg, 5).eval()
    with torch.no_grad():  # trained-looking PEFT weights (fresh ones are the identity)
        for n, p in model.named_parameters():
            if "lora_b" in n or n.startswith("adapters."):
                p.normal_(0, 0.5)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, model, features={"sampling_rate": 16000, "num_mel_bins": 23, "frame_shift": 0.01})
    lang = tmp_path / "lang"
    lang.mkdir()
    (lang / "tokens.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(["<blk>", "a", "b", "c", "d"])))
    (lang / "words.txt").write_text("<eps> 0\nab 1\n")
    (lang / "lexicon.txt").write_text("ab a b\n")
    res = export_onnx(ckpt, lang, tmp_path / "onnx", ExportConfig(int8=False))
    x = torch.randn(3, 150, 23) * 3 + 2
    lens = torch.tensor([150, 91, 40])
    with torch.no_grad():
        ref, ref_lens = model_from_checkpoint(ckpt).eval()(x, lens)
    sess = ort.InferenceSession(str(res.model))
    out, out_lens = sess.run(None, {"x": x.numpy(), "x_lens": lens.numpy()})
    assert out_lens.tolist() == ref_lens.tolist() and out_lens.dtype == np.int64
    for i, n in enumerate(ref_lens.tolist()):
        np.testing.assert_allclose(out[i, :n], ref[i, :n].numpy(), atol=1e-4)
    alone, _ = sess.run(None, {"x": x[2:, :40].numpy(), "x_lens": lens[2:].numpy()})
    np.testing.assert_allclose(alone[0], out[2, : ref_lens[2]], atol=1e-4)
    names = [i.name for i in onnx.load(str(res.model)).graph.initializer]
    if kind == "lora":
        assert not any("lora" in n for n in names), "LoRA must be merged into the weights"
        base = build_model(ModelConfig(**{**cfg.to_dict(), "peft": {}}), 5).eval()
        merged = model_from_checkpoint(ckpt)
        assert merge_lora(merged) > 0
        base.load_state_dict(merged.state_dict())
        with torch.no_grad():
            assert torch.allclose(base(x, lens)[0], ref, atol=1e-5), "merged weights are the LoRA model"
    else:
        assert int(res.metadata["subsampling_factor"]) == 4


@pytest.mark.parametrize(
    "encoder,head,match", [("tdnn", "mean", "classifier"), ("lstm", "ctc", "not exported to ONNX yet")]
)
def test_classifiers_and_other_encoders_are_refused(tmp_path, encoder, head, match):
    model = build_model(ModelConfig(encoder=encoder, num_features=23, head=head), 3)
    save_checkpoint(tmp_path / "c.pt", model, features={"sampling_rate": 8000, "num_mel_bins": 23, "frame_shift": 0.01})
    with pytest.raises(SpeechtlError, match=match):
        export_onnx(tmp_path / "c.pt", tmp_path, tmp_path / "out")


def test_exported_hlg_puts_every_word_where_sherpa_reads_it(tmp_path):
    """A char lang with shared prefixes and a 2-gram: the lang dir's determinized HLG has words on
    epsilon arcs (sherpa-onnx's CTC FST decoder drops those); the exported graph has none and
    decodes the same words with kaldi-decoder."""
    import kaldifst

    from speechtl.decode import HlgDecoder
    from speechtl.export.graph import sherpa_hlg, word_arcs_sherpa_drops
    from speechtl.lang import Lang
    from speechtl.lang.prepare import prepare_lang_from_text

    rng = np.random.default_rng(0)
    # 30 words sharing prefixes (an, ann, annd, ant, anth, ba, ...); 60 sentences leave most
    # bigrams unseen, so G backs off often.
    vocab = [stem + end for stem in ("an", "ba", "ca", "do", "te", "mo") for end in ("", "n", "nd", "t", "th")]
    sentences = [" ".join(rng.choice(vocab, size=rng.integers(2, 7))) for _ in range(60)]
    (tmp_path / "text.txt").write_text("\n".join(sentences) + "\n")
    lang = Lang(prepare_lang_from_text(tmp_path / "text.txt", tmp_path / "lang", units="char", lm_order=2))
    assert word_arcs_sherpa_drops(kaldifst.StdVectorFst.read(str(lang.dir / "HLG.fst"))) > 0
    sherpa_hlg(lang.dir).write(str(tmp_path / "HLG.fst"))
    assert word_arcs_sherpa_drops(kaldifst.StdVectorFst.read(str(tmp_path / "HLG.fst"))) == 0
    ours = HlgDecoder(lang.dir / "HLG.fst", lang.dir / "words.txt")
    exported = HlgDecoder(tmp_path / "HLG.fst", lang.dir / "words.txt")
    for text in sentences[:20]:
        frames = []
        for token in lang.encode(text):  # each token twice, then a blank: a confident CTC output
            frames += [token, token, 0]
        log_probs = np.full((len(frames), lang.vocab_size), np.log(0.02), dtype=np.float32)
        log_probs[np.arange(len(frames)), frames] = np.log(0.8)
        assert exported.decode(log_probs) == ours.decode(log_probs) == text.split()
    # sherpa-onnx's greedy results show sentencepiece's word-start piece as a space.
    reader = object.__new__(SherpaCtc)
    reader.lang, reader.dir = lang, tmp_path
    assert reader._token_id(" ") == lang.token2id["\u2581"] and reader._token_id("a") == lang.token2id["a"]


def test_long_recordings_are_transcribed_in_pieces(yesno_system, yesno_dir, tmp_path):
    """A recording longer than --max-seconds is decoded in pieces cut in its silences, by the torch
    model and by sherpa-onnx alike; a piece's times are the audio its words came from, and
    --segments prints them."""
    import contextlib
    import io

    import soundfile as sf

    from speechtl.cli import main
    from speechtl.data.corpora.annotations import read_textgrid
    from speechtl.decode.transcribe import transcribe

    _, ckpt, lang, _, onnx_dir = yesno_system
    waves = [sf.read(str(p), dtype="float32")[0] for p in sorted(yesno_dir.glob("*.wav"))[:5]]
    long_wave = np.concatenate(waves)
    long_wav = tmp_path / "long.wav"
    sf.write(str(long_wav), long_wave, 8000)
    limit = max(len(w) for w in waves) / 8000 + 1.0  # room for one recording and a bit: a cut at each joint
    [whole] = transcribe(ckpt, lang.dir, [long_wav], decoding="greedy", max_seconds=limit)
    assert len(whole.pieces) == 5 and all(p.end - p.start <= limit for p in whole.pieces)
    assert whole.words == [w for p in whole.pieces for w in p.words]
    speech_db = 10 * np.log10(np.percentile(np.convolve(long_wave**2, np.ones(80) / 80, "same"), 95))
    for p in whole.pieces[1:]:  # each cut in silence: its 0.2 s at least 20 dB below the speech
        around = long_wave[int(p.start * 8000) - 800 : int(p.start * 8000) + 800]
        assert 10 * np.log10(np.mean(around**2)) < speech_db - 20, p
    for i, p in enumerate(whole.pieces):  # the times name the audio the words came from
        sf.write(str(tmp_path / f"piece{i}.wav"), long_wave[round(p.start * 8000) : round(p.end * 8000)], 8000)
    alone = transcribe(ckpt, lang.dir, [tmp_path / f"piece{i}.wav" for i in range(5)], decoding="greedy")
    assert [r.words for r in alone] == [list(p.words) for p in whole.pieces]
    [unsplit] = transcribe(ckpt, lang.dir, [long_wav], decoding="greedy", max_seconds=0)
    assert len(unsplit.pieces) == 1  # 0: only where the model needs it (a TDNN takes any length)
    [onnx] = transcribe_onnx(onnx_dir, [long_wav], decoding="greedy", max_seconds=limit)
    assert [(p.start, p.end) for p in onnx.pieces] == [(p.start, p.end) for p in whole.pieces]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["transcribe", "--model-dir", str(ckpt), "--lang-dir", str(lang.dir), "--decoding", "greedy",
                     "--max-seconds", str(limit), "--segments", "true", "--textgrid-dir", str(tmp_path / "tg"),
                     str(long_wav)]) == 0  # fmt: skip
    [tier] = read_textgrid(tmp_path / "tg" / "long.TextGrid").tiers  # for Praat and ELAN: the pieces on a tier
    assert tier.name == "speechtl" and tier.intervals[-1].end == pytest.approx(len(long_wave) / 8000, abs=1e-3)
    spoken = [(p.start, p.end, " ".join(p.words)) for p in whole.pieces if p.words]
    assert [(i.start, i.end, i.text) for i in tier.spoken] == [
        (pytest.approx(a, abs=1e-5), pytest.approx(b, abs=1e-5), t) for a, b, t in spoken
    ]
    rows = [ln.split("\t") for ln in buf.getvalue().splitlines()]
    assert [(float(s), float(e)) for _, s, e, _ in rows] == [(round(p.start, 2), round(p.end, 2)) for p in whole.pieces]
    assert [r[3].split() for r in rows] == [list(p.words) for p in whole.pieces]


def test_an_int8_model_decodes_one_stream_at_a_time():
    """int8's dynamically quantized activations take their scale from the batch: yesno's int8 HLG made
    0.83% in batches of 16 and 0.42% one stream at a time, as a deployment decodes."""
    import numpy as np

    from speechtl.export.sherpa import SherpaCtc, SherpaOptions

    class Recognizer:
        def __init__(self):
            self.batches = []

        def create_stream(self):
            class Stream:
                result = None

                def accept_waveform(self, rate, wave):
                    pass

            return Stream()

        def decode_streams(self, streams):
            self.batches.append(len(streams))

    for int8, batches in ((True, [1] * 5), (False, [4, 1])):
        rec = object.__new__(SherpaCtc)
        rec.options, rec.int8, rec.sampling_rate = SherpaOptions(batch_size=4), int8, 8000
        rec.recognizer = Recognizer()
        rec._words = lambda result: []
        rec.decode([np.zeros(80, dtype=np.float32)] * 5)
        assert rec.recognizer.batches == batches
