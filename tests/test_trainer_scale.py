"""Training that fits a small machine and scales past it: the NaN policy, gradient
accumulation, activation checkpointing, AMP, time/memory logging, and DDP across
(stand-in) nodes through a c10d rendezvous."""

import copy
import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import venv_env
from lhotse import CutSet, NumpyFilesWriter
from lhotse.utils import fastcopy

from speechtl.adapt import get_method
from speechtl.errors import SpeechtlError
from speechtl.models import ModelConfig, build_model
from speechtl.train import TrainConfig, Trainer
from speechtl.train.activation_checkpointing import enable_activation_checkpointing
from speechtl.train.checkpoint import load_checkpoint
from speechtl.train.data import eval_dataloader, seed_everything
from speechtl.train.precision import make_precision
from speechtl.train.resume import Position


def trainer_for(lang, exp_dir, seed=3, encoder="tdnn", encoder_options=None, **train_options) -> Trainer:
    seed_everything(seed)
    model = build_model(
        ModelConfig(encoder=encoder, num_features=23, encoder_options=encoder_options or {}), lang.vocab_size
    )
    options = dict(num_epochs=1, max_duration=7, num_buckets=2, average_last=1, seed=seed, log_interval=1)
    return Trainer(model, lang, get_method("scratch"), TrainConfig(**{**options, **train_options}), exp_dir)


