"""The one Trainer: checkpoints, resume, averaging, reproducibility."""

import functools
import logging
import operator

import pytest
import torch
from conftest import venv_env
from lhotse import CutSet

from speechtl.adapt import get_method
from speechtl.errors import SpeechtlError
from speechtl.models import ModelConfig, build_model
from speechtl.train import TrainConfig, Trainer
from speechtl.train.checkpoint import average_state_dicts, epoch_checkpoints, load_checkpoint
from speechtl.train.dist import fair_threads, usable_cpus
from speechtl.train.trainer import seed_everything


def make_trainer(lang, exp_dir, epochs, seed=3, encoder_options=None, **train_options):
    seed_everything(seed)
    model = build_model(
        ModelConfig(encoder="tdnn", num_features=23, encoder_options=encoder_options or {}), lang.vocab_size
    )
    cfg = TrainConfig(num_epochs=epochs, max_duration=20, num_buckets=2, average_last=2, seed=seed, **train_options)
    return Trainer(model, lang, get_method("scratch"), cfg, exp_dir)


def test_fit_writes_checkpoints_and_average(small_yesno, tmp_path):
    _, cuts, lang = small_yesno
    final = make_trainer(lang, tmp_path / "exp", 2).fit(cuts, cuts)
    assert [p.name for p in epoch_checkpoints(tmp_path / "exp")] == ["epoch-1.pt", "epoch-2.pt"]
    assert final.resolve().name == "avg-2.pt"
    assert any((tmp_path / "exp" / "tensorboard").iterdir())
    assert "epoch 2/2: train ctc/frame" in (tmp_path / "exp" / "log" / "log-train.txt").read_text()
    e1, e2 = (load_checkpoint(tmp_path / "exp" / f"epoch-{i}.pt")["model"] for i in (1, 2))
    avg = load_checkpoint(final)["model"]
    k = "output.weight"
    torch.testing.assert_close(avg[k], (e1[k] + e2[k]) / 2)
    assert not torch.equal(e1[k], e2[k]), "training must change the weights"


def test_keep_epochs_prunes_old_epochs_but_never_below_the_average(small_yesno, tmp_path):
    _, cuts, lang = small_yesno
    full = load_checkpoint(make_trainer(lang, tmp_path / "all", 4, keep_epochs=0).fit(cuts))["model"]
    kept = make_trainer(lang, tmp_path / "kept", 4, keep_epochs=1)  # average_last=2 wins over 1
    final = load_checkpoint(kept.fit(cuts))["model"]
    assert [p.name for p in epoch_checkpoints(tmp_path / "kept")] == ["epoch-3.pt", "epoch-4.pt"]
    assert len(epoch_checkpoints(tmp_path / "all")) == 4  # 0: every epoch stays
    assert all(torch.equal(full[k], final[k]) for k in full)  # the same run, the same average
    # The option is not part of what a resume must match: a longer run with another value continues.
    make_trainer(lang, tmp_path / "kept", 5, keep_epochs=3).fit(cuts)
    assert [p.name for p in epoch_checkpoints(tmp_path / "kept")] == ["epoch-3.pt", "epoch-4.pt", "epoch-5.pt"]


