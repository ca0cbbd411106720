"""RESULTS.md and plots generated from exp/results.tsv (the one results file).

RESULTS.md has one table per test set: a row per (method, data), a column per
decoding, WER with errors/words. ``data_efficiency.png`` plots WER against the
amount of labelled target data (``5min``, ``30min``, ``5shots``...), one line per
method; methods that use no target data (``zero-shot``) are a dashed level line.
"""

import re
from collections import defaultdict
from pathlib import Path

from speechtl.errors import SpeechtlError
from speechtl.score.results import ResultRow, read_results

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


def _sort_key(r: ResultRow):
    a = parse_amount(r.data)
    return (r.method, a[0] if a else float("inf"), r.data)


def write_results_md(results_tsv: Path, out: Path, title: str = "Results") -> Path:
    rows = read_results(results_tsv)
    if not rows:
        raise SpeechtlError(f"{results_tsv} has no results yet. Fix: run the decode stage first.")
    lines = [f"# {title}", "", f"Generated from `{Path(results_tsv).name}`; WER in %, (errors/words).", ""]
    by_test: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        by_test[r.test_set].append(r)
    for test_set in sorted(by_test):
        rs = by_test[test_set]
        decodings = sorted({r.decoding for r in rs})
        cells: dict[tuple[str, str], dict[str, ResultRow]] = defaultdict(dict)
        for r in sorted(rs, key=_sort_key):
            cells[(r.method, r.data)][r.decoding] = r
        lines += [
            f"## {test_set}",
            "",
            "| method | data | " + " | ".join(decodings) + " |",
            "|---|---|" + "---|" * len(decodings),
        ]
        for (method, data), by_dec in cells.items():
            vals = [
                f"{by_dec[d].wer:.2f} ({by_dec[d].errors}/{by_dec[d].words})" if d in by_dec else "" for d in decodings
            ]
            lines.append(f"| {method} | {data} | " + " | ".join(vals) + " |")
        lines.append("")
    Path(out).write_text("\n".join(lines), encoding="utf-8")
    return Path(out)


def plot_data_efficiency(results_tsv: Path, out: Path, test_set: str, decoding: str) -> Path | None:
    """WER against labelled target data, one line per method; None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_results(results_tsv) if r.test_set == test_set and r.decoding == decoding]
    curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
    levels: dict[str, float] = {}
    units = set()
    for r in rows:
        a = parse_amount(r.data)
        if a is None:
            if r.data in ("none", "0min", "0shots") or r.method == "zero-shot":
                levels[r.method] = r.wer
            continue
        units.add(a[1])
        curves[r.method].append((a[0], r.wer))
    if not curves:
        return None
    if len(units) > 1:
        raise SpeechtlError(f"{results_tsv}: {test_set}/{decoding} mixes data units {sorted(units)}")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in sorted(curves):
        pts = sorted(curves[method])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    for method, wer in sorted(levels.items()):
        ax.axhline(wer, linestyle="--", color="gray")
        ax.annotate(f"{method} {wer:.1f}%", (0.01, wer), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    unit = units.pop()
    ax.set_xlabel("labelled target data (" + ("minutes" if unit == "min" else "shots per class") + ")")
    ax.set_ylabel(f"WER (%), {decoding}")
    ax.set_title(f"{test_set}: WER against labelled target data")
    if len({p[0] for pts in curves.values() for p in pts}) > 2:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)
