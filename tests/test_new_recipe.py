"""speechtl new-recipe: a folder of real recordings -> a generated recipe run end to end to results.tsv.

The source is a tiny TDNN-CTC trained here on 8 yesno utterances at 16 kHz and 30 mel
bins (neither the default 80 bins nor FSDD's native 8 kHz), so the target's fbank
can only have those settings if stage 1 read them from the checkpoint. The target is
a folder of FSDD recordings of two speakers with a transcript file, laid out as a
user would: split folders, a sub-folder per speaker.
"""

import csv
import gzip
import itertools
import json
import os
import re
import resource
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import REPO, run, venv_env
from test_hf_encoders import save_tiny_ctc
from test_recipe_whisper import tiny_whisper  # noqa: F401  (a fixture)

SPEAKERS = ("george", "jackson")
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = {"train": range(5, 10), "dev": range(1, 2), "test": range(0, 1)}  # FSDD recording indices
TINY_ADAPT = {"num_steps": "4", "warmup_steps": "1", "max_duration": "20", "num_buckets": "2", "average_last": "1"}


def speechtl(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["speechtl", *args], cwd=cwd, env=venv_env(), capture_output=True, text=True)


@pytest.fixture(scope="module")
def egs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkout") / "egs"


@pytest.fixture(scope="module")
def tiny_source(yesno_dir, egs, tmp_path_factory) -> Path:
    """``egs/tiny_source/ASR/exp/source/final.pt``: a 2-layer TDNN, a few updates on yesno, 16 kHz, 30 bins."""
    from lhotse import CutSet

    from speechtl.adapt import get_method
    from speechtl.data.corpora.yesno import LEXICON, prepare_yesno
    from speechtl.data.layout import write_split
    from speechtl.features import FbankConfig
    from speechtl.features.compute import compute_fbank
    from speechtl.lang import Lang
    from speechtl.lang.lexicon import lexicon_from_dict
    from speechtl.lang.prepare import prepare_lang
    from speechtl.models import ModelConfig, build_model
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.trainer import seed_everything

    d = tmp_path_factory.mktemp("source")
    train = prepare_yesno(yesno_dir)["train"]
    recs = train["recordings"].subset(first=8)
    write_split(d / "manifests", "yesno", "train", recs, train["supervisions"].filter(lambda s: s.recording_id in recs))
    (d / "lm.txt").write_text("".join(s.text + "\n" for s in train["supervisions"]))
    compute_fbank(d / "manifests", d / "fbank", "yesno", ["train"], FbankConfig(sampling_rate=16000, num_mel_bins=30))
    prepare_lang(lexicon_from_dict(LEXICON), d / "lang", lm_text=d / "lm.txt", lm_order=1)
    lang = Lang(d / "lang")
    seed_everything(0)
    cfg = ModelConfig(
        encoder="tdnn", num_features=30, encoder_options={"hidden_dim": 16, "kernel_sizes": [3, 3], "dilations": [1, 2]}
    )
    exp = egs / "tiny_source" / "ASR" / "exp" / "source"
    steps = TrainConfig(num_steps=2, max_duration=20, num_buckets=2, average_last=1, log_interval=100)
    cuts = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz")
    return Trainer(build_model(cfg, lang.vocab_size), lang, get_method("scratch"), steps, exp).fit(cuts)


def lay_out_folder(fsdd_dir: Path, root: Path, speakers=SPEAKERS) -> Path:
    """<root>/{train,dev,test}/<speaker>/<digit>_<speaker>_<i>.wav and one tab-separated transcripts.txt."""
    lines = []
    for split, indices in SPLITS.items():
        for spk in speakers:
            (root / split / spk).mkdir(parents=True)
            for digit in range(10):
                for i in indices:
                    name = f"{digit}_{spk}_{i}"
                    shutil.copy(fsdd_dir / f"{name}.wav", root / split / spk / f"{name}.wav")
                    lines.append(f"{name}\t{WORDS[digit].upper()}\n")
    (root / "transcripts.txt").write_text("".join(lines))
    return root


