"""Leave-one-speaker-out: the held-out speaker's split, pooled rows, folds in the sweep, and the
methods for speakers never heard (speaker-adversarial, entropy)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import venv_env
from lhotse import CutSet
from lhotse.testing.dummies import dummy_cut, dummy_supervision
from lhotse.utils import fastcopy

from speechtl.adapt import get_method
from speechtl.adapt.speaker import frame_entropy, speaker_bucket
from speechtl.adapt.transfer import build_model_for
from speechtl.data.holdout import HoldoutConfig, hold_out, speakers, write_holdout
from speechtl.errors import SpeechtlError
from speechtl.score.pool_sets import pool_sets
from speechtl.score.results import ResultRow, read_results, update_results
from speechtl.score.wer import UTT_ERRS_HEADER
from speechtl.train import TrainConfig, Trainer
from speechtl.train.checkpoint import load_checkpoint
from speechtl.train.trainer import seed_everything


def corpus(n_speakers=3, per_text=10, texts=("one", "two", "three"), perturbed=True):
    cuts, k = [], 0
    for s in range(n_speakers):
        for t in texts:
            for i in range(per_text):
                cid = f"spk{s}-{t}-{i}"
                sup = fastcopy(dummy_supervision(k), id=cid, recording_id=cid, text=t, speaker=f"spk{s}")
                c = fastcopy(dummy_cut(k, supervisions=[sup]), id=cid)
                cuts.append(c)
                if perturbed:
                    cuts.append(fastcopy(c, id=cid + "_sp0.9"))
                k += 1
    return CutSet.from_cuts(cuts)


def test_holdout_parts_are_disjoint_cover_the_speaker_and_hide_its_texts():
    cuts = corpus()
    parts = hold_out(cuts, "spk1", HoldoutConfig(test_fraction=0.2, dev_fraction=0.1, seed=3))
    ids = {n: {c.id for c in p} for n, p in parts.items()}
    mine = {c.id for c in cuts if c.supervisions[0].speaker == "spk1" and "_sp" not in c.id}
    assert ids["test"] | ids["dev"] | ids["unlabelled"] == mine  # every original recording, no perturbed copy
    assert (
        not (ids["test"] & ids["dev"])
        and not (ids["test"] & ids["unlabelled"])
        and not (ids["dev"] & ids["unlabelled"])
    )
    assert (len(ids["test"]), len(ids["dev"]), len(ids["unlabelled"])) == (6, 3, 21)
    assert {c.supervisions[0].speaker for c in parts["train"]} == {"spk0", "spk2"}  # never the held-out speaker
    assert len(parts["train"]) == 2 * 30 * 2  # the others' originals and their perturbed copies
    # Transcripts repeat: every word is in every part; the unlabelled part has no text, own has it back.
    for name in ("test", "dev", "own"):
        assert {c.supervisions[0].text for c in parts[name]} == {"one", "two", "three"}, name
    assert all(c.supervisions[0].text == "" for c in parts["unlabelled"])
    assert ids["own"] == ids["unlabelled"]


def test_holdout_is_seeded_and_independent_of_the_other_speakers():
    a = hold_out(corpus(3), "spk1", HoldoutConfig(seed=0))
    b = hold_out(corpus(5), "spk1", HoldoutConfig(seed=0))  # two more speakers in the corpus
    c = hold_out(corpus(3), "spk1", HoldoutConfig(seed=1))
    assert {x.id for x in a["test"]} == {x.id for x in b["test"]}
    assert {x.id for x in a["test"]} != {x.id for x in c["test"]}


def test_holdout_unique_sentences_one_pool_and_bad_input(tmp_path):
    cuts = corpus(2, per_text=1, texts=[f"sentence {i}" for i in range(20)], perturbed=False)
    parts = hold_out(cuts, "spk0")
    assert (len(parts["test"]), len(parts["dev"]), len(parts["unlabelled"])) == (4, 2, 14)
    with pytest.raises(SpeechtlError, match=r"spk9.*spk0, spk1"):
        hold_out(cuts, "spk9")
    with pytest.raises(SpeechtlError, match="leave no unlabelled"):
        hold_out(cuts, "spk0", HoldoutConfig(test_fraction=0.6, dev_fraction=0.4))
    nospk = CutSet.from_cuts([fastcopy(c, supervisions=[fastcopy(c.supervisions[0], speaker=None)]) for c in cuts])
    with pytest.raises(SpeechtlError, match=r"no speaker.*--speaker-pattern"):
        speakers(nospk)
    with pytest.raises(SpeechtlError, match="no such cut manifest"):
        write_holdout([tmp_path / "missing.jsonl.gz"], "spk0", tmp_path / "out")
    cuts.to_file(tmp_path / "a.jsonl.gz")
    with pytest.raises(SpeechtlError, match="same cut id occurs twice"):
        write_holdout([tmp_path / "a.jsonl.gz", tmp_path / "a.jsonl.gz"], "spk0", tmp_path / "out")
    written = write_holdout([tmp_path / "a.jsonl.gz"], "spk0", tmp_path / "out")
    assert sorted(written) == sorted(["train", "test", "dev", "unlabelled", "own"])
    assert len(CutSet.from_file(written["test"])) == 4


def write_set(tmp_path, test_set, method, errs, seed=None):
    """A results row and its per-utterance file: errs = [(utt, errors, words)]."""
    f = tmp_path / f"utt-errs-{test_set}-{method}.tsv"
    f.write_text("\t".join(UTT_ERRS_HEADER) + "\n" + "".join(f"{u}\t{e}\t{w}\n" for u, e, w in errs))
    e, w = sum(x[1] for x in errs), sum(x[2] for x in errs)
    row = ResultRow(test_set, method, "5shots", "hlg", 100 * e / w, e, w, seed, None, None, f.name)
    update_results(tmp_path / "results.tsv", [row])


def test_pool_sets_sums_the_speakers_and_bootstraps_their_utterances(tmp_path):
    rng = np.random.default_rng(0)
    for spk in ("a", "b"):
        for method in ("finetune", "dann"):
            write_set(tmp_path, f"test_{spk}", method, [(f"{spk}{i}", int(rng.random() < 0.3), 1) for i in range(50)])
    write_set(tmp_path, "test_a", "scratch", [("a0", 1, 1)])  # only one speaker: not pooled
    pooled = pool_sets(tmp_path / "results.tsv", ["test_a", "test_b"], "test_loso_mean")
    assert sorted(r.method for r in pooled) == ["dann", "finetune"]
    rows = {(r.test_set, r.method): r for r in read_results(tmp_path / "results.tsv")}
    for method in ("finetune", "dann"):
        p, a, b = (rows[(t, method)] for t in ("test_loso_mean", "test_a", "test_b"))
        assert (p.errors, p.words) == (a.errors + b.errors, 100)
        assert p.wer == pytest.approx((a.wer + b.wer) / 2)  # equal test sets: the mean of the speakers
        assert p.ci_low <= p.wer <= p.ci_high and p.ci_high - p.ci_low > 0
        with open(tmp_path / p.utt_errs) as f:
            assert len(list(csv.reader(f, delimiter="\t"))) == 101  # header + both speakers' utterances
    assert ("test_loso_mean", "scratch") not in rows
    write_set(tmp_path, "test_b", "scratch", [("a0", 0, 1)])  # the same utterance id in both sets
    with pytest.raises(SpeechtlError, match="share utterance ids"):
        pool_sets(tmp_path / "results.tsv", ["test_a", "test_b"], "test_loso_mean")
    with pytest.raises(SpeechtlError, match="one of the sets"):
        pool_sets(tmp_path / "results.tsv", ["test_a"], "test_a")


def test_speaker_buckets_are_stable_and_in_range():
    assert speaker_bucket("george", 256) == speaker_bucket("george", 256)
    assert all(1 <= speaker_bucket(f"s{i}", 8) <= 7 for i in range(100))
    assert len({speaker_bucket(s, 256) for s in ("george", "jackson", "lucas", "nicolas")}) == 4


def test_frame_entropy_ignores_padding():
    lp = torch.log_softmax(torch.randn(2, 5, 4), -1)
    lp[1, 3:] = torch.log(torch.tensor([1.0, 1e-9, 1e-9, 1e-9]))  # padding frames, zero entropy
    full = frame_entropy(lp[:, :3], torch.tensor([3, 3]))
    assert frame_entropy(lp, torch.tensor([3, 3])) == pytest.approx(full.item())
    uniform = torch.full((1, 2, 4), -np.log(4.0))
    assert frame_entropy(uniform, torch.tensor([2])).item() == pytest.approx(np.log(4.0))


def fit(method, small_yesno, source, tmp_path, steps=1, lr=0.05, speakers_of=("a", "b")):
    _, cuts, lang = small_yesno
    cuts = CutSet.from_cuts(
        fastcopy(c, supervisions=[fastcopy(c.supervisions[0], speaker=speakers_of[i % len(speakers_of)])])
        for i, c in enumerate(cuts)
    )
    unlabelled = CutSet.from_cuts(
        fastcopy(c, id="u-" + c.id, supervisions=[fastcopy(c.supervisions[0], text="")]) for c in cuts
    )
    seed_everything(3)
    model = build_model_for(method, lang, None, source)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(num_steps=steps, max_duration=400, num_buckets=2, average_last=1, lr=lr, weight_decay=0.0)
    trainer = Trainer(model, lang, method, cfg, tmp_path / "exp")
    if method.aux_data:
        with pytest.raises(SpeechtlError, match="--unlabelled-cuts"):
            trainer.fit(cuts)
    trainer.fit(cuts, aux_cuts={"unlabelled": unlabelled})
    return before, load_checkpoint(tmp_path / "exp" / "epoch-1.pt"), trainer, unlabelled


@pytest.fixture
def source(small_yesno, tmp_path):
    from test_methods import TINY

    from speechtl.models import build_model
    from speechtl.train.checkpoint import save_checkpoint

    _, _, lang = small_yesno
    seed_everything(7)
    path = tmp_path / "source.pt"
    save_checkpoint(path, build_model(TINY, lang.vocab_size), tokens=dict(lang.token2id))
    return path


def test_speaker_adversarial_trains_its_speaker_classifier_and_the_encoder(small_yesno, source, tmp_path):
    method = get_method("speaker-adversarial", {"weight": 1.0, "max_speakers": 16})
    init, modules = {}, method.modules

    def snapshot():  # the Trainer asks for the method's modules once, right after creating them
        m = modules()
        init.update({k: v.clone() for k, v in m.state_dict().items()})
        return m

    method.modules = snapshot
    before, ckpt, _, _ = fit(method, small_yesno, source, tmp_path)
    assert any(not torch.equal(before[n], ckpt["model"][n]) for n in before if n.startswith("encoder."))
    assert method.classifier[2].weight.shape == (16, method.classifier[0].out_features)
    trained = method.classifier.state_dict()
    assert init and all(not torch.equal(init[k], trained[k]) for k in init), "the speaker classifier did not train"
    with pytest.raises(SpeechtlError, match="max_speakers"):
        get_method("speaker-adversarial", {"max_speakers": 2})


def test_speaker_adversarial_needs_speakers(small_yesno, source, tmp_path):
    method = get_method("speaker-adversarial")
    with pytest.raises(SpeechtlError, match="needs a speaker"):
        fit(method, small_yesno, source, tmp_path, speakers_of=("",))


def test_entropy_lowers_the_unlabelled_posteriors_entropy(small_yesno, source, tmp_path):
    from speechtl.decode.run import compute_log_probs

    def mean_entropy(ckpt_path, unlabelled):
        lps = compute_log_probs(ckpt_path, unlabelled, "cpu")
        return float(np.mean([frame_entropy(lp[None], torch.tensor([lp.size(0)])).item() for _, lp in lps.values()]))

    # The same training with and without the entropy term: only the term differs.
    _, _, _, unlabelled = fit(get_method("finetune"), small_yesno, source, tmp_path / "ft", steps=6, lr=0.01)
    fit(get_method("entropy", {"weight": 5.0}), small_yesno, source, tmp_path / "ent", steps=6, lr=0.01)
    with_term = mean_entropy(tmp_path / "ent" / "exp" / "final.pt", unlabelled)
    assert with_term < mean_entropy(tmp_path / "ft" / "exp" / "final.pt", unlabelled)


def two_folds(small_yesno, tmp_path):
    """train0/dev0 and train1/dev1 (4 and 8 training, 2 and 4 dev utterances), a tiny TDNN conf,
    the lang dir and the words of both dev sets together."""
    d, cuts, lang = small_yesno
    dev = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz").subset(last=6)
    for k in (0, 1):
        cuts.subset(first=4 + 4 * k).to_file(tmp_path / f"train{k}.jsonl.gz")
        dev.subset(first=2 + 2 * k).to_file(tmp_path / f"dev{k}.jsonl.gz")
    conf = tmp_path / "adapt.yaml"
    conf.write_text(
        "model: {encoder: tdnn, num_features: 23, encoder_options: {hidden_dim: 16}}\n"
        "train: {num_steps: 2, max_duration: 20, num_buckets: 2, average_last: 1, lr: 0.01}\n"
        "methods:\n  scratch: {}\n"
    )
    dev_words = sum(
        len(c.supervisions[0].text.split()) for k in (0, 1) for c in CutSet.from_file(tmp_path / f"dev{k}.jsonl.gz")
    )
    return conf, lang, dev_words


def test_sweep_over_folds_scores_every_fold_dev_set_together(small_yesno, tmp_path):
    import yaml

    from speechtl.cli import main

    conf, lang, dev_words = two_folds(small_yesno, tmp_path)
    argv = ["sweep", "--config", str(conf), "--method", "scratch", "--lang-dir", str(lang.dir)]
    for k in (0, 1):
        argv += ["--train-cuts", str(tmp_path / f"train{k}.jsonl.gz"), "--dev-cuts", str(tmp_path / f"dev{k}.jsonl.gz")]
    out = tmp_path / "tuned.yaml"
    assert (
        main([*argv, "--space", "train.lr=0.0001,0.05", "--exp-dir", str(tmp_path / "sw"), "--output", str(out)]) == 0
    )
    with open(tmp_path / "sw" / "sweep.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 2 and all(int(r["words"]) == dev_words for r in rows)  # both folds' dev sets, summed
    for trial in ("trial-00", "trial-01"):
        for k in (0, 1):
            run = tmp_path / "sw" / trial / f"fold-{k}"
            assert (run / "final.pt").is_file() and any("-dev-" in p.name for p in (run / "decode").iterdir())
    assert "over 2 folds" in out.read_text() and yaml.safe_load(out.read_text())["methods"]["scratch"]["train"][
        "lr"
    ] in (0.0001, 0.05)
    bad = [*argv[:-2], "--space", "train.lr=0.01", "--exp-dir", str(tmp_path / "sw2"), "--output", str(out)]
    assert main(bad) != 0  # one --dev-cuts short of the --train-cuts


def test_tune_sh_sweeps_folds_given_as_lists_and_checks_their_counts(small_yesno, tmp_path):
    """steps/tune.sh with K train and K dev sets (the recipes' cross-validation and held-out-speaker
    folds): one sweep over all K, keyed per method, so a re-run sweeps nothing; mismatched lists stop it."""
    import subprocess

    from conftest import REPO

    conf, lang, dev_words = two_folds(small_yesno, tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text("scratch: {train.lr: [0.0001, 0.05]}\n")
    trains = " ".join(str(tmp_path / f"train{k}.jsonl.gz") for k in (0, 1))
    devs = " ".join(str(tmp_path / f"dev{k}.jsonl.gz") for k in (0, 1))
    env = venv_env()

    def tune(train_list, dev_list):
        argv = [str(REPO / "steps" / "tune.sh"), "--nj", "1", "--methods", "scratch", "--source-checkpoint", ""]
        argv += [
            str(conf),
            str(space),
            str(lang.dir),
            train_list,
            dev_list,
            str(tmp_path / "sw"),
            str(tmp_path / "t.yaml"),
        ]
        return subprocess.run(argv, capture_output=True, text=True, env=env)

    r = tune(trains, devs)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "tune scratch on dev of 2 folds" in r.stdout + r.stderr
    with open(tmp_path / "sw" / "scratch" / "sweep.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 2 and all(int(r["words"]) == dev_words for r in rows)
    assert (tmp_path / "sw" / "scratch" / "trial-01" / "fold-1" / "final.pt").is_file()
    assert "# sweep: scratch:" in (tmp_path / "t.yaml").read_text()
    again = tune(trains, devs)
    assert again.returncode == 0 and "tune scratch" not in again.stdout + again.stderr
    bad = tune(trains, devs.split()[0])
    assert bad.returncode != 0 and "2 train cuts, 1 dev cuts" in bad.stdout + bad.stderr


def test_unit_marginal_drops_blank_and_padding():
    from speechtl.adapt.speaker import unit_marginal

    lp = torch.log_softmax(torch.randn(2, 6, 5), -1)
    m = unit_marginal(lp, torch.tensor([6, 3]))
    assert m.shape == (4,) and m.sum().item() == pytest.approx(1.0)
    lp2 = lp.clone()
    lp2[1, 3:] = torch.log_softmax(torch.randn(3, 5) * 10, -1)  # other padding frames: no change
    assert torch.allclose(m, unit_marginal(lp2, torch.tensor([6, 3])))


def test_infomax_balance_term_pulls_an_underused_unit_back():
    """Labelled frames emit units 1 and 2 equally; the unlabelled ones send everything to unit 2
    (a confusion). One gradient step on the infomax loss raises unit 1 on the unlabelled frames,
    and the entropy term alone does not."""
    from types import SimpleNamespace

    from speechtl.adapt.speaker import unit_marginal

    def step(method):
        lab = torch.log(torch.tensor([[[0.1, 0.45, 0.45]] * 4]))
        logits = torch.log(torch.tensor([[[0.1, 0.2, 0.7]] * 4])).requires_grad_(True)
        unl = torch.log_softmax(logits, -1)
        lens = torch.tensor([4])
        ctx = SimpleNamespace(log_probs=lab, out_lens=lens, aux={"unlabelled": (unl, lens, None)})
        method.extra_loss(ctx).backward()
        with torch.no_grad():
            after = torch.log_softmax(logits - 1.0 * logits.grad, -1)
        return unit_marginal(after, lens)[0].item() - unit_marginal(unl.detach(), lens)[0].item()

    assert step(get_method("infomax", {"weight": 0.1, "balance": 1.0})) > 0
    assert step(get_method("entropy", {"weight": 0.1})) < 0  # confidence alone deepens the confusion


def test_results_md_has_a_per_speaker_table_for_pooled_rows(tmp_path):
    from speechtl.score.report import write_results_md

    for spk, errs in (("a", 5), ("b", 15)):
        write_set(tmp_path, f"test_{spk}", "finetune", [(f"{spk}{i}", int(i < errs), 1) for i in range(50)])
    pool_sets(tmp_path / "results.tsv", ["test_a", "test_b"], "test_loso_mean")
    md = write_results_md(tmp_path / "results.tsv", tmp_path / "RESULTS.md").read_text()
    assert "### test_loso_mean per held-out speaker (hlg" in md
    assert "| method | data | a | b | test_loso_mean |" in md
    row = next(line for line in md.splitlines() if line.startswith("| finetune | 5shots | 10.00 | 30.00 |"))
    assert "20.00 (20/100)" in row


def fails_before_any_work(tmp_path: Path, script: str, *argv: str) -> str:
    """steps/<script> argv run in tmp_path: it must fail, and write no data/ or exp/; its output."""
    import subprocess

    steps = Path(__file__).resolve().parents[1] / "steps"
    r = subprocess.run([str(steps / script), *argv], cwd=tmp_path, capture_output=True, text=True, env=venv_env())
    assert r.returncode != 0
    assert not (tmp_path / "data").exists() and not (tmp_path / "exp").exists()
    return r.stdout + r.stderr


def test_decoding_systems_that_never_finished_training_names_them(tmp_path):
    """run.sh --stage 4 after a failed stage 3 started a decode per system, each with 'cat: .../.done:
    No such file' and 'checkpoint does not exist'; now they are named once, with the fix."""
    out = fails_before_any_work(
        tmp_path, "decode_all.sh", "--exp-dir", "exp", "lang", "cuts", "finetune_1shots", "freeze_1shots"
    )
    assert "not decoded, never trained to the end" in out and "finetune_1shots freeze_1shots" in out
    assert "No such file" not in out and "checkpoint does not exist" not in out


