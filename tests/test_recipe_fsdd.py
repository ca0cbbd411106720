"""End to end: egs/fsdd/ASR/run.sh at toy scale on real FSDD recordings.

The synthetic source, the model and the budgets are shrunk (conf/ is rewritten
in a copy of the recipe) and the corpus is recordings 0-9 of every speaker, so
each run takes about a minute; the real configuration's numbers are in the
recipe's RESULTS.md. Run 1 uses the official split, run 2 disjoint speakers.
"""

import csv
import gzip
import json
import shutil

import pytest
import yaml
from conftest import REPO, copy_recipe, run
from test_recipe_whisper import tiny_whisper  # noqa: F401 (a fixture)

from speechtl.adapt.sweep import tuned_methods
from speechtl.data.corpora.fsdd import DIGIT_WORDS

RECIPE = REPO / "egs" / "fsdd" / "ASR"
SPEAKERS = ("george", "jackson", "lucas", "nicolas")


def shrink_conf(conf):
    corpus = yaml.safe_load((conf / "source_corpus.yaml").read_text())
    corpus.update(
        train_utterances=60,
        dev_utterances=4,
        max_digits=3,
        espeak_accents=["en-us"],
        espeak_variants=["", "m3"],
        flite_voices=["kal"],
        festival_voices=["kal_diphone"],
    )
    (conf / "source_corpus.yaml").write_text(yaml.safe_dump(corpus))
    source = yaml.safe_load((conf / "source.yaml").read_text())
    source["model"]["encoder_options"].update(d_model=32, ffn_dim=64, num_layers=2, num_heads=2, subsampling_channels=8)
    source["train"].update(num_epochs=2, warmup_steps=5, average_last=2)
    (conf / "source.yaml").write_text(yaml.safe_dump(source))
    for name in ("adapt.yaml", "classify.yaml"):
        c = yaml.safe_load((conf / name).read_text())
        c["train"].update(num_steps=4, warmup_steps=1, average_last=1)
        for m in c["methods"].values():
            (m.get("train") or {}).pop("warmup_steps", None)
        (conf / name).write_text(yaml.safe_dump(c))
    adapt = yaml.safe_load((conf / "adapt.yaml").read_text())
    adapt["methods"]["freeze"]["options"]["bottom_layers"] = 1
    (conf / "adapt.yaml").write_text(yaml.safe_dump(adapt))


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def speakers_in(manifest):
    with gzip.open(manifest, "rt") as f:
        return {json.loads(line)["speaker"] for line in f}