def poisoned(cuts: CutSet, ids: set[str], out_dir: Path) -> CutSet:
    """``cuts`` with NaN in a frame of the features of ``ids`` (as a broken recording gives)."""
    out = []
    with NumpyFilesWriter(out_dir) as w:
        for c in cuts:
            if c.id in ids:
                f = c.load_features().copy()
                f[len(f) // 2] = np.nan
                key = w.write(c.id, f)
                c = fastcopy(
                    c, features=fastcopy(c.features, storage_type=w.name, storage_path=str(out_dir), storage_key=key)
                )
            out.append(c)
    return CutSet.from_cuts(out)


def all_finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_a_nan_batch_is_skipped_and_named(small_yesno, tmp_path, caplog):
    _, cuts, lang = small_yesno
    bad = cuts[2].id
    data = poisoned(cuts, {bad}, tmp_path / "feats")
    trainer = trainer_for(lang, tmp_path / "exp")  # BatchNorm: a NaN batch must not reach its running stats
    with caplog.at_level(logging.WARNING):
        trainer.fit(data)
    assert re.search(rf"non-finite loss on cuts [^:]*{bad}.*skipped \(no update\)", caplog.text), caplog.text
    ckpt = load_checkpoint(tmp_path / "exp" / "epoch-1.pt")
    assert all_finite(ckpt["model"])
    batches = ckpt["position"]["batches_total"]
    assert batches >= 4
    adam_steps = {int(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    assert adam_steps == {batches - 1}, "every batch but the NaN one made an update"
    assert ckpt["position"]["step"] == batches - 1


def test_nan_batches_in_a_row_stop_with_an_error(small_yesno, tmp_path):
    _, cuts, lang = small_yesno
    data = poisoned(cuts, {c.id for c in cuts}, tmp_path / "feats")
    trainer = trainer_for(lang, tmp_path / "exp", max_bad_batches=3)
    with pytest.raises(SpeechtlError, match=r"3 updates in a row had a non-finite loss.*Fix: lower train.lr"):
        trainer.fit(data)
    assert not (tmp_path / "exp" / "epoch-1.pt").exists(), "no checkpoint of a NaN model"


def _one_update(lang, cuts, groups, tmp_path) -> dict[str, torch.Tensor]:
    """The weights after one SGD update over ``groups`` (lists of cut ids), one batch each."""
    trainer = trainer_for(
        lang,
        tmp_path,
        seed=5,
        encoder_options={"dropout": 0.0, "norm": "layer"},  # per-frame norm: batches' make-up does not matter
        optimizer="sgd",
        grad_clip=0.0,
        accum_grad=len(groups),
    )
    model = trainer.model
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    state = {
        "optimizer": optimizer,
        "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
        "extra": None,
        "precision": make_precision("none", torch.device("cpu")),
        "total_steps": 1,
    }
    batches = [next(iter(eval_dataloader(cuts.subset(cut_ids=ids), 1000))) for ids in groups]
    assert trainer._update(batches, [{} for _ in batches], state, list(model.parameters()), Position()) is not None
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_accumulating_k_batches_makes_the_update_of_one_batch_of_all(small_yesno, tmp_path):
    _, cuts, lang = small_yesno
    ids = [c.id for c in cuts][:4]
    seed_everything(5)
    start = {
        k: v.detach().clone()
        for k, v in build_model(
            ModelConfig(encoder="tdnn", num_features=23, encoder_options={"dropout": 0.0, "norm": "layer"}),
            lang.vocab_size,
        ).named_parameters()
    }
    big = _one_update(lang, cuts, [ids], tmp_path / "big")
    accumulated = _one_update(lang, cuts, [ids[:3], ids[3:]], tmp_path / "acc")  # unequal: 3 and 1 utterances
    first, last = _one_update(lang, cuts, [ids[:3]], tmp_path / "a"), _one_update(lang, cuts, [ids[3:]], tmp_path / "b")
    k = "output.weight"
    # Averaging the two batches' own means (dividing by k) is a different update here.
    mean_of_means = (first[k] + last[k]) / 2 - start[k]
    assert (mean_of_means - (big[k] - start[k])).abs().max() > 0.05 * (big[k] - start[k]).abs().max()
    for name in big:
        scale = float((big[name] - start[name]).abs().max())
        # fp32 conv backward sums frames in an order that depends on the batch's shape and the
        # thread count: 1e-5 of the largest update was exceeded by 3 of 2208 weights at 2 threads.
        # 1e-4 is still 500 times below the mean-of-means gap asserted above.
        torch.testing.assert_close(
            accumulated[name] - start[name], big[name] - start[name], rtol=1e-4, atol=1e-4 * scale
        )


def _grads_and_stats(model, feats, lengths):
    torch.manual_seed(7)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        log_probs, _ = model(feats, lengths)
    (log_probs.logsumexp(-1).sum() + log_probs[..., 1].sum()).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return grads, {k: v.clone() for k, v in model.state_dict().items() if "running" in k}, sum(saved)


WHISPER_TINY = {"d_model": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "num_mels": 23, "max_positions": 64}


@pytest.mark.parametrize(
    "encoder,options",
    [
        ("conformer", {"d_model": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 3, "dropout": 0.2}),
        ("tdnn", {"hidden_dim": 32, "dropout": 0.2, "norm": "batch"}),
        ("whisper", {**WHISPER_TINY, "dropout": 0.2, "attention_dropout": 0.2}),
    ],
)
def test_activation_checkpointing_gives_the_same_gradients(encoder, options):
    """Dropout draws are replayed in the recomputation and BatchNorm's running statistics
    move once, so gradients and buffers equal those without checkpointing, with fewer
    activations kept for backward."""
    torch.manual_seed(0)
    plain = build_model(ModelConfig(encoder=encoder, num_features=23, encoder_options=options), 6)
    ckpt = copy.deepcopy(plain)
    assert enable_activation_checkpointing(ckpt) == len(ckpt.encoder.layers)
    plain.train()
    ckpt.train()
    feats, lengths = torch.randn(3, 80, 23), torch.tensor([80, 61, 40])
    g1, s1, kept1 = _grads_and_stats(plain, feats, lengths)
    g2, s2, kept2 = _grads_and_stats(ckpt, feats, lengths)
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-5, atol=1e-7)
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert kept2 < 0.7 * kept1, (kept1, kept2)
    assert ckpt.state_dict().keys() == plain.state_dict().keys(), "checkpoints keep their parameter names"


def test_activation_checkpointing_names_the_encoder_contract():
    model = build_model(ModelConfig(encoder="lstm", num_features=23), 6)
    with pytest.raises(SpeechtlError, match=r"exposes no `layers` ModuleList.*activation_checkpointing: false"):
        enable_activation_checkpointing(model)


def test_checkpointed_training_logs_time_and_memory_and_trains_the_same(small_yesno, tmp_path, caplog):
    _, cuts, lang = small_yesno
    opts = {"hidden_dim": 32, "dropout": 0.2}
    with caplog.at_level(logging.INFO):
        a = trainer_for(lang, tmp_path / "a", encoder_options=opts, activation_checkpointing=True, amp="bf16").fit(cuts)
    assert "activation checkpointing: 3 encoder layers" in caplog.text
    assert "amp: bf16 asked for, but training runs on cpu: full precision" in caplog.text
    log = (tmp_path / "a" / "log" / "log-train.txt").read_text()
    assert re.search(r"epoch 1 batch \d+/\d+ ctc/frame .* \(\d+\.\d+ s/update, peak \d+ MiB max rss\)", log), log
    assert re.search(r"epoch 1/1: train .* s/update, peak \d+ MiB", log), log
    b = trainer_for(lang, tmp_path / "b", encoder_options=opts).fit(cuts)
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    for k in wb:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6)


def test_bad_scale_options_are_named(small_yesno, tmp_path):
    _, _, lang = small_yesno
    with pytest.raises(SpeechtlError, match=r"train\.amp must be one of none, bf16, fp16"):
        trainer_for(lang, tmp_path, amp="fp8")
    with pytest.raises(SpeechtlError, match=r"train\.accum_grad must be 1 or more"):
        trainer_for(lang, tmp_path, accum_grad=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_agents_as_two_nodes_end_with_equal_weights(small_yesno, tmp_path):
    """The command a multi-node Slurm job runs on each node, here twice on one machine:
    two agents meet in a c10d rendezvous; a NaN cut on one rank skips the update on both."""
    from speechtl.cluster.launch import torchrun_argv

    d, cuts, _ = small_yesno
    bad = cuts[5].id
    poisoned(cuts, {bad}, tmp_path / "feats").to_file(tmp_path / "cuts.jsonl.gz")
    conf = tmp_path / "train.yaml"
    conf.write_text(
        "model: {encoder: tdnn, num_features: 23, encoder_options: {hidden_dim: 16, dropout: 0.0, norm: layer}}\n"
        "train: {num_epochs: 2, max_duration: 15, max_duration_scope: global, num_buckets: 2,\n"
        "        optimizer: sgd, lr: 0.5, average_last: 1, accum_grad: 2}\n"
    )
    program = ["train", "--config", str(conf), "--lang-dir", str(d / "lang")]
    program += ["--train-cuts", str(tmp_path / "cuts.jsonl.gz"), "--exp-dir", str(tmp_path / "exp")]
    argv = torchrun_argv(program, nproc=1, nnodes=2, endpoint=f"localhost:{_free_port()}", run_id="two-nodes")
    rendezvous = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", argv[8], "--rdzv-id", "two-nodes"]
    assert argv == ["torchrun", "--nproc-per-node", "1", *rendezvous, "-m", "speechtl.cli", *program]
    env = venv_env(OMP_NUM_THREADS="1")
    agents = [subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for p in agents:
        try:
            outs.append(p.communicate(timeout=300)[1])
        finally:
            p.kill()
    assert [p.returncode for p in agents] == [0, 0], "\n".join(o[-2000:] for o in outs)
    out = "".join(outs)
    assert "rank 1 of world size 2" in out and "rank 0 of world size 2" in out
    sums = re.findall(r"rank (\d): parameter checksum (\S+)", out)
    assert sorted(r for r, _ in sums) == ["0", "1"] and sums[0][1] == sums[1][1], sums
    named = re.findall(rf"rank (\d): epoch (\d) batch \d+: non-finite loss on cuts [^:]*{bad}", out)
    assert len(named) == 2 and len({r for r, _ in named}) == 1, named  # once an epoch, by the rank holding it
    two = load_checkpoint(tmp_path / "exp" / "epoch-2.pt")["model"]
    assert all_finite(two)
    # One process on the same global batches (accumulated, the NaN one skipped) makes the same updates.
    one_cmd = [sys.executable, "-m", "speechtl.cli", *program[:-1], str(tmp_path / "one")]
    r = subprocess.run(one_cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    one, one1 = (load_checkpoint(tmp_path / "one" / f"epoch-{n}.pt")["model"] for n in (2, 1))
    for k in one:
        moved = float((one[k] - one1[k]).abs().max())  # what an epoch of updates changes
        assert float((two[k] - one[k]).abs().max()) <= 0.02 * moved + 1e-6, (k, moved)


def test_multinode_slurm_job_runs_one_agent_per_node(tmp_path, monkeypatch):
    """What ``--cmd "slurm --nodes 2 ..."`` generates: a batch script with one task per
    node started by srun, and on each node a torchrun agent at the job's rendezvous."""
    from speechtl.cluster import get_executor, launch

    train = ["train", "--config", "c.yaml", "--exp-dir", "exp"]
    assert launch.split_launcher(["speechtl", *train]) == (train, 1)
    standalone = ["torchrun", "--standalone", "--nproc-per-node", "4", "-m", "speechtl.cli", *train]
    assert launch.split_launcher(standalone) == (train, 4)
    with pytest.raises(SpeechtlError, match="a job across nodes runs"):
        launch.split_launcher(["python", "train.py"])

    calls = []
    monkeypatch.setattr(launch, "run_command", lambda argv, cwd: calls.append(argv) or 0)
    monkeypatch.setattr(
        launch.subprocess,
        "run",
        lambda argv, **kw: subprocess.CompletedProcess(argv, 0, stdout="gpu07\ngpu08\n", stderr=""),
    )
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    launch.run_torchrun_node(train, 4, 2, str(tmp_path))
    port = launch.RDZV_PORT_BASE + 4242 % launch.RDZV_PORT_SPAN
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"gpu07:{port}", "--rdzv-id", "4242"]
    assert calls == [["torchrun", "--nproc-per-node", "4", "--nnodes", "2", *rendezvous, "-m", "speechtl.cli", *train]]

    submitit = pytest.importorskip("submitit")
    ex = get_executor("slurm --nodes 2 --cpus 4 --gpus 1 --time 30", 1, tmp_path / "log", "train")
    params = ex.parameters()
    assert params["nodes"] == 2 and params["tasks_per_node"] == 1
    auto = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="slurm")
    auto.update_parameters(**params)
    script = auto._executor._make_submission_file_text("python -m submitit.core._submit X", "uid")
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=1"):
        assert line in script, script
    assert re.search(r"^srun .*python -m submitit", script, re.M), script
