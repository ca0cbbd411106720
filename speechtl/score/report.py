"""RESULTS.md and plots generated from exp/results.tsv (the one results file).

RESULTS.md has one table per test set: a row per (method, data), a column per
decoding, WER with errors/words (mean +- sd over seeds when a system has several),
its 95% bootstrap interval, and arrows where the paired test says it differs from
scratch or finetune at the same data and decoding (:mod:`speechtl.score.stats`);
then a table of those comparisons. ``data_efficiency.png`` plots WER against the
amount of labelled target data (``5min``, ``30min``, ``5shots``...), one line per
method; methods that use no target data (``zero-shot``) are a dashed level line.

Rows of a model other than a training's final one (results.tsv's ``checkpoint``, e.g. the epoch
average ``epoch-30-avg-10`` of ``speechtl decode --epoch 30 --avg 10``) are systems of their own in
RESULTS.md, named with it (``finetune (epoch-30-avg-10)``, compared with the baselines like any row),
never seeds of the final model's cell; the plot and the choice of its decoding are of final models only.
"""

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from speechtl.atomic import atomic_open
from speechtl.errors import SpeechtlError
from speechtl.score.results import ResultRow, read_results
from speechtl.score.stats import ALPHA, BASELINES, SystemSummary, load_utt_errors, summarize

_AMOUNT = re.compile(r"^(\d+(?:\.\d+)?)(min|h|shots?)$")


def parse_amount(data: str) -> tuple[float, str] | None:
    """``'30min' -> (30.0, 'min')``, ``'1h' -> (60.0, 'min')``, ``'5shots' -> (5.0, 'shots')``; else None."""
    m = _AMOUNT.match(data)
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2)
    if unit == "h":
        return value * 60, "min"
    return value, "shots" if unit.startswith("shot") else "min"


