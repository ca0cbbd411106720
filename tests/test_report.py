import pytest

from speechtl.errors import SpeechtlError
from speechtl.score.report import parse_amount, plot_data_efficiency, write_results_md
from speechtl.score.results import ResultRow, update_results


def rows():
    r = []
    for method, wers in [("scratch", (80.0, 40.0)), ("finetune", (30.0, 20.0))]:
        for data, wer in zip(["5min", "30min"], wers, strict=False):
            r.append(ResultRow("target", method, data, "hlg", wer, int(wer * 10), 1000))
            r.append(ResultRow("target", method, data, "greedy", wer + 2, int(wer * 10) + 20, 1000))
    r.append(ResultRow("target", "zero-shot", "none", "hlg", 95.0, 950, 1000))
    return r


def test_parse_amount():
    assert parse_amount("30min") == (30.0, "min") and parse_amount("1h") == (60.0, "min")
    assert parse_amount("5shots") == (5.0, "shots") and parse_amount("all") is None


def test_results_md_table(tmp_path):
    tsv = tmp_path / "results.tsv"
    update_results(tsv, rows())
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    assert "## target" in md and "| method | data | greedy | hlg |" in md
    assert "| finetune | 5min | 32.00 (320/1000) | 30.00 (300/1000) |" in md
    lines = md.splitlines()
    assert lines.index("| finetune | 5min | 32.00 (320/1000) | 30.00 (300/1000) |") < lines.index(
        "| finetune | 30min | 22.00 (220/1000) | 20.00 (200/1000) |"
    )


def test_results_md_says_when_many_test_words_are_outside_the_vocabulary(tmp_path):
    """results.tsv's oov column: at 44% of the test words outside words.txt, RESULTS.md says why HLG
    trails greedy and how to fix it; at 0.5% it says nothing."""
    tsv = tmp_path / "results.tsv"
    many = [
        ResultRow("test", "finetune", "5min", d, w, int(w), 100, oov=44.0) for d, w in (("hlg", 70), ("greedy", 40))
    ]
    update_results(tsv, [*many, ResultRow("dev", "finetune", "5min", "hlg", 9.0, 9, 100, oov=0.5)])
    md = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    test_part, dev_part = md.split("## test")[1], md.split("## dev")[1].split("## test")[0]
    assert "Words outside the vocabulary: 44.0% of test's reference words" in test_part and "--lm-text" in test_part
    assert "outside the vocabulary" not in dev_part
    assert tsv.read_text().splitlines()[1].split("\t")[12] == "0.50"  # the column is written (dev sorts first)