@pytest.fixture(scope="module")
def recipe(fsdd_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("fsdd")
    corpus = base / "recordings"
    corpus.mkdir()
    for w in fsdd_dir.glob("*.wav"):
        if int(w.stem.rsplit("_", 1)[1]) < 10:
            shutil.copy(w, corpus / w.name)
    recipe = copy_recipe(RECIPE, base)
    shrink_conf(recipe / "conf")
    return recipe, corpus


ARGS = ["--shots", "1 2", "--methods", "scratch finetune", "--classify-methods", "linear-probe finetune"]


@pytest.fixture(scope="module")
def official(recipe):
    recipe, corpus = recipe
    r = run(recipe, *ARGS, "--corpus-dir", str(corpus))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return recipe, corpus


def test_zero_shot_target_only_and_adapted_rows(official):
    recipe, _ = official
    got = rows(recipe / "exp" / "results.tsv")
    assert list(got[0])[:7] == ["test_set", "method", "data", "decoding", "wer", "errors", "words"]
    keys = {(x["method"], x["data"], x["decoding"]) for x in got}
    want = {(m, d, dec) for m in ("scratch", "finetune") for d in ("1shots", "2shots") for dec in ("greedy", "hlg")}
    assert keys == want | {("zero-shot", "0shots", "greedy"), ("zero-shot", "0shots", "hlg")}
    assert {x["words"] for x in got} == {"200"}  # 4 speakers x 10 digits x recordings 0-4
    assert (recipe / "exp" / "plots" / "data_efficiency.png").read_bytes()[:4] == b"\x89PNG"
    assert "| zero-shot | 0shots |" in (recipe / "exp" / "RESULTS.md").read_text()


def test_classification_rows_and_confusion_matrices(official):
    recipe, _ = official
    got = rows(recipe / "exp" / "classify.tsv")
    assert list(got[0]) == ["task", "method", "data", "accuracy", "precision", "recall", "f1"]
    assert {(x["task"], x["method"], x["data"]) for x in got} == {
        (t, m, d)
        for t in ("classify-digit", "classify-speaker")
        for m in ("linear-probe", "finetune")
        for d in ("1shots", "2shots")
    }
    for x in got:
        assert all(0.0 <= float(x[k]) <= 100.0 for k in ("accuracy", "precision", "recall", "f1"))
    png = recipe / "exp" / "classify" / "classify-speaker" / "finetune_2shots" / "confusion-test.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_shot_subsets_hold_n_utterances_per_digit_and_speaker(official):
    recipe, _ = official
    with gzip.open(recipe / "data" / "fbank" / "fsdd_cuts_train_2shots.jsonl.gz", "rt") as f:
        cuts = [json.loads(line) for line in f]
    originals = [c for c in cuts if "_sp" not in c["id"]]
    assert len(originals) == 2 * 10 * 4
    assert len(cuts) == 3 * len(originals)  # speed perturbation 0.9 and 1.1


def test_a_rerun_does_no_work(official):
    recipe, corpus = official
    r = run(recipe, *ARGS, "--corpus-dir", str(corpus))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Stage" not in r.stdout


def ids_in(manifest):
    with gzip.open(manifest, "rt") as f:
        return {json.loads(line)["id"] for line in f}


def test_leave_one_speaker_out(official):
    """--loso: two held-out speakers in turn, an unlabelled-audio method tuned on their dev parts,
    a taught method, personalization, and the pooled test_loso_mean rows."""
    recipe, corpus = official
    r = run(
        recipe, *ARGS, "--corpus-dir", str(corpus), "--stage", "5", "--task", "asr", "--loso", "true",
        "--loso-speakers", "george lucas", "--loso-shots", "1", "--personal-shots", "1",
        "--loso-methods", "finetune speaker-adversarial pseudo-label balanced-pseudo-label",
        "--loso-tune", "speaker-adversarial",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    loso = recipe / "data" / "loso"
    for spk in ("george", "lucas"):
        d = loso / spk
        test, dev, unl = (ids_in(d / f"{n}.jsonl.gz") for n in ("test", "dev", "unlabelled"))
        assert len(test) == 20 and len(dev) == 10 and len(unl) == 70  # 100 recordings: 20% / 10% / the rest
        assert not (test & unl) and not (test & dev) and not (dev & unl)
        assert spk not in speakers_in_cuts(d / "train_1shots.jsonl.gz")  # never heard in training
        kept = (recipe / "exp" / "loso" / spk / "pseudo-label_1shots" / "pseudo_labels.txt").read_text().splitlines()
        assert {line.split("\t")[0] for line in kept} <= unl  # pseudo-labels only of the untranscribed part
        balanced = recipe / "exp" / "loso" / spk / "balanced-pseudo-label_1shots" / "pseudo_labels.txt"
        texts = [line.split("\t")[2] for line in balanced.read_text().splitlines()]
        assert set(texts) <= set(DIGIT_WORDS)  # one of the labelled prompts each, never a free hypothesis
        log = (recipe / "exp" / "loso" / spk / "log" / "adapt.balanced-pseudo-label_1shots.log").read_text()
        # conf/adapt.yaml: assign: groups, so the held-out speaker's 70 utterances are compared by DTW
        # and cut into one group per digit first
        assert "groups (10 transcripts): DTW among 70 utterances of speaker" in log
        assert (
            "of 70 unlabelled utterances (confidence >= 0.8, balanced over the labelled transcripts, "
            "by groups of each speaker's audio refined over 5 neighbours)" in log
        )
        # --loso-rounds 3 (run.sh's default): round r's student is taught by round r-1's
        for r, teacher in ((2, f"exp/loso/{spk}"), (3, f"exp/loso/{spk}/round2")):
            log = recipe / "exp" / "loso" / spk / f"round{r}" / "log" / "adapt.balanced-pseudo-label_1shots.log"
            assert f"the teacher {teacher}/balanced-pseudo-label_1shots/final.pt labels 70 " in log.read_text()
    sweep = recipe / "exp" / "loso" / "sweep" / "speaker-adversarial"
    for fold in sweep.glob("trial-*/fold-*"):
        assert all("-dev-" in p.name for p in (fold / "decode").iterdir() if p.is_file())  # never a test part
    assert len(list(sweep.glob("trial-*/fold-*"))) == 2 * 3  # 2 folds x 3 weights of conf/loso_sweep.yaml
    assert "# sweep: speaker-adversarial:" in (recipe / "exp" / "loso" / "adapt_tuned.yaml").read_text()
    got = rows(recipe / "exp" / "results.tsv")
    by = {(x["test_set"], x["method"], x["data"], x["decoding"]): x for x in got}
    for m, data in [("finetune", "1shots"), ("speaker-adversarial", "1shots"), ("pseudo-label", "1shots"),
                    ("balanced-pseudo-label", "1shots"), ("round2-balanced-pseudo-label", "1shots"),
                    ("round3-balanced-pseudo-label", "1shots"), ("zero-shot", "0shots"),
                    ("personal-finetune", "1shots")]:  # fmt: skip
        for dec in ("greedy", "hlg"):
            a, b, mean = (by[(t, m, data, dec)] for t in ("test_george", "test_lucas", "test_loso_mean"))
            assert int(mean["errors"]) == int(a["errors"]) + int(b["errors"]) and mean["words"] == "40"
            assert float(mean["ci_low"]) <= float(mean["wer"]) <= float(mean["ci_high"])
    assert ("dev_loso_mean", "finetune", "1shots", "hlg") in by
    assert ("test", "finetune", "1shots", "hlg") in by  # the official split's rows are kept
    assert "## test_loso_mean" in (recipe / "exp" / "RESULTS.md").read_text()


def test_personalization_by_a_chain_from_a_round(official):
    """--personal-method "finetune balanced-pseudo-label" from round 3 (2 own shots per digit: a closed
    prompt set needs its transcripts repeated): round 3's student is fine-tuned on the own shots, and
    that model starts and teaches balanced self-training, whose labelled data are the own shots and
    whose audio is the held-out speaker's untranscribed part; nothing of the speaker-independent
    systems retrains, and both steps' rows are pooled on test and dev."""
    recipe, corpus = official
    round3 = recipe / "exp" / "loso" / "george" / "round3" / "balanced-pseudo-label_1shots" / ".done"
    before = round3.stat().st_mtime_ns if round3.exists() else None  # test_leave_one_speaker_out trained it
    r = run(
        recipe, *ARGS, "--corpus-dir", str(corpus), "--stage", "5", "--task", "asr", "--loso", "true",
        "--loso-speakers", "george lucas", "--loso-shots", "1", "--personal-shots", "2",
        "--loso-methods", "finetune speaker-adversarial pseudo-label balanced-pseudo-label",
        "--loso-tune", "speaker-adversarial", "--personal-from", "round3-balanced-pseudo-label",
        "--personal-method", "finetune balanced-pseudo-label",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert before is None or round3.stat().st_mtime_ns == before  # the speaker-independent round 3 is kept
    for spk in ("george", "lucas"):
        personal = recipe / "exp" / "loso" / spk / "personal_round3-balanced-pseudo-label"
        log = (personal / "log" / "adapt.finetune_2shots.log").read_text()
        assert f"weights from exp/loso/{spk}/round3/balanced-pseudo-label_1shots/final.pt" in log
        start = f"exp/loso/{spk}/personal_round3-balanced-pseudo-label/finetune_2shots/final.pt"
        d = personal / "after_finetune" / "balanced-pseudo-label_2shots"
        log = (d.parent / "log" / "adapt.balanced-pseudo-label_2shots.log").read_text()
        assert f"weights from {start}" in log
        assert f"the teacher {start} labels 70 unlabelled utterances" in log
        assert "teacher=" in (d / ".done").read_text()
        assert "of 70 unlabelled utterances (confidence >= 0.8, balanced over the labelled transcripts" in log
        texts = [line.split("\t")[2] for line in (d / "pseudo_labels.txt").read_text().splitlines()]
        assert set(texts) <= set(DIGIT_WORDS)  # toy models keep few or none; the closed set holds either way
    by = {(x["test_set"], x["method"], x["data"], x["decoding"]) for x in rows(recipe / "exp" / "results.tsv")}
    m = "round3-balanced-pseudo-label+personal-finetune"
    for t in ("test_george", "test_lucas", "test_loso_mean", "dev_loso_mean"):
        assert (t, m, "2shots", "hlg") in by, t
        assert (t, m + "+balanced-pseudo-label", "2shots", "hlg") in by, t


def shrink_whisper_conf(conf):
    """4 updates, 2 of them the new head's probe (the same file each time: its key stays)."""
    c = yaml.safe_load(conf.read_text())
    c["train"].update(num_steps=4, warmup_steps=1, average_last=1)
    for m in ("lp-ft", "pseudo-label", "balanced-pseudo-label"):
        c["methods"][m]["options"]["probe_steps"] = 2
    conf.write_text(yaml.safe_dump(c))


def test_leave_one_speaker_out_from_a_pretrained_source(official, tiny_whisper):  # noqa: F811
    """--loso with --pretrained: the pretrained source's systems on the same folds (exp/loso_whisper),
    pseudo-label taught by its lp-ft, personalization from it, the own source's pseudo-label taught by
    that lp-ft too (--pretrained-taught, exp/loso_whisper_taught); a re-run does nothing."""
    recipe, corpus = official
    shrink_whisper_conf(recipe / "conf" / "adapt_whisper.yaml")
    args = [
        *ARGS, "--corpus-dir", str(corpus), "--stage", "5", "--task", "asr", "--loso", "true",
        "--loso-speakers", "george lucas", "--loso-shots", "1", "--personal-shots", "1", "--loso-methods", "finetune",
        "--pretrained", f"whisper:{tiny_whisper}", "--pretrained-methods", "lp-ft pseudo-label",
        "--pretrained-teacher", "lp-ft", "--pretrained-personal-from", "lp-ft", "--pretrained-taught", "pseudo-label",
    ]  # fmt: skip
    r = run(recipe, *args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exp = recipe / "exp" / "loso_whisper"
    for spk in ("george", "lucas"):
        log = recipe / "exp" / "loso_whisper_taught" / spk / "log" / "adapt.pseudo-label_1shots.log"
        assert f"the teacher exp/loso_whisper/{spk}/lp-ft_1shots/final.pt labels" in log.read_text()
        assert "method pseudo-label: weights from exp/source/final.pt" in log.read_text()  # the own source learns
        unl = ids_in(recipe / "data" / "loso" / spk / "unlabelled.jsonl.gz")
        kept = (exp / spk / "pseudo-label_1shots" / "pseudo_labels.txt").read_text().splitlines()
        assert {line.split("\t")[0] for line in kept} <= unl
        assert "teacher=" in (exp / spk / "pseudo-label_1shots" / ".done").read_text()
        assert (exp / spk / "personal_lp-ft" / "finetune_1shots" / "final.pt").is_file()
    by = {(x["test_set"], x["method"], x["data"], x["decoding"]) for x in rows(recipe / "exp" / "results.tsv")}
    for m in (
        "whisper-lp-ft",
        "whisper-pseudo-label",
        "whisper-lp-ft+personal-finetune",
        "whisper-taught-pseudo-label",
    ):
        assert ("test_loso_mean", m, "1shots", "hlg") in by, m
    assert ("test_loso_mean", "finetune", "1shots", "hlg") in by  # the own source's rows stay
    split = (recipe / "data" / "loso" / "george" / ".done").stat().st_mtime_ns
    again = run(recipe, *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "adapt " not in again.stdout and "hold out" not in again.stdout, again.stdout[-3000:]
    assert (recipe / "data" / "loso" / "george" / ".done").stat().st_mtime_ns == split


def test_dev_and_untranscribed_rest_of_the_shots_and_options_tuned_on_dev(official):
    """The training recordings the shots leave: a dev tail and untranscribed audio; --tune sweeps
    on dev only, per method (adding a method sweeps only it); an unlabelled-audio method trains."""
    recipe, corpus = official
    args = [*ARGS, "--corpus-dir", str(corpus), "--stage", "2", "--task", "asr", "--dev-shots", "2"]
    r = run(recipe, *args, "--methods", "finetune dann", "--tune", "finetune")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    fbank = recipe / "data" / "fbank"
    dev, unl = ids_in(fbank / "fsdd_cuts_dev.jsonl.gz"), ids_in(fbank / "fsdd_cuts_unlabelled.jsonl.gz")
    shots = {i for i in ids_in(fbank / "fsdd_cuts_train_2shots.jsonl.gz") if "_sp" not in i}
    train = {i for i in ids_in(fbank / "fsdd_cuts_train.jsonl.gz") if "_sp" not in i}
    # recordings 5-9 of each digit and speaker: 2 shots at most, 2 dev, 1 untranscribed
    assert len(dev) == 2 * 10 * 4 and len(unl) == 1 * 10 * 4
    assert dev | unl | shots == train and not (dev & unl) and not (dev | unl) & shots
    with gzip.open(fbank / "fsdd_cuts_unlabelled.jsonl.gz", "rt") as f:
        assert all(s["text"] == "" for line in f for s in json.loads(line)["supervisions"])
    sweep = recipe / "exp" / "sweep"
    assert len(rows(sweep / "finetune" / "sweep.tsv")) == 3  # conf/sweep.yaml's 3 learning rates
    for trial in sweep.glob("finetune/trial-*"):
        assert all("-dev-" in p.name for p in (trial / "decode").iterdir() if p.is_file())  # never test
    tuned = (recipe / "exp" / "adapt_tuned.yaml").read_text()
    assert "# sweep: finetune:" in tuned and "# sweep: dann:" not in tuned
    by = {
        (x["method"], x["data"], x["decoding"]) for x in rows(recipe / "exp" / "results.tsv") if x["test_set"] == "test"
    }
    assert {("dann", "1shots", "hlg"), ("dann", "2shots", "hlg")} <= by
    finetune_sweep = (sweep / "finetune" / "sweep.tsv").stat().st_mtime_ns
    trained = {
        m: (recipe / "exp" / f"{m}_1shots" / "final.pt").resolve().stat().st_mtime_ns for m in ("finetune", "dann")
    }
    r = run(recipe, *args, "--methods", "finetune dann", "--tune", "finetune dann", "--stop-stage", "5")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "tune dann on dev" in r.stdout and "tune finetune" not in r.stdout  # only the new method is swept
    assert (sweep / "finetune" / "sweep.tsv").stat().st_mtime_ns == finetune_sweep
    # dann's options changed in the tuned conf, finetune's did not: only dann trains again (speechtl conf-key).
    again = {
        m: (recipe / "exp" / f"{m}_1shots" / "final.pt").resolve().stat().st_mtime_ns for m in ("finetune", "dann")
    }
    assert again["finetune"] == trained["finetune"] and again["dann"] != trained["dann"]
    tuned = (recipe / "exp" / "adapt_tuned.yaml").read_text()
    assert "# sweep: finetune:" in tuned and "# sweep: dann:" in tuned
    # A comment and another method's options edited in conf/adapt.yaml: nothing is swept or trained
    # again, both choices stay, and the tuned conf has the edit (speechtl tuned-conf).
    conf = recipe / "conf" / "adapt.yaml"
    edited = yaml.safe_load(conf.read_text())
    edited["methods"]["coral"] = {"options": {"weight": 7.0}}
    conf.write_text("# edited\n" + yaml.safe_dump(edited, sort_keys=False))
    r = run(recipe, *args, "--methods", "finetune dann", "--tune", "finetune dann", "--stop-stage", "5")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "tune " not in r.stdout and "adapt " not in r.stdout, r.stdout[-3000:]
    tuned = yaml.safe_load((recipe / "exp" / "adapt_tuned.yaml").read_text())
    assert tuned["methods"]["coral"]["options"]["weight"] == 7.0
    assert set(tuned_methods(recipe / "exp" / "adapt_tuned.yaml")) == {"finetune", "dann"}


def test_pretrained_self_training_on_the_official_split(official, tiny_whisper):  # noqa: F811
    """--pretrained-methods pseudo-label on the official split: taught by --pretrained-teacher's system
    of the same amount, on the untranscribed rest of the training recordings, never dev or test
    (stage 5 only: the pretrained systems' decoding is the --loso test's and the yesno recipe's)."""
    recipe, corpus = official
    shrink_whisper_conf(recipe / "conf" / "adapt_whisper.yaml")
    args = [
        *ARGS, "--corpus-dir", str(corpus), "--stage", "2", "--stop-stage", "5", "--task", "asr", "--dev-shots", "2",
        "--methods", "", "--pretrained", f"whisper:{tiny_whisper}", "--pretrained-methods", "lp-ft pseudo-label",
        "--pretrained-teacher", "lp-ft",
    ]  # fmt: skip
    r = run(recipe, *args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    fbank, exp = recipe / "data" / "fbank", recipe / "exp" / "whisper"
    unl = ids_in(fbank / "fsdd_cuts_unlabelled.jsonl.gz")
    for n in ("1shots", "2shots"):
        kept = (exp / f"pseudo-label_{n}" / "pseudo_labels.txt").read_text().splitlines()
        assert {line.split("\t")[0] for line in kept} <= unl  # only the untranscribed rest
        assert f"system=lp-ft_{n}" in (exp / f"pseudo-label_{n}" / ".done").read_text()  # its teacher's key
    # Without its teacher among the methods the recipe stops before any work and says what to add.
    bad = run(recipe, *args[:-4], "--pretrained-methods", "pseudo-label", "--seeds", "5")
    assert bad.returncode != 0 and "add finetune to the methods" in bad.stdout + bad.stderr
    assert not (exp / "pseudo-label_1shots_s5").exists()


def test_pretrained_rounds_on_the_official_split(official, tiny_whisper):  # noqa: F811
    """--rounds with --pretrained: the pretrained source's --round-methods systems self-train again,
    round 2 taught by round 1's student (exp/whisper/round2), on the untranscribed rest only, with
    rows whisper-round2-<method> on dev (to choose the number of rounds on) and test. The own
    source's balanced-pseudo-label taught by the pretrained lp-ft (--pretrained-taught) alongside;
    a --pretrained-taught that cannot run stops before any work and names the fix."""
    recipe, corpus = official
    shrink_whisper_conf(recipe / "conf" / "adapt_whisper.yaml")
    args = [
        *ARGS, "--corpus-dir", str(corpus), "--stage", "2", "--stop-stage", "6", "--task", "asr",
        "--dev-shots", "2", "--methods", "", "--pretrained", f"whisper:{tiny_whisper}",
        "--pretrained-methods", "lp-ft balanced-pseudo-label", "--pretrained-teacher", "lp-ft", "--rounds", "2",
    ]  # fmt: skip
    for bad, says in ((["--pretrained-taught", "finetune"], "--pretrained-taught finetune: not a taught method"),
                      (["--pretrained-taught", "kd", "--pretrained-teacher", "freeze"],
                       "its teacher freeze is not among --pretrained-methods")):  # fmt: skip
        b = run(recipe, *args, *bad)
        assert b.returncode != 0 and says in b.stdout + b.stderr, b.stdout[-2000:] + b.stderr[-2000:]
        assert not (recipe / "exp" / "whisper_taught").exists()  # stopped before any stage
    r = run(recipe, *args, "--pretrained-taught", "balanced-pseudo-label")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exp = recipe / "exp" / "whisper"
    unl = ids_in(recipe / "data" / "fbank" / "fsdd_cuts_unlabelled.jsonl.gz")
    for n in ("1shots", "2shots"):
        first, second = exp / f"balanced-pseudo-label_{n}", exp / "round2" / f"balanced-pseudo-label_{n}"
        assert f"system=lp-ft_{n}" in (first / ".done").read_text()  # round 1: taught by lp-ft
        assert (first / ".done").read_text().strip() in (second / ".done").read_text()  # round 2: by round 1
        kept = (second / "pseudo_labels.txt").read_text().splitlines()
        assert kept and {line.split("\t")[0] for line in kept} <= unl
    got = {(row["test_set"], row["method"], row["data"]) for row in rows(recipe / "exp" / "results.tsv")}
    for n in ("1shots", "2shots"):
        for t in ("dev", "test"):
            for m in ("lp-ft", "balanced-pseudo-label", "round2-balanced-pseudo-label", "taught-balanced-pseudo-label"):
                assert (t, f"whisper-{m}", n) in got, (t, m, n)
        taught = recipe / "exp" / "whisper_taught" / f"balanced-pseudo-label_{n}"
        assert f"system=lp-ft_{n}" in (taught / ".done").read_text()  # its teacher: the pretrained lp-ft
        log = (taught.parent / "log" / f"adapt.balanced-pseudo-label_{n}.log").read_text()
        assert "weights from exp/source/final.pt" in log


def test_pretrained_tune_on_dev_over_seeds(official, tiny_whisper):  # noqa: F811
    """--pretrained-tune: a --pretrained-methods system's options chosen on dev, each candidate trained
    once per --pretrained-tune-seeds seed; the systems train with the choice; with --loso true it
    stops before any work and names the fix."""
    from speechtl.train.checkpoint import load_checkpoint

    recipe, corpus = official
    shrink_whisper_conf(recipe / "conf" / "adapt_whisper.yaml")
    (recipe / "conf" / "sweep_whisper.yaml").write_text("lp-ft: {train.lr: [0.0001, 0.003]}\n")
    args = [
        *ARGS, "--corpus-dir", str(corpus), "--stage", "2", "--stop-stage", "5", "--task", "asr", "--dev-shots", "2",
        "--methods", "", "--pretrained", f"whisper:{tiny_whisper}", "--pretrained-methods", "lp-ft",
        "--pretrained-tune", "lp-ft", "--pretrained-tune-seeds", "1 2",
    ]  # fmt: skip
    r = run(recipe, *args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sweep = recipe / "exp" / "whisper" / "sweep" / "lp-ft"
    trials = rows(sweep / "sweep.tsv")
    dev_words = len(ids_in(recipe / "data" / "fbank" / "fsdd_cuts_dev.jsonl.gz"))  # one digit a recording
    assert len(trials) == 2 and all(int(t["words"]) == 2 * dev_words for t in trials)  # each lr over both seeds
    decoded = [p.name for p in sweep.rglob("wer-summary-*")]
    assert len(decoded) == 2 * 2 and all(n.startswith("wer-summary-dev") for n in decoded), decoded  # never test
    tuned = recipe / "exp" / "whisper" / "adapt_tuned.yaml"
    chosen = yaml.safe_load(tuned.read_text())["methods"]["lp-ft"]["train"]["lr"]
    for n in ("1shots", "2shots"):
        ckpt = load_checkpoint(recipe / "exp" / "whisper" / f"lp-ft_{n}" / "final.pt")
        assert chosen in (0.0001, 0.003) and ckpt["train_config"]["lr"] == chosen
    bad = run(recipe, *ARGS, "--corpus-dir", str(corpus), "--loso", "true", *args[-8:])
    assert bad.returncode != 0 and "--pretrained-tune chooses on the official split" in bad.stdout + bad.stderr
    assert "Stage" not in bad.stdout + bad.stderr


def speakers_in_cuts(manifest):
    with gzip.open(manifest, "rt") as f:
        return {s["speaker"] for line in f for s in json.loads(line)["supervisions"]}


def test_disjoint_speakers_train_on_some_and_test_on_the_others(official):
    recipe, corpus = official
    r = run(
        recipe,
        *ARGS,
        "--corpus-dir",
        str(corpus),
        "--stage",
        "1",
        "--train-speakers",
        "george jackson lucas",
        "--test-speakers",
        "nicolas",
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = recipe / "data" / "manifests"
    assert speakers_in(m / "fsdd_supervisions_train.jsonl.gz") == {"george", "jackson", "lucas"}
    assert speakers_in(m / "fsdd_supervisions_test.jsonl.gz") == {"nicolas"}
    with gzip.open(recipe / "data" / "fbank" / "fsdd_cuts_train_1shots.jsonl.gz", "rt") as f:
        assert {json.loads(line)["supervisions"][0]["speaker"] for line in f} == {"george", "jackson", "lucas"}
    ran = ("scratch", "finetune", "zero-shot")  # ARGS' systems (not the loso rows, nor the --tune test's dann)
    got = [x for x in rows(recipe / "exp" / "results.tsv") if x["test_set"] == "test" and x["method"] in ran]
    assert got and {x["words"] for x in got} == {"100"}  # nicolas' 10 digits x recordings 0-9, every row re-decoded
    assert "skipping classify-speaker" in r.stdout
    digit = [x for x in rows(recipe / "exp" / "classify.tsv") if x["task"] == "classify-digit"]
    assert len(digit) == 4


def test_pretrained_methods_only_need_no_source_model(official):
    """--methods "" runs only --pretrained-methods, so stage 4 (the own source) may be skipped; stage 6
    then stopped with "never trained to the end" on the own source's zero-shot row. Now that row is
    left out when there is no source model, and the report is written."""
    recipe, corpus = official
    final = recipe / "exp" / "source" / "final.pt"
    final.rename(final.with_suffix(".away"))
    report = recipe / "exp" / "RESULTS.md"
    report.unlink()
    try:
        r = run(recipe, "--shots", "1 2", "--methods", "", "--task", "asr", "--corpus-dir", str(corpus),
                "--stage", "6", "--stop-stage", "6")  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert report.is_file()
    finally:
        final.with_suffix(".away").rename(final)
