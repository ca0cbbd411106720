"""Statistics a reviewer can trust, computed from per-utterance error counts.

WER is a sum of errors over a sum of words, and the independent units of a test set
are its utterances, not its words: the words of one utterance fail together. So every
statistic here resamples or permutes whole utterances (Bisani and Ney, "Bootstrap
estimates for confidence intervals in ASR performance evaluation", ICASSP 2004):

- :func:`bootstrap_ci`: the 95% percentile interval of the WER over test sets drawn from
  the utterances with replacement. (Kaldi's compute-wer-bootci and
  ``kaldialign.bootstrap_wer_ci`` report mean +- 1.96 sd of the same draws; percentiles
  stay inside [0, 100] when the WER is near 0, as yesno's is.)
- :func:`prob_improvement`: Bisani and Ney's probability of improvement, the share of
  paired draws (the same utterances for both systems) in which a system makes fewer
  errors than its baseline; ties count half, so identical systems get 0.5.
- :func:`paired_test`: a matched-pairs sign-flip permutation test on the per-utterance
  error differences (the utterance-level analogue of NIST's MAPSSWE, without its normal
  approximation): if two systems do not differ, each utterance's difference is as likely
  to have either sign. Two-sided; exact when at most :data:`EXACT_MAX` utterances differ.

Several seeds of one system are pooled per utterance (:func:`pool`: the mean errors over
seeds), so the interval and the tests speak about the seed-averaged system on this test
set, its trained models taken as fixed: they count utterances (a test set of 200 over 3 seeds
is 200 pairs, not 600) and cannot see the spread over seeds, which is reported beside them
(mean +- sd). So a difference is said to hold (:attr:`Comparison.holds`) only when the paired
test finds it and it has the same sign at every seed both systems ran: a gain one seed of
three makes, which the pooled test may find, does not hold. No
correction for multiple comparisons is made: with many rows, some p < 0.05 happen by chance.
Every draw comes from a fixed seed, so the same results give the same report.
"""

import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechtl.errors import SpeechtlError
from speechtl.score.results import ResultRow
from speechtl.score.wer import read_utt_errs

LEVEL = 0.95
ALPHA = 0.05
REPLICATIONS = 10_000
#: Up to this many differing utterances the paired test enumerates every sign pattern.
EXACT_MAX = 16
#: The methods every row is compared with (when present at the same test set, data and decoding).
BASELINES = ("scratch", "finetune")
_CHUNK = 250_000  # resampled utterance indices at once: cache-sized chunks gather 6x faster than one big one
_TOL = 1e-9  # error sums of seed means are fractions: compare them with a tolerance


@dataclass(frozen=True)
class UttErrors:
    """Errors and reference words per utterance of one decode (or the mean over seeds)."""

    utts: tuple[str, ...]
    errors: np.ndarray  # float: means over seeds can be fractional
    words: np.ndarray

    def __post_init__(self):
        if not (len(self.utts) == len(self.errors) == len(self.words)):
            raise ValueError("utts, errors and words must have one entry per utterance")

    @classmethod
    def from_counts(cls, counts: Sequence[tuple[str, int, int]]) -> "UttErrors":
        """From ``(utterance id, errors, reference words)`` triples (:func:`speechtl.score.wer.utt_errors`)."""
        return cls(
            tuple(c[0] for c in counts),
            np.array([c[1] for c in counts], dtype=np.float64),
            np.array([c[2] for c in counts], dtype=np.float64),
        )

    @classmethod
    def from_file(cls, path: Path) -> "UttErrors":
        return cls.from_counts(read_utt_errs(path))

    @property
    def wer(self) -> float:
        return float(_wer(self.errors.sum(), self.words.sum()))

    def subset(self, utts: Sequence[str]) -> "UttErrors":
        """These utterances, in this order."""
        pos = {u: i for i, u in enumerate(self.utts)}
        idx = np.array([pos[u] for u in utts], dtype=np.int64)
        return UttErrors(tuple(utts), self.errors[idx], self.words[idx])


