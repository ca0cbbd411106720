"""speechtl sweep: options searched on dev at one budget, written into the conf; test never decoded."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from lhotse import CutSet
from test_whisper import tiny_whisper_dir  # noqa: F401  (fixture)

from speechtl.adapt.sweep import (
    Candidate,
    Trial,
    best_trial,
    budget_of,
    candidates,
    load_space,
    parse_space,
    refresh_tuned_config,
    tuned_methods,
    write_tuned_config,
)
from speechtl.errors import SpeechtlError


def sweep_inputs(small_yesno, tmp_path: Path, conf_text: str, dev_last: int = 6):
    """train.jsonl.gz (small_yesno's 8 cuts), dev.jsonl.gz (the last ``dev_last`` training cuts) and
    adapt.yaml (``conf_text``) under ``tmp_path``: (the conf, the Lang)."""
    d, cuts, lang = small_yesno
    cuts.to_file(tmp_path / "train.jsonl.gz")
    CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz").subset(last=dev_last).to_file(tmp_path / "dev.jsonl.gz")
    conf = tmp_path / "adapt.yaml"
    conf.write_text(conf_text)
    return conf, lang


def test_space_and_candidates():
    space = parse_space(["train.lr=0.001,0.003", "option.bottom_layers=1,2,3"])
    assert space == {"train.lr": [0.001, 0.003], "option.bottom_layers": [1, 2, 3]}
    grid = candidates(space)
    assert len(grid) == 6 and grid[0] == Candidate({"bottom_layers": 1}, {"lr": 0.001})
    drawn = candidates(space, trials=3, seed=1)
    assert len(drawn) == 3 == len({c.describe() for c in drawn}) and all(c in grid for c in drawn)
    assert drawn == candidates(space, trials=3, seed=1), "the same seed draws the same candidates"
    assert any(candidates(space, trials=3, seed=s) != drawn for s in range(2, 6))
    assert candidates(space, trials=10) == grid  # more trials than points: the grid
    with_model = candidates(parse_space(["model.layer_mix=false,true", "train.lr=0.1"]))
    assert with_model[1] == Candidate({}, {"lr": 0.1}, {"layer_mix": True})
    assert with_model[1].describe() == "train.lr=0.1 model.layer_mix=True"
    for bad, match in [
        ("lr=0.1", "train.KEY, option.KEY or model.KEY"),
        ("net.dim=3", "train.KEY, option.KEY or model.KEY"),
        ("model.mix=false,true", "model.mix is no model option. Fix: one of .*model.layer_mix"),
        ("train.lr", "train.KEY=V1,V2"),
        ("train.num_steps=10,20", "budget"),
        ("train.seed=1,2", "seeds"),
    ]:
        with pytest.raises(SpeechtlError, match=match):
            parse_space([bad])


def test_space_file(tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text("freeze: {option.bottom_layers: [1, 2], train.lr: [0.002]}\nbad: {train.seed: [1, 2]}\n")
    space = parse_space(["train.weight_decay=0,0.01"], load_space(f, "freeze"))
    assert space == {"option.bottom_layers": [1, 2], "train.lr": [0.002], "train.weight_decay": [0, 0.01]}
    with pytest.raises(SpeechtlError, match="no search space for lora"):
        load_space(f, "lora")
    with pytest.raises(SpeechtlError, match="not searched"):
        load_space(f, "bad")
    with pytest.raises(SpeechtlError, match="twice"):
        parse_space(["train.lr=0.1"], space)


def test_best_is_lowest_dev_wer_and_ties_go_first():
    def t(i, wer):
        return Trial(i, Candidate(), wer, 0, 10, Path("."))

    assert best_trial([t(0, 30.0), t(1, 12.5), t(2, 20.0)]).index == 1
    assert best_trial([t(0, 20.0), t(1, 10.0), t(2, 10.0)]).index == 1


def test_budget_is_the_same_for_every_method(tmp_path):
    conf = {"train": {"num_steps": 150}, "methods": {"freeze": {"train": {"num_steps": 300}}}}
    assert budget_of(conf, "finetune", None, tmp_path) == 150 and budget_of(conf, "finetune", 40, tmp_path) == 40
    with pytest.raises(SpeechtlError, match="not the budget"):
        budget_of(conf, "freeze", None, tmp_path)
    with pytest.raises(SpeechtlError, match="no compute budget"):
        budget_of({"train": {"num_epochs": 3}}, "finetune", None, tmp_path)


def test_tuned_conf_follows_its_base_and_keeps_only_fresh_choices(tmp_path):
    """The tuned conf is rebuilt from the base: an edit of the base reaches it, a chosen option
    survives the edit of another method, and a dropped (stale) choice falls back to the base's."""
    base, out = tmp_path / "adapt.yaml", tmp_path / "tuned.yaml"
    base.write_text("train: {num_steps: 100, lr: 0.001}\nmethods:\n  finetune: {}\n  dann: {options: {weight: 0.1}}\n")
    write_tuned_config(base, out, "finetune", Candidate({}, {"lr": 0.004}), 100, "lr 0.004 on dev")
    write_tuned_config(base, out, "dann", Candidate({"weight": 0.3}, {}), 100, "weight 0.3 on dev")
    assert tuned_methods(out) == ["finetune", "dann"]
    base.write_text(
        "# a comment\ntrain: {num_steps: 100, lr: 0.001, warmup_steps: 7}\nmethods:\n  finetune: {}\n"
        "  dann: {options: {weight: 0.1}}\n  coral: {options: {weight: 3.0}}\n"
    )
    refresh_tuned_config(base, out)
    conf = yaml.safe_load(out.read_text())
    assert conf["train"]["warmup_steps"] == 7 and conf["methods"]["coral"] == {"options": {"weight": 3.0}}
    assert (
        conf["methods"]["finetune"] == {"train": {"lr": 0.004}} and conf["methods"]["dann"]["options"]["weight"] == 0.3
    )
    refresh_tuned_config(base, out, drop=["dann"])
    conf = yaml.safe_load(out.read_text())
    assert tuned_methods(out) == ["finetune"] and conf["methods"]["dann"] == {"options": {"weight": 0.1}}
    assert conf["methods"]["finetune"] == {"train": {"lr": 0.004}}
    write_tuned_config(base, out, "dann", Candidate({"weight": 0.1}, {"lr": 0.001}), 100, "the conf's own on dev")
    assert yaml.safe_load(out.read_text())["methods"]["dann"] == {"options": {"weight": 0.1}}  # as it was: same key
    fresh = tmp_path / "new.yaml"
    refresh_tuned_config(base, fresh)  # no tuned conf yet: the base's content
    assert yaml.safe_load(fresh.read_text()) == yaml.safe_load(base.read_text()) and tuned_methods(fresh) == []


def test_sweep_tunes_on_dev_and_writes_the_conf(small_yesno, tmp_path):
    from speechtl.cli import main

    d, cuts, lang = small_yesno
    cuts.to_file(tmp_path / "train.jsonl.gz")
    dev = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz").subset(last=6)
    dev.to_file(tmp_path / "dev.jsonl.gz")
    conf = tmp_path / "adapt.yaml"
    conf.write_text(
        "# the recipe's conf\n"
        "model: {encoder: tdnn, num_features: 23, encoder_options: {hidden_dim: 16}}\n"
        "train: {num_steps: 3, max_duration: 20, num_buckets: 2, average_last: 1, lr: 0.01}\n"
        "methods:\n  scratch: {train: {warmup_steps: 1}}\n  finetune: {}\n"
    )
    out = tmp_path / "tuned.yaml"
    argv = ["sweep", "--config", str(conf), "--method", "scratch", "--lang-dir", str(lang.dir)]
    argv += ["--train-cuts", str(tmp_path / "train.jsonl.gz"), "--dev-cuts", str(tmp_path / "dev.jsonl.gz")]
    argv += ["--space", "train.lr=0.0001,0.05", "--space", "train.weight_decay=0.0,0.1", "--trials", "3"]
    assert main([*argv, "--exp-dir", str(tmp_path / "sweep"), "--output", str(out), "--num-steps", "4"]) == 0

    with open(tmp_path / "sweep" / "sweep.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 3 and all(float(r["dev_wer"]) >= 0 and int(r["words"]) > 0 for r in rows)
    best = min(rows, key=lambda r: (float(r["dev_wer"]), int(r["trial"])))
    tuned = yaml.safe_load(out.read_text())
    assert tuned["methods"]["scratch"]["train"] == {"warmup_steps": 1, **json.loads(best["train"])}
    assert tuned["model"] == yaml.safe_load(conf.read_text())["model"] and "finetune" in tuned["methods"]
    assert out.read_text().startswith("# sweep: scratch: ") and tuned["train"]["num_steps"] == 4  # the budget
    for trial in sorted((tmp_path / "sweep").glob("trial-*")):
        ckpt = torch.load(trial / "final.pt", weights_only=False)
        assert ckpt["train_config"]["num_steps"] == 4  # the budget, for every candidate
        # scored, never trained on again: only the model it was scored with is kept
        assert [p.name for p in trial.glob("*.pt") if not p.is_symlink()] == [(trial / "final.pt").resolve().name]
        decoded = {p.name for p in (trial / "decode").iterdir() if p.is_file()}
        assert decoded and all("-dev-" in n for n in decoded), decoded  # dev only: no test set
    # The tuned conf is what the recipe trains with: cmd_train accepts it.
    assert main(["train", "--config", str(out), "--method", "scratch", "--lang-dir", str(lang.dir), "--train-cuts", str(tmp_path / "train.jsonl.gz"), "--exp-dir", str(tmp_path / "final"), "--set", "num_steps=1"]) == 0  # fmt: skip

    # A finished trial is reused by the same sweep, and trained again once the conf it read
    # changed under the same path (the method's options here; another method's would not count).
    trained = {t: (t / "final.pt").stat().st_mtime_ns for t in (tmp_path / "sweep").glob("trial-*")}
    assert main([*argv, "--exp-dir", str(tmp_path / "sweep"), "--output", str(out), "--num-steps", "4"]) == 0
    assert {t: (t / "final.pt").stat().st_mtime_ns for t in trained} == trained
    # The same bytes with new times (a copy, a re-provisioned share) are the same input.
    for f in (tmp_path / "train.jsonl.gz", tmp_path / "dev.jsonl.gz", lang.dir / "tokens.txt"):
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns + 10**9, st.st_mtime_ns + 10**9))
    assert main([*argv, "--exp-dir", str(tmp_path / "sweep"), "--output", str(out), "--num-steps", "4"]) == 0
    assert {t: (t / "final.pt").stat().st_mtime_ns for t in trained} == trained
    conf.write_text(conf.read_text().replace("  finetune: {}\n", "  finetune: {train: {lr: 0.5}}\n"))
    assert main([*argv, "--exp-dir", str(tmp_path / "sweep"), "--output", str(out), "--num-steps", "4"]) == 0
    assert {t: (t / "final.pt").stat().st_mtime_ns for t in trained} == trained
    conf.write_text(
        conf.read_text().replace("scratch: {train: {warmup_steps: 1}}", "scratch: {train: {warmup_steps: 2}}")
    )
    assert main([*argv, "--exp-dir", str(tmp_path / "sweep"), "--output", str(out), "--num-steps", "4"]) == 0
    assert all((t / "final.pt").stat().st_mtime_ns != m for t, m in trained.items())


