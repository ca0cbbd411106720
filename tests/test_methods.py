"""The fine-tuning family: each test fails if its method were a no-op."""

import pytest
import torch

from speechtl.adapt import METHODS, get_method
from speechtl.adapt.finetune import layer_stack
from speechtl.adapt.transfer import build_model_for
from speechtl.errors import SpeechtlError
from speechtl.models import ModelConfig, build_model
from speechtl.train import TrainConfig, Trainer
from speechtl.train.checkpoint import load_checkpoint, save_checkpoint
from speechtl.train.trainer import seed_everything

TINY = ModelConfig(
    encoder="conformer",
    num_features=23,
    encoder_options=dict(
        d_model=16, num_heads=2, ffn_dim=32, num_layers=3, kernel_size=3, dropout=0.0, subsampling_channels=4
    ),
)


@pytest.fixture
def source(small_yesno, tmp_path):
    """A source checkpoint whose units are the yesno tokens minus one, plus one the target lacks."""
    _, _, lang = small_yesno
    tokens = {t: i for t, i in lang.token2id.items() if i < lang.vocab_size - 1}
    tokens["zz"] = len(tokens)
    seed_everything(7)
    model = build_model(TINY, len(tokens))
    path = tmp_path / "source.pt"
    save_checkpoint(path, model, tokens=tokens)
    return path, model.state_dict(), tokens