def new_recipe(egs: Path, name: str, corpus_dir: Path, *args: str) -> Path:
    r = speechtl(
        "new-recipe", name, "--corpus", "folder", "--corpus-dir", str(corpus_dir), "--egs-dir", str(egs), *args
    )
    assert r.returncode == 0, r.stderr
    recipe = egs / name / "ASR"
    assert r.stdout.strip() == str(recipe)
    return recipe


def tiny(recipe: Path, name: str = "adapt.yaml") -> None:
    """conf/<name> at toy scale: 4 updates of small batches."""
    conf = recipe / "conf" / name
    text = conf.read_text()
    for key, value in TINY_ADAPT.items():
        text, n = re.subn(rf"^(  {key}:) \S+", rf"\1 {value}", text, count=1, flags=re.M)
        assert n == 1, key
    conf.write_text(text)


def stage_seconds(stdout: str) -> dict[str, float]:
    """Seconds from each 'Stage N' log line to the next (the last to the end of the run)."""
    marks = []
    for line in stdout.splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) .*?Stage (\d)", line)
        if m and (not marks or marks[-1][1] != m.group(2)):
            marks.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"), m.group(2)))
    marks.append((datetime.now(), "end"))
    return {f"stage {a[1]}": (b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(marks)}


@pytest.fixture(scope="module")
def recipe_run(tiny_source, fsdd_dir, egs, tmp_path_factory):
    corpus = lay_out_folder(fsdd_dir, tmp_path_factory.mktemp("my_recordings"))
    lm_text = corpus.parent / "more_text.txt"
    lm_text.write_text("Ten, eleven; TWELVE!\nzero one two\nTen NINETEEN.\n")
    (corpus / "train" / "george" / "bad_take.wav").write_bytes(b"")  # an empty file, as a failed recording leaves
    with open(corpus / "transcripts.txt", "a") as f:
        f.write("bad_take\tNINE\n")
    recipe = new_recipe(
        egs, "digits2", corpus, "--source", str(tiny_source), "--methods", "finetune", "freeze",
        "--minutes", "0.3", "--speed-perturb", "", "--lm-text", str(lm_text), "--skip-bad",
    )  # fmt: skip
    tiny(recipe)
    t0, cpu0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run(recipe)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    (recipe / "run.log").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in stage_seconds(r.stdout).items())
    print(f"\nrecipe run: {time.time() - t0:.1f}s wall, {cpu:.1f}s CPU; {stages}")
    return recipe, corpus, r


