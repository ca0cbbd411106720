"""End to end: the default recipe, egs/tts_xling/ASR/run.sh, at toy scale on the real sentences.

The corpus, model and budgets are shrunk (conf/ is rewritten in a copy of the
recipe) so every stage, method and decoding runs in about a minute; the real
configuration's numbers are in the recipe's RESULTS.md.
"""

import csv

import pytest
import torch
import yaml
from conftest import REPO, copy_recipe, run, shared_data
from test_recipe_whisper import shrink, tiny_whisper  # noqa: F401 (a fixture)

RECIPE = REPO / "egs" / "tts_xling" / "ASR"
ARGS = ["--target-minutes", "0.5 1", "--unlabelled-target-minutes", "0.3", "--methods", "all"]
METHODS = [
    "scratch",
    "finetune",
    "freeze",
    "linear-probe",
    "layerwise-lr",
    "adapter",
    "lora",
    "dann",
    "mmd",
    "coral",
    "reweight",
    "lp-ft",
    "speaker-adversarial",
    "entropy",
    "infomax",
    "reptile",
    "fomaml",
    "ssl",
    "kd",
    "pseudo-label",
]


def shrink_conf(conf):
    corpus = yaml.safe_load((conf / "corpus.yaml").read_text())
    corpus.update(
        source_langs=["en", "ru"],
        source_train_sentences=40,
        source_dev_sentences=4,
        target_dev_sentences=4,
        target_test_sentences=12,
        target_train_sentences=40,
        target_unlabelled_sentences=16,
    )
    (conf / "corpus.yaml").write_text(yaml.safe_dump(corpus))
    source = yaml.safe_load((conf / "source.yaml").read_text())
    source["model"]["encoder_options"].update(d_model=32, ffn_dim=64, num_layers=2, num_heads=2, subsampling_channels=8)
    source["train"].update(num_epochs=2, warmup_steps=5, average_last=2)
    (conf / "source.yaml").write_text(yaml.safe_dump(source))
    adapt = yaml.safe_load((conf / "adapt.yaml").read_text())
    adapt["train"].update(num_steps=4, warmup_steps=1, average_last=1)
    adapt["methods"]["freeze"]["options"]["bottom_layers"] = 1
    for m in adapt["methods"].values():
        (m.get("train") or {}).pop("warmup_steps", None)
    adapt["methods"]["reptile"]["options"].update(outer_steps=2, inner_steps=1)
    adapt["methods"]["fomaml"]["options"].update(outer_steps=2, inner_steps=1)
    adapt["methods"]["ssl"]["options"].update(steps=2)
    adapt["methods"]["lp-ft"]["options"].update(probe_steps=2)
    (conf / "adapt.yaml").write_text(yaml.safe_dump(adapt))


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    text_dir = shared_data() / "text"
    if not (text_dir / "ga.tsv").is_file():
        pytest.skip(f"no sentences at {text_dir}")
    recipe = copy_recipe(RECIPE, tmp_path_factory.mktemp("tts_xling"))
    shrink_conf(recipe / "conf")
    r = run(recipe, *ARGS, "--text-dir", str(text_dir))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return recipe, r, text_dir