def _wer(errors, words):
    """Percent, elementwise; 0 for no words and no errors, inf for errors over no words."""
    errors, words = np.asarray(errors, dtype=np.float64), np.asarray(words, dtype=np.float64)
    safe = np.where(words > 0, words, 1.0)
    return np.where(words > 0, 100.0 * errors / safe, np.where(errors > _TOL, np.inf, 0.0))


def _common(runs: Sequence[UttErrors], what: str) -> list[UttErrors]:
    """The runs restricted to the utterances all of them decoded (in the first run's order)."""
    shared = set(runs[0].utts).intersection(*(r.utts for r in runs[1:]))
    utts = [u for u in runs[0].utts if u in shared]
    if not utts:
        raise SpeechtlError(f"{what}: no utterance is decoded by all of them. Fix: decode the same test set.")
    out = [r.subset(utts) for r in runs]
    if any(not np.array_equal(o.words, out[0].words) for o in out[1:]):
        raise SpeechtlError(
            f"{what}: the same utterances have different reference lengths. Fix: decode the same test set."
        )
    return out


def pool(runs: Sequence[UttErrors], what: str = "seeds of one system") -> UttErrors:
    """One system over several seeds: per utterance, the mean errors over the seeds (on the
    utterances every seed decoded). Its WER is the mean of the seeds' WERs."""
    if not runs:
        raise ValueError("pool needs at least one run")
    runs = _common(runs, what)
    return UttErrors(runs[0].utts, np.mean([r.errors for r in runs], axis=0), runs[0].words)