def test_a_candidate_the_model_cannot_take_is_left_out_not_fatal(small_yesno, tmp_path, capsys):
    """A grid's impossible value (freeze bottom_layers 3 on a 2-layer model) stopped the whole tune
    after the trials before it; it is now left out of the choice, said with the fix, and only a grid
    where nothing runs stops."""
    from speechtl.cli import main

    d, cuts, lang = small_yesno
    cuts.to_file(tmp_path / "train.jsonl.gz")
    CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz").subset(last=4).to_file(tmp_path / "dev.jsonl.gz")
    conf = tmp_path / "adapt.yaml"
    conf.write_text(
        "model: {encoder: tdnn, num_features: 23, encoder_options: {hidden_dim: 16}}\n"
        "train: {num_steps: 2, max_duration: 20, num_buckets: 2, average_last: 1, lr: 0.01}\n"
        "methods:\n  scratch: {}\n"
    )
    argv = ["sweep", "--config", str(conf), "--method", "scratch", "--lang-dir", str(lang.dir)]
    argv += ["--train-cuts", str(tmp_path / "train.jsonl.gz"), "--dev-cuts", str(tmp_path / "dev.jsonl.gz")]
    argv += ["--exp-dir", str(tmp_path / "sweep"), "--output", str(tmp_path / "tuned.yaml")]
    assert main([*argv, "--space", "train.optimizer=nosuch,adam"]) == 0
    assert "trial 0 (train.optimizer=nosuch) cannot run and is left out of the choice" in capsys.readouterr().err
    tuned = tmp_path / "tuned.yaml"
    assert yaml.safe_load(tuned.read_text())["methods"]["scratch"]["train"]["optimizer"] == "adam"
    assert "1 more could not run: train.optimizer=nosuch" in tuned.read_text()
    assert main([*argv, "--space", "train.optimizer=nosuch,other"]) == 1  # nothing ran: an error, said