def test_personalizing_from_a_system_that_is_not_trained_fails_before_any_work(tmp_path):
    data = ["conf.yaml", "lang", "pool.jsonl.gz", "data", "exp"]
    argv = ["--methods", "finetune dann", "--personal-shots", "1", "--personal-from", "pseudo-label"]
    out = fails_before_any_work(tmp_path, "loso.sh", *argv, *data)
    assert "--personal-from pseudo-label is not among --methods" in out
    # an empty --personal-method (e.g. a chain's variable left unset) names the fix
    argv = ["--methods", "finetune", "--personal-shots", "1", "--personal-method", ""]
    out = fails_before_any_work(tmp_path, "loso.sh", *argv, *data)
    assert "--personal-method is empty. Fix: finetune, or a chain" in out


def test_a_teacher_of_another_source_must_be_trained_before_it_teaches(tmp_path):
    """adapt_all --teacher-dir (loso.sh --teacher-exp: e.g. Whisper's fold systems teach this
    source's pseudo-label): an untrained teacher there stops the run before any training."""
    import subprocess

    steps = Path(__file__).resolve().parents[1] / "steps"
    (tmp_path / "conf.yaml").write_text("train: {num_steps: 1}\nmethods:\n  pseudo-label: {}\n")
    (tmp_path / "whisper" / "finetune_1shots").mkdir(parents=True)  # no .done: not trained
    env = venv_env()

    def adapt_all(*options: str) -> str:
        argv = [str(steps / "adapt_all.sh"), *options, "--exp-dir", "exp", "conf.yaml", "lang", "cuts"]
        r = subprocess.run([*argv, "pseudo-label_1shots"], cwd=tmp_path, capture_output=True, text=True, env=env)
        assert r.returncode != 0
        return r.stdout + r.stderr

    out = adapt_all("--teacher-dir", str(tmp_path / "whisper"))
    assert f"taught by {tmp_path / 'whisper' / 'finetune_1shots'}, which is not trained" in out, out
    assert not (tmp_path / "exp" / "pseudo-label_1shots").exists()
    # one model teaching every system (--teacher-checkpoint, personalization): the error names it
    ckpt = tmp_path / "whisper" / "finetune_1shots" / "final.pt"
    out = adapt_all("--teacher-checkpoint", str(ckpt))
    assert f"taught by {ckpt}, which is not trained" in out and "Fix: train it first" in out, out
    # a round 2 taught by round 1 needs round 1 elsewhere: in one exp dir it would teach itself
    assert "would teach itself" in adapt_all("--teacher", "pseudo-label")