def results(recipe: Path) -> list[dict]:
    with open(recipe / "exp" / "results.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_generated_recipe_runs_to_results(recipe_run):
    recipe, _, r = recipe_run
    amounts = [line.split()[0] for line in (recipe / "data" / "fbank" / "amounts.txt").read_text().splitlines()]
    # 100 train utterances of about 0.4 s: 0.3 min and the whole pool (its own duration).
    assert amounts[0] == "0.3min" and len(amounts) == 2 and amounts[1] != "0.3min", amounts
    pool = float(amounts[1].removesuffix("min"))
    assert 0.3 < pool < 2.0
    rows = results(recipe)
    got = sorted((row["test_set"], row["method"], row["data"], row["decoding"]) for row in rows)
    want = sorted(
        (t, m, a, d) for t in ("dev", "test") for m in ("finetune", "freeze") for a in amounts
        for d in ("greedy", "hlg")
    )  # fmt: skip
    assert got == want
    for row in rows:
        assert row["words"] == "20"  # 2 speakers x 10 digits, one word each, in dev and in test
        assert abs(float(row["wer"]) - 100 * int(row["errors"]) / 20) < 0.01
    md = (recipe / "exp" / "RESULTS.md").read_text()
    assert "## dev" in md and "## test" in md and "Units: characters" in md
    # every dev and test digit is also a train transcript: said under the tables, from the import's report
    assert "- dev: 20 of 20 transcripts (100%) are also in train" in md
    assert "- test: 20 of 20 transcripts (100%) are also in train" in md
    assert (recipe / "exp" / "plots" / "data_efficiency.png").stat().st_size > 1000
    for stage in range(5):
        assert f"Stage {stage}" in r.stdout, stage
    assert "units: characters (< 50000 words" in r.stdout
    assert "bad_take" in (recipe / "data" / "manifests" / "bad_audio.txt").read_text()  # --skip-bad: left out, listed
    words = {line.split()[0] for line in (recipe / "data" / "lang" / "words.txt").read_text().splitlines()}
    assert {"ten", "nineteen", "zero", "nine"} <= words  # --lm-text, normalized, joins the LM
    # but not a sentence the units (the transcripts' characters) cannot spell: no digit's name has an l
    assert (
        not {"eleven", "twelve"} & words
        and "lm_extra.txt: 1 of 3 sentences have characters that no" in r.stdout + r.stderr
    )


def test_fbank_has_the_sources_rate_and_bins(recipe_run):
    from lhotse import CutSet

    recipe = recipe_run[0]
    for split in ("train", "dev", "test"):
        cut = next(iter(CutSet.from_file(recipe / "data" / "fbank" / f"folder_cuts_{split}.jsonl.gz")))
        assert (cut.features.sampling_rate, cut.features.num_features) == (16000, 30), split


def test_adapted_from_the_source(recipe_run, tiny_source):
    import torch

    recipe = recipe_run[0]
    src = torch.load(tiny_source, map_location="cpu", weights_only=False)
    frozen = torch.load(recipe / "exp" / "freeze_0.3min" / "final.pt", map_location="cpu", weights_only=False)
    tuned = torch.load(recipe / "exp" / "finetune_0.3min" / "final.pt", map_location="cpu", weights_only=False)
    assert frozen["model_config"] == tuned["model_config"] == src["model_config"]  # the source's architecture
    key = "encoder.layers.0.0.weight"  # the lowest TDNN layer: freeze keeps the source's, finetune trains it
    assert torch.equal(frozen["model"][key], src["model"][key])
    moved = (tuned["model"][key] - src["model"][key]).abs().max().item()
    assert 0 < moved < 0.05, moved  # 4 small updates from the source's weights, not a fresh init


def test_rerun_does_nothing(recipe_run):
    recipe = recipe_run[0]
    before = (recipe / "exp" / "finetune_0.3min" / "final.pt").resolve().stat().st_mtime_ns
    r = run(recipe)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Stage" not in r.stdout, r.stdout
    assert (recipe / "exp" / "finetune_0.3min" / "final.pt").resolve().stat().st_mtime_ns == before


def test_more_lm_text_rebuilds_the_graph_not_the_models(recipe_run, tmp_path):
    """Another --lm-text (or --lm-order) retrained every adapted model: the units were trained on the
    LM text and the training keys held the lang stage's whole key. Now the units are the transcripts'
    and only HLG and the decodes are redone; the recipe's own LM text again puts the graph back."""
    recipe = recipe_run[0]
    models = sorted((recipe / "exp").glob("*_*min/final.pt"))
    assert models
    trained = [m.resolve().stat().st_mtime_ns for m in models]
    graph = recipe / "data" / "lang" / "HLG.fst"
    built = graph.read_bytes()
    more = tmp_path / "more.txt"
    more.write_text("nine nine ten\nten one\n")
    for lm_text in (str(more), None):
        r = run(recipe, "--stage", "2", "--stop-stage", "4", *(["--lm-text", lm_text] if lm_text else []))
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-3000:]
        assert "Stage 2" in out and "decode/.done was made with other arguments" in out, out[-3000:]
        assert [m.resolve().stat().st_mtime_ns for m in models] == trained
        assert (graph.read_bytes() == built) == (lm_text is None)


