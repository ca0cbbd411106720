"""Beyond fine-tuning: adapters/LoRA, alignment, KD, meta-learning, SSL, pseudo-labels.

Each test fails if its method were a no-op.
"""

import pytest
import torch
from test_methods import TINY

from speechtl.adapt import get_method
from speechtl.adapt.distill import frame_kl
from speechtl.adapt.meta import reptile_update, trainable
from speechtl.adapt.pseudo import confidence, select_confident
from speechtl.adapt.transfer import build_model_for
from speechtl.decode.run import compute_log_probs
from speechtl.errors import SpeechtlError
from speechtl.models import build_model
from speechtl.train import TrainConfig, Trainer
from speechtl.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from speechtl.train.trainer import seed_everything


@pytest.fixture
def source(small_yesno, tmp_path):
    _, _, lang = small_yesno
    seed_everything(7)
    path = tmp_path / "source.pt"
    save_checkpoint(path, build_model(TINY, lang.vocab_size), tokens=lang.token2id)
    return path


def trainer_for(method, small_yesno, source_path, exp, steps=1, lr=0.05, model_config=None):
    _, cuts, lang = small_yesno
    seed_everything(3)
    model = build_model_for(method, lang, model_config, source_path)
    cfg = TrainConfig(num_steps=steps, max_duration=400, num_buckets=2, average_last=1, lr=lr, weight_decay=0.0)
    return Trainer(model, lang, method, cfg, exp), cuts


@pytest.mark.parametrize("kind", ["adapter", "lora"])
def test_peft_trains_only_added_modules_and_exports_them(kind, small_yesno, source, tmp_path):
    method = get_method(kind, {"dim": 4, "train_head": False})
    trainer, cuts = trainer_for(method, small_yesno, source, tmp_path / "exp", steps=2)
    src = load_checkpoint(source)["model"]
    final = trainer.fit(cuts)
    after = load_checkpoint(tmp_path / "exp" / "epoch-1.pt")["model"]
    added = [n for n in after if n.startswith("adapters.") or ".lora_" in n]
    assert added
    base = {n: v for n, v in after.items() if n not in added}
    # the base weights keep their source values, bitwise (LoRA renames W to ...original)
    for n, v in base.items():
        assert torch.equal(v, src[n.replace("parametrizations.", "").replace(".original", "")]), n
    assert any(not torch.equal(after[n], torch.zeros_like(after[n])) for n in added if ("up." in n or "lora_b" in n))
    exported = torch.load(tmp_path / "exp" / "adapter.pt", weights_only=False)
    assert set(exported["adapter"]) == set(added) and "head" not in exported
    assert exported["peft"]["kind"] == kind
    # a checkpoint rebuilds the adapted network and reproduces its outputs
    model = model_from_checkpoint(final).eval()
    trainer.model.eval()
    x, n = torch.randn(2, 60, 23), torch.tensor([60, 45])
    torch.testing.assert_close(model(x, n)[0], trainer.model.cpu()(x, n)[0])


@pytest.mark.parametrize("name", ["dann", "mmd", "coral", "reweight"])
def test_alignment_methods_run_with_unlabelled_audio(name, small_yesno, source, tmp_path):
    trainer, cuts = trainer_for(get_method(name), small_yesno, source, tmp_path / "exp", steps=2)
    with pytest.raises(SpeechtlError, match="--unlabelled-cuts"):
        trainer.fit(cuts)
    trainer.fit(cuts, aux_cuts={"unlabelled": cuts})
    ckpt = load_checkpoint(tmp_path / "exp" / "epoch-1.pt")
    if name in ("dann", "reweight"):
        assert "method_state" in ckpt  # the domain classifier, kept for resuming


def test_dann_trains_its_domain_classifier(small_yesno, source, tmp_path):
    method = get_method("dann", {"weight": 1.0})
    trainer, cuts = trainer_for(method, small_yesno, source, tmp_path / "exp", steps=3)
    init = {}
    prepare = method.prepare

    def remember(model):
        prepare(model)
        init.update({k: v.detach().clone() for k, v in method.classifier.state_dict().items()})

    method.prepare = remember
    trainer.fit(cuts, aux_cuts={"unlabelled": cuts})
    state = load_checkpoint(tmp_path / "exp" / "epoch-1.pt")["method_state"]
    assert set(state) == set(init)
    assert any(not torch.equal(state[k], init[k]) for k in init), "the domain classifier never trained"