def test_resume_continues_after_last_epoch(small_yesno, tmp_path, caplog):
    _, cuts, lang = small_yesno
    make_trainer(lang, tmp_path / "exp", 1).fit(cuts)
    first = (tmp_path / "exp" / "epoch-1.pt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        make_trainer(lang, tmp_path / "exp", 2).fit(cuts)
    assert "resuming from" in caplog.text and "at epoch 2" in caplog.text
    assert (tmp_path / "exp" / "epoch-1.pt").stat().st_mtime_ns == first
    assert load_checkpoint(tmp_path / "exp" / "epoch-2.pt")["epoch"] == 2
    assert "written with other settings" not in caplog.text  # more epochs of the same run: no warning
    # The same exp dir with an edited conf (another lr) continued the old run without a word
    with caplog.at_level(logging.INFO):
        make_trainer(lang, tmp_path / "exp", 3, lr=0.5).fit(cuts)
    assert "epoch-2.pt was written with other settings (lr differs): this run continues that one" in caplog.text


def test_a_second_training_of_one_exp_dir_stops_at_once(small_yesno, tmp_path):
    """A training left running (its recipe killed around it, torchrun's workers in their own session)
    and the same command again: the second resumed from checkpoints the first was still writing."""
    import fcntl

    _, cuts, lang = small_yesno
    exp = tmp_path / "exp"
    exp.mkdir()
    with open(exp / ".train.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242")
        held.flush()
        with pytest.raises(SpeechtlError, match=r"another training is running in .*exp \(pid 4242\).*kill 4242"):
            make_trainer(lang, exp, 1).fit(cuts)
        assert not list(exp.glob("epoch-*.pt"))
    make_trainer(lang, exp, 1).fit(cuts)  # the holder gone (the kernel frees its lock): it trains
    assert (exp / "epoch-1.pt").is_file()


def test_num_steps_is_an_exact_budget_unless_rounded_to_epochs(small_yesno, tmp_path, caplog):
    """A new recipe promises every amount the same num_steps updates: before, the budget was
    rounded up to whole epochs, so a larger pool (or a method with more batches an epoch) got
    more updates. step_budget: epochs keeps that for the built-in recipes' measured results."""
    _, cuts, lang = small_yesno

    def steps(name, **options):
        make_trainer(lang, tmp_path / name, 1, **options).fit(cuts)
        last = epoch_checkpoints(tmp_path / name)[-1]
        return len(epoch_checkpoints(tmp_path / name)), load_checkpoint(last)["position"]["step"]

    epochs, per_epoch = steps("one-epoch")  # num_steps 0: num_epochs (1)
    assert epochs == 1 and per_epoch >= 3
    assert steps("exact", num_steps=per_epoch + 1) == (2, per_epoch + 1)  # the second epoch cut short
    assert steps("rounded", num_steps=per_epoch + 1, step_budget="epochs") == (2, 2 * per_epoch)
    with caplog.at_level(logging.WARNING):
        assert steps("part", num_steps=2) == (1, 2)  # less than one epoch: one partial epoch
    assert f"num_steps 2 is less than one epoch ({per_epoch} updates)" in caplog.text
    assert f"train.num_steps={2 * per_epoch}" in caplog.text
    with pytest.raises(SpeechtlError, match="step_budget must be 'exact' or 'epochs'"):
        make_trainer(lang, tmp_path / "bad", 1, num_steps=2, step_budget="round")


def test_same_seed_same_model(small_yesno, tmp_path):
    _, cuts, lang = small_yesno
    a = load_checkpoint(make_trainer(lang, tmp_path / "a", 1, seed=5).fit(cuts))["model"]
    b = load_checkpoint(make_trainer(lang, tmp_path / "b", 1, seed=5).fit(cuts))["model"]
    c = load_checkpoint(make_trainer(lang, tmp_path / "c", 1, seed=6).fit(cuts))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["output.weight"], c["output.weight"])


def test_average_state_dicts_keeps_integer_buffers():
    s1 = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(4)}
    s2 = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    avg = average_state_dicts([s1, s2])
    assert torch.equal(avg["w"], torch.tensor([2.0, 4.0])) and int(avg["n"]) == 9


def test_unknown_method_and_bad_config(small_yesno, tmp_path):
    _, _, lang = small_yesno
    with pytest.raises(SpeechtlError, match="unknown method 'nope'"):
        get_method("nope")
    model = build_model(ModelConfig(encoder="tdnn", num_features=23), lang.vocab_size)
    with pytest.raises(SpeechtlError, match="unknown optimizer"):
        Trainer(model, lang, get_method("scratch"), TrainConfig(optimizer="rmsprop2"), tmp_path)
    with pytest.raises(SpeechtlError, match="unknown option"):
        build_model(ModelConfig(encoder="tdnn", encoder_options={"hiden_dim": 3}), 4)