def test_rounds_of_self_training_are_checked_before_any_work(tmp_path):
    """--rounds (iterated self-training): a whole number, only taught methods have rounds, and
    --personal-from round<r>-<method> names a round that runs; each mistake stops before any work."""

    def fails(script: str, *argv: str) -> str:
        return fails_before_any_work(tmp_path, script, *argv)

    system = ["--exp-dir", "exp", "conf.yaml", "lang", "cuts", "pseudo-label_1shots"]
    assert "--rounds is a whole number >= 1" in fails("adapt_all.sh", "--rounds", "0", *system)
    assert "--rounds is a whole number >= 1" in fails("adapt_all.sh", "--rounds", "two", *system)
    out = fails("adapt_all.sh", "--rounds", "2", "--round-methods", "finetune", *system)
    assert "--round-methods finetune is not a taught method" in out
    decode = ["--exp-dir", "exp", "lang", "cuts", "pseudo-label_1shots"]
    assert "--rounds 2 needs --round-methods" in fails("decode_all.sh", "--rounds", "2", *decode)
    loso = ["--methods", "finetune balanced-pseudo-label", "--personal-shots", "1", "--rounds", "3"]
    data = ["conf.yaml", "lang", "pool.jsonl.gz", "data", "exp"]
    for wrong in ("round4-balanced-pseudo-label", "round1-balanced-pseudo-label", "round2-finetune"):
        assert f"--personal-from {wrong}: no such round" in fails("loso.sh", *loso, "--personal-from", wrong, *data)