def test_options_tuned_on_the_dev_split_of_a_generated_recipe(recipe_run):
    """--tune: a grid of conf/sweep.yaml trained at the smallest amount and scored on dev only;
    the tuned method adapts again, the other (its options unchanged) is left as it was."""
    import yaml

    recipe = recipe_run[0]
    final = {m: recipe / "exp" / f"{m}_0.3min" / "final.pt" for m in ("finetune", "freeze")}
    before = {m: p.resolve().stat().st_mtime_ns for m, p in final.items()}
    # A grid without conf/adapt.yaml's lr (0.001), so that whatever dev chooses differs from it: a choice
    # equal to the conf's retrains nothing, and at 4 updates which one dev picks is chance.
    sweep = recipe / "conf" / "sweep.yaml"
    text, n = re.subn(r"^finetune: .*$", "finetune: {train.lr: [0.0005, 0.002]}", sweep.read_text(), flags=re.M)
    assert n == 1
    sweep.write_text(text)
    r = run(recipe, "--stage", "3", "--tune", "finetune")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    grid = yaml.safe_load((recipe / "conf" / "sweep.yaml").read_text())["finetune"]["train.lr"]
    with open(recipe / "exp" / "sweep" / "finetune" / "sweep.tsv") as f:
        assert len(list(csv.DictReader(f, delimiter="\t"))) == len(grid)
    for trial in (recipe / "exp" / "sweep" / "finetune").glob("trial-*"):
        assert all("-dev-" in p.name for p in (trial / "decode").iterdir() if p.is_file())  # never test
    assert "# sweep: finetune:" in (recipe / "exp" / "adapt_tuned.yaml").read_text()
    after = {m: p.resolve().stat().st_mtime_ns for m, p in final.items()}
    assert after["freeze"] == before["freeze"] and after["finetune"] != before["finetune"]
    r = run(recipe, "--stage", "3", "--tune", "finetune")
    assert r.returncode == 0 and "Stage" not in r.stdout, r.stdout[-2000:]  # chosen once


