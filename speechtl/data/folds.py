"""K-fold dev sets carved from a training pool, for corpora that ship no dev set.

Options are chosen on dev, never on test (``speechtl sweep``). A corpus with only
train and test (yesno: 30 and 30 utterances) has no dev to choose on; holding out
one fixed tenth of a tiny train set leaves a dev of a few utterances whose verdict
is mostly noise. K-fold cross-validation uses every training utterance as dev once:
fold k trains on the other folds and is scored on its own, and ``speechtl sweep``
sums a candidate's dev errors over the folds (``--train-cuts``/``--dev-cuts`` pairs).

A fold is a set of *recordings*: a speed-perturbed copy (``<id>_sp0.9``) stays with
its original, so no dev utterance is heard in training in any form, and dev holds the
originals only (it is scored as test is). With ``by="speaker"`` whole speakers form the
folds, for a dev that is speaker-independent as a test of new speakers is. The draw
is seeded, and a recording's fold depends only on the seed and the set of groups.
"""

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lhotse import CutSet

from speechtl.atomic import atomic_path
from speechtl.data.holdout import read_pool, speaker_of
from speechtl.data.subset import original_id
from speechtl.errors import SpeechtlError

GROUPINGS = ("recording", "speaker")


@dataclass(frozen=True)
class FoldsConfig:
    #: Number of folds; each is dev once.
    k: int = 3
    #: What a fold is made of: original recordings, or whole speakers.
    by: str = "recording"
    seed: int = 0

    def check(self) -> None:
        if self.k < 2:
            raise SpeechtlError(f"folds: k must be at least 2, got {self.k}")
        if self.by not in GROUPINGS:
            raise SpeechtlError(f"folds: by must be one of {', '.join(GROUPINGS)}, got {self.by!r}")


def _group_of(cut, by: str) -> str:
    if by == "speaker":
        spk = speaker_of(cut)
        if not spk:
            raise SpeechtlError(
                f"cut {cut.id} has no speaker: folds by speaker need one per utterance. "
                "Fix: give the importer speakers, or make the folds by recording."
            )
        return spk
    return original_id(cut.id)


def make_folds(cuts: CutSet, cfg: FoldsConfig = FoldsConfig()) -> list[tuple[CutSet, CutSet]]:
    """``cfg.k`` (train, dev) pairs of ``cuts``: the groups are shuffled (seeded) and dealt into
    k folds of sizes differing by at most one; dev is a fold's original cuts, train every cut
    (perturbed copies too) of the other folds."""
    cfg.check()
    cuts = list(cuts)
    group = {c.id: _group_of(c, cfg.by) for c in cuts}
    groups = sorted(set(group.values()))
    if len(groups) < cfg.k:
        raise SpeechtlError(
            f"folds: {len(groups)} {cfg.by}(s) cannot make {cfg.k} folds. Fix: lower --k"
            + (" or make the folds by recording." if cfg.by == "speaker" else ".")
        )
    random.Random(cfg.seed).shuffle(groups)
    fold_of = {g: i % cfg.k for i, g in enumerate(groups)}
    pairs = []
    for k in range(cfg.k):
        train = [c for c in cuts if fold_of[group[c.id]] != k]
        dev = [c for c in cuts if fold_of[group[c.id]] == k and original_id(c.id) == c.id]
        if not dev:
            raise SpeechtlError(f"folds: fold {k} has no original (unperturbed) cut to score. Fix: lower --k.")
        pairs.append((CutSet.from_cuts(train), CutSet.from_cuts(dev)))
        logging.info(f"fold {k}: {len(train)} training cuts, {len(dev)} dev cuts (by {cfg.by}, seed {cfg.seed})")
    return pairs


def write_folds(cuts_paths: Iterable[Path], out_dir: Path, cfg: FoldsConfig = FoldsConfig()) -> list[tuple[Path, Path]]:
    """:func:`make_folds` of the union of ``cuts_paths``, written as ``out_dir/{train,dev}_f<k>.jsonl.gz``."""
    pairs = make_folds(read_pool(cuts_paths), cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, parts in enumerate(pairs):
        paths = (out_dir / f"train_f{k}.jsonl.gz", out_dir / f"dev_f{k}.jsonl.gz")
        for cutset, path in zip(parts, paths, strict=True):
            with atomic_path(path) as tmp:
                cutset.to_file(tmp)
        written.append(paths)
    return written