def _draws(n: int, replications: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap test sets: (k, n) utterance indices drawn with replacement, in chunks."""
    rng = np.random.default_rng(seed)
    per = max(1, _CHUNK // max(1, n))
    done = 0
    while done < replications:
        k = min(per, replications - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def bootstrap_ci(
    u: UttErrors, level: float = LEVEL, replications: int = REPLICATIONS, seed: int = 0
) -> tuple[float, float]:
    """The ``level`` percentile interval (percent) of the WER over bootstrap test sets."""
    if not u.utts:
        raise SpeechtlError("no utterances to compute an interval over. Fix: decode a non-empty test set.")
    wers = np.concatenate(
        [_wer(u.errors[i].sum(1), u.words[i].sum(1)) for i in _draws(len(u.utts), replications, seed)]
    )
    lo, hi = np.quantile(wers, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def prob_improvement(system: UttErrors, baseline: UttErrors, replications: int = REPLICATIONS, seed: int = 0) -> float:
    """The share of paired bootstrap test sets on which ``system`` makes fewer errors than
    ``baseline`` (ties count half), over the utterances both decoded."""
    a, b = _common([system, baseline], "a system and its baseline")
    diff = a.errors - b.errors
    better = 0.0
    for idx in _draws(len(diff), replications, seed):
        s = diff[idx].sum(1)
        better += float(np.sum(s < -_TOL)) + 0.5 * float(np.sum(np.abs(s) <= _TOL))
    return better / replications


def paired_test(system: UttErrors, baseline: UttErrors, permutations: int = REPLICATIONS, seed: int = 0) -> float:
    """Two-sided p-value of a sign-flip permutation test on the per-utterance error
    differences: how often flipping the sign of each utterance's difference at random
    gives a total difference at least as large as the one observed."""
    a, b = _common([system, baseline], "a system and its baseline")
    d = a.errors - b.errors
    d = d[np.abs(d) > _TOL]  # utterances on which the systems agree carry no information
    if d.size == 0:
        return 1.0
    observed = abs(float(d.sum())) - _TOL
    if d.size <= EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(np.abs(signs @ d) >= observed))
    rng = np.random.default_rng(seed)
    per = max(1, _CHUNK // d.size)
    extreme, done = 0, 0
    while done < permutations:
        k = min(per, permutations - done)
        signs = rng.integers(0, 2, size=(k, d.size)) * 2.0 - 1.0
        extreme += int(np.sum(np.abs(signs @ d) >= observed))
        done += k
    return (extreme + 1) / (permutations + 1)  # the observed signs count as one permutation


@dataclass(frozen=True)
class Comparison:
    """A system against a baseline on the utterances both decoded."""

    baseline: str
    delta: float  # system WER - baseline WER, in points (negative: the system is better)
    prob_improvement: float
    p_value: float
    utterances: int  # compared: those both decoded
    seed_deltas: tuple[float, ...] = ()  # the WER difference at each seed both systems ran, in seed order
    decoded: tuple[int, int] = (0, 0)  # utterances the system and the baseline decoded
    cross_deltas: tuple[float, ...] = ()  # no seed shared: every seed's WER less every baseline seed's
    seeds: tuple[tuple[int | None, ...], tuple[int | None, ...]] = ((), ())  # the system's and the baseline's

    @property
    def consistent(self) -> bool:
        """The difference has the same sign at every seed both ran (two or more); with no seed shared,
        between every seed of the one and every seed of the other; true with fewer. The utterance test
        pools the seeds and treats the trained models as fixed, so it cannot see a gain that one seed
        of three makes; this asks the seeds."""
        deltas = self.seed_deltas if self.seed_deltas else self.cross_deltas
        return len(deltas) < 2 or all(d * self.delta > 0 for d in deltas)

    @property
    def holds(self) -> bool:
        """Significant at :data:`ALPHA` over utterances, and in the same direction at every shared seed."""
        return self.p_value < ALPHA and self.consistent


def compare(
    system: UttErrors,
    baseline: UttErrors,
    name: str,
    replications: int = REPLICATIONS,
    seed_wers: tuple[dict[int | None, float], dict[int | None, float]] = ({}, {}),
) -> Comparison:
    """``seed_wers``: each side's WER by seed, for :attr:`Comparison.consistent` (none: not asked)."""
    a, b = _common([system, baseline], f"a system and its baseline {name}")
    mine, theirs = seed_wers
    shared = [s for s in mine if s is not None and s in theirs]
    return Comparison(
        name,
        a.wer - b.wer,
        prob_improvement(a, b, replications),
        paired_test(a, b, replications),
        len(a.utts),
        tuple(mine[s] - theirs[s] for s in shared),
        (len(system.utts), len(baseline.utts)),
        () if shared else tuple(x - y for x in mine.values() for y in theirs.values()),
        (tuple(mine), tuple(theirs)),
    )


@dataclass
class SystemSummary:
    """One (test set, method, data, decoding) over its seeds: what a RESULTS.md cell shows."""

    test_set: str
    method: str
    data: str
    decoding: str
    rows: list[ResultRow]  # one per seed
    utt: UttErrors | None = None  # the seeds pooled; None when a row has no per-utterance file
    ci: tuple[float, float] | None = None
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # by baseline method
    notes: list[str] = field(default_factory=list)  # what a reader of its cell must know (said under the table)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.rows]

    @property
    def seed_wers(self) -> dict[int | None, float]:
        """Its WER by seed, in seed order (a row without a seed is ``None``, never shared)."""
        return {r.seed: r.wer for r in self.rows}

    @property
    def name(self) -> str:
        return f"{self.method} ({self.data}, {self.decoding}) on {self.test_set}"

    @property
    def configs(self) -> dict[str, list[int | None]]:
        """The training confs of its rows (:attr:`ResultRow.config`, rows without one left out) and
        the seeds of each: more than one, and its mean is over two systems."""
        out: dict[str, list[int | None]] = {}
        for r in self.rows:
            if r.config:
                out.setdefault(r.config, []).append(r.seed)
        return out

    @property
    def mixed(self) -> bool:
        return len(self.configs) > 1

    @property
    def mean(self) -> float:
        return float(np.mean([r.wer for r in self.rows]))

    @property
    def sd(self) -> float | None:
        """The sample standard deviation of the WER over seeds; None for one seed."""
        return float(np.std([r.wer for r in self.rows], ddof=1)) if len(self.rows) > 1 else None


def load_utt_errors(results_tsv: Path, row: ResultRow) -> UttErrors | None:
    """The per-utterance errors behind ``row``, or None if it has none (an older row or a deleted file).
    A file that cannot be read (cut short, edited) is named in a warning, and the row is reported
    without its interval and tests instead of stopping the whole report."""
    if not row.utt_errs:
        return None
    path = Path(results_tsv).parent / row.utt_errs
    if not path.is_file():
        return None
    try:
        return UttErrors.from_file(path)
    except (SpeechtlError, ValueError) as e:
        logging.warning(f"{row.method} ({row.data}, {row.decoding}) seed {row.seed}: {e}; reported without it")
        return None


def _overlap_note(s: SystemSummary, runs: list[UttErrors]) -> None:
    sizes = sorted({len(u.utts) for u in runs})
    if len(sizes) > 1:
        s.notes.append(
            f"{s.name}: its seeds decoded {' / '.join(map(str, sizes))} utterances; the interval and tests are over "
            f"the {len(s.utt.utts)} all of them decoded. Fix: decode every seed on the same test set"
        )


def summarize(
    rows: Sequence[ResultRow],
    load: Callable[[ResultRow], UttErrors | None],
    baselines: Sequence[str] = BASELINES,
    replications: int = REPLICATIONS,
) -> list[SystemSummary]:
    """Group rows by system over seeds, with each group's pooled interval and its paired
    comparisons with the ``baselines`` at the same test set, data and decoding."""
    groups: dict[tuple[str, str, str, str], list[ResultRow]] = {}
    for r in rows:
        groups.setdefault(r.key[:4], []).append(r)
    out = []
    for (test_set, method, data, decoding), rs in groups.items():
        s = SystemSummary(test_set, method, data, decoding, sorted(rs, key=lambda r: (r.seed is None, r.seed or 0)))
        runs = [load(r) for r in s.rows]
        if all(u is not None for u in runs):
            try:
                s.utt = pool(runs, f"the seeds of {s.name}")
            except SpeechtlError as e:
                logging.warning(f"{e}; reported without an interval or tests")
            else:
                _overlap_note(s, runs)
        if s.mixed:
            confs = "; ".join(f"seeds {' '.join(map(str, seeds))}: conf {c}" for c, seeds in s.configs.items())
            s.notes.append(
                f"{s.name}: its seeds were trained under {len(s.configs)} confs ({confs}), so its mean is over "
                "different systems and it is not tested. Fix: train every seed under one conf (rerun them all)"
            )
            logging.warning(s.notes[-1])
        if len(rs) == 1 and rs[0].ci_low is not None and rs[0].ci_high is not None:
            s.ci = (rs[0].ci_low, rs[0].ci_high)  # computed when it was decoded, from the same errors
        elif s.utt is not None and not s.mixed:  # over two systems' seeds an interval means nothing
            s.ci = bootstrap_ci(s.utt, replications=replications)
        out.append(s)
    by_key = {(s.test_set, s.method, s.data, s.decoding): s for s in out}
    for s in out:
        for b in baselines:
            base = by_key.get((s.test_set, b, s.data, s.decoding))
            if base is None or base is s or s.utt is None or base.utt is None or s.mixed or base.mixed:
                continue
            if set(s.utt.utts).isdisjoint(base.utt.utts):
                # e.g. a row left from an earlier test set (other --test-speakers) that was not decoded again
                logging.warning(
                    f"{s.method} ({s.data}, {s.decoding}) on {s.test_set}: no utterance in common with {b}'s "
                    f"decode; not compared. Fix: decode both on the same test set (rerun its stage 6)"
                )
                continue
            s.comparisons[b] = compare(s.utt, base.utt, b, replications, (s.seed_wers, base.seed_wers))
    return out
