"""Intervals, paired tests and seeds (speechtl.score.stats), on synthetic error counts and a tiny training."""

import re
import subprocess
from pathlib import Path

import kaldialign
import numpy as np
import pytest
import torch

from speechtl.errors import SpeechtlError
from speechtl.score.report import write_results_md
from speechtl.score.results import ResultRow, read_results, update_results
from speechtl.score.stats import (
    UttErrors,
    bootstrap_ci,
    compare,
    paired_test,
    pool,
    prob_improvement,
    summarize,
)
from speechtl.score.wer import compute_wer, read_utt_errs, utt_errors, write_utt_errs


def synthetic(n: int, rate: float = 0.1, seed: int = 0) -> UttErrors:
    """``n`` utterances of 5-15 words, each word wrong with probability ``rate``."""
    rng = np.random.default_rng(seed)
    words = rng.integers(5, 16, n)
    return UttErrors(tuple(f"u{i:04d}" for i in range(n)), rng.binomial(words, rate).astype(float), words.astype(float))


def test_interval_contains_point_wer_and_narrows_with_more_utterances():
    small, large = synthetic(50), synthetic(800)
    (lo_s, hi_s), (lo_l, hi_l) = bootstrap_ci(small), bootstrap_ci(large)
    assert lo_s < small.wer < hi_s and lo_l < large.wer < hi_l
    # The width shrinks about as 1/sqrt(utterances): 16x the utterances, about 1/4 the width.
    assert 0.15 < (hi_l - lo_l) / (hi_s - lo_s) < 0.4
    assert bootstrap_ci(small) == bootstrap_ci(small), "a fixed seed: the same interval every time"


def test_interval_agrees_with_kaldialign_and_stays_non_negative():
    rng = np.random.default_rng(1)
    refs = [list(rng.choice(list("abcdef"), rng.integers(4, 12))) for _ in range(300)]
    hyps = [[w if rng.random() > 0.12 else "x" for w in r][: len(r) - int(rng.random() < 0.1)] for r in refs]
    counts = utt_errors([(f"u{i}", r, h) for i, (r, h) in enumerate(zip(refs, hyps, strict=True))])
    lo, hi = bootstrap_ci(UttErrors.from_counts(counts))
    k = kaldialign.bootstrap_wer_ci(refs, hyps, replications=10_000)  # mean +- 1.96 sd, as fractions
    width = 100 * (k["ci95max"] - k["ci95min"])
    assert abs(lo - 100 * k["ci95min"]) < 0.1 * width and abs(hi - 100 * k["ci95max"]) < 0.1 * width
    # One error in 240 words (yesno): the percentile interval cannot go below 0.
    yesno = UttErrors(tuple(f"u{i}" for i in range(30)), np.array([1.0] + [0.0] * 29), np.full(30, 8.0))
    lo, hi = bootstrap_ci(yesno)
    assert lo == 0.0 and lo <= yesno.wer < hi


def test_paired_test_finds_a_planted_difference():
    base = synthetic(300, rate=0.15)
    rng = np.random.default_rng(2)
    fewer = np.where(rng.random(300) < 0.3, np.maximum(base.errors - 1, 0), base.errors)  # a better system
    better = UttErrors(base.utts, fewer, base.words)
    c = compare(better, base, "scratch")
    assert c.delta < 0 and c.p_value < 0.001 and c.holds and c.prob_improvement > 0.99
    worse = compare(base, better, "finetune")  # the same pair the other way round
    assert worse.delta > 0 and worse.holds and worse.prob_improvement < 0.01


def test_identical_systems_do_not_differ():
    u = synthetic(200)
    assert paired_test(u, u) == 1.0 and prob_improvement(u, u) == 0.5
    assert not compare(u, u, "scratch").holds


def test_exact_sign_flip_p_value():
    # 3 utterances, each with one error fewer: 2 of the 8 sign patterns reach |sum| >= 3.
    base = UttErrors(("a", "b", "c", "d"), np.array([1.0, 1.0, 1.0, 0.0]), np.full(4, 5.0))
    system = UttErrors(base.utts, np.zeros(4), base.words)
    assert paired_test(system, base) == pytest.approx(0.25)


