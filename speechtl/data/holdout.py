"""Leave-one-speaker-out splits: a speaker the model never hears in training.

For each held-out speaker, the training data are every *other* speaker's cuts
(with their speed-perturbed copies), and the held-out speaker's own original
recordings are cut into three disjoint parts:

- ``test``: scored, never seen in any form before decoding;
- ``dev``: labelled, used only to choose options (``speechtl sweep --fold``);
- ``unlabelled``: the speaker's untranscribed audio (texts removed) for the
  methods that adapt on unlabelled audio (dann, mmd, pseudo-label...).

``own`` is the unlabelled part *with* its texts: the pool personalization
draws the speaker's own labelled shots from (a shot then stops being
untranscribed audio in that system, and the README says so).

When every transcript of the speaker occurs several times (digits, commands,
yes/no) the parts are drawn per transcript, so each word is in every part; with
unique sentences the speaker's utterances are shuffled as one pool. The draw is
seeded and independent of the other speakers, so adding a speaker to a corpus
does not change another speaker's split.
"""

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lhotse import CutSet

from speechtl.atomic import atomic_path
from speechtl.data.subset import original_id, untranscribed
from speechtl.errors import SpeechtlError

PARTS = ("train", "test", "dev", "unlabelled", "own")


@dataclass(frozen=True)
class HoldoutConfig:
    #: Share of the held-out speaker's recordings that is test, and dev; the rest is unlabelled.
    test_fraction: float = 0.2
    dev_fraction: float = 0.1
    seed: int = 0
    #: Draw per transcript when every transcript has at least this many recordings.
    min_per_text: int = 3

    def check(self) -> None:
        if not (0 < self.test_fraction < 1 and 0 <= self.dev_fraction < 1):
            raise SpeechtlError(
                f"test fraction must be in (0, 1) and dev fraction in [0, 1), got {self.test_fraction}, "
                f"{self.dev_fraction}"
            )
        if self.test_fraction + self.dev_fraction >= 1:
            raise SpeechtlError(
                f"test + dev fractions ({self.test_fraction} + {self.dev_fraction}) leave no unlabelled audio. "
                "Fix: lower them."
            )


def speaker_of(cut) -> str:
    sup = cut.supervisions[0] if cut.supervisions else None
    return (sup.speaker if sup is not None else None) or ""


def speakers(cuts: Iterable) -> list[str]:
    """The speakers of ``cuts``, sorted; an error if a cut has none."""
    found, missing = set(), []
    for c in cuts:
        s = speaker_of(c)
        if s:
            found.add(s)
        else:
            missing.append(c.id)
    if missing:
        raise SpeechtlError(
            f"{len(missing)} cut(s) have no speaker (e.g. {missing[:3]}): leave-one-speaker-out needs one per "
            "utterance. Fix: give the importer speakers (utt2spk, a speaker column or --speaker-pattern)."
        )
    return sorted(found)


def _split_ids(ids: list[str], cfg: HoldoutConfig, key: str) -> tuple[list[str], list[str], list[str]]:
    """(test, dev, rest) of ``ids`` in an order seeded by (seed, key); each part gets at least one id
    when its fraction is above 0 and there are enough ids."""
    ids = sorted(ids)
    random.Random(f"{cfg.seed}:{key}").shuffle(ids)
    n = len(ids)
    n_test = max(1, round(n * cfg.test_fraction))
    n_dev = max(1 if cfg.dev_fraction > 0 else 0, round(n * cfg.dev_fraction))
    if n_test + n_dev >= n:
        raise SpeechtlError(
            f"{key}: {n} recording(s) are too few for a test, a dev and an unlabelled part. "
            "Fix: lower --test-fraction/--dev-fraction, or hold out a speaker with more recordings."
        )
    return ids[:n_test], ids[n_test : n_test + n_dev], ids[n_test + n_dev :]


def hold_out(cuts: CutSet, speaker: str, cfg: HoldoutConfig = HoldoutConfig()) -> dict[str, CutSet]:
    """The parts of :data:`PARTS` for held-out ``speaker`` (see the module docstring)."""
    cfg.check()
    known = speakers(cuts)
    if speaker not in known:
        raise SpeechtlError(f"speaker {speaker!r} is not in the cuts; their speakers: {', '.join(known)}")
    train = [c for c in cuts if speaker_of(c) != speaker]
    mine = [c for c in cuts if speaker_of(c) == speaker and original_id(c.id) == c.id]
    by_text: dict[str, list[str]] = {}
    for c in mine:
        by_text.setdefault(c.supervisions[0].text or "", []).append(c.id)
    per_text = len(by_text) > 1 and min(len(v) for v in by_text.values()) >= cfg.min_per_text
    test, dev, rest = [], [], []
    groups = by_text.items() if per_text else [("", [c.id for c in mine])]
    for text, ids in sorted(groups):
        t, d, r = _split_ids(ids, cfg, f"speaker {speaker}" + (f", text {text!r}" if per_text else ""))
        test, dev, rest = test + t, dev + d, rest + r
    cut_of = {c.id: c for c in mine}

    def part(ids):
        return CutSet.from_cuts(cut_of[i] for i in sorted(ids))

    logging.info(
        f"hold out {speaker}: {len(test)} test, {len(dev)} dev, {len(rest)} unlabelled recordings "
        f"({'per transcript' if per_text else 'one pool'}, seed {cfg.seed}); {len(train)} training cuts of "
        f"{len(known) - 1} other speaker(s)"
    )
    return {
        "train": CutSet.from_cuts(train),
        "test": part(test),
        "dev": part(dev),
        "unlabelled": CutSet.from_cuts(untranscribed(cut_of[i]) for i in sorted(rest)),
        "own": part(rest),
    }


def read_pool(cuts_paths: Iterable[Path]) -> CutSet:
    """The union of the cut manifests ``cuts_paths`` (a corpus's labelled splits); each must
    exist and no cut id may occur twice."""
    paths = [Path(p) for p in cuts_paths]
    for p in paths:
        if not p.is_file():
            raise SpeechtlError(f"{p}: no such cut manifest. Fix: run the fbank stage first.")
    cuts = CutSet.from_cuts(c for p in paths for c in CutSet.from_file(p))
    ids = [c.id for c in cuts]
    if len(set(ids)) != len(ids):
        raise SpeechtlError(
            f"{', '.join(map(str, paths))}: the same cut id occurs twice. Fix: give each manifest once."
        )
    return cuts


def write_holdout(
    cuts_paths: Iterable[Path], speaker: str, out_dir: Path, cfg: HoldoutConfig = HoldoutConfig()
) -> dict[str, Path]:
    """:func:`hold_out` of :func:`read_pool` of ``cuts_paths``, written as ``out_dir/<part>.jsonl.gz``."""
    parts = hold_out(read_pool(cuts_paths), speaker, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in PARTS:
        path = out_dir / f"{name}.jsonl.gz"
        with atomic_path(path) as tmp:
            parts[name].to_file(tmp)
        written[name] = path
    return written