def test_every_method_amount_and_decoding_has_a_row(recipe_run):
    recipe, _r, _ = recipe_run
    with open(recipe / "exp" / "results.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert list(rows[0])[:7] == ["test_set", "method", "data", "decoding", "wer", "errors", "words"]
    keys = {(x["method"], x["data"], x["decoding"]) for x in rows}
    want = {(m, a, d) for m in METHODS for a in ("0.5min", "1min") for d in ("greedy", "hlg")}
    assert want | {("zero-shot", "0min", "greedy")} == keys
    assert {x["test_set"] for x in rows} == {"target_test"}
    md = (recipe / "exp" / "RESULTS.md").read_text()
    for m in [*METHODS, "zero-shot"]:
        assert f"| {m} |" in md
    png = recipe / "exp" / "plots" / "data_efficiency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for m in METHODS:
        assert (recipe / "exp" / f"{m}_0.5min" / "decode" / "recogs-target_test-hlg.txt").is_file()
        assert (recipe / "exp" / f"{m}_1min" / "tensorboard").is_dir()


def test_methods_did_what_they_claim(recipe_run):
    recipe = recipe_run[0]
    load = lambda d: torch.load(recipe / "exp" / d / "final.pt", map_location="cpu", weights_only=False)["model"]  # noqa: E731
    src = load("source")
    enc = [k for k in src if k.startswith("encoder.")]
    frozen = [k for k in enc if k.startswith(("encoder.subsampling.", "encoder.layers.0."))]
    probe, freeze, finetune = load("linear-probe_0.5min"), load("freeze_0.5min"), load("finetune_0.5min")
    assert all(torch.equal(probe[k], src[k]) for k in enc), "linear-probe must not touch the encoder"
    assert all(torch.equal(freeze[k], src[k]) for k in frozen), "freeze changed a frozen parameter"
    assert not torch.equal(freeze["encoder.layers.1.ff1.net.1.weight"], src["encoder.layers.1.ff1.net.1.weight"])
    assert not all(torch.equal(finetune[k], src[k]) for k in frozen), "finetune must train the bottom too"
    lora = load("lora_0.5min")
    assert all(
        torch.equal(lora[k.replace("ff1.net.1.weight", "ff1.net.1.parametrizations.weight.original")], src[k])
        for k in enc
        if k.endswith("ff1.net.1.weight")
    )
    assert (recipe / "exp" / "adapter_0.5min" / "adapter.pt").is_file()
    assert (recipe / "exp" / "pseudo-label_0.5min" / "pseudo_labels.txt").is_file()


def test_rerun_skips_every_stage(recipe_run):
    recipe, _, text_dir = recipe_run
    # what the stages write: models, fbank, decodes (not a wall-clock bound: CI machines vary)
    made = [
        *recipe.glob("exp/**/final.pt"),
        *recipe.glob("exp/**/recogs-*.txt"),
        *recipe.glob("data/fbank/*/feats.*.lca"),
    ]
    stamps = {p: p.stat().st_mtime_ns for p in made}
    r = run(recipe, *ARGS, "--text-dir", str(text_dir))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Stage" not in r.stdout, r.stdout[-2000:]
    assert len(stamps) > 40 and all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_self_training_rounds_on_the_official_split(recipe_run):
    """--rounds 2: pseudo-label trains again in exp/round2, taught by its round-1 student; its rows
    (round2-pseudo-label) and every system's dev rows are added, and nothing of round 1 retrains."""
    recipe, _, text_dir = recipe_run
    args = ["--target-minutes", "0.5", "--unlabelled-target-minutes", "0.3", "--methods", "finetune pseudo-label"]
    r = run(recipe, *args, "--text-dir", str(text_dir), "--stage", "5", "--rounds", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "Stage 5: adapt" not in out and "Stage 5: round 2 of 2, taught by exp: adapt pseudo-label_0.5min" in out
    log = (recipe / "exp" / "round2" / "log" / "adapt.pseudo-label_0.5min.log").read_text()
    assert "the teacher exp/pseudo-label_0.5min/final.pt labels " in log
    with open(recipe / "exp" / "results.tsv") as f:
        keys = {(x["test_set"], x["method"], x["data"], x["decoding"]) for x in csv.DictReader(f, delimiter="\t")}
    for t in ("target_dev", "target_test"):
        for m in ("finetune", "pseudo-label", "round2-pseudo-label"):
            assert (t, m, "0.5min", "hlg") in keys
    assert (recipe / "exp" / "round2" / "pseudo-label_0.5min" / "decode" / "recogs-target_dev-hlg.txt").is_file()
    r = run(recipe, *args, "--text-dir", str(text_dir), "--rounds", "0")  # from stage 0: stops before any work
    assert r.returncode != 0 and "--rounds is a whole number >= 1" in r.stdout + r.stderr
    assert "Stage" not in r.stdout + r.stderr


def test_pretrained_tune_chooses_on_target_dev_never_on_test(recipe_run, tiny_whisper):  # noqa: F811
    """--pretrained-tune: a pretrained method's options are chosen on target_dev (conf/sweep_whisper.yaml),
    never on target_test, here by its HLG WER (--tune-decoding); the system then trains with the chosen point, a re-run sweeps nothing
    again, and asking for it without --pretrained stops before any stage runs."""
    from speechtl.train.checkpoint import load_checkpoint

    recipe, _, text_dir = recipe_run
    shrink(recipe / "conf" / "adapt_whisper.yaml", num_steps=4, warmup_steps=1, average_last=1)
    (recipe / "conf" / "sweep_whisper.yaml").write_text("finetune: {train.lr: [0.0005, 0.003]}\n")
    args = ["--target-minutes", "0.5", "--unlabelled-target-minutes", "0.3", "--text-dir", str(text_dir)]
    args += ["--stage", "5", "--methods", "", "--pretrained", f"whisper:{tiny_whisper}"]
    args += ["--pretrained-methods", "finetune", "--pretrained-tune", "finetune", "--decoding", "greedy"]
    args += ["--tune-decoding", "hlg"]  # chosen by the dev WER of the decoding the report reads
    r = run(recipe, *args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Stage 5: whisper: tune finetune on target_dev" in r.stdout, r.stdout[-2000:]
    sweep = recipe / "exp" / "whisper" / "sweep" / "finetune"
    decoded = sorted(p.name for p in sweep.rglob("wer-summary-*"))
    assert len(decoded) == 2 and all(n == "wer-summary-target_dev-hlg.txt" for n in decoded), decoded
    tuned = recipe / "exp" / "whisper" / "adapt_tuned.yaml"
    assert any(line.startswith("# sweep: finetune:") for line in tuned.read_text().splitlines())
    chosen = yaml.safe_load(tuned.read_text())["methods"]["finetune"]["train"]["lr"]
    ckpt = load_checkpoint(recipe / "exp" / "whisper" / "finetune_0.5min" / "final.pt")
    assert chosen in (0.0005, 0.003) and ckpt["train_config"]["lr"] == chosen
    with open(recipe / "exp" / "results.tsv") as f:
        rows = [x for x in csv.DictReader(f, delimiter="\t") if x["method"] == "whisper-finetune"]
    assert {(x["test_set"], x["data"], x["decoding"]) for x in rows} == {("target_test", "0.5min", "greedy")}
    again = run(recipe, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "tune finetune" not in again.stdout and "adapt finetune" not in again.stdout, again.stdout[-2000:]
    bad = run(recipe, *args[:4], "--pretrained-tune", "finetune")  # from stage 0, no --pretrained
    assert bad.returncode != 0 and "Fix: add --pretrained" in bad.stdout + bad.stderr
    assert "Stage" not in bad.stdout + bad.stderr
