"""model: {layer_mix: true}: the head reads a learned weighted sum of every layer of a pretrained encoder.

Tiny random Whisper and wav2vec2 folders (no download)."""

import pytest
import torch
from test_hf_encoders import tiny_w2v_dir  # noqa: F401  (fixture)
from test_whisper import tiny_whisper_dir  # noqa: F401  (fixture)

from speechtl.adapt import get_method
from speechtl.adapt.transfer import build_model_for
from speechtl.errors import SpeechtlError
from speechtl.features.inputs import mark_cuts
from speechtl.models import ModelConfig, build_model
from speechtl.models.layer_mix import LayerMix
from speechtl.train import TrainConfig, Trainer
from speechtl.train.checkpoint import model_from_checkpoint

MIX = ModelConfig(layer_mix=True)


def source_of(kind: str, whisper_dir, w2v_dir) -> str:
    return f"whisper:{whisper_dir}" if kind == "whisper" else f"hf:{w2v_dir}"


def example(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.randn(2, *((16000, 1) if kind == "hf" else (120, 80)))
    return x, torch.tensor([x.size(1), x.size(1) * 3 // 4])


def test_the_mix_is_a_softmax_weighted_sum_of_normalized_states():
    ln = torch.nn.functional.layer_norm
    states = [torch.randn(2, 5, 4) * scale for scale in (1.0, 10.0, 100.0)]
    mix = LayerMix(3)
    # At the start every state counts alike, whatever its scale (each one is normalized first).
    torch.testing.assert_close(mix(states), sum(ln(s, (4,)) for s in states) / 3)
    with torch.no_grad():
        mix.weights[:] = torch.tensor([0.0, 0.0, 30.0])
    torch.testing.assert_close(mix(states), ln(states[2], (4,)), atol=1e-5, rtol=0)
    shares = mix.shares()
    assert abs(sum(shares) - 1) < 1e-6 and shares[2] > 0.99
    with pytest.raises(ValueError, match="3 states got 2"):
        mix(states[:2])


@pytest.mark.parametrize("kind", ["whisper", "hf"])
def test_the_states_are_the_encoders_layers(kind, small_yesno, tiny_whisper_dir, tiny_w2v_dir):  # noqa: F811
    """One state per layer and the first layer's input; the last is the encoder's usual output (for
    wav2vec2: transformers' own hidden_states), so a mix all on it reads what the head read before."""
    _, _, lang = small_yesno
    source = source_of(kind, tiny_whisper_dir, tiny_w2v_dir)
    mixed = build_model_for(get_method("finetune"), lang, MIX, source).eval()
    plain = build_model_for(get_method("finetune"), lang, None, source).eval()
    plain.output.load_state_dict(mixed.output.state_dict())
    x, lens = example(kind)
    with torch.no_grad():
        states, out_lens = mixed.encoder(mixed.prepare_input(x, lens), lens, all_layers=True)
        last, plain_lens = plain.encoder(plain.prepare_input(x, lens), lens)
        assert len(states) == len(mixed.encoder.layers) + 1 == mixed.layer_mix.weights.numel()
        assert torch.equal(out_lens, plain_lens)
        torch.testing.assert_close(states[-1], last)
        assert not torch.allclose(states[0], states[-1])
        if kind == "hf":  # the unpadded utterance (a padded one's first norm is ours: HfSslEncoder)
            hf = plain.encoder.hf(plain.prepare_input(x, lens)[:1, :, 0], output_hidden_states=True)
            for ours, theirs in zip(states, hf.hidden_states, strict=True):
                torch.testing.assert_close(ours[:1], theirs)
        mixed.layer_mix.weights[:] = torch.tensor([0.0] * (len(states) - 1) + [40.0])
        log_probs, _ = mixed(x, lens)
        want = plain.output(torch.nn.functional.layer_norm(last, last.shape[-1:])).log_softmax(-1)
        torch.testing.assert_close(log_probs, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["whisper", "hf"])
def test_linear_probe_trains_the_mix_with_the_head_and_nothing_below(
    kind,
    small_yesno,
    tiny_whisper_dir,  # noqa: F811
    tiny_w2v_dir,  # noqa: F811
    tmp_path,
    caplog,
):
    import logging

    _, cuts, lang = small_yesno
    method = get_method("linear-probe")
    model = build_model_for(method, lang, MIX, source_of(kind, tiny_whisper_dir, tiny_w2v_dir))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(num_steps=2, max_duration=100, num_buckets=2, average_last=1, lr=0.05)
    with caplog.at_level(logging.INFO):
        final = Trainer(model, lang, method, cfg, tmp_path / "exp").fit(
            mark_cuts(cuts.subset(first=2), model.input_spec)
        )
    rebuilt = model_from_checkpoint(final)
    changed = {k for k, v in rebuilt.state_dict().items() if not torch.equal(v, start[k])}
    assert "layer_mix.weights" in changed and changed <= {"layer_mix.weights", "output.weight", "output.bias"}
    assert rebuilt.config.layer_mix and "layer mix of" in caplog.text


def test_a_wav2vec2_model_with_a_layer_mix_exports_as_torch_computes_it(small_yesno, tiny_w2v_dir, tmp_path):  # noqa: F811
    import onnxruntime as ort

    from speechtl.export import export_onnx
    from speechtl.export.wave import wave_graph
    from speechtl.train.checkpoint import save_checkpoint

    _, _, lang = small_yesno
    model = build_model_for(get_method("finetune"), lang, MIX, f"hf:{tiny_w2v_dir}").eval()
    with torch.no_grad():
        model.layer_mix.weights.normal_(0, 1.0)
        model.output.weight.normal_(0, 3.0)
    save_checkpoint(tmp_path / "final.pt", model, train_config={"seed": 1}, method="finetune")
    out = export_onnx(tmp_path / "final.pt", lang.dir, tmp_path / "onnx").out_dir
    x = torch.randn(1, 24000)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = wave_graph(model_from_checkpoint(tmp_path / "final.pt").eval())(x)
    assert got.shape == tuple(want.shape)
    torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-3, rtol=0)


def test_an_encoder_without_its_layers_outputs_refuses_a_mix(small_yesno, tmp_path):
    from speechtl.train.checkpoint import save_checkpoint

    with pytest.raises(SpeechtlError, match=r"tdnn encoder does not give its layers' outputs.*Fix: layer_mix: false"):
        build_model(ModelConfig(encoder="tdnn", num_features=23, layer_mix=True), 5)
    # nor is a mix added to a speechtl checkpoint's own architecture, silently or not
    _, _, lang = small_yesno
    own = tmp_path / "own.pt"
    save_checkpoint(own, build_model(ModelConfig(encoder="tdnn", num_features=23), lang.vocab_size))
    with pytest.raises(
        SpeechtlError, match=r"own.pt was trained without a layer mix.*Fix: layer_mix with a pretrained"
    ):
        build_model_for(get_method("finetune"), lang, MIX, own)


@pytest.mark.parametrize(
    "variant",
    [
        {"layerdrop": 0.5},  # transformers records no state for a dropped layer
        {"do_stable_layer_norm": True, "feat_extract_norm": "layer"},  # large models, XLS-R
    ],
)
def test_wav2vec2_variants_give_every_state(variant, small_yesno, tmp_path):
    from test_hf_encoders import save_tiny

    _, _, lang = small_yesno
    folder = save_tiny(tmp_path / "w2v", "wav2vec2", **variant)
    model = build_model_for(get_method("finetune"), lang, MIX, f"hf:{folder}")
    x, lens = example("hf")
    model.train()
    for _ in range(4):  # layerdrop 0.5 drops some layer of 3 in most of these
        log_probs, _ = model(x, lens)
        assert torch.isfinite(log_probs).all()
    model.eval()
    plain = build_model_for(get_method("finetune"), lang, None, f"hf:{folder}").eval()
    with torch.no_grad():
        states, _ = model.encoder(model.prepare_input(x, lens), lens, all_layers=True)
        hf = plain.encoder.hf(plain.prepare_input(x, lens)[:1, :, 0], output_hidden_states=True)
    assert len(states) == len(hf.hidden_states) == 4
    for ours, theirs in zip(states, hf.hidden_states, strict=True):
        torch.testing.assert_close(ours[:1], theirs)


def test_model_options_a_pretrained_source_does_not_take_are_named(small_yesno, tiny_whisper_dir, caplog):  # noqa: F811
    import logging

    _, _, lang = small_yesno
    with caplog.at_level(logging.WARNING):
        model = build_model_for(
            get_method("finetune"),
            lang,
            ModelConfig(input_norm="robust", layer_mix=True),
            f"whisper:{tiny_whisper_dir}",
        )
    assert model.layer_mix is not None and model.config.input_norm == "none"  # Whisper's own
    assert "model option(s) input_norm of the config are not used with whisper:" in caplog.text


def test_the_mix_weights_learn_at_their_own_rate_without_decay(small_yesno, tiny_whisper_dir, tmp_path):  # noqa: F811
    """train.layer_mix_lr: the mix's few scalars at a rate of their own (in lp-ft's probe too), the head at lr."""
    from speechtl.models.layer_mix import with_layer_mix_group

    _, cuts, lang = small_yesno
    moved = {}
    for method_name, mix_lr in [("linear-probe", 0.0), ("linear-probe", 1.0), ("lp-ft", 1.0)]:
        method = get_method(method_name, {"probe_steps": 2, "probe_lr": 0.01} if method_name == "lp-ft" else {})
        model = build_model_for(method, lang, MIX, f"whisper:{tiny_whisper_dir}")
        if method_name == "linear-probe":
            method.prepare(model)
            groups = with_layer_mix_group(method.param_groups(model, 0.01), model, mix_lr)
            mixed = [g for g in groups if any(p is model.layer_mix.weights for p in g["params"])]
            assert len(mixed) == 1 and mixed[0]["lr"] == (mix_lr or 0.01)
            assert mixed[0].get("weight_decay", None) == (0.0 if mix_lr else None)
        cfg = TrainConfig(
            num_steps=2, max_duration=100, num_buckets=2, average_last=1, lr=0.01, weight_decay=0.1, layer_mix_lr=mix_lr
        )
        exp = tmp_path / f"{method_name}-{mix_lr}"
        final = Trainer(model, lang, method, cfg, exp).fit(mark_cuts(cuts.subset(first=2), model.input_spec))
        moved[(method_name, mix_lr)] = float(model_from_checkpoint(final).layer_mix.weights.abs().max())
    assert moved[("linear-probe", 1.0)] > 20 * moved[("linear-probe", 0.0)] > 0
    assert moved[("lp-ft", 1.0)] > 1.5 * moved[("linear-probe", 1.0)]  # its probe's 2 updates at 1.0, then 2 more