def test_data_efficiency_plot(tmp_path):
    tsv = tmp_path / "results.tsv"
    update_results(tsv, rows())
    png = plot_data_efficiency(tsv, tmp_path / "plots" / "data_efficiency.png", "target", "hlg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert plot_data_efficiency(tsv, tmp_path / "x.png", "other-test", "hlg") is None
    update_results(tsv, [ResultRow("target", "scratch", "5shots", "hlg", 50.0, 5, 10)])
    with pytest.raises(SpeechtlError, match="mixes data units"):
        plot_data_efficiency(tsv, tmp_path / "y.png", "target", "hlg")


def test_data_efficiency_plot_ticks_are_the_amounts(tmp_path, monkeypatch):
    """A generated recipe's amounts 1, 2 and 5.3 min read 2x10^0, 3x10^0, 4x10^0 on the log axis."""
    from matplotlib.figure import Figure

    seen = {}
    save = Figure.savefig

    def spy(fig, *args, **kwargs):
        seen["ticks"] = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        seen["minor"] = [t.get_text() for t in fig.axes[0].get_xticklabels(minor=True)]
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    tsv = tmp_path / "results.tsv"
    update_results(
        tsv,
        [
            ResultRow("test", "finetune", d, "hlg", w, int(w), 100)
            for d, w in [("1min", 90.0), ("2min", 80.0), ("5.3min", 60.0)]
        ],
    )
    plot_data_efficiency(tsv, tmp_path / "p.png", "test", "hlg")
    assert seen["ticks"] == ["1", "2", "5.3"] and not any(seen["minor"])
    # Whisper's own decoder (decoding "whisper", data 0min) was missing from the plot: a level line now
    seen.clear()

    def levels(fig, *args, **kwargs):
        seen["notes"] = [t.get_text() for t in fig.axes[0].texts]
        seen["ticks"] = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", levels)
    update_results(tsv, [ResultRow("test", "whisper-zero-shot", "0min", "whisper", 70.0, 70, 100)])
    plot_data_efficiency(tsv, tmp_path / "p.png", "test", "hlg")
    assert seen["notes"] == ["whisper-zero-shot 70.0%"] and seen["ticks"] == ["1", "2", "5.3"]


def test_the_plot_shows_the_spread_over_seeds_and_the_legend_its_baselines(tmp_path, monkeypatch, caplog):
    """The plot drew seed means only (scratch's sd of 12 points at n=2 was invisible); --baselines half
    kept a legend about ↓S / ↓F; a zero-shot baseline (data 0shots) was compared with nothing, unsaid."""
    from matplotlib.figure import Figure

    seen = {}
    save = Figure.savefig

    def spy(fig, *args, **kwargs):
        ax = fig.axes[0]
        seen["title"] = ax.get_title()
        seen["bars"] = [seg for coll in ax.collections for seg in coll.get_segments()]
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    tsv = tmp_path / "results.tsv"
    rows = [ResultRow("test", "scratch", "1min", "hlg", w, int(w), 100, seed) for seed, w in ((1, 40.0), (2, 60.0))]
    rows += [ResultRow("test", "scratch", "2min", "hlg", w, int(w), 100, seed) for seed, w in ((1, 30.0), (2, 30.0))]
    rows.append(ResultRow("test", "zero-shot", "0shots", "hlg", 70.0, 70, 100))
    update_results(tsv, rows)
    plot_data_efficiency(tsv, tmp_path / "p.png", "test", "hlg")
    assert "mean ± sd over 2 seeds" in seen["title"]
    spans = sorted(round(abs(seg[1][1] - seg[0][1]), 2) for seg in seen["bars"])
    assert spans == [0.0, round(2 * 14.142, 2)]  # ± the sd of 40 and 60 at 1 min, none at 2 min
    with caplog.at_level("WARNING"):
        md = write_results_md(tsv, tmp_path / "R.md", baselines=["zero-shot"]).read_text()
    assert "↓zero-shot / ↑zero-shot: WER lower / higher than zero-shot's" in md and "↓S" not in md
    assert "baseline zero-shot has rows only at data 0shots" in caplog.text
    with pytest.raises(SpeechtlError, match="does not exist"):
        write_results_md(tmp_path / "none.tsv", tmp_path / "R2.md")


def test_a_row_of_another_system_under_the_same_label_is_named(tmp_path, caplog):
    """Two hand decodes (variants/hubert_tiny, variants/wavlm_tiny) both labelled finetune all: the
    second silently replaced the first's row. It still replaces it (one row per key), and says so."""
    import logging

    from speechtl.score.results import read_results

    caplog.set_level(logging.WARNING)
    tsv = tmp_path / "results.tsv"
    row = ResultRow("test", "finetune", "all", "greedy", 10.0, 10, 100, utt_errs="hubert/decode/utt-errs.txt")
    update_results(tsv, [row])
    update_results(tsv, [row])  # the same system decoded again: nothing to say
    assert "two systems with one label" not in caplog.text
    update_results(tsv, [ResultRow("test", "finetune", "all", "greedy", 20.0, 20, 100, utt_errs="wavlm/decode/u.txt")])
    assert "of hubert/decode is replaced by wavlm/decode's: two systems with one label" in caplog.text
    assert [r.wer for r in read_results(tsv)] == [20.0]


def test_rows_whose_decode_files_are_gone_are_named_stale(tmp_path):
    """A system retrained since its decode (exp dir reset, decode files deleted) kept its old WER row
    in RESULTS.md with nothing to say so."""
    tsv = tmp_path / "results.tsv"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "utt-errs.txt").write_text("utt_id\terrors\tref_words\nu1\t1\t10\n")
    update_results(tsv, [ResultRow("test", "finetune", "5min", "greedy", 10.0, 1, 10, utt_errs="a/utt-errs.txt")])
    update_results(tsv, [ResultRow("test", "lp-ft", "5min", "greedy", 20.0, 2, 10, utt_errs="b/utt-errs.txt")])
    text = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    assert "**1 stale row(s)**" in text and "lp-ft 5min" in text.split("stale row")[1].splitlines()[0]
    assert "finetune 5min" not in text.split("stale row")[1].splitlines()[0]
    assert "| lp-ft | 5min | 20.00 (2/10) |" in text  # its only row: shown, named stale above
    # a seed retrained and not decoded again is left out of a mean over the current seeds
    update_results(tsv, [ResultRow("test", "finetune", "5min", "greedy", 90.0, 9, 10, 2, utt_errs="c/utt-errs.txt")])
    update_results(tsv, [ResultRow("test", "finetune", "5min", "greedy", 10.0, 1, 10, 1, utt_errs="a/utt-errs.txt")])
    text = write_results_md(tsv, tmp_path / "RESULTS.md").read_text()
    assert "finetune 5min s2" in text and "1 of them are left out of their systems' cells" in text
    assert "| finetune | 5min | 10.00 (1/10)" in text and "(n=2)" not in text


def test_the_plots_decoding_is_chosen_on_dev(tmp_path):
    """A generated recipe plotted HLG although, with most dev words missing from the LM, greedy was
    far better: a user read the plot as 'no gain'. --decoding auto takes the best on dev."""
    from speechtl.score.report import choose_decoding

    tsv = tmp_path / "results.tsv"
    rows = []
    for method, greedy, hlg in (("finetune", 61.0, 92.6), ("lp-ft", 58.0, 90.0)):
        for test_set in ("dev", "test"):
            rows += [ResultRow(test_set, method, "5min", "greedy", greedy, 61, 100)]
            rows += [ResultRow(test_set, method, "5min", "hlg", hlg if test_set == "dev" else 10.0, 9, 100)]
    rows.append(ResultRow("dev", "whisper-zero-shot", "0min", "whisper", 1.0, 1, 100))  # not a decoding to choose
    rows.append(ResultRow("dev", "finetune", "5min", "onnx-hlg", 1.0, 1, 100))  # one system's export: neither
    update_results(tsv, rows)
    assert choose_decoding(tsv) == "greedy"  # on dev, though HLG is lower on test
    from speechtl.cli import main

    md = tmp_path / "RESULTS.md"
    argv = ["report", "--results", str(tsv), "--results-md", str(md), "--plot", str(tmp_path / "plots" / "p.png")]
    assert main([*argv, "--decoding", "auto"]) == 0
    assert md.read_text().rstrip().endswith("Plot: plots/p.png (test, greedy, the decoding best on dev).")
    assert choose_decoding(tsv, dev_set="none", fallback="hlg") == "hlg"