@pytest.mark.parametrize("corpus", ["fsdd", "tts_xling"])
def test_a_recipes_rounds_are_checked_before_any_stage(tmp_path, corpus):
    """run.sh --rounds on the official split: a bad value stops the recipe before stage 0 writes anything."""
    from conftest import REPO, copy_recipe, run

    recipe = copy_recipe(REPO / "egs" / corpus / "ASR", tmp_path)
    for argv, want in [
        (["--rounds", "0"], "--rounds is a whole number >= 1"),
        (["--rounds", "2", "--round-methods", "finetune"], "--round-methods finetune is not a taught method"),
    ]:
        r = run(recipe, *argv)
        assert r.returncode != 0 and want in r.stdout + r.stderr, r.stdout + r.stderr
        assert not any((recipe / d).exists() for d in ("data", "exp", "download"))


def test_systems_of_picks_one_methods_systems():
    """utils/common.sh systems_of: the systems a round repeats (seeds and amounts kept, other methods not)."""
    import subprocess

    common = Path(__file__).resolve().parents[1] / "utils" / "common.sh"
    script = f". {common}; systems_of pseudo-label finetune_5shots pseudo-label_5shots_s2 kd_1min pseudo-label_1min"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["pseudo-label_5shots_s2", "pseudo-label_1min"]