def test_false_positive_rate_near_its_level_on_null_splits():
    """Two systems drawn from the same per-utterance error rates: p < 0.05 about 5% of the time."""
    rng = np.random.default_rng(3)
    words = rng.integers(5, 16, 120).astype(float)
    difficulty = rng.beta(1, 8, 120)  # some utterances are hard for every system
    utts = tuple(f"u{i}" for i in range(120))
    rejected = 0
    for _ in range(200):
        a, b = (UttErrors(utts, rng.binomial(words.astype(int), difficulty).astype(float), words) for _ in "ab")
        rejected += paired_test(a, b, permutations=1000, seed=int(rng.integers(1 << 30))) < 0.05
    assert 0.01 <= rejected / 200 <= 0.10, rejected


def test_pool_averages_seeds_per_utterance():
    runs = [synthetic(100, seed=s) for s in (1, 2, 3)]
    runs = [UttErrors(r.utts, r.errors, runs[0].words) for r in runs]  # one test set, three decodes
    pooled = pool(runs)
    assert pooled.wer == pytest.approx(np.mean([r.wer for r in runs]))
    assert pool([runs[0], runs[1].subset(runs[1].utts[:60])]).utts == runs[0].utts[:60]  # common utterances only
    other_refs = UttErrors(runs[1].utts, runs[1].errors, runs[1].words + 1)
    with pytest.raises(SpeechtlError, match="different reference lengths"):
        pool([runs[0], other_refs])


def test_utt_errs_file_round_trip(tmp_path):
    results = [("u2", ["YES", "NO", "NO"], ["YES"]), ("u1", ["NO"], ["NO", "YES"])]
    counts = write_utt_errs(results, tmp_path / "utt-errs-test-greedy.tsv")
    assert counts == [("u1", 1, 1), ("u2", 2, 3)] == read_utt_errs(tmp_path / "utt-errs-test-greedy.tsv")
    assert UttErrors.from_counts(counts).wer == compute_wer(results).wer


def test_results_tsv_reads_old_rows_and_keeps_seeds_apart(tmp_path):
    tsv = tmp_path / "results.tsv"
    tsv.write_text(
        "test_set\tmethod\tdata\tdecoding\twer\terrors\twords\ntest\tscratch\tall\thlg\t1.25\t3\t240\n"
    )  # a file from before the seed and interval columns
    (old,) = read_results(tsv)
    assert (old.wer, old.seed, old.ci_low, old.utt_errs) == (1.25, None, None, "")
    rows = update_results(
        tsv,
        [ResultRow("test", "scratch", "all", "hlg", 0.42, 1, 240, s, 0.0, 1.25, f"s{s}.tsv") for s in (42, 43)],
    )
    assert [r.seed for r in rows] == [42, 43], "seeded rows replace the unseeded one and sit side by side"
    header = tsv.read_text().splitlines()[0]
    assert header.endswith("\tseed\tci_low\tci_high\tutt_errs\tcer\toov\tunit\tconfig\tcheckpoint")
    rows = update_results(tsv, [ResultRow("test", "scratch", "all", "hlg", 0.83, 2, 240, 43, 0.0, 2.1, "s43.tsv")])
    assert [(r.seed, r.wer) for r in rows] == [(42, 0.42), (43, 0.83)], "a re-run of a seed replaces its row"


def write_system(tmp_path, method: str, seed: int, errors: np.ndarray, words: np.ndarray) -> ResultRow:
    """One decode's utt-errs file and results row, as speechtl.decode.run writes them."""
    d = tmp_path / f"{method}_5min_s{seed}" / "decode"
    d.mkdir(parents=True)
    results = [(f"u{i:03d}", ["w"] * int(n), ["w"] * int(n - e) + ["x"] * int(e)) for i, (e, n) in enumerate(zip(errors, words, strict=True))]  # fmt: skip
    counts = write_utt_errs(results, d / "utt-errs-test-hlg.tsv")
    s = compute_wer(results)
    lo, hi = bootstrap_ci(UttErrors.from_counts(counts))
    return ResultRow("test", method, "5min", "hlg", s.wer, s.errors, s.words, seed, lo, hi, str(d.relative_to(tmp_path) / "utt-errs-test-hlg.tsv"))  # fmt: skip


