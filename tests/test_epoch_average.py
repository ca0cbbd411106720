"""icefall's ``--epoch N --avg K``: ``speechtl average``, ``speechtl decode --exp-dir --epoch --avg``,
results.tsv's ``checkpoint`` column and the report keeping such rows apart from the final model's."""

import shutil
import subprocess

import pytest
import torch
from conftest import REPO, venv_env

from speechtl.adapt import get_method
from speechtl.cli import main
from speechtl.errors import SpeechtlError
from speechtl.models import ModelConfig, build_model
from speechtl.score.pool_sets import pool_sets
from speechtl.score.report import choose_decoding, plot_data_efficiency, write_results_md
from speechtl.score.results import HEADER, ResultRow, read_results, update_results
from speechtl.train import TrainConfig, Trainer
from speechtl.train.checkpoint import (
    EPOCH_AVERAGE,
    average_epochs,
    config_digest,
    ensure_epoch_average,
    load_checkpoint,
    model_from_checkpoint,
)
from speechtl.train.trainer import seed_everything


@pytest.fixture(scope="module")
def trained(small_yesno, tmp_path_factory):
    """A 3-epoch scratch training that keeps every epoch (final.pt: the mean of epochs 2-3), and 4 test
    cuts: (exp dir, lang, test cuts file)."""
    _, cuts, lang = small_yesno
    root = tmp_path_factory.mktemp("epoch_average")
    exp = root / "exp" / "scratch_all"
    seed_everything(3)
    model = build_model(ModelConfig(encoder="tdnn", num_features=23), lang.vocab_size)
    cfg = TrainConfig(num_epochs=3, max_duration=20, num_buckets=2, average_last=2, keep_epochs=0, seed=3)
    Trainer(model, lang, get_method("scratch"), cfg, exp).fit(cuts)
    test_cuts = root / "test_cuts.jsonl.gz"
    cuts.subset(first=4).to_file(test_cuts)
    return exp, lang, test_cuts


def epoch_states(exp, *epochs):
    return [load_checkpoint(exp / f"epoch-{n}.pt")["model"] for n in epochs]