FAKE_TRAIN = """#!/usr/bin/env bash
# stands in for steps/train.sh: records its arguments in the exp dir (the last one) and a model
set -euo pipefail
exp=${*: -1}
mkdir -p "$exp"
echo "$*" > "$exp/args"
touch "$exp/final.pt"
"""


def test_per_seed_start_and_teacher_models_train_in_one_call(tmp_path):
    """adapt_all --source-checkpoint/--teacher-checkpoint with @seed@ (loso.sh's personalization):
    each seed's system starts from and is taught by its own seed's model, all in one call; that
    model's .done joins the system's key, so retraining it redoes that seed's system only."""
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    for d in ("steps", "utils"):
        shutil.copytree(repo / d, tmp_path / d, symlinks=True)
    (tmp_path / "steps" / "train.sh").write_text(FAKE_TRAIN)
    (tmp_path / "conf.yaml").write_text("train: {num_steps: 1}\nmethods:\n  pseudo-label: {}\n")
    for s in ("1", "2"):
        (tmp_path / "exp" / f"finetune_5shots_s{s}").mkdir(parents=True)
        (tmp_path / "exp" / f"finetune_5shots_s{s}" / ".done").write_text(f"model of seed {s}")
    start = str(tmp_path / "exp" / "finetune_5shots@seed@" / "final.pt")

    def adapt_all(*systems: str) -> subprocess.CompletedProcess:
        argv = [str(tmp_path / "steps" / "adapt_all.sh"), "--exp-dir", "exp/personal", "--taught", "pseudo-label"]
        argv += ["--source-checkpoint", start, "--teacher-checkpoint", start, "conf.yaml", "lang", "cuts", *systems]
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=venv_env())

    systems = ("pseudo-label_5shots_s1", "pseudo-label_5shots_s2")
    r = adapt_all(*systems)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("adapt ") == 1, r.stdout  # one wave: both seeds together
    personal = tmp_path / "exp" / "personal"
    for s in ("1", "2"):
        args = (personal / f"pseudo-label_5shots_s{s}" / "args").read_text()
        model = tmp_path / "exp" / f"finetune_5shots_s{s}" / "final.pt"
        assert f"--source-checkpoint {model}" in args and f"teacher={model}" in args and f"seed={s}" in args
        assert f"from=model of seed {s}" in (personal / f"pseudo-label_5shots_s{s}" / ".done").read_text()
    first = (personal / "pseudo-label_5shots_s1" / "args").stat().st_mtime_ns
    (tmp_path / "exp" / "finetune_5shots_s2" / ".done").write_text("seed 2 retrained")
    assert adapt_all(*systems).returncode == 0
    assert (personal / "pseudo-label_5shots_s1" / "args").stat().st_mtime_ns == first
    assert "from=seed 2 retrained" in (personal / "pseudo-label_5shots_s2" / ".done").read_text()
    # a seed whose start model is not trained stops the call before any training
    out = adapt_all("pseudo-label_5shots_s3")
    assert out.returncode != 0 and "finetune_5shots_s3/final.pt, which is not trained" in out.stdout + out.stderr
    assert not (personal / "pseudo-label_5shots_s3").exists()