def test_report_pools_seeds_and_marks_differences_that_hold(tmp_path):
    rng = np.random.default_rng(4)
    words = rng.integers(5, 16, 200)
    hard = rng.beta(2, 6, 200)
    rows = []
    for seed in (1, 2, 3):
        for method, rate in (("scratch", 1.0), ("finetune", 0.5), ("freeze", 0.5)):
            rows.append(write_system(tmp_path, method, seed, rng.binomial(words, hard * rate), words))
    tsv = tmp_path / "results.tsv"
    update_results(tsv, rows)
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    summary = {s.method: s for s in summarize(read_results(tsv), lambda r: UttErrors.from_file(tmp_path / r.utt_errs))}
    ft = summary["finetune"]
    assert ft.seeds == [1, 2, 3] and ft.comparisons["scratch"].holds
    assert not summary["freeze"].comparisons["finetune"].holds  # the same error rates as finetune
    cell = f"{ft.mean:.2f} ± {ft.sd:.2f} (n=3) [{ft.ci[0]:.2f}, {ft.ci[1]:.2f}] ↓S"
    assert f"| finetune | 5min | {cell} |" in md
    assert "| scratch | 5min | " in md and "↑S" not in md.split("| scratch | 5min |")[1].split("\n")[0]
    assert "| finetune | 5min | hlg | scratch | " in md and "| yes |" in md
    assert "| scratch | 5min | hlg | finetune | " not in md  # the mirror of finetune vs scratch: one row
    assert "| freeze | 5min | hlg | scratch | " in md and "| freeze | 5min | hlg | finetune | " in md
    assert ft.ci[0] < ft.mean < ft.ci[1]
    assert "| vs freeze |" not in md and "| finetune | 5min | hlg | freeze | " not in md
    # another baseline (e.g. a teacher): every row is paired with it too, on the command line as well
    from speechtl.cli import main

    assert (
        main(["report", "--results", str(tsv), "--results-md", str(tmp_path / "R2.md"), "--baselines", "freeze"]) == 0
    )
    md2 = (tmp_path / "R2.md").read_text()
    assert "| finetune | 5min | hlg | freeze | " in md2 and "| finetune | 5min | hlg | scratch | " not in md2


def test_report_leaves_uncompared_a_row_of_another_test_set(tmp_path, caplog):
    """A row decoded on other utterances than its baseline's (an earlier test set's row that was not
    decoded again) gets its own interval but no paired test, and the report still gets written."""
    words = np.full(50, 8)
    rows = [write_system(tmp_path, m, 1, np.arange(50) % 3, words) for m in ("scratch", "finetune")]
    f = tmp_path / "finetune_5min_s1" / "decode" / "utt-errs-test-hlg.tsv"
    f.write_text(re.sub(r"(?m)^u0", "v0", f.read_text()))  # the same counts, other utterances
    tsv = tmp_path / "results.tsv"
    update_results(tsv, rows)
    with caplog.at_level("WARNING"):
        summary = {
            s.method: s for s in summarize(read_results(tsv), lambda r: UttErrors.from_file(tmp_path / r.utt_errs))
        }
    assert summary["finetune"].utt.utts[0].startswith("v0") and summary["finetune"].comparisons == {}
    assert "no utterance in common with scratch" in caplog.text
    assert "| finetune | 5min |" in write_results_md(tsv, tmp_path / "RESULTS.md").read_text()


