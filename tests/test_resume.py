"""kill -9 at random points, then the same command again: the weights of an uninterrupted run.

``speechtl train`` runs in a subprocess on the yesno training cuts with everything that
draws random numbers switched on (dropout, SpecAugment, mel noise, shuffled buckets),
Adam and a warmup-cosine schedule. One run goes through uninterrupted; another is
SIGKILLed at a random batch in the middle of epoch 1 and, after a restart, right
after epoch 2's checkpoint appears, then run to the end. Every epoch checkpoint and
the averaged final model must be equal tensor for tensor (CPU, one thread).
"""

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

EPOCHS = 3
CONFIG = f"""\
model: {{encoder: tdnn, num_features: 23, encoder_options: {{hidden_dim: 192, dropout: 0.1}}}}
train:
  num_epochs: {EPOCHS}
  max_duration: 10
  num_buckets: 2
  optimizer: adam
  lr: 0.003
  lr_schedule: cosine
  warmup_steps: 4
  average_last: 2
  log_interval: 1
  save_every_n: 2
  mel_noise: {{prob: 0.5}}
  spec_augment: {{time_warp_factor: 0, num_frame_masks: 1}}
"""


@pytest.fixture(scope="module")
def setup(small_yesno, tmp_path_factory):
    d, _, _ = small_yesno
    tmp = tmp_path_factory.mktemp("resume")
    cuts = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz").subset(first=20)
    cuts.to_file(tmp / "cuts.jsonl.gz")
    (tmp / "train.yaml").write_text(CONFIG)
    return d / "lang", tmp


def train_command(lang: Path, tmp: Path, exp: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "speechtl.cli",
        "train",
        "--config",
        str(tmp / "train.yaml"),
        "--lang-dir",
        str(lang),
        "--train-cuts",
        str(tmp / "cuts.jsonl.gz"),
        "--exp-dir",
        str(exp),
    ]


ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run_to_end(cmd: list[str]) -> str:
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr


def run_until(cmd: list[str], ready, timeout: float = 300) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``ready()`` holds (polled every 5 ms)."""
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + timeout
    try:
        while not ready():
            assert p.poll() is None, "training ended before the point it was to be killed at"
            assert time.time() < end, "timed out waiting for the kill point"
            time.sleep(0.005)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait()
    assert p.returncode == -signal.SIGKILL


def log_has(exp: Path, text: str):
    log = exp / "log" / "log-train.txt"
    return lambda: log.is_file() and text in log.read_text()


def models(exp: Path) -> dict[str, dict[str, torch.Tensor]]:
    names = [f"epoch-{n}.pt" for n in range(1, EPOCHS + 1)] + ["final.pt"]
    return {n: torch.load(exp / n, weights_only=False)["model"] for n in names}


def test_kill_and_rerun_gives_the_uninterrupted_weights(setup):
    lang, tmp = setup
    seed = int(time.time())
    kill_at = random.Random(seed).randint(3, 9)  # a batch in the middle of epoch 1 (20 batches)
    ref = tmp / "uninterrupted"
    run_to_end(train_command(lang, tmp, ref))

    exp = tmp / "killed"
    cmd = train_command(lang, tmp, exp)
    run_until(cmd, log_has(exp, f"epoch 1 batch {kill_at}/"))
    last = torch.load(exp / "checkpoint-last.pt", weights_only=False)["position"]
    assert last["epoch"] == 1 and 0 < last["batches_done"] < 20, (seed, last)
    assert not (exp / "epoch-1.pt").exists()

    run_until(cmd, lambda: (exp / "epoch-2.pt").exists())
    log = (exp / "log" / "log-train.txt").read_text()
    assert f"checkpoint-last.pt at epoch 1 batch {last['batches_done'] + 1}" in log, log[-2000:]

    run_to_end(cmd)
    assert not (exp / "checkpoint-last.pt").exists(), "a finished run leaves no mid-epoch state"
    want, got = models(ref), models(exp)
    gap = max(float((got[n][k].double() - want[n][k].double()).abs().max()) for n in want for k in want[n])
    print(f"kill points: epoch 1 batch {kill_at}, after epoch-2.pt (seed {seed}); max |weight gap| {gap}")
    for name in want:
        for k in want[name]:
            assert torch.equal(got[name][k], want[name][k]), (seed, name, k, gap)
    assert not torch.equal(want["epoch-1.pt"]["output.weight"], want["epoch-3.pt"]["output.weight"])


def test_checkpoint_last_is_taken_only_with_the_settings_it_was_written_with(small_yesno, tmp_path, caplog):
    """A mid-epoch checkpoint continues the run that wrote it; after a change of settings
    the run says which differ and resumes from the last finished epoch instead."""
    import logging

    from speechtl.adapt import get_method
    from speechtl.models import ModelConfig, build_model
    from speechtl.train import TrainConfig, Trainer

    _, cuts, lang = small_yesno

    def trainer(epochs, lr):
        model = build_model(ModelConfig(encoder="tdnn", num_features=23), lang.vocab_size)
        cfg = TrainConfig(num_epochs=epochs, max_duration=7, num_buckets=2, average_last=1, lr=lr)
        return Trainer(model, lang, get_method("scratch"), cfg, tmp_path / "exp")

    trainer(1, 0.01).fit(cuts)
    ckpt = torch.load(tmp_path / "exp" / "epoch-1.pt", weights_only=False)
    ckpt["position"] = {**ckpt["position"], "epoch": 2, "batches_done": 2}  # as if killed in epoch 2
    torch.save(ckpt, tmp_path / "exp" / "checkpoint-last.pt")
    with caplog.at_level(logging.INFO):
        trainer(2, 0.02).fit(cuts)
    assert "checkpoint-last.pt was written with other settings (lr differs)" in caplog.text
    assert re.search(r"resuming from \S*epoch-1\.pt at epoch 2$", caplog.text, re.M), caplog.text

    (tmp_path / "exp" / "epoch-2.pt").unlink()
    torch.save(ckpt, tmp_path / "exp" / "checkpoint-last.pt")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        trainer(2, 0.01).fit(cuts)
    assert "checkpoint-last.pt at epoch 2 batch 3" in caplog.text, caplog.text


def test_checkpoint_last_of_other_method_options_is_not_continued(small_yesno, tmp_path, caplog):
    """The method's options are part of what a mid-epoch checkpoint continues: with another
    layer-wise decay the run says so and resumes from the last finished epoch."""
    import logging

    from speechtl.adapt import get_method
    from speechtl.models import ModelConfig, build_model
    from speechtl.train import TrainConfig, Trainer

    _, cuts, lang = small_yesno

    def trainer(decay):
        model = build_model(ModelConfig(encoder="tdnn", num_features=23), lang.vocab_size)
        cfg = TrainConfig(num_epochs=2, max_duration=7, num_buckets=2, average_last=1, lr=0.01)
        return Trainer(model, lang, get_method("layerwise-lr", {"decay": decay}), cfg, tmp_path / "exp")

    trainer(0.8).fit(cuts)
    ckpt = torch.load(tmp_path / "exp" / "epoch-1.pt", weights_only=False)
    ckpt["position"] = {**ckpt["position"], "epoch": 2, "batches_done": 2}  # as if killed in epoch 2
    (tmp_path / "exp" / "epoch-2.pt").unlink()
    torch.save(ckpt, tmp_path / "exp" / "checkpoint-last.pt")
    with caplog.at_level(logging.INFO):
        trainer(0.5).fit(cuts)
    assert "checkpoint-last.pt was written with other settings (options differs)" in caplog.text, caplog.text
    assert re.search(r"resuming from \S*epoch-1\.pt at epoch 2$", caplog.text, re.M), caplog.text


def test_checkpoints_of_a_run_that_trained_other_parameters_stop_with_the_fix(small_yesno, tmp_path):
    """An exp dir holding epoch checkpoints of another method (here: every parameter trained,
    then the lowest layers frozen) cannot be resumed: the optimizer's state is for other
    parameters. The run stops with the checkpoint, the reason and the fix, before training."""
    from speechtl.adapt import get_method
    from speechtl.errors import SpeechtlError
    from speechtl.models import ModelConfig, build_model
    from speechtl.train import TrainConfig, Trainer

    _, cuts, lang = small_yesno
    exp = tmp_path / "exp"

    def trainer(method):
        model = build_model(ModelConfig(encoder="tdnn", num_features=23), lang.vocab_size)
        cfg = TrainConfig(num_epochs=2, max_duration=7, num_buckets=2, average_last=1, lr=0.01)
        return Trainer(model, lang, method, cfg, exp)

    trainer(get_method("finetune")).fit(cuts)
    (exp / "epoch-2.pt").unlink()  # as if killed in epoch 2
    (exp / "final.pt").unlink()
    before = (exp / "epoch-1.pt").read_bytes()
    with pytest.raises(
        SpeechtlError,
        match=r"epoch-1\.pt was written by a run that trains other parameters.*"
        r"Fix: train into a new --exp-dir, or delete .*checkpoints to start afresh",
    ):
        trainer(get_method("freeze", {"bottom_layers": 1})).fit(cuts)
    assert (exp / "epoch-1.pt").read_bytes() == before  # nothing written is lost


def test_a_crash_mid_epoch_resumes_an_aux_stream_method_exactly(small_yesno, tmp_path, monkeypatch):
    """DANN draws one unlabelled batch per batch from its own endless stream, samples frames
    at random and weighs its loss by progress: a run that dies mid-epoch (here an exception
    in an update, in-process) and is started again continues all three where they were."""
    from speechtl.adapt import get_method
    from speechtl.adapt.transfer import build_model_for
    from speechtl.models import ModelConfig, build_model
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.data import seed_everything

    d, cuts, lang = small_yesno
    unlabelled = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz").subset(last=5)
    seed_everything(1)
    source_model = build_model(ModelConfig(encoder="tdnn", num_features=23), lang.vocab_size)
    source = Trainer(
        source_model, lang, get_method("scratch"), TrainConfig(num_epochs=1, max_duration=20), tmp_path / "src"
    )
    source = source.fit(cuts)

    def dann(exp):
        seed_everything(2)
        method = get_method("dann")
        cfg = TrainConfig(num_epochs=2, max_duration=14, num_buckets=2, average_last=1, save_every_n=1)
        return Trainer(build_model_for(method, lang, None, source), lang, method, cfg, exp)

    dann(tmp_path / "ref").fit(cuts, aux_cuts={"unlabelled": unlabelled})
    calls, update = [0], Trainer._update

    def dies_at_update_6(self, *args, **kwargs):  # 4 batches an epoch (3 unlabelled): mid epoch 2 of both
        calls[0] += 1
        if calls[0] == 6:
            raise RuntimeError("the node went away")
        return update(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_update", dies_at_update_6)
    with pytest.raises(RuntimeError, match="went away"):
        dann(tmp_path / "exp").fit(cuts, aux_cuts={"unlabelled": unlabelled})
    monkeypatch.setattr(Trainer, "_update", update)
    assert torch.load(tmp_path / "exp" / "checkpoint-last.pt", weights_only=False)["position"]["step"] == 5
    dann(tmp_path / "exp").fit(cuts, aux_cuts={"unlabelled": unlabelled})
    for name in ("epoch-1.pt", "epoch-2.pt"):
        want, got = (torch.load(tmp_path / e / name, weights_only=False) for e in ("ref", "exp"))
        for part in ("model", "method_state"):
            for k in want[part]:
                assert torch.equal(got[part][k], want[part][k]), (name, part, k)


def test_a_train_option_added_since_a_checkpoint_counts_as_its_default():
    """train.layer_mix_lr came after checkpoints that runs in progress hold: their resume key lacks it,
    and that alone made every checkpoint-last.pt "written with other settings" (its progress dropped)."""
    from dataclasses import asdict

    from speechtl.train import TrainConfig
    from speechtl.train.resume import mismatched

    now = {"lr": 0.1, "layer_mix_lr": 0.0, "method": "finetune"}
    assert mismatched({"lr": 0.1, "method": "finetune"}, now, asdict(TrainConfig())) == []
    assert mismatched({"lr": 0.1, "method": "finetune"}, {**now, "layer_mix_lr": 0.5}, asdict(TrainConfig())) == [
        "layer_mix_lr"
    ]
    assert mismatched({"lr": 0.1, "method": "finetune"}, now) == ["layer_mix_lr"]  # no defaults given