def checkpoints_apart(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """``rows`` with each one of another checkpoint than the final model's named by it (method
    ``finetune (epoch-30-avg-10)``): the report groups rows by method, so otherwise an epoch average would
    be averaged into its system's cell as if it were one more seed."""
    return [replace(r, method=f"{r.method} ({r.checkpoint})") if r.checkpoint else r for r in rows]


def final_models(rows: Sequence[ResultRow], what: str) -> list[ResultRow]:
    """The rows of training's final models (results.tsv's ``checkpoint`` empty), the others' left out
    of ``what`` with a line in the log: one line per method in the plot is its final model."""
    other = sorted({f"{r.method} ({r.checkpoint})" for r in rows if r.checkpoint})
    if other:
        logging.info(f"{what}: final models only; left out: {', '.join(other)} (they are in RESULTS.md)")
    return [r for r in rows if not r.checkpoint]


def _sort_key(r: ResultRow):
    a = parse_amount(r.data)
    return (r.method, a[0] if a else float("inf"), r.data)


#: Arrow marks: this row's WER is significantly lower (down) or higher (up) than the baseline's.
_MARK = {"scratch": "S", "finetune": "F"}


def _legend(baselines: Sequence[str]) -> str:
    marks = [f"↓{_MARK.get(b, b)} / ↑{_MARK.get(b, b)}: {b}'s" for b in baselines]
    return (
        "n=K: mean ± sd over K seeds; [low, high]: 95% bootstrap interval over utterances (seeds pooled); "
        f"{marks[0].split(': ')[0]}: WER lower / higher than {baselines[0]}'s at the same data and decoding, "
        "paired sign-flip test over utterances p < 0.05 and the same direction at every seed both ran"
        + (f" ({'; '.join(marks[1:])})" if len(marks) > 1 else "")
        + ". The tests count utterances, each one's errors averaged over seeds: they take the trained models as "
        "fixed, and the spread over seeds is the sd."
    )


def _cell(s: SystemSummary) -> str:
    if len(s.rows) == 1:
        r = s.rows[0]
        text = f"{r.wer:.2f} ({r.errors}/{r.words})"
    else:
        text = f"{s.mean:.2f} ± {s.sd:.2f} (n={len(s.rows)})"
    if s.ci is not None:
        text += f" [{s.ci[0]:.2f}, {s.ci[1]:.2f}]"
    marks = [("↓" if c.delta < 0 else "↑") + _MARK.get(b, b) for b, c in s.comparisons.items() if c.holds]
    if s.mixed:
        marks.append(f"(seeds of {len(s.configs)} confs: see below)")
    return " ".join([text, *marks])


def _seeds_cell(c) -> str:
    """The per-seed differences of a comparison, e.g. ``-1.25 -0.42 +0.00``."""
    return " ".join(f"{d:+.2f}" for d in c.seed_deltas) if len(c.seed_deltas) > 1 else ""


def _utts_cell(c) -> str:
    """How many utterances were compared, with what each side decoded when that differs."""
    n, (a, b) = c.utterances, c.decoded
    return str(n) if a == b == n else f"{n} (of {a} / {b})"


def _comparison_lines(summaries: list[SystemSummary], baselines: Sequence[str] = BASELINES) -> list[str]:
    """One row per (system, baseline) pair; empty when no row has per-utterance errors. Two baselines
    compared with each other are one row (finetune vs scratch; scratch vs finetune is its mirror)."""

    def mirror(method: str, baseline: str) -> bool:
        return method in baselines and baselines.index(method) < baselines.index(baseline)

    pairs = [(s, c) for s in summaries for c in s.comparisons.values() if not mirror(s.method, c.baseline)]
    if not pairs:
        return []
    lines = [
        f"Paired comparisons with {' and '.join(baselines)} (ΔWER in points; P(better): bootstrap probability "
        "of improvement; p: two-sided sign-flip test over utterances, each one's errors averaged over seeds; "
        "per seed: ΔWER at each seed both ran; utterances: those compared (of what each side decoded, where "
        "they differ); holds: p < 0.05 and the same sign at every seed):",
        "",
        "| method | data | decoding | vs | ΔWER | per seed | P(better) | p | utterances | holds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, c in pairs:
        p = f"{c.p_value:.4f}" if c.p_value >= 1e-4 else "<0.0001"
        holds = "yes" if c.holds else ("no (not at every seed)" if c.p_value < ALPHA else "no")
        lines.append(
            f"| {s.method} | {s.data} | {s.decoding} | {c.baseline} | {c.delta:+.2f} | {_seeds_cell(c)} "
            f"| {c.prob_improvement:.3f} | {p} | {_utts_cell(c)} | {holds} |"
        )
    return [*lines, ""]


def _note_lines(summaries: list[SystemSummary], baselines: Sequence[str] = BASELINES) -> list[str]:
    """What the cells of a table cannot say: seeds under several confs, seeds decoded on other
    utterances, a system compared on part of what it decoded or over other seeds."""

    def named(seeds: tuple[int | None, ...]) -> str:
        return " ".join(str(x) for x in seeds if x is not None) or "none recorded"

    notes = [n for s in summaries for n in s.notes]
    for s in summaries:
        for c in s.comparisons.values():
            if s.method in baselines and baselines.index(s.method) < baselines.index(c.baseline):
                continue  # the mirror of a pair noted from its other side
            if c.utterances < max(c.decoded):
                notes.append(
                    f"{s.name} vs {c.baseline}: compared on the {c.utterances} utterances both decoded (of "
                    f"{c.decoded[0]} and {c.decoded[1]}). Fix: decode both on the same test set"
                )
            mine, theirs = c.seeds
            if set(mine) != set(theirs):
                shared = len(c.seed_deltas)
                notes.append(
                    f"{s.name}: seeds {named(mine)}, {c.baseline}'s {named(theirs)}: the means are over other seeds; "
                    + (
                        "no seed is shared, so a difference holds only if every seed of the one is on the same "
                        "side of every seed of the other"
                        if shared == 0
                        else f"{shared} shared seed(s)"
                        + (" (the per-seed column)" if shared > 1 else f", ΔWER {c.seed_deltas[0]:+.2f} there")
                    )
                )
    return ["Notes:", "", *(f"- {n}" for n in dict.fromkeys(notes)), ""] if notes else []


#: Test sets pooled over held-out speakers (speechtl.score.pool_sets) end with this.
POOLED_SUFFIX = "loso_mean"


def _per_speaker_lines(summaries: list[SystemSummary]) -> list[str]:
    """For each pooled set (``test_loso_mean``): a table with a column per member set
    (``test_<speaker>``) and the pooled cell; members are the sets sharing its prefix."""
    lines = []
    by_set: dict[str, list[SystemSummary]] = defaultdict(list)
    for s in summaries:
        by_set[s.test_set].append(s)
    for pooled in sorted(t for t in by_set if t.endswith(POOLED_SUFFIX)):
        prefix = pooled[: -len(POOLED_SUFFIX)]
        members = sorted(t for t in by_set if t.startswith(prefix) and not t.endswith(POOLED_SUFFIX))
        if not members:
            continue
        cell = {(s.test_set, s.method, s.data, s.decoding): s for t in [pooled, *members] for s in by_set[t]}
        for decoding in sorted({s.decoding for s in by_set[pooled]}):
            lines += [
                f"### {pooled} per held-out speaker ({decoding}; WER %, mean over seeds)",
                "",
                "| method | data | " + " | ".join(m[len(prefix) :] for m in members) + f" | {pooled} |",
                "|---|---|" + "---|" * (len(members) + 1),
            ]
            for s in (x for x in by_set[pooled] if x.decoding == decoding):
                vals = [cell.get((m, s.method, s.data, decoding)) for m in members]
                row = [f"{v.mean:.2f}" if v is not None else "" for v in vals]
                lines.append(f"| {s.method} | {s.data} | " + " | ".join(row) + f" | {_cell(s)} |")
            lines.append("")
    return lines


def write_results_md(
    results_tsv: Path, out: Path, title: str = "Results", baselines: Sequence[str] = BASELINES
) -> Path:
    """``baselines``: the methods every row is paired with at its test set, data and decoding
    (scratch and finetune; add e.g. a teacher, ``whisper-lp-ft``, to test its students against it)."""
    if not Path(results_tsv).is_file():
        raise SpeechtlError(f"{results_tsv} does not exist. Fix: check --results, or run the decode stage first.")
    rows = checkpoints_apart(read_results(results_tsv))
    if not rows:
        raise SpeechtlError(f"{results_tsv} has no results yet. Fix: run the decode stage first.")
    lines = [
        f"# {title}",
        "",
        f"Generated from `{Path(results_tsv).name}`; WER in %, (errors/words).",
        _legend(list(baselines)),
        "",
    ]
    for b in baselines:  # a baseline is paired with rows of its own data only: say when that is none
        mine = {(r.test_set, r.data, r.decoding) for r in rows if r.method == b}
        others = {(r.test_set, r.data, r.decoding) for r in rows if r.method != b}
        if mine and not mine & others:
            logging.warning(
                f"baseline {b} has rows only at data {', '.join(sorted({d for _, d, _ in mine}))}, which no other "
                "method has: nothing is compared with it (a row is paired with a baseline at its own test set, "
                "data and decoding)"
            )
    stale = [r for r in rows if r.utt_errs and not (Path(results_tsv).parent / r.utt_errs).is_file()]
    current = _current(rows, stale)
    lines += _stale_lines(results_tsv, stale, len(rows) - len(current))
    summaries = summarize(sorted(current, key=_sort_key), lambda r: load_utt_errors(results_tsv, r), baselines)
    by_test: dict[str, list[SystemSummary]] = defaultdict(list)
    for s in summaries:
        by_test[s.test_set].append(s)
    for test_set in sorted(by_test):
        ss = by_test[test_set]
        decodings = sorted({s.decoding for s in ss})
        cells: dict[tuple[str, str], dict[str, SystemSummary]] = defaultdict(dict)
        for s in ss:
            cells[(s.method, s.data)][s.decoding] = s
        lines += [
            f"## {test_set}",
            "",
            "| method | data | " + " | ".join(decodings) + " |",
            "|---|---|" + "---|" * len(decodings),
        ]
        for (method, data), by_dec in cells.items():
            vals = [_cell(by_dec[d]) if d in by_dec else "" for d in decodings]
            lines.append(f"| {method} | {data} | " + " | ".join(vals) + " |")
        lines.append("")
        lines += _unit_lines(test_set, [r for r in rows if r.test_set == test_set])
        lines += _oov_lines(test_set, [r for r in rows if r.test_set == test_set])
        lines += _comparison_lines(ss, baselines)
        lines += _note_lines(ss, baselines)
    lines += _per_speaker_lines(summaries)
    with atomic_open(Path(out)) as f:
        f.write("\n".join(lines))
    return Path(out)


def counts_characters(rows: Sequence[ResultRow]) -> bool:
    """Whether the rows' WER counts characters (results.tsv's ``unit``: a script without spaces between
    words, :mod:`speechtl.lang.spaceless`): some say so and none says words (older rows say nothing)."""
    units = {r.unit for r in rows}
    return "char" in units and "word" not in units


def _unit_lines(test_set: str, rows: Sequence[ResultRow]) -> list[str]:
    """Under a test set's table: what its WER counts, where that is not words."""
    if counts_characters(rows):
        older = (
            " Rows decoded before results.tsv had its `unit` column say nothing of it."
            if any(not r.unit for r in rows)
            else ""
        )
        return [
            f"**WER on {test_set} counts characters** (a letter with its marks; errors/words are characters): "
            "the language is written without spaces between words, so a word is a character, as the lang dir "
            f"says (`spaceless.txt`). The results.tsv's `cer` counts code points.{older}",
            "",
        ]
    chars = sorted({f"{r.method}/{r.data}/{r.decoding}" for r in rows if r.unit == "char"})
    if chars:  # mixed: rows from lang dirs of both kinds cannot be compared
        return [
            f"**Rows counting characters, not words, on {test_set}:** {', '.join(chars)} (their lang dir is of a "
            "script without spaces between words). Fix: decode every system with one lang dir.",
            "",
        ]
    return []


#: Below this share of reference words outside words.txt, RESULTS.md says nothing of it.
OOV_NOTE_PERCENT = 1.0


def _oov_lines(test_set: str, rows: Sequence[ResultRow]) -> list[str]:
    """A line under a test set's table when many of its words are outside the LM's vocabulary: an
    HLG column far above greedy then reads as a broken LM, when it is the word list (a new user's
    HLG at 59-80% against greedy at 25-58%, with 44% of the test words outside it)."""
    oov = sorted({r.oov for r in rows if r.oov is not None and r.decoding.removeprefix("onnx-").startswith("hlg")})
    if not oov or oov[-1] < OOV_NOTE_PERCENT:
        return []
    share = f"{oov[0]:.1f}%" if len(oov) == 1 else f"{oov[0]:.1f}-{oov[-1]:.1f}% (by lang dir)"
    return [
        f"**Words outside the vocabulary: {share} of {test_set}'s reference words** are not in the lang dir's "
        "`words.txt` (the training transcripts and any `--lm-text`), so HLG decodings cannot output them: each "
        "is an error there, while greedy over characters can still spell it. Fix: more text of the language "
        "for the word LM (`--lm-text FILE`).",
        "",
    ]


def _current(rows: Sequence[ResultRow], stale: Sequence[ResultRow]) -> list[ResultRow]:
    """``rows`` less the ``stale`` seeds of systems that have current ones: a seed retrained and not
    yet decoded again would average an earlier model into the others' mean."""
    gone = {r.key for r in stale}
    current = {r.key[:4] for r in rows if r.key not in gone}
    return [r for r in rows if not (r.key in gone and r.key[:4] in current)]


def _stale_lines(results_tsv: Path, stale: Sequence[ResultRow], left_out: int) -> list[str]:
    """Rows whose per-utterance errors file is gone: their system was retrained (its exp dir reset)
    or its decode deleted since, so the numbers are an earlier model's. Named in the log and above
    the tables; a system's only rows stay in its cell (all that is left of that measurement), a
    stale seed beside current ones does not (:func:`_current`: ``left_out`` of them)."""
    if not stale:
        return []
    names = sorted({f"{r.method} {r.data}" + (f" s{r.seed}" if r.seed is not None else "") for r in stale})
    logging.warning(
        f"{results_tsv}: {len(stale)} row(s) of {', '.join(names[:6])}{' ...' if len(names) > 6 else ''} have lost "
        "their decode files (the system was retrained or its decode deleted since): their numbers may be an "
        "earlier model's. Fix: decode them again (the recipe's decode stage)"
    )
    return [
        f"**{len(stale)} stale row(s)** (their decode files are gone: retrained or deleted since; decode again): "
        + ", ".join(names)
        + (
            f". {left_out} of them are left out of their systems' cells, whose other seeds are current"
            if left_out
            else ""
        ),
        "",
    ]


def choose_decoding(results_tsv: Path, dev_set: str = "dev", fallback: str = "hlg") -> str:
    """The decoding with the lowest mean WER over the systems decoded on ``dev_set`` every way
    (zero-shot rows left out): HLG helps until the target's words are missing from the LM, and
    then greedy is far better (a generated recipe with 58% of dev words out of the LM's vocabulary:
    61% greedy against 93% HLG). Chosen on dev, so the test plot is not picked by looking at test.
    ``fallback`` when no dev rows are there."""
    rows = [
        r
        for r in final_models(read_results(results_tsv), "the plot's decoding")
        if r.test_set == dev_set and "zero-shot" not in r.method and not r.decoding.startswith("onnx-")
    ]  # the recipe's own decodings: an export's onnx-* rows of one system would narrow the choice to it
    by_system: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        by_system[(r.method, r.data, r.seed)][r.decoding] = r.wer
    decodings = sorted({d for wers in by_system.values() for d in wers})
    complete = [wers for wers in by_system.values() if len(wers) == len(decodings)]
    if not complete:
        logging.info(f"no {dev_set} rows to choose the plot's decoding on: {fallback}")
        return fallback
    means = {d: sum(w[d] for w in complete) / len(complete) for d in decodings}
    best = min(decodings, key=lambda d: (means[d], d != fallback))
    logging.info(
        f"plot decoding chosen on {dev_set} (mean WER over {len(complete)} systems): {best} ("
        + ", ".join(f"{d} {m:.2f}%" for d, m in sorted(means.items()))
        + ")"
    )
    return best


def plot_data_efficiency(results_tsv: Path, out: Path, test_set: str, decoding: str) -> Path | None:
    """WER against labelled target data, one line per method (its final models: :func:`final_models`);
    None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    rows_all = final_models(read_results(results_tsv), "the plot")
    for r in rows_all:
        if r.test_set == test_set and r.decoding == decoding:
            seeds[(r.method, r.data)].append(r)
    # A pretrained model's own decoder (whisper-zero-shot, decoding "whisper") is a level too
    plotted = {m for m, _ in seeds}
    for r in rows_all:
        no_data = (parse_amount(r.data) or (0.0, ""))[0] == 0
        if r.test_set == test_set and r.method.endswith("zero-shot") and r.method not in plotted and no_data:
            seeds[(r.method, r.data)].append(r)
    # Several seeds of a system make one point, at their mean WER, with a bar of +- their sd.
    rows = [replace(rs[0], wer=sum(r.wer for r in rs) / len(rs)) for rs in seeds.values()]
    spread = {
        (rs[0].method, rs[0].data): float(np.std([r.wer for r in rs], ddof=1)) for rs in seeds.values() if len(rs) > 1
    }
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    levels: dict[str, float] = {}
    units = set()
    for r in rows:
        a = parse_amount(r.data)
        if a is None or a[0] == 0:  # no target data: a level, not a point of a curve
            if r.data in ("none", "0min", "0shots") or r.method.endswith("zero-shot"):
                levels[r.method] = r.wer
            continue
        units.add(a[1])
        curves[r.method].append((a[0], r.wer, spread.get((r.method, r.data), 0.0)))
    if not curves:
        return None
    if len(units) > 1:
        raise SpeechtlError(f"{results_tsv}: {test_set}/{decoding} mixes data units {sorted(units)}")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in sorted(curves):
        pts = sorted(curves[method])
        ax.errorbar(
            [p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3, label=method
        )
    for method, wer in sorted(levels.items()):
        ax.axhline(wer, linestyle="--", color="gray")
        ax.annotate(f"{method} {wer:.1f}%", (0.01, wer), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    unit = units.pop()
    ax.set_xlabel("labelled target data (" + ("minutes" if unit == "min" else "shots per class") + ")")
    what = "WER over characters" if counts_characters(rows) else "WER"
    ax.set_ylabel(f"{what} (%), {decoding}")
    n = sorted({len(rs) for (m, d), rs in seeds.items() if (parse_amount(d) or (0.0, ""))[0] > 0})
    over = f"; mean ± sd over {'/'.join(map(str, n))} seeds" if n[-1] > 1 else ""
    ax.set_title(f"{test_set}: WER against labelled target data{over}")
    amounts = sorted({p[0] for pts in curves.values() for p in pts})
    if len(amounts) > 2:
        ax.set_xscale("log")
    # The amounts themselves as ticks (on a log axis within one decade matplotlib writes 2x10^0, 3x10^0)
    ax.set_xticks(amounts, [f"{a:g}" for a in amounts])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)