def test_a_gain_at_one_seed_of_three_does_not_hold(tmp_path):
    """The utterance test pools the seeds: a system equal to its baseline at two seeds and far better
    at the third got p < 0.0001 and ↓S (a new user's reviewer: a t-test over the seeds gives p = 0.42).
    A difference holds only when it also has the same sign at every seed both ran."""
    rng = np.random.default_rng(0)
    words = rng.integers(5, 16, 200)
    base = rng.binomial(words, 0.3)
    rows = []
    for seed in (1, 2, 3):
        rows.append(write_system(tmp_path, "scratch", seed, base, words))
        rows.append(write_system(tmp_path, "finetune", seed, base // 3 if seed == 3 else base, words))
    tsv = tmp_path / "results.tsv"
    update_results(tsv, rows)
    summary = {s.method: s for s in summarize(read_results(tsv), lambda r: UttErrors.from_file(tmp_path / r.utt_errs))}
    c = summary["finetune"].comparisons["scratch"]
    assert c.p_value < 0.001 and not c.holds and c.seed_deltas[:2] == (0.0, 0.0) and c.seed_deltas[2] < 0
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| finetune | 5min | hlg | scratch |"))
    assert "+0.00 +0.00 -" in line and line.endswith("| no (not at every seed) |")
    assert "↓S" not in md.split("| finetune | 5min |")[1].split("\n")[0]
    # the same with other seed numbers (4 5 6 against 1 2 3): every seed against every baseline seed
    other = [r for r in rows if r.method == "scratch"]
    for seed, r in zip((4, 5, 6), (r for r in rows if r.method == "finetune"), strict=True):
        r.seed = seed
        other.append(r)
    (tmp_path / "results.tsv").unlink()
    update_results(tsv, other)
    summary = {s.method: s for s in summarize(read_results(tsv), lambda r: UttErrors.from_file(tmp_path / r.utt_errs))}
    c = summary["finetune"].comparisons["scratch"]
    assert c.seed_deltas == () and len(c.cross_deltas) == 9 and c.p_value < 0.001 and not c.holds


def test_seeds_under_two_confs_are_not_one_system(tmp_path, caplog):
    """Seeds added after the conf was edited (30 epochs, then 4) were averaged into one cell, n=5,
    and tested. Each row now names its conf (results.tsv's config column); a cell over two is named
    under its table and left untested."""
    words = np.full(60, 8)
    rows = []
    for seed in (1, 2, 3, 4, 5):
        for method in ("scratch", "finetune"):
            r = write_system(tmp_path, method, seed, np.arange(60) % (2 if method == "finetune" else 4), words)
            r.config = "aaaa1111" if seed <= 3 or method == "finetune" else "bbbb2222"
            rows.append(r)
    tsv = tmp_path / "results.tsv"
    update_results(tsv, rows)
    with caplog.at_level("WARNING"):
        md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    assert read_results(tsv)[0].config in ("aaaa1111", "bbbb2222")
    assert (
        "scratch (5min, hlg) on test: its seeds were trained under 2 confs (seeds 1 2 3: conf aaaa1111; seeds 4 5: conf bbbb2222)"
        in md
    )
    assert "(seeds of 2 confs: see below)" in md and "| finetune | 5min | hlg | scratch |" not in md
    (cell,) = [line for line in md.splitlines() if line.startswith("| scratch | 5min |")]
    assert "n=5" in cell and "[" not in cell  # no pooled interval over two systems either
    assert "n=5) [" in next(line for line in md.splitlines() if line.startswith("| finetune | 5min |"))
    assert "trained under 2 confs" in caplog.text


def test_partial_overlaps_and_other_seed_sets_are_said(tmp_path):
    """Seeds decoded on other utterances, a system decoded on half the test set, a system missing a
    seed: each was tested silently on what was shared."""
    words = np.full(40, 8)
    rows = [write_system(tmp_path, "scratch", s, np.arange(40) % 3, words) for s in (1, 2)]
    rows.append(write_system(tmp_path, "finetune", 1, np.arange(40) % 2, words))
    f = tmp_path / "finetune_5min_s1" / "decode" / "utt-errs-test-hlg.tsv"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:21]) + "\n")  # 20 of the 40 utterances
    tsv = tmp_path / "results.tsv"
    update_results(tsv, rows)
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    assert "finetune (5min, hlg) on test vs scratch: compared on the 20 utterances both decoded (of 20 and 40)" in md
    assert "| 20 (of 20 / 40) |" in md
    assert "finetune (5min, hlg) on test: seeds 1, scratch's 1 2" in md
    f.write_text("utt_id\terrors\tref_words\n")  # a file cut to its header: said, the report still written
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    assert "| finetune | 5min |" in md