def test_leave_one_speaker_out_in_a_generated_recipe(recipe_run):
    """--loso true: each speaker of the user's corpus in turn never heard, an unlabelled-audio
    method on its untranscribed part, pooled rows; the recipe's own rows stay."""
    recipe = recipe_run[0]
    before = {(x["test_set"], x["method"], x["data"], x["decoding"]) for x in results(recipe)}
    r = run(recipe, "--stage", "3", "--loso", "true", "--loso-methods", "finetune entropy", "--loso-minutes", "0.2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    got = {(x["test_set"], x["method"], x["data"], x["decoding"]): x for x in results(recipe)}
    assert before <= set(got)
    for m in ("finetune", "entropy"):
        for dec in ("greedy", "hlg"):
            a, b, mean = (got[(t, m, "0.2min", dec)] for t in ("test_george", "test_jackson", "test_loso_mean"))
            assert int(a["words"]) == int(b["words"]) == 10  # one of each digit's 7 recordings per speaker
            assert int(mean["errors"]) == int(a["errors"]) + int(b["errors"]) and int(mean["words"]) == 20
    for spk in ("george", "jackson"):
        with gzip.open(recipe / "data" / "loso" / spk / "train_0.2min.jsonl.gz", "rt") as f:
            assert {json.loads(line)["supervisions"][0]["speaker"] for line in f} == set(SPEAKERS) - {spk}
    assert "## test_loso_mean" in (recipe / "exp" / "RESULTS.md").read_text()


def test_two_recipes_differ_in_config_only(recipe_run, tiny_source, fsdd_dir, egs, tmp_path):
    first, _, _ = recipe_run
    corpus = lay_out_folder(fsdd_dir, tmp_path / "other", speakers=("lucas",))
    second = new_recipe(egs, "lucas", corpus, "--source", str(tiny_source), "--minutes", "1", "2")
    files = sorted(p.relative_to(second) for p in second.iterdir())
    assert files == sorted(
        Path(n) for n in ["run.sh", "cmd.sh", "path.sh", "README.md", "conf", "steps", "utils", "local"]
    )
    for name in ["run.sh", "cmd.sh", "path.sh", "README.md"]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for link in ["steps", "utils", "local"]:
        assert os.readlink(first / link) == os.readlink(second / link)
        assert (second / link).resolve() == REPO / link
    assert sorted(p.name for p in (second / "conf").iterdir()) == [
        "adapt.yaml",
        "adapt_pretrained.yaml",
        "recipe.conf",
        "sweep.yaml",
        "sweep_pretrained.yaml",
    ]
    conf = (second / "conf" / "recipe.conf").read_text()
    assert f"corpus_dir={corpus}" in conf and "minutes='1 2'" in conf and "recipe=lucas" in conf
    assert conf != (first / "conf" / "recipe.conf").read_text()
    sc = subprocess.run(["shellcheck", "-x", "run.sh"], cwd=second, env=venv_env(), capture_output=True, text=True)
    assert sc.returncode == 0, sc.stdout


def test_no_source_says_which_exist_and_stops(tiny_source, fsdd_dir, egs, tmp_path):
    corpus = lay_out_folder(fsdd_dir, tmp_path / "rec", speakers=("nicolas",))
    r = speechtl("new-recipe", "nosrc", "--corpus", "folder", "--corpus-dir", str(corpus), "--egs-dir", str(egs))
    assert r.returncode == 0, r.stderr
    assert str(tiny_source.absolute()) in r.stderr and "To make one" in r.stderr
    r = run(egs / "nosrc" / "ASR", "--stage", "1")
    assert r.returncode == 1
    assert "no source model" in r.stdout and str(tiny_source.absolute()) in r.stderr
    assert "egs/tts_xling/ASR && ./run.sh --stop-stage 4" in r.stderr


def test_bad_arguments_are_named(tiny_source, egs, tmp_path):
    r = speechtl("new-recipe", "x", "--corpus", "nosuch", "--corpus-dir", str(tmp_path), "--egs-dir", str(egs))
    assert r.returncode == 1 and "unknown corpus kind 'nosuch'; a recipe imports one of" in r.stderr
    r = speechtl("new-recipe", "x", "--corpus", "folder", "--corpus-dir", str(tmp_path), "--egs-dir", str(egs),
                 "--source", str(tmp_path / "none.pt"))  # fmt: skip
    assert r.returncode == 1 and "none.pt does not exist" in r.stderr
    r = speechtl("new-recipe", "x", "--corpus", "folder", "--corpus-dir", str(tmp_path), "--egs-dir", str(egs),
                 "--source", str(tiny_source), "--methods", "finetune", "dann")  # fmt: skip
    assert r.returncode == 1 and "need unlabelled audio" in r.stderr
    # a quoted list, as run.sh --methods takes it, was one unknown method 'finetune freeze'
    recipe = new_recipe(egs, "quoted", tmp_path, "--source", str(tiny_source), "--methods", "finetune freeze")
    assert "methods='finetune freeze'" in (recipe / "conf" / "recipe.conf").read_text()
    r = speechtl("new-recipe", "y", "--corpus", "folder", "--corpus-dir", str(tmp_path), "--egs-dir", str(egs),
                 "--source", str(tiny_source), "--methods", "")  # fmt: skip
    assert r.returncode == 1 and "--methods is empty" in r.stderr


def test_pretrained_sources_are_checked_and_made_absolute(tmp_path, monkeypatch):
    """--source hf:/missing generated a recipe that imported and computed features for a minute before
    every training failed; hf:models/w2v (relative) was later read from the recipe's dir, as a hub id."""
    from speechtl.errors import SpeechtlError
    from speechtl.recipe.generate import _abs_source, _check_pretrained_location

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "w2v").mkdir(parents=True)
    assert _abs_source("hf:models/w2v") == f"hf:{tmp_path / 'models' / 'w2v'}"
    assert _abs_source("hf:facebook/wav2vec2-base") == "hf:facebook/wav2vec2-base"  # a hub id stays
    assert _abs_source("exp/source/final.pt") == str(tmp_path / "exp" / "source" / "final.pt")
    _check_pretrained_location("hf:models/w2v")
    _check_pretrained_location("whisper:openai/whisper-tiny")  # fetched when stage 3 runs
    for missing in ("hf:/work/nope", "whisper:./tiny", "hf:models/w2v/nope"):
        with pytest.raises(SpeechtlError, match=r"does not exist .* Fix: the folder of a"):
            _check_pretrained_location(missing)