def one_step(method, small_yesno, source_path, tmp_path, lr=0.05):
    """Build the method's model from the source, train one real Trainer step; (before, after) state dicts."""
    _, cuts, lang = small_yesno
    seed_everything(3)
    model = build_model_for(method, lang, None, source_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(num_steps=1, max_duration=400, num_buckets=2, average_last=1, lr=lr, weight_decay=0.0)
    Trainer(model, lang, method, cfg, tmp_path / "exp").fit(cuts)
    ckpt = load_checkpoint(tmp_path / "exp" / "epoch-1.pt")
    return before, ckpt


def changed(before, after, name):
    return not torch.equal(before[name], after[name])


def test_registry_names():
    assert {"scratch", "finetune", "freeze", "linear-probe", "layerwise-lr"} <= set(METHODS)
    for cls in METHODS.values():
        assert cls.__doc__ and len(cls.__doc__.split()) > 5, f"{cls.name} must say what it changes"


def test_finetune_starts_from_source_and_trains_everything(small_yesno, source, tmp_path):
    path, src, _ = source
    before, ckpt = one_step(get_method("finetune"), small_yesno, path, tmp_path)
    for name in src:
        if not name.startswith("output."):
            assert torch.equal(before[name], src[name]), name
    moved = [n for n in before if before[n].is_floating_point() and changed(before, ckpt["model"], n)]
    assert len(moved) == len(before), set(before) - set(moved)


def test_scratch_takes_the_source_architecture_not_its_weights(small_yesno, source, tmp_path):
    path, src, _ = source
    _, _, lang = small_yesno
    model = build_model_for(get_method("scratch"), lang, None, path)
    assert model.config == TINY
    assert not torch.equal(
        model.state_dict()["encoder.layers.0.ff1.net.1.weight"], src["encoder.layers.0.ff1.net.1.weight"]
    )


def test_freeze_leaves_frozen_parameters_bitwise_unchanged(small_yesno, source, tmp_path):
    path, _, _ = source
    before, ckpt = one_step(get_method("freeze", {"bottom_layers": 2}), small_yesno, path, tmp_path)
    after = ckpt["model"]
    frozen = [n for n in before if n.startswith(("encoder.subsampling.", "encoder.layers.0.", "encoder.layers.1."))]
    trained = [n for n in before if n.startswith(("encoder.layers.2.", "output."))]
    assert frozen and trained
    for n in frozen:
        assert torch.equal(before[n], after[n]), f"{n} is frozen but changed"
    assert all(changed(before, after, n) for n in trained)


def test_freeze_by_prefix_and_bad_options(small_yesno, source, tmp_path):
    path, _, _ = source
    before, ckpt = one_step(get_method("freeze", {"prefixes": ["encoder.subsampling"]}), small_yesno, path, tmp_path)
    assert all(torch.equal(before[n], ckpt["model"][n]) for n in before if n.startswith("encoder.subsampling."))
    assert changed(before, ckpt["model"], "encoder.layers.0.ff1.net.1.weight")
    _, _, lang = small_yesno
    with pytest.raises(SpeechtlError, match="would train everything"):
        get_method("freeze").prepare(build_model(TINY, lang.vocab_size))
    with pytest.raises(SpeechtlError, match="match no parameter"):
        get_method("freeze", {"prefixes": ["encoder.nope"]}).prepare(build_model(TINY, lang.vocab_size))
    with pytest.raises(SpeechtlError, match="unknown option"):
        get_method("freeze", {"bottom_layer": 2})
    layers = TINY.encoder_options["num_layers"]
    with pytest.raises(SpeechtlError, match=rf"has {layers} layers. Fix: bottom_layers at most {layers}"):
        get_method("freeze", {"bottom_layers": layers + 1}).prepare(build_model(TINY, lang.vocab_size))


def test_freezing_every_layer_says_it_is_nearly_linear_probe(small_yesno, caplog):
    """freeze's default bottom_layers 2 on a 2-layer model trained what linear-probe trains, silently."""
    import logging

    from speechtl.adapt.finetune import layer_stack

    _, _, lang = small_yesno
    model = build_model(TINY, lang.vocab_size)
    n = len(layer_stack(model)) - 2
    caplog.set_level(logging.WARNING)
    get_method("freeze", {"bottom_layers": n}).prepare(model)
    assert f"bottom_layers={n} is every layer of this encoder" in caplog.text


def test_linear_probe_trains_only_a_fresh_head(small_yesno, source, tmp_path):
    path, src, _tokens = source
    before, ckpt = one_step(get_method("linear-probe"), small_yesno, path, tmp_path)
    after = ckpt["model"]
    for n in before:
        if n.startswith("output."):
            assert changed(before, after, n), n
        else:
            assert torch.equal(before[n], src[n]) and torch.equal(before[n], after[n]), n
    # a *new* head: not the source's rows, even for shared units
    assert not torch.equal(before["output.weight"][1], src["output.weight"][1])


def test_layerwise_lr_groups_carry_decayed_rates(small_yesno, source, tmp_path):
    path, _, _ = source
    method = get_method("layerwise-lr", {"decay": 0.5})
    _, _, lang = small_yesno
    model = build_model(TINY, lang.vocab_size)
    groups = method.param_groups(model, 0.08)
    # head, layers 2, 1, 0, front end
    assert [g["lr"] for g in groups] == pytest.approx([0.08, 0.04, 0.02, 0.01, 0.005])
    assert groups[0]["params"][0] is model.output.weight
    assert groups[1]["params"][0] is next(model.encoder.layers[2].parameters())
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # through the Trainer: the saved optimizer keeps the ratios after the schedule is applied
    _, ckpt = one_step(method, small_yesno, path, tmp_path)
    lrs = [g["lr"] for g in ckpt["optimizer"]["param_groups"]]
    assert [lr / lrs[0] for lr in lrs] == pytest.approx([1, 0.5, 0.25, 0.125, 0.0625])
    assert len(layer_stack(model)) == 3 + 2


def test_transfer_methods_need_a_source(small_yesno):
    _, _, lang = small_yesno
    with pytest.raises(SpeechtlError, match="--source-checkpoint"):
        build_model_for(get_method("finetune"), lang, TINY, None)


def test_lp_ft_probes_the_output_layer_alone_then_fine_tunes_everything(small_yesno, source, tmp_path):
    path, src, _ = source
    _, cuts, lang = small_yesno
    method = get_method("lp-ft", {"probe_steps": 3, "probe_lr": 0.05})
    seed_everything(3)
    model = build_model_for(method, lang, None, path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(before[n], src[n]) for n in src if not n.startswith("output."))  # starts from the source
    cfg = TrainConfig(num_steps=1, max_duration=400, num_buckets=2, average_last=1, lr=0.05, weight_decay=0.0)
    trainer = Trainer(model, lang, method, cfg, tmp_path / "exp")
    method.before_training(trainer, cuts, {})
    probed = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(changed(before, probed, n) for n in before if n.startswith("output."))
    assert all(torch.equal(before[n], probed[n]) for n in before if not n.startswith("output."))
    assert all(p.requires_grad for p in model.parameters())  # the fine-tune then trains everything
    _, ckpt = one_step(method, small_yesno, path, tmp_path / "full")
    moved = [n for n in before if before[n].is_floating_point() and changed(before, ckpt["model"], n)]
    assert len(moved) == len(before), set(before) - set(moved)
    with pytest.raises(SpeechtlError, match="probe_lr"):
        get_method("lp-ft", {"probe_lr": 0.0}).before_training(trainer, cuts, {})


def test_pseudo_label_can_probe_its_head_first_and_does_not_by_default(small_yesno, source, tmp_path):
    """pseudo-label's probe_steps: lp-ft's start for a new head on a pretrained encoder."""
    path, _, _ = source
    _, cuts, lang = small_yesno
    cfg = TrainConfig(num_steps=1, max_duration=400, num_buckets=2, average_last=1, lr=0.05, weight_decay=0.0)
    for steps in (0, 3):
        method = get_method("pseudo-label", {"teacher": str(path), "probe_steps": steps, "probe_lr": 0.05})
        seed_everything(3)
        model = build_model_for(method, lang, None, path)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        method.before_training(Trainer(model, lang, method, cfg, tmp_path / f"exp{steps}"), cuts, {})
        after = model.state_dict()
        head = [n for n in before if n.startswith("output.")]
        assert all(changed(before, after, n) == (steps > 0) for n in head)
        assert all(torch.equal(before[n], after[n]) for n in before if not n.startswith("output."))
