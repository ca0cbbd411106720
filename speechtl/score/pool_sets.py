"""Rows over several test sets at once: the leave-one-speaker-out mean.

Each held-out speaker has its own test set (``test_<speaker>``); a system's
figure over all of them is one row, test set ``test_loso_mean``, whose errors
and words are the sums over the speakers and whose interval is a bootstrap over
their utterances together (its per-utterance file is the concatenation of the
speakers' files, so paired tests between pooled rows work like any other). With
equally large test sets per speaker its WER is the mean of the speakers' WERs.
A system gets a pooled row only when every named set has its row (same method,
data, decoding, seed and checkpoint): a mean over some of the speakers would not compare.
"""

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from speechtl.errors import SpeechtlError
from speechtl.score.results import ResultRow, read_results, update_results
from speechtl.score.stats import UttErrors, bootstrap_ci, load_utt_errors
from speechtl.score.wer import write_utt_counts


def _name(row: ResultRow, pooled_set: str) -> str:
    seed = "" if row.seed is None else f"-s{row.seed}"
    checkpoint = f"-{row.checkpoint}" if row.checkpoint else ""
    return f"utt-errs-{pooled_set}-{row.method}-{row.data}-{row.decoding}{seed}{checkpoint}.tsv"


def pool_sets(results_tsv: Path, sets: Sequence[str], pooled_set: str, out_dir: Path | None = None) -> list[ResultRow]:
    """Add (or replace) a ``pooled_set`` row for every system that has rows on all ``sets``;
    the concatenated per-utterance errors go to ``out_dir`` (default: ``<results dir>/pooled``).
    Returns the pooled rows."""
    results_tsv = Path(results_tsv)
    if not sets:
        raise SpeechtlError("no test sets to pool. Fix: name at least one, e.g. --sets 'test_a test_b'")
    if pooled_set in sets:
        raise SpeechtlError(f"the pooled set {pooled_set!r} is one of the sets it pools. Fix: give it another name.")
    rows = read_results(results_tsv)
    by_system: dict[tuple, dict[str, ResultRow]] = defaultdict(dict)
    for r in rows:
        if r.test_set in sets:
            by_system[(r.method, r.data, r.decoding, r.seed, r.checkpoint)][r.test_set] = r
    out_dir = Path(out_dir) if out_dir is not None else results_tsv.parent / "pooled"
    pooled, partial = [], []
    for (method, data, decoding, seed, checkpoint), per_set in sorted(by_system.items(), key=lambda kv: str(kv[0])):
        if len(per_set) < len(sets):
            partial.append(
                f"{method}/{data}/{decoding}"
                + ("" if seed is None else f"/s{seed}")
                + (f"/{checkpoint}" if checkpoint else "")
            )
            continue
        parts = [per_set[s] for s in sets]
        errors, words = sum(r.errors for r in parts), sum(r.words for r in parts)
        wer = 100.0 * errors / words if words else 0.0
        row = ResultRow(pooled_set, method, data, decoding, wer, errors, words, seed, checkpoint=checkpoint)
        row.unit = parts[0].unit if len({r.unit for r in parts}) == 1 else ""
        row.config = parts[0].config if len({r.config for r in parts}) == 1 else ""
        utts = [load_utt_errors(results_tsv, r) for r in parts]
        if all(u is not None for u in utts):
            ids = [i for u in utts for i in u.utts]
            if len(set(ids)) != len(ids):
                raise SpeechtlError(
                    f"{method} {data} {decoding}: the test sets {', '.join(sets)} share utterance ids. "
                    "Fix: pool disjoint test sets (one per held-out speaker)."
                )
            counts = [(i, int(e), int(w)) for u in utts for i, e, w in zip(u.utts, u.errors, u.words, strict=True)]
            path = out_dir / _name(row, pooled_set)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_utt_counts(counts, path)
            row.ci_low, row.ci_high = bootstrap_ci(UttErrors.from_counts(counts))
            row.utt_errs = os.path.relpath(path.resolve(), results_tsv.parent.resolve())
        pooled.append(row)
    if partial:
        logging.warning(
            f"not pooled into {pooled_set} (a row missing on some of {len(sets)} sets): {', '.join(partial[:8])}"
            + (" ..." if len(partial) > 8 else "")
        )
    if pooled:
        update_results(results_tsv, pooled)
    logging.info(f"{pooled_set}: {len(pooled)} system(s) pooled over {', '.join(sets)} -> {results_tsv}")
    return pooled