def _sampled_ids(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [[c.id for c in batch] for batch in loader.sampler]


def test_ddp_ranks_see_disjoint_cuts(small_yesno):
    from speechtl.train.data import train_dataloader

    d, _, _ = small_yesno
    cuts = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz")
    seen = [
        functools.reduce(
            operator.iadd, _sampled_ids(train_dataloader(cuts, 20, 2, seed=1, world_size=2, rank=rank), 3), []
        )
        for rank in (0, 1)
    ]
    # lhotse may pad the smaller shard with a marked copy ("<id>_dup0") to balance ranks.
    originals = [{i for i in ids if "_dup" not in i} for ids in seen]
    copies = {i.split("_dup")[0] for ids in seen for i in ids if "_dup" in i}
    assert originals[0] and originals[1]
    assert not originals[0] & originals[1]
    assert originals[0] | originals[1] == {c.id for c in cuts}
    assert copies <= {c.id for c in cuts}


def test_split_batches_deal_the_one_process_batches_across_ranks(small_yesno):
    """max_duration_scope global: rank r holds cuts r, r+2, ... of each batch one
    process draws, so the ranks' cuts are disjoint and together are that batch."""
    from speechtl.train.data import is_pad, train_dataloader

    d, _, _ = small_yesno
    cuts = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz")
    for max_duration in (20, 7):  # 7 s: batches of one cut, so rank 1's share is a stand-in
        one = _sampled_ids(train_dataloader(cuts, max_duration, 2, seed=1), 3)
        loaders = [
            train_dataloader(cuts, max_duration, 2, seed=1, world_size=2, rank=r, split_batches=True) for r in (0, 1)
        ]
        for loader in loaders:
            loader.sampler.set_epoch(3)
        ranks = [list(loader.sampler) for loader in loaders]
        assert len(ranks[0]) == len(ranks[1]) == len(one)
        pads = 0
        for batch, b0, b1 in zip(one, *ranks, strict=False):
            real = [[c.id for c in b if not is_pad(c)] for b in (b0, b1)]
            assert not set(real[0]) & set(real[1])
            assert sorted(real[0] + real[1]) == sorted(batch)
            assert real[0] == batch[0::2] and real[1] == batch[1::2]
            pads += sum(is_pad(c) for c in b1)
        assert sorted(i for b in one for i in b) == sorted(c.id for c in cuts)
        if max_duration == 7:
            assert pads > 0


def test_augmentation_is_drawn_per_cut(small_yesno):
    """A cut's SpecAugment masks and mel noise depend on (seed, epoch, cut), not on the
    batch it is in: the premise of N ranks computing one process's gradient."""
    from speechtl.train.augment import MelNoiseConfig
    from speechtl.train.data import set_epoch, train_dataloader, unpack

    d, _, _ = small_yesno
    cuts = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz").subset(first=3).to_eager()
    loader = train_dataloader(
        cuts,
        100,
        2,
        seed=5,
        spec_augment={"time_warp_factor": 0, "num_frame_masks": 2},
        mel_noise=MelNoiseConfig(prob=1.0),
    )
    ds = loader.dataset

    def feats_of(batch_cuts, epoch):
        set_epoch(loader, epoch)
        f, n, _, cs = unpack(ds[CutSet.from_cuts(batch_cuts)])
        return {c.id: f[i, : n[i]] for i, c in enumerate(cs)}

    first = cuts[0]
    clean = torch.from_numpy(first.load_features())
    alone, together = feats_of([first], 1)[first.id], feats_of(list(cuts), 1)[first.id]
    assert not torch.allclose(alone, clean)  # augmented at all
    torch.testing.assert_close(alone, together)
    assert not torch.allclose(feats_of([first], 2)[first.id], alone)  # a new draw each epoch


def test_ddp_training_with_torchrun_keeps_ranks_in_sync(small_yesno, tmp_path):
    import re
    import subprocess
    import sys

    d, cuts, _ = small_yesno
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    conf = tmp_path / "train.yaml"
    # Global batches, augmentation on, no dropout: 2 processes must make 1 process's updates.
    # SGD: Adam's per-weight normalization turns float-level differences in near-zero
    # gradients (summation order) into lr-sized steps, which would hide what is compared.
    conf.write_text(
        "model: {encoder: tdnn, num_features: 23, encoder_options: {dropout: 0.0, norm: layer}}\n"
        "train: {num_epochs: 2, max_duration: 15, max_duration_scope: global, num_buckets: 2,\n"
        "        optimizer: sgd, lr: 0.5,\n"
        "        average_last: 2, mel_noise: {prob: 0.5}, spec_augment: {time_warp_factor: 0}}\n"
    )
    env = venv_env()
    # The threads meant for one process, exported to both: each rank must drop to its share.
    asked = max(2, usable_cpus())
    env["OMP_NUM_THREADS"] = str(asked)
    args = [
        "-m",
        "speechtl.cli",
        "train",
        "--config",
        str(conf),
        "--lang-dir",
        str(d / "lang"),
        "--train-cuts",
        str(tmp_path / "cuts.jsonl.gz"),
        "--exp-dir",
    ]
    r = subprocess.run(
        ["torchrun", "--standalone", "--nproc-per-node", "2", *args, str(tmp_path / "exp")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, *args, str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=300
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two, ref, ref1 = (
        torch.load(tmp_path / e / f"epoch-{n}.pt", weights_only=False)["model"]
        for e, n in (("exp", 2), ("one", 2), ("one", 1))
    )
    for k in ref:
        moved = float((ref[k] - ref1[k]).abs().max())  # what one epoch of updates changes
        # Float summation order differs (all-reduce, padding); the updates themselves must agree.
        assert float((two[k] - ref[k]).abs().max()) <= 0.02 * moved + 1e-6, (k, moved)
    assert "rank 1 of world size 2" in r.stderr
    assert r.stderr.count(f"2 processes x {asked} threads") == 1, r.stderr[-3000:]
    assert f"{fair_threads(asked, usable_cpus(), 2)} thread(s) per process instead" in r.stderr
    sums = re.findall(r"rank (\d): parameter checksum (\S+)", r.stderr)
    assert sorted(s[0] for s in sums) == ["0", "1"] and sums[0][1] == sums[1][1]
    assert [p.name for p in epoch_checkpoints(tmp_path / "exp")] == ["epoch-1.pt", "epoch-2.pt"]
    assert (tmp_path / "exp" / "final.pt").resolve().name == "avg-2.pt"
    # one epoch line, the whole epoch's loss (each rank logged its share's before, two different lines)
    lines = re.findall(r"epoch 1/2: train \S+ ([\d.]+)", r.stderr)
    (alone,) = (float(x) for x in re.findall(r"epoch 1/2: train \S+ ([\d.]+)", one.stderr))
    assert len(lines) == 1 and abs(float(lines[0]) - alone) <= 0.02 * alone, (lines, alone)


def _rank_gradients(rank, world, port, lang_dir, cuts_path, shares, out):
    """One DDP rank: the gradient of its share of a global batch under max_duration_scope=global."""
    import os

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    from speechtl.lang import Lang
    from speechtl.train.dist import init_distributed

    init_distributed()
    cuts = CutSet.from_file(cuts_path)
    trainer = _grad_trainer(Lang(lang_dir), out.parent / f"exp{rank}", "global")
    net = torch.nn.parallel.DistributedDataParallel(trainer.model)
    grads = _share_gradients(trainer, net, cuts.subset(cut_ids=shares[rank]))
    torch.save(grads, out.parent / f"{out.name}.{rank}")
    torch.distributed.destroy_process_group()


def _grad_trainer(lang, exp_dir, scope):
    """No dropout, and per-frame LayerNorm (BatchNorm's statistics would depend on the split)."""
    return make_trainer(
        lang,
        exp_dir,
        1,
        seed=11,
        encoder_options={"dropout": 0.0, "norm": "layer"},
        max_duration_scope=scope,
        device="cpu",
    )


def _share_gradients(trainer, net, cuts):
    from speechtl.train.data import eval_dataloader

    (batch,) = list(eval_dataloader(cuts, 1000))
    loss, _, _ = trainer._loss(batch, net, training_step=True)
    loss.backward()
    return {k: p.grad.clone() for k, p in trainer.model.named_parameters()}


def test_ddp_global_batch_gradient_equals_one_process(small_yesno, tmp_path):
    """Ranks holding unequal shares (3 and 1 utterances) of one global batch update the
    model exactly as one process does on the whole batch: the loss is normalized by
    the global batch, not by each rank's."""
    import socket

    import torch.multiprocessing as mp

    d, cuts, lang = small_yesno
    ids = [c.id for c in cuts][:4]
    cuts.subset(cut_ids=ids).to_file(tmp_path / "cuts.jsonl.gz")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "grads"
    mp.spawn(
        _rank_gradients,
        args=(2, port, d / "lang", tmp_path / "cuts.jsonl.gz", [ids[:3], ids[3:]], out),
        nprocs=2,
        join=True,
    )

    def one_process(share):
        t = _grad_trainer(lang, tmp_path / "one", "global")
        return _share_gradients(t, t.model, cuts.subset(cut_ids=share))

    expected = one_process(ids)
    first, last = one_process(ids[:3]), one_process(ids[3:])
    k = "output.weight"
    # Each rank dividing by its own batch would average the two shares' means instead.
    assert (expected[k] - (first[k] + last[k]) / 2).abs().max() > 0.05 * expected[k].abs().max()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"grads.{rank}")
        for name in expected:  # padding to different lengths moves the last frames' outputs by ~1e-6
            scale = float(expected[name].abs().max())
            torch.testing.assert_close(got[name], expected[name], rtol=1e-3, atol=1e-4 * scale)


def test_fair_threads_share_the_cpus():
    assert fair_threads(8, 8, 1) == 8  # one process keeps what it asked for
    assert fair_threads(8, 8, 2) == 4
    assert fair_threads(2, 2, 2) == 1  # the 2-core case that ran 6x slower
    assert fair_threads(1, 16, 4) == 1  # never raised above the request
    assert fair_threads(4, 2, 3) == 1  # more processes than CPUs: still one thread each


def test_a_method_with_its_own_budget_is_said(tmp_path, caplog):
    """methods.kd.train.num_steps: 600 under train.num_steps: 300 trained kd twice as long as the
    methods it was compared with, silently."""
    from speechtl.cli import warn_own_budget

    conf = tmp_path / "adapt.yaml"
    with caplog.at_level("WARNING"):
        warn_own_budget(conf, "kd", {"num_steps": 300}, {"num_steps": 300, "lr": 0.1})
        assert not caplog.text  # the same budget, another lr: fine
        warn_own_budget(conf, "kd", {"num_steps": 300}, {"num_steps": 600, "accum_grad": 2})
    assert "num_steps=600 (the conf's 300), accum_grad=2 (the conf's 1): kd trains at another budget" in caplog.text


def test_sigterm_stops_a_command_as_ctrl_c_does(small_yesno, tmp_path):
    """kill (SIGTERM) of a speechtl command ended it without a word; it now says what Ctrl-C says and
    runs the same cleanup (Slurm jobs cancelled), and the run resumes from what it wrote."""
    import signal
    import subprocess
    import time

    import yaml

    d, cuts, _ = small_yesno
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    conf = tmp_path / "train.yaml"
    model = {"encoder": "tdnn", "num_features": 23}
    conf.write_text(
        yaml.safe_dump({"model": model, "train": {"num_epochs": 500, "max_duration": 20, "num_buckets": 2}})
    )
    exp = tmp_path / "exp"
    args = ["speechtl", "train", "--config", conf, "--lang-dir", d / "lang", "--train-cuts", tmp_path / "cuts.jsonl.gz"]
    p = subprocess.Popen(
        [*map(str, args), "--exp-dir", str(exp)], env=venv_env(OMP_NUM_THREADS="1"), stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (exp / "epoch-1.pt").is_file():
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted: what was finished is kept" in err, err[-2000:]