def test_a_model_option_is_swept_and_written_into_the_methods_own_entry(
    small_yesno,
    tiny_whisper_dir,  # noqa: F811
    tmp_path,
    capsys,
):
    """model.layer_mix=false,true: each candidate trains with it (--model), the choice goes into
    methods.<m>.model of the tuned conf (not when it is the default), and the recipe's training reads it."""
    from speechtl.cli import main
    from speechtl.train.checkpoint import load_checkpoint

    conf, lang = sweep_inputs(
        small_yesno,
        tmp_path,
        "train: {num_steps: 2, max_duration: 20, num_buckets: 2, average_last: 1, lr: 0.01}\nmethods:\n  linear-probe: {}\n",
        dev_last=3,
    )
    out = tmp_path / "tuned.yaml"
    argv = ["sweep", "--config", str(conf), "--method", "linear-probe", "--lang-dir", str(lang.dir)]
    argv += ["--train-cuts", str(tmp_path / "train.jsonl.gz"), "--dev-cuts", str(tmp_path / "dev.jsonl.gz")]
    argv += ["--source-checkpoint", f"whisper:{tiny_whisper_dir}", "--space", "model.layer_mix=false,true"]
    assert main([*argv, "--exp-dir", str(tmp_path / "sweep"), "--output", str(out)]) == 0
    trials = sorted((tmp_path / "sweep").glob("trial-*"))
    assert [load_checkpoint(t / "final.pt")["model_config"]["layer_mix"] for t in trials] == [False, True]
    with open(tmp_path / "sweep" / "sweep.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    chosen = json.loads(min(rows, key=lambda r: (float(r["dev_wer"]), int(r["trial"])))["model"])["layer_mix"]
    entry = yaml.safe_load(out.read_text())["methods"]["linear-probe"]
    assert entry.get("model") == ({"layer_mix": True} if chosen else None)
    for tuned, want in [(out, chosen), (conf, False)]:
        exp = tmp_path / f"final-{tuned.stem}"
        argv = ["train", "--config", str(tuned), "--method", "linear-probe", "--lang-dir", str(lang.dir)]
        argv += ["--train-cuts", str(tmp_path / "train.jsonl.gz"), "--exp-dir", str(exp)]
        assert main([*argv, "--source-checkpoint", f"whisper:{tiny_whisper_dir}", "--set", "num_steps=1"]) == 0
        assert load_checkpoint(exp / "final.pt")["model_config"]["layer_mix"] is want
    conf.write_text(conf.read_text().replace("linear-probe: {}", "linear-probe: {model: {layer_mix: true}}"))
    exp = tmp_path / "final-own-entry"
    argv = ["train", "--config", str(conf), "--method", "linear-probe", "--lang-dir", str(lang.dir)]
    argv += ["--train-cuts", str(tmp_path / "train.jsonl.gz"), "--exp-dir", str(exp)]
    assert main([*argv, "--source-checkpoint", f"whisper:{tiny_whisper_dir}", "--set", "num_steps=1"]) == 0
    assert load_checkpoint(exp / "final.pt")["model_config"]["layer_mix"] is True
    conf.write_text(conf.read_text().replace("{model: {layer_mix: true}}", "{model: true}"))
    argv[argv.index(str(exp))] = str(tmp_path / "never")
    assert main([*argv, "--source-checkpoint", f"whisper:{tiny_whisper_dir}"]) == 1
    assert "adapt.yaml [methods.linear-probe]: model must be mappings" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_flags_read_back_as_the_values_they_were():
    from speechtl.adapt.sweep import _flag

    for v in (5e-05, 1e-3, 0.0005, 2.5e10, 3, True, "x", [1e-05, 2], None):
        assert yaml.safe_load(_flag(v)) == v, (v, _flag(v))
        assert type(yaml.safe_load(_flag(v))) is type(v)


def test_train_seeds_score_every_candidate_over_each_seed(small_yesno, tmp_path):
    from speechtl.cli import main

    conf, lang = sweep_inputs(
        small_yesno,
        tmp_path,
        "model: {encoder: tdnn, num_features: 23, encoder_options: {hidden_dim: 16}}\n"
        "train: {num_steps: 3, max_duration: 20, num_buckets: 2, average_last: 1, lr: 0.01, seed: 9}\n"
        "methods: {scratch: {}}\n",
    )
    out = tmp_path / "tuned.yaml"
    argv = [
        "sweep",
        "--config",
        str(conf),
        "--method",
        "scratch",
        "--lang-dir",
        str(lang.dir),
        "--space",
        "train.lr=0.01,0.05",
    ]
    argv += ["--train-cuts", str(tmp_path / "train.jsonl.gz"), "--dev-cuts", str(tmp_path / "dev.jsonl.gz")]
    argv += ["--train-seeds", "1", "2", "--exp-dir", str(tmp_path / "sweep"), "--output", str(out)]
    assert main(argv) == 0
    with open(tmp_path / "sweep" / "sweep.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    one_dev = sum(len(c.supervisions[0].text.split()) for c in CutSet.from_file(tmp_path / "dev.jsonl.gz"))
    assert len(rows) == 2 and {int(r["words"]) for r in rows} == {2 * one_dev}  # errors over both seeds
    for trial in ("trial-00", "trial-01"):
        seeds = [torch.load(tmp_path / "sweep" / trial / f"seed-{s}" / "final.pt", weights_only=False) for s in (1, 2)]
        assert [c["train_config"]["seed"] for c in seeds] == [1, 2]  # not the conf's 9
        assert not torch.equal(seeds[0]["model"]["output.weight"], seeds[1]["model"]["output.weight"])
    assert "x 2 training seeds" in out.read_text()


def test_a_methods_conf_key_follows_only_what_it_reads(tmp_path):
    from speechtl.config import load_yaml, method_digest

    base = (
        "# a comment\ntrain: {lr: 0.001, num_steps: 10}\nmethods:\n  finetune: {}\n  dann: {options: {weight: 0.1}}\n"
    )
    variants = {
        "comment": base.replace("# a comment", "# another comment"),
        "other method": base.replace("weight: 0.1", "weight: 0.3"),
        "own method": base.replace("finetune: {}", "finetune: {train: {lr: 0.002}}"),
        "train": base.replace("lr: 0.001", "lr: 0.004"),
    }
    digest = {}
    for name, text in {"base": base, **variants}.items():
        (tmp_path / f"{name}.yaml").write_text(text)
        digest[name] = method_digest(load_yaml(tmp_path / f"{name}.yaml"), "finetune")
    assert digest["comment"] == digest["other method"] == digest["base"]
    assert len({digest["base"], digest["own method"], digest["train"]}) == 3


def test_a_source_directory_is_known_by_its_content(tmp_path):
    """A pretrained model directory (whisper:DIR, hf:DIR) copied elsewhere or unpacked again keeps
    its digest; one changed byte or a renamed file changes it."""
    import shutil

    from speechtl.adapt.sweep import _content_digest

    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "config.json").write_text('{"d_model": 4}')
    (a / "sub" / "model.bin").write_bytes(bytes(range(256)) * 5000)
    b = tmp_path / "b"
    shutil.copytree(a, b)  # new mtimes, the same bytes
    os.utime(b / "config.json", ns=(1, 1))
    assert _content_digest(a) == _content_digest(b)
    weights = bytearray((b / "sub" / "model.bin").read_bytes())
    weights[-1] ^= 1
    (b / "sub" / "model.bin").write_bytes(bytes(weights))  # same size, same name
    assert _content_digest(a) != _content_digest(b)
    shutil.rmtree(b)
    shutil.copytree(a, b)
    (b / "config.json").rename(b / "conf.json")
    assert _content_digest(a) != _content_digest(b)
    assert _content_digest(a / "config.json") != _content_digest(a / "sub" / "model.bin")


def test_trials_keyed_by_size_and_mtime_are_kept(small_yesno, tmp_path, monkeypatch):
    """Trials finished before the inputs were keyed by content (their .sweep-key from sizes and
    mtimes) are reused under the new key, not trained again; a hidden file in a source directory
    (huggingface-cli's .cache/ with download times) leaves the digest as it is."""
    import speechtl.adapt.sweep as sweep_mod
    from speechtl.adapt.sweep import _content_digest
    from speechtl.cli import main

    conf, lang = sweep_inputs(
        small_yesno,
        tmp_path,
        "model: {encoder: tdnn, num_features: 23, encoder_options: {hidden_dim: 8}}\n"
        "train: {num_steps: 2, max_duration: 20, num_buckets: 2, average_last: 1, lr: 0.01}\nmethods: {scratch: {}}\n",
        dev_last=4,
    )
    argv = ["sweep", "--config", str(conf), "--method", "scratch", "--lang-dir", str(lang.dir)]
    argv += ["--train-cuts", str(tmp_path / "train.jsonl.gz"), "--dev-cuts", str(tmp_path / "dev.jsonl.gz")]
    argv += [
        "--space",
        "train.lr=0.001,0.01",
        "--exp-dir",
        str(tmp_path / "sweep"),
        "--output",
        str(tmp_path / "t.yaml"),
    ]
    fingerprint = sweep_mod._inputs_fingerprint
    monkeypatch.setattr(  # the keys of the earlier code
        sweep_mod, "_inputs_fingerprint", lambda c, m, p, legacy=False: fingerprint(c, m, p, legacy=True)
    )
    assert main(argv) == 0
    old_keys = {t: (t / ".sweep-key").read_text() for t in (tmp_path / "sweep").glob("trial-*")}
    trained = {t: (t / "final.pt").stat().st_mtime_ns for t in old_keys}
    monkeypatch.setattr(sweep_mod, "_inputs_fingerprint", fingerprint)
    assert main(argv) == 0
    assert {t: (t / "final.pt").stat().st_mtime_ns for t in trained} == trained  # kept
    assert all((t / ".sweep-key").read_text() != k for t, k in old_keys.items())  # under the new key

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    before = _content_digest(model)
    (model / ".cache" / "huggingface").mkdir(parents=True)
    (model / ".cache" / "huggingface" / "config.json.metadata").write_text("downloaded 2026-12-06T18:08")
    assert _content_digest(model) == before