def test_a_misspelled_method_stops_before_any_stage(tiny_source, fsdd_dir, egs, tmp_path):
    """./run.sh --methods finetnue ran stages 0-2 and left exp/finetnue_2.1min/.started behind."""
    corpus = lay_out_folder(fsdd_dir, tmp_path / "rec", speakers=("nicolas",))
    recipe = new_recipe(egs, "typo", corpus, "--source", str(tiny_source), "--methods", "finetune")
    r = run(recipe, "--methods", "finetnue")
    assert r.returncode == 1 and "unknown method(s) ['finetnue']" in r.stderr
    assert not (recipe / "data").exists() and not (recipe / "exp").exists()


def test_a_relative_source_is_read_from_where_run_sh_started(tiny_source, fsdd_dir, egs, tmp_path):
    """egs/mylang/ASR/run.sh --source egs/x/ASR/exp/source/final.pt, typed from the repo, was read from
    the recipe's dir and failed, saying only that it does not exist."""

    corpus = lay_out_folder(fsdd_dir, tmp_path / "rec", speakers=("nicolas",))
    recipe = new_recipe(egs, "relsrc", corpus, "--source", str(tiny_source), "--methods", "finetune")
    (tmp_path / "src").mkdir()
    shutil.copy(tiny_source, tmp_path / "src" / "avg-2.pt")
    (tmp_path / "src" / "final.pt").symlink_to("avg-2.pt")  # as training leaves it: kept as typed, not resolved

    def run_from(d: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(recipe / "run.sh"), *args], cwd=d, env=venv_env(), capture_output=True, text=True)

    r = run_from(tmp_path, "--source", "src/final.pt", "--stage", "100")  # (it stops later: no manifests yet)
    assert f"--source src/final.pt read from {tmp_path}: {tmp_path / 'src' / 'final.pt'}" in r.stdout
    assert "does not exist" not in r.stdout
    (recipe / "data").mkdir(exist_ok=True)  # the recipe's own data/ does not shadow the user's ./data
    (tmp_path / "data").mkdir()
    r = run_from(tmp_path, "--corpus-dir", "data", "--stage", "100")
    assert f"--corpus-dir data read from {tmp_path}: {tmp_path / 'data'}" in r.stdout
    r = run_from(tmp_path, "--source", "nosuch/final.pt", "--stage", "100")
    assert (
        r.returncode == 1
        and f"source nosuch/final.pt does not exist (a relative path is read from {tmp_path}" in r.stdout
    )


def test_units_choice_follows_the_text_size(tmp_path):
    from speechtl.recipe.info import choose_units

    small = tmp_path / "small.txt"
    small.write_text("a b c\n" * 100)
    assert choose_units(small).units == "char"
    big = tmp_path / "big.txt"
    big.write_text("".join(f"w{i % 3000} x{i % 700} y z\n" for i in range(25_000)))  # 100k words
    c = choose_units(big)
    assert (c.units, c.vocab_size) == ("bpe", 500) and "100000 words" in c.reason
    assert choose_units(big, min_words=200_000).units == "char"
    assert choose_units(small, units="bpe", vocab_size=30).vocab_size == 30


