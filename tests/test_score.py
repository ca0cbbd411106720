import torch

from speechtl.decode import ctc_greedy_search
from speechtl.score.results import HEADER, ResultRow, read_results, update_results
from speechtl.score.wer import compute_wer, write_errs, write_recogs, write_wer_summary


def test_wer_on_known_pairs():
    s = compute_wer([("u1", ["a", "b", "c", "d"], ["a", "x", "c"])])
    assert (s.substitutions, s.deletions, s.insertions, s.words) == (1, 1, 0, 4)
    assert s.wer == 50.0
    s = compute_wer([("u1", ["a"], ["a", "b", "b"]), ("u2", ["c", "d"], ["c", "d"])])
    assert (s.insertions, s.errors, s.words) == (2, 2, 3)
    assert abs(s.wer - 200 / 3) < 1e-9
    assert compute_wer([("u", ["a", "b"], [])]).wer == 100.0
    assert compute_wer([("u", [], [])]).wer == 0.0


def test_icefall_style_files(tmp_path):
    results = [("u2", ["YES", "NO"], ["YES"]), ("u1", ["NO"], ["NO"])]
    write_recogs(results, tmp_path / "recogs-test-greedy.txt")
    lines = (tmp_path / "recogs-test-greedy.txt").read_text().splitlines()
    assert lines[0] == "u1:\tref=['NO']" and lines[3] == "u2:\thyp=['YES']"
    stats = write_errs(results, tmp_path / "errs-test-greedy.txt", "greedy")
    errs = (tmp_path / "errs-test-greedy.txt").read_text()
    assert errs.startswith("%WER = 33.33\n")
    assert "u2:\tYES (NO->)" in errs and "1   NO" in errs.split("\nDELETIONS:")[1]
    write_wer_summary([("greedy", stats.wer), ("hlg", 10.0)], tmp_path / "wer-summary.txt")
    assert (tmp_path / "wer-summary.txt").read_text() == "settings\tWER\nhlg\t10.00\ngreedy\t33.33\n"


def test_results_tsv_schema_and_upsert(tmp_path):
    path = tmp_path / "exp" / "results.tsv"
    update_results(path, [ResultRow("test", "scratch", "all", "greedy", 5.0, 12, 240)])
    update_results(
        path,
        [
            ResultRow("test", "scratch", "all", "hlg", 0.4166, 1, 240),
            ResultRow("test", "scratch", "all", "greedy", 4.0, 10, 240),
        ],
    )
    text = path.read_text().splitlines()
    assert text[0].split("\t") == HEADER
    assert HEADER[:7] == ["test_set", "method", "data", "decoding", "wer", "errors", "words"]  # new columns at the end
    assert text[1:] == [
        "test\tscratch\tall\tgreedy\t4.00\t10\t240\t\t\t\t\t\t\t\t\t",
        "test\tscratch\tall\thlg\t0.42\t1\t240\t\t\t\t\t\t\t\t\t",
    ]
    assert [r.decoding for r in read_results(path)] == ["greedy", "hlg"]


def test_decodes_write_the_character_error_rate(tmp_path):
    """With character units and minutes of data the WER sits near 100% while the CER moves: it was
    only in the log. Now results.tsv has it (the last column), and a file of the columns before reads."""
    from speechtl.decode.run import score_decoding

    results = [("u1", ["casa", "mare"], ["cas", "mare"]), ("u2", ["om"], ["on"])]
    tsv = tmp_path / "results.tsv"
    (tmp_path / "d").mkdir()
    row = score_decoding(results, tmp_path / "d", "test", "greedy", "finetune", "5min", tsv, None)
    update_results(tsv, [row])
    (got,) = read_results(tsv)
    assert got.wer == round(100.0 * 2 / 3, 2) and got.cer == round(
        100.0 * 2 / 11, 2
    )  # 'casa mare' + 'om': 11 characters
    header = tsv.read_text().splitlines()[0].split("\t")
    assert header[-5:] == ["cer", "oov", "unit", "config", "checkpoint"] and got.unit == "word"
    old = tmp_path / "old.tsv"  # written before the cer column
    old.write_text(
        "\t".join(HEADER[: HEADER.index("cer")])
        + "\n"
        + "test\tscratch\tall\tgreedy\t4.00\t10\t240\t1\t2.00\t6.00\tu.tsv\n"
    )
    assert read_results(old)[0].cer is None and read_results(old)[0].utt_errs == "u.tsv"
    assert read_results(old)[0].oov is None and read_results(old)[0].unit == "" and read_results(old)[0].config == ""


def test_ctc_greedy_search_batched():
    # vocab: 0 blank, 1, 2 ; row 0: 1 1 _ 1 2 2 -> [1, 1, 2]; row 1 (length 3): 2 _ 2 | pad -> [2, 2]
    best = torch.tensor([[1, 1, 0, 1, 2, 2], [2, 0, 2, 1, 1, 1]])
    lp = torch.nn.functional.one_hot(best, 3).float().log_softmax(-1)
    assert ctc_greedy_search(lp, torch.tensor([6, 3])) == [[1, 1, 2], [2, 2]]


def test_a_decode_whose_hypotheses_are_all_empty_says_so(tmp_path, caplog):
    """12 updates of a new head emit only blank: RESULTS.md showed 100% everywhere with no hint why."""
    import logging

    from speechtl.decode.run import score_decoding

    caplog.set_level(logging.WARNING)
    (tmp_path / "d").mkdir()
    score_decoding(
        [("u1", ["a", "b"], []), ("u2", ["c"], [])], tmp_path / "d", "test", "greedy", "m", "1min", None, None
    )
    assert "every hypothesis is empty" in caplog.text
    caplog.clear()
    score_decoding(
        [("u1", ["a", "b"], ["a"]), ("u2", ["c"], [])], tmp_path / "d", "test", "greedy", "m", "1min", None, None
    )
    assert "every hypothesis is empty" not in caplog.text