def test_kd_moves_student_posteriors_toward_the_teacher(small_yesno, tmp_path):
    _, cuts, lang = small_yesno
    seed_everything(11)
    teacher = tmp_path / "teacher.pt"
    save_checkpoint(teacher, build_model(TINY, lang.vocab_size), tokens=lang.token2id)
    method = get_method("kd", {"teacher": str(teacher), "weight": 1.0, "init": "random", "temperature": 1.0})
    trainer, _ = trainer_for(method, small_yesno, None, tmp_path / "exp", steps=8, lr=0.01, model_config=TINY)

    def kl(model_path_or_model):
        t = compute_log_probs(teacher, cuts)
        s = compute_log_probs(model_path_or_model, cuts)
        return sum(float(frame_kl(t[k][1][None], s[k][1][None], torch.tensor([t[k][1].size(0)]), 1.0)) for k in t)

    save_checkpoint(tmp_path / "student0.pt", trainer.model)
    before = kl(tmp_path / "student0.pt")
    trainer.fit(cuts, aux_cuts={"unlabelled": cuts})
    after = kl(tmp_path / "exp" / "final.pt")
    assert after < 0.7 * before, (before, after)


def test_one_reptile_outer_step_moves_by_the_meta_step_size(small_yesno, source, tmp_path):
    method = get_method("reptile", {"meta_lr": 0.25, "inner_steps": 2, "inner_lr": 0.05})
    trainer, cuts = trainer_for(method, small_yesno, source, tmp_path / "exp")
    trainer.model.train()
    theta = {n: p.detach().clone() for n, p in trainable(trainer.model).items()}
    adapted = method.outer_step(trainer, trainer.aux_batches(cuts, 0))
    moved = 0
    for n, p in trainable(trainer.model).items():
        torch.testing.assert_close(p.detach(), theta[n] + 0.25 * (adapted[n] - theta[n]))
        moved += int(not torch.equal(adapted[n], theta[n]))
    assert moved > 0, "the inner loop must adapt the weights"
    # the update rule on its own
    lin = torch.nn.Linear(2, 2)
    w0 = lin.weight.detach().clone()
    reptile_update(lin, {"weight": w0 + 4.0, "bias": lin.bias.detach().clone()}, 0.5)
    torch.testing.assert_close(lin.weight.detach(), w0 + 2.0)


def test_fomaml_changes_the_initialization(small_yesno, source, tmp_path):
    method = get_method("fomaml", {"meta_lr": 0.01, "inner_steps": 1, "outer_steps": 2})
    trainer, cuts = trainer_for(method, small_yesno, source, tmp_path / "exp")
    theta = {n: p.detach().clone() for n, p in trainable(trainer.model).items()}
    method.before_training(trainer, cuts, {})
    assert any(not torch.equal(theta[n], p) for n, p in trainable(trainer.model).items())


def test_pseudo_label_filtering_honours_its_threshold(small_yesno, source, tmp_path):
    lp = torch.log(
        torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.2, 0.1, 0.7]])
    )
    units, conf = confidence(lp)
    assert units == [1, 2] and conf == pytest.approx((0.8 * 0.7) ** 0.5)
    hyps = [("a", "y n", 0.95), ("b", "y", 0.79), ("c", "", 0.99), ("d", "n", 0.8)]
    assert [h[0] for h in select_confident(hyps, 0.8)] == ["a", "d"]
    _, cuts, _ = small_yesno
    for threshold, expect_all in ((0.0, True), (1.01, False)):
        method = get_method("pseudo-label", {"teacher": str(source), "threshold": threshold})
        trainer, _ = trainer_for(method, small_yesno, source, tmp_path / f"exp{threshold}")
        trainer.exp_dir.mkdir(parents=True, exist_ok=True)
        unlabelled = cuts.modify_ids(lambda i: "u-" + i)
        out = method.prepare_data(trainer, cuts, {"unlabelled": unlabelled})
        kept = (trainer.exp_dir / "pseudo_labels.txt").read_text().splitlines()
        assert len(out) == len(cuts) + len(kept)
        assert all(float(line.split("\t")[1]) >= threshold for line in kept)
        if not expect_all:
            assert kept == []


def test_ssl_pretraining_moves_the_encoder_not_the_head(small_yesno, source, tmp_path):
    method = get_method("ssl", {"steps": 3, "lr": 0.01})
    trainer, cuts = trainer_for(method, small_yesno, source, tmp_path / "exp")
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    method.before_training(trainer, cuts, {"unlabelled": cuts})
    after = dict(trainer.model.named_parameters())
    assert torch.equal(before["output.weight"], after["output.weight"])
    assert not torch.equal(before["encoder.layers.0.ff1.net.1.weight"], after["encoder.layers.0.ff1.net.1.weight"])