def test_a_pretrained_source_adapts_with_the_pretrained_conf(tiny_whisper, fsdd_dir, egs, tmp_path):  # noqa: F811
    """source=whisper:DIR: stage 3 trains with conf/adapt_pretrained.yaml (its rate and its fewer kept
    checkpoints), not with conf/adapt.yaml, which is meant for speechtl's own small sources."""
    import torch
    import yaml

    corpus = lay_out_folder(fsdd_dir, tmp_path / "c", speakers=("george",))
    recipe = new_recipe(
        egs, "from_whisper", corpus, "--source", f"whisper:{tiny_whisper}", "--methods", "finetune",
        "--minutes", "0.3", "--speed-perturb", "",
    )  # fmt: skip
    tiny(recipe, "adapt_pretrained.yaml")
    r = run(recipe, "--stop-stage", "3")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (final,) = sorted((recipe / "exp").glob("finetune_0.3min/final.pt"))
    train = torch.load(final, map_location="cpu", weights_only=False)["train_config"]
    pretrained = yaml.safe_load((recipe / "conf" / "adapt_pretrained.yaml").read_text())["train"]
    own = yaml.safe_load((recipe / "conf" / "adapt.yaml").read_text())["train"]
    assert pretrained["lr"] != own["lr"] and pretrained["keep_epochs"] != own.get("keep_epochs")
    assert train["lr"] == pretrained["lr"] and train["keep_epochs"] == pretrained["keep_epochs"]
    # Stage 4 adds Whisper's own decoder (the tiny random model's words are noise: the row exists, per
    # test set, counting the same reference words as the adapted system's)
    r = run(recipe, "--stage", "4", "--stop-stage", "4")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {(x["test_set"], x["method"], x["decoding"]): x for x in results(recipe)}
    for t in ("dev", "test"):
        zero = rows[(t, "whisper-zero-shot", "whisper")]
        assert zero["data"] == "0min" and zero["words"] == rows[(t, "finetune", "greedy")]["words"]
    assert (recipe / "exp" / "zero_shot" / "decode" / "recogs-test-whisper.txt").is_file()
    # From an hf: model fine-tuned with a CTC head, the row is that head's (greedy over its own letters).
    # Only stage 4's zero-shot step is new for it: the systems decoded above stay done.
    ctc = save_tiny_ctc(tmp_path / "w2v-ctc")
    r = run(recipe, "--stage", "4", "--stop-stage", "4", "--source", f"hf:{ctc}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {(x["test_set"], x["method"], x["decoding"]): x for x in results(recipe)}
    for t in ("dev", "test"):
        assert rows[(t, "hf-zero-shot", "greedy")]["words"] == rows[(t, "finetune", "greedy")]["words"]
        assert (t, "whisper-zero-shot", "whisper") in rows  # the other source's row stays, under its own name


def test_amount_labels_are_short():
    """A pool smaller than the largest --minutes gave the label 10.1031min (systems, rows, plots)."""
    from speechtl.recipe.info import _label

    assert [_label(x) for x in (5, 7.34, 10.1031, 0.03, 30, 0.3)] == [
        "5min",
        "7.3min",
        "10.1min",
        "0.03min",
        "30min",
        "0.3min",
    ]


def test_lm_text_is_normalized_as_the_import_was(tmp_path):
    """The import joins ş/ș (or a --map-chars maps letters); the --lm-text went through the default
    normalizer, so its 'şi' and the transcripts' 'și' were two words of the LM."""
    import json

    from speechtl.recipe.info import normalize_lm_text

    text = tmp_path / "lm.txt"
    text.write_text("Şi ţara, şi marea.\n", encoding="utf-8")
    conf = tmp_path / "folder_text_norm.json"
    conf.write_text(json.dumps({"normalize": True, "map": "ş=ș,ţ=ț"}), encoding="utf-8")
    out = normalize_lm_text(text, tmp_path / "out.txt", conf)
    assert out.read_text(encoding="utf-8") == "și țara și marea\n"
    assert normalize_lm_text(text, tmp_path / "out2.txt").read_text(encoding="utf-8") == "şi ţara şi marea\n"


def test_an_import_by_other_rules_is_done_again(tiny_source, fsdd_dir, egs, tmp_path):
    """An updated speechtl that writes transcripts otherwise (lower case, Turkish casing...) kept the
    manifests of the old rules, and every stage after them: stage 0's key holds the import's rules."""
    from speechtl.data.corpora.imported import IMPORT_RULES

    corpus = lay_out_folder(fsdd_dir, tmp_path / "rec", speakers=("nicolas",))
    r = speechtl("new-recipe", "rules", "--corpus", "folder", "--corpus-dir", str(corpus), "--egs-dir", str(egs))
    assert r.returncode == 0, r.stderr
    recipe = egs / "rules" / "ASR"
    r = run(recipe, "--stop-stage", "0")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    marker = recipe / "data" / "manifests" / ".done"
    assert f"import_rules={IMPORT_RULES}" in marker.read_text()
    again = run(recipe, "--stop-stage", "0").stdout
    assert "Stage 0" not in again  # the same rules and files: done
    # a transcript fixed, a recording added: imported again (the key held only the options)
    (corpus / "transcripts.txt").write_text((corpus / "transcripts.txt").read_text().replace("\tZERO", "\tzero"))
    r = run(recipe, "--stop-stage", "0")
    assert "Stage 0: import" in r.stdout, r.stdout[-2000:]
    shutil.copy(fsdd_dir / "3_nicolas_40.wav", corpus / "train" / "nicolas" / "3_nicolas_40.wav")
    with open(corpus / "transcripts.txt", "a") as f:
        f.write("3_nicolas_40\tTHREE\n")
    r = run(recipe, "--stop-stage", "0")
    assert "Stage 0: import" in r.stdout, r.stdout[-2000:]
    from lhotse import SupervisionSet

    sups = SupervisionSet.from_file(recipe / "data" / "manifests" / "folder_supervisions_train.jsonl.gz")
    assert "3_nicolas_40" in {s.id for s in sups}
    marker.write_text(marker.read_text().replace(f"import_rules={IMPORT_RULES}", "import_rules=1"))  # an older one's
    r = run(recipe, "--stop-stage", "0")
    assert r.returncode == 0 and "Stage 0: import" in r.stdout, r.stdout[-2000:]


def test_the_corpus_key_follows_its_files(tmp_path):
    """Stage 0 kept the manifests of a corpus whose transcript was fixed or recording added: its key
    held only the options. It holds the corpus's files now, transcripts outside the folder
    (--transcripts) too, read whole only when small and text-like (a 1 GB tarball beside the audio
    took 1 GB of memory on every run)."""
    from speechtl.recipe.info import corpus_fingerprint, named_files

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.wav").write_bytes(b"RIFF" + bytes(100))
    (corpus / "text").write_text("a yes\n")
    outside = tmp_path / "trans.tsv"
    outside.write_text("a\tyes\n")
    opts = f"--language ro --transcripts {outside}"
    assert named_files(opts, corpus) == [outside] and named_files("--transcripts t.csv", corpus) == [corpus / "t.csv"]
    assert named_files("--map-chars 'a=b", corpus) == []  # an unmatched quote: stage 0 names it
    key = corpus_fingerprint(corpus, named_files(opts, corpus))
    assert corpus_fingerprint(corpus, named_files(opts, corpus)) == key
    outside.write_text("a\tno\n")  # the transcript outside the folder fixed
    assert corpus_fingerprint(corpus, named_files(opts, corpus)) != key
    key = corpus_fingerprint(corpus)
    (corpus / "text").write_text("a no\n")  # same size, other content
    assert corpus_fingerprint(corpus) != key
    key = corpus_fingerprint(corpus)
    os.utime(corpus / "a.wav", ns=(1, 1))  # audio rewritten at the same size (sox gain): its time moves
    assert corpus_fingerprint(corpus) != key
    key = corpus_fingerprint(corpus)
    big = corpus / "corpus.tar.gz"
    big.write_bytes(bytes(3 << 20))
    assert corpus_fingerprint(corpus) != key  # counted by size and time, not read
    (corpus / "loop").symlink_to(corpus)  # a link back up the tree: walked once
    assert len(corpus_fingerprint(corpus)) == 12