def test_different_seeds_train_different_models_and_the_same_seed_the_same(small_yesno, tmp_path):
    """What a recipe's --seeds does: ``speechtl train --set seed=N`` per seed."""
    from speechtl.cli import main

    _, cuts, lang = small_yesno
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    conf = tmp_path / "train.yaml"
    conf.write_text(
        "model: {encoder: tdnn, num_features: 23, encoder_options: {hidden_dim: 16}}\n"
        "train: {num_steps: 3, max_duration: 20, num_buckets: 2, average_last: 1, lr: 0.01}\n"
    )

    def train(name: str, seed: int) -> dict[str, torch.Tensor]:
        argv = ["train", "--config", str(conf), "--lang-dir", str(lang.dir), "--train-cuts", str(tmp_path / "cuts.jsonl.gz")]  # fmt: skip
        assert main([*argv, "--exp-dir", str(tmp_path / name), "--set", f"seed={seed}"]) == 0
        ckpt = torch.load(tmp_path / name / "final.pt", weights_only=False)
        assert ckpt["train_config"]["seed"] == seed  # what decode writes into results.tsv's seed column
        return ckpt["model"]

    a, b, c = train("s1", 1), train("s1_again", 1), train("s2", 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)

    # Decoding records each seed's row (seed from the checkpoint), its interval and its utterances.
    tsv = tmp_path / "exp" / "results.tsv"
    for name in ("s1", "s2"):
        argv = ["decode", "--checkpoint", str(tmp_path / name / "final.pt"), "--lang-dir", str(lang.dir), "--cuts", str(tmp_path / "cuts.jsonl.gz")]  # fmt: skip
        assert main([*argv, "--test-set", "train8", "--out-dir", str(tmp_path / name / "decode"), "--decoding", "greedy", "--results", str(tsv)]) == 0  # fmt: skip
    rows = read_results(tsv)
    assert [r.seed for r in rows] == [1, 2] and all(r.ci_low <= r.wer <= r.ci_high for r in rows)
    assert [len(read_utt_errs(tsv.parent / r.utt_errs)) for r in rows] == [8, 8]
    assert "(n=2)" in write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    # the seeds share their conf's digest; a conf edited (another lr) has its own
    assert len(rows[0].config) == 8 and rows[0].config == rows[1].config
    from speechtl.train.checkpoint import config_digest

    edited = torch.load(tmp_path / "s2" / "final.pt", weights_only=False)
    edited["train_config"]["lr"] = 0.02
    assert config_digest(edited) != rows[0].config
    edited["train_config"].update(lr=0.01, seed=7, log_interval=1)  # neither trains another model
    assert config_digest(edited) == rows[0].config
    assert "method_options" in edited  # kept by averaging, unlike the resume key (frozen layers, loss weights)
    assert config_digest({**edited, "method_options": {"bottom_layers": 2}}) != rows[0].config
    # an option added to speechtl since, saved at its default by the newer checkpoint: the same system
    older = {**edited, "train_config": {k: v for k, v in edited["train_config"].items() if k != "layer_mix_lr"}}
    assert config_digest(older) == rows[0].config


def test_recipes_name_one_system_per_seed():
    """utils/common.sh split_system: how steps/adapt_all.sh and decode_all.sh read <method>_<amount>[_s<seed>]."""
    common = Path(__file__).resolve().parents[1] / "utils" / "common.sh"
    got = {}
    for name in ["finetune_5min_s2", "finetune_5min", "linear-probe_5shots_s10", "scratch_all"]:
        script = f'. "{common}"; split_system {name}; echo "$sys_method|$sys_data|$sys_seed"'
        got[name] = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert got == {
        "finetune_5min_s2": "finetune|5min|2",
        "finetune_5min": "finetune|5min|",
        "linear-probe_5shots_s10": "linear-probe|5shots|10",
        "scratch_all": "scratch|all|",
    }