def test_average_is_the_mean_of_the_epochs_and_loads_as_final_does(trained, tmp_path):
    exp, _, _ = trained
    avg = average_epochs(exp, 2, 2, tmp_path / "avg.pt")
    e1, e2 = epoch_states(exp, 1, 2)
    for k, v in avg["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (e1[k] + e2[k]) / 2)
    assert not torch.equal(e1["output.weight"], e2["output.weight"]), "training must change the weights"
    final = load_checkpoint(exp / "final.pt")
    saved = load_checkpoint(tmp_path / "avg.pt")
    # final.pt's layout (model config, method, features, train config and seed, tokens), plus its own record
    assert set(saved) == set(final) | {EPOCH_AVERAGE}
    for key in ("model_config", "vocab_size", "method", "features", "train_config", "tokens"):
        assert saved[key] == final[key], key
    assert config_digest(saved) == config_digest(final)
    record = saved[EPOCH_AVERAGE]
    assert (record["epochs"], record["label"]) == ([1, 2], "epoch-2-avg-2")
    assert sorted(record["sources"]) == ["epoch-1.pt", "epoch-2.pt"]
    model_from_checkpoint(tmp_path / "avg.pt")  # builds and loads like final.pt
    # The training's own average is the same files: the same weights.
    same = average_epochs(exp, 3, 2, tmp_path / "avg3.pt")["model"]
    assert all(torch.equal(same[k], final["model"][k]) for k in same)


def test_missing_epochs_and_bad_counts_say_what_is_there(trained, tmp_path):
    exp, _, _ = trained
    kept = tmp_path / "kept"
    kept.mkdir()
    for n in (2, 3):
        shutil.copy(exp / f"epoch-{n}.pt", kept / f"epoch-{n}.pt")
    with pytest.raises(SpeechtlError) as e:
        average_epochs(kept, 3, 3, tmp_path / "a.pt")
    msg = str(e.value)
    assert f"{kept / 'epoch-1.pt'} is not there" in msg and f"{kept} has epochs 2-3" in msg
    assert "--epoch 3 --avg 2" in msg and "train.keep_epochs: 3" in msg
    with pytest.raises(SpeechtlError, match="--avg must be at least 1"):
        average_epochs(kept, 3, 0, tmp_path / "a.pt")
    with pytest.raises(SpeechtlError, match=r"starting before epoch 1\. Fix: --avg 3 or less"):
        average_epochs(kept, 3, 4, tmp_path / "a.pt")
    with pytest.raises(SpeechtlError, match=r"has no epoch-N\.pt"):
        average_epochs(tmp_path, 1, 1, tmp_path / "a.pt")
    assert not (tmp_path / "a.pt").exists()
    # The CLI: the error is one line and exit 1; a good average is written where --out says.
    assert main(["average", "--exp-dir", str(kept), "--epoch", "3", "--avg", "3", "--out", str(tmp_path / "a.pt")]) == 1
    assert main(["average", "--exp-dir", str(kept), "--epoch", "3", "--avg", "2", "--out", str(tmp_path / "a.pt")]) == 0
    assert load_checkpoint(tmp_path / "a.pt")[EPOCH_AVERAGE]["epochs"] == [2, 3]


def test_an_average_is_reused_until_its_epochs_change(trained, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(trained[0], exp, symlinks=True)
    path = ensure_epoch_average(exp, 2, 2)
    assert path == exp / "avg-epoch-2-2.pt"
    made = path.stat().st_mtime_ns
    assert ensure_epoch_average(exp, 2, 2).stat().st_mtime_ns == made  # the same files: reused
    torch.save(load_checkpoint(exp / "epoch-3.pt"), exp / "epoch-2.pt")  # a retraining rewrote epoch 2
    e1, e3 = epoch_states(exp, 1, 3)
    again = load_checkpoint(ensure_epoch_average(exp, 2, 2))["model"]
    torch.testing.assert_close(again["output.weight"], (e1["output.weight"] + e3["output.weight"]) / 2)


def decode_args(exp, lang, cuts, results, *model):
    return [
        "decode", *model, "--lang-dir", str(lang.dir), "--cuts", str(cuts), "--test-set", "test",
        "--out-dir", str(exp / "decode"), "--decoding", "greedy", "--results", str(results),
    ]  # fmt: skip


def test_decode_epoch_avg_writes_its_own_files_and_row(trained, tmp_path):
    exp = tmp_path / "exp" / "scratch_all"
    shutil.copytree(trained[0], exp, symlinks=True)
    _, lang, cuts = trained
    results = tmp_path / "exp" / "results.tsv"
    assert main(decode_args(exp, lang, cuts, results, "--checkpoint", str(exp / "final.pt"))) == 0
    final_recogs = (exp / "decode" / "recogs-test-greedy.txt").read_text()
    assert main(decode_args(exp, lang, cuts, results, "--exp-dir", str(exp), "--epoch", "2", "--avg", "2")) == 0
    dec = exp / "decode"
    for name in ("recogs-test-greedy-epoch-2-avg-2.txt", "errs-test-greedy-epoch-2-avg-2.txt",
                 "wer-summary-test-greedy-epoch-2-avg-2.txt", "utt-errs-test-greedy-epoch-2-avg-2.tsv"):  # fmt: skip
        assert (dec / name).is_file(), name
    assert (dec / "recogs-test-greedy.txt").read_text() == final_recogs  # the final model's files stay
    assert (exp / "avg-epoch-2-2.pt").is_file()
    rows = read_results(results)
    assert [(r.method, r.data, r.decoding, r.checkpoint) for r in rows] == [
        ("scratch", "all", "greedy", ""),
        ("scratch", "all", "greedy", "epoch-2-avg-2"),
    ]
    assert rows[1].utt_errs == "scratch_all/decode/utt-errs-test-greedy-epoch-2-avg-2.tsv"
    assert rows[0].seed == rows[1].seed == 3
    # Decoding the final model again replaces its own row only; --exp-dir alone is its final.pt.
    assert main(decode_args(exp, lang, cuts, results, "--exp-dir", str(exp))) == 0
    assert [r.checkpoint for r in read_results(results)] == ["", "epoch-2-avg-2"]
    # --checkpoint of the average names it too (the label travels in the file).
    assert main(decode_args(exp, lang, cuts, results, "--checkpoint", str(exp / "avg-epoch-2-2.pt"))) == 0
    assert [r.checkpoint for r in read_results(results)] == ["", "epoch-2-avg-2"]


def test_decode_refuses_mixed_options(trained, tmp_path, capsys):
    exp, lang, cuts = trained
    results = tmp_path / "results.tsv"

    def refused(*model) -> str:
        capsys.readouterr()
        assert main(decode_args(tmp_path, lang, cuts, results, *model)) == 1
        return capsys.readouterr().err

    assert f"Fix: --exp-dir {exp} instead of --checkpoint" in refused(
        "--checkpoint", str(exp / "final.pt"), "--epoch", "3"
    )
    assert "--avg K needs --epoch N" in refused("--exp-dir", str(exp), "--avg", "2")
    assert "--avg K needs --epoch N" in refused("--checkpoint", str(exp / "final.pt"), "--avg", "2")
    assert "export the average first" in refused("--onnx", str(tmp_path), "--exp-dir", str(exp), "--epoch", "3")
    assert f"{exp} has epochs 1-3" in refused("--exp-dir", str(exp), "--epoch", "5", "--avg", "2")
    assert not results.exists()


def test_steps_decode_passes_epoch_and_avg(trained, tmp_path):
    exp = tmp_path / "exp" / "scratch_3min"
    shutil.copytree(trained[0], exp, symlinks=True)
    _, lang, cuts = trained
    results = tmp_path / "results.tsv"

    def decode(*options):
        args = [*options, "--decoding", "greedy", "--results", results, exp / "final.pt", lang.dir, cuts, exp / "dec"]
        r = subprocess.run(["bash", "steps/decode.sh", *map(str, args)], cwd=REPO, env=venv_env(), capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0, r.stderr

    decode()
    decode("--epoch", "3", "--avg", "1")  # <checkpoint> a file of the exp dir: its dir
    assert [(r.data, r.checkpoint) for r in read_results(results)] == [("3min", ""), ("3min", "epoch-3-avg-1")]
    assert (exp / "dec" / "recogs-test-greedy-epoch-3-avg-1.txt").is_file()
    r = subprocess.run(["bash", "steps/decode.sh", "--help"], cwd=REPO, capture_output=True, text=True)
    assert "--epoch N --avg K" in r.stderr


def test_results_without_the_checkpoint_column_still_upsert(tmp_path):
    tsv = tmp_path / "results.tsv"
    old = ["test", "finetune", "5min", "greedy", "30.00", "30", "100", "1", "", "", "", "", "", "word", "abcd1234"]
    tsv.write_text("\t".join(HEADER[:-1]) + "\n" + "\t".join(old) + "\n")
    (row,) = read_results(tsv)
    assert row.checkpoint == "" and row.config == "abcd1234"
    final = ResultRow("test", "finetune", "5min", "greedy", 20.0, 20, 100, seed=1)
    averaged = ResultRow("test", "finetune", "5min", "greedy", 25.0, 25, 100, seed=1, checkpoint="epoch-30-avg-10")
    update_results(tsv, [final, averaged])
    assert [(r.wer, r.checkpoint) for r in read_results(tsv)] == [(20.0, ""), (25.0, "epoch-30-avg-10")]
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t") == HEADER and HEADER[-1] == "checkpoint"
    assert lines[2].split("\t")[-1] == "epoch-30-avg-10"


def test_report_keeps_epoch_averages_apart(tmp_path):
    tsv = tmp_path / "results.tsv"
    rows = [ResultRow(t, "finetune", "5min", d, w, int(w), 100, seed=s) for t in ("dev", "test")
            for d, w in (("greedy", 30.0), ("hlg", 20.0)) for s in (1, 2)]  # fmt: skip
    # An epoch average of seed 1, far off: a seed of the cell it would move the mean and the plot's choice.
    rows += [ResultRow(t, "finetune", "5min", d, w, int(w), 100, seed=1, checkpoint="epoch-30-avg-10")
             for t in ("dev", "test") for d, w in (("greedy", 0.0), ("hlg", 90.0))]  # fmt: skip
    rows += [ResultRow("test", "scratch", "5min", "hlg", 50.0, 50, 100, seed=1)]
    update_results(tsv, rows)
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    assert "| finetune | 5min | 30.00 ± 0.00 (n=2) | 20.00 ± 0.00 (n=2) |" in md
    assert "| finetune (epoch-30-avg-10) | 5min | 0.00 (0/100) | 90.00 (90/100) |" in md
    assert choose_decoding(tsv, "dev") == "hlg"  # chosen on final models: greedy would win with the average
    only_averages = tmp_path / "averages.tsv"
    update_results(only_averages, [r for r in rows if r.checkpoint])
    assert plot_data_efficiency(only_averages, tmp_path / "p.png", "test", "hlg") is None
    assert plot_data_efficiency(tsv, tmp_path / "p.png", "test", "hlg") is not None


def test_pooled_sets_keep_checkpoints_apart(tmp_path):
    tsv = tmp_path / "results.tsv"
    rows = [
        ResultRow(t, "finetune", "5min", "hlg", 10.0 * e, e, 10, seed=1, checkpoint=c)
        for t in ("test_a", "test_b")
        for c, e in (("", 1), ("epoch-30-avg-10", 3))
    ]
    update_results(tsv, rows)
    pooled = pool_sets(tsv, ["test_a", "test_b"], "test_loso_mean")
    assert sorted((r.checkpoint, r.errors) for r in pooled) == [("", 2), ("epoch-30-avg-10", 6)]


def test_an_exported_epoch_average_keeps_its_label(trained, tmp_path):
    """The ONNX export of an epoch average: its sherpa-onnx rows said checkpoint '' and replaced the
    final model's onnx rows; the label now travels in the model's metadata."""
    from speechtl.export.onnx import ExportConfig, export_onnx
    from speechtl.export.sherpa import decode_onnx_test_set

    exp, lang, test_cuts = trained
    results = tmp_path / "results.tsv"
    for ckpt, onnx_dir in ((exp / "final.pt", tmp_path / "onnx"), (tmp_path / "avg.pt", tmp_path / "onnx_avg")):
        if ckpt.name == "avg.pt":
            average_epochs(exp, 2, 2, ckpt)
        export_onnx(ckpt, lang.dir, onnx_dir, ExportConfig(int8=False))
        decode_onnx_test_set(onnx_dir, test_cuts, "test", onnx_dir / "decode", ["onnx-greedy"], results_tsv=results)
    rows = read_results(results)
    assert sorted(r.checkpoint for r in rows) == ["", "epoch-2-avg-2"]
    assert (tmp_path / "onnx_avg" / "decode" / "recogs-test-onnx-greedy-epoch-2-avg-2.txt").is_file()
