"""Data loaders over lhotse cuts: precomputed features, or what the cuts are marked to deliver
(Whisper log-mel, raw samples: :mod:`speechtl.features.inputs`)."""

import contextlib
import itertools
import logging
import random
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, K2SpeechRecognitionDataset, SimpleCutSampler, SpecAugment
from lhotse.utils import fastcopy
from torch.utils.data import DataLoader, Dataset

from speechtl.errors import SpeechtlError
from speechtl.features.inputs import ModelInput, spec_of
from speechtl.lang import Lang
from speechtl.train.augment import MelNoise, MelNoiseConfig, Vtlp


class SplitBatches:
    """The one-process batch sequence, each batch dealt across N ranks (cut i to rank i mod N).

    Every rank draws the same batches (same cuts, seed and ``max_duration``, the
    global one) and keeps its share, so N processes train on exactly the batches one
    process would, which lhotse's per-rank sharding (each rank packing its own
    smaller batches) does not. A batch with fewer cuts than ranks gives the ranks
    left over a copy of its first cut marked :data:`PAD_KEY`, which the trainer
    weighs 0: every rank still runs the forward and backward DDP needs."""

    def __init__(self, sampler, world_size: int, rank: int):
        self.sampler = sampler
        self.world_size = world_size
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[CutSet]:
        for batch in self.sampler:
            cuts = list(batch)
            share = cuts[self.rank :: self.world_size]
            if not share:
                share = [fastcopy(cuts[0], custom={**(getattr(cuts[0], "custom", None) or {}), PAD_KEY: True})]
            yield CutSet.from_cuts(share)


#: Custom field of a cut that only fills a rank's empty share of a batch (loss weight 0).
PAD_KEY = "speechtl_batch_pad"


def is_pad(cut) -> bool:
    return bool((getattr(cut, "custom", None) or {}).get(PAD_KEY, False))


def cut_seed(seed: int, epoch: int, cut_id: str) -> int:
    """A seed for one cut's augmentation in one epoch, the same in every process."""
    return (seed * 1_000_003 + epoch * 7919 + zlib.crc32(cut_id.encode("utf-8"))) % (2**63)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (numpy takes the seed mod 2**32)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded_rng(seed: int):
    """:func:`seed_everything` for the block; the generators' states are restored after."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class PerCutAugmentDataset(Dataset):
    """K2SpeechRecognitionDataset batches whose augmentation is drawn per cut.

    Each utterance's noise and masks come from generators seeded by (seed, epoch, cut
    id) rather than one stream over the batch: a cut is augmented the same way in
    whichever batch, rank or number of processes it lands, so DDP ranks sharing a
    batch compute the gradient one process computes (dropout aside)."""

    def __init__(self, transforms: list[torch.nn.Module], seed: int):
        self.base = K2SpeechRecognitionDataset(return_cuts=True, input_strategy=ModelInput())
        self.transforms = transforms
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, cuts: CutSet) -> dict:
        batch = self.base[cuts]
        if not self.transforms or spec_of(cuts).kind == "samples":  # feature-domain augmentation only
            return batch
        feats, sup = batch["inputs"], batch["supervisions"]
        for j, cut in enumerate(sup["cut"]):
            row, start, num = int(sup["sequence_idx"][j]), int(sup["start_frame"][j]), int(sup["num_frames"][j])
            x = feats[row : row + 1, : start + num]
            segments = torch.tensor([[0, start, num]], dtype=torch.int32)
            with seeded_rng(cut_seed(self.seed, self.epoch, cut.id)):
                for t in self.transforms:
                    x = t(x, supervision_segments=segments)
            feats[row, : start + num] = x[0]
        return batch


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Reshuffle the sampler and re-seed the per-cut augmentation for ``epoch``."""
    loader.sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


def train_dataloader(
    cuts: CutSet,
    max_duration: float,
    num_buckets: int,
    seed: int,
    spec_augment: dict[str, Any] | None = None,
    world_size: int = 1,
    rank: int = 0,
    mel_noise: MelNoiseConfig | None = None,
    split_batches: bool = False,
    vtlp: Vtlp | None = None,
) -> DataLoader:
    """Shuffled, duration-bucketed batches; under DDP each rank reads disjoint cuts.

    ``split_batches``: ``max_duration`` is the global batch and each one-process batch
    is dealt across the ranks (:class:`SplitBatches`); otherwise lhotse shards the
    cuts and each rank packs its own batches of ``max_duration``."""
    split = split_batches and world_size > 1
    n = sum(1 for _ in itertools.islice(cuts, num_buckets))  # lhotse asserts a cut per bucket
    if n < num_buckets:
        if n < 2:
            raise SpeechtlError(f"training needs 2 or more cuts, got {n}. Fix: give more training data.")
        logging.info(f"{n} training cuts: as many duration buckets, not {num_buckets}")
        num_buckets = n
    sampler = DynamicBucketingSampler(
        cuts,
        max_duration=max_duration,
        shuffle=True,
        num_buckets=num_buckets,
        seed=seed,
        drop_last=False,
        world_size=1 if split else world_size,
        rank=0 if split else rank,
    )
    transforms = [] if vtlp is None else [vtlp]  # the voice first, then noise and masks on it
    if mel_noise is not None:  # before SpecAugment: masked regions stay masked
        transforms.append(MelNoise(mel_noise))
    if spec_augment is not None:
        try:
            transforms.append(SpecAugment(**spec_augment))
        except TypeError as e:
            raise SpeechtlError(f"bad spec_augment options {spec_augment}: {e}") from e
    return DataLoader(
        PerCutAugmentDataset(transforms, seed),
        sampler=SplitBatches(sampler, world_size, rank) if split else sampler,
        batch_size=None,
        num_workers=0,
    )


def eval_dataloader(cuts: CutSet, max_duration: float) -> DataLoader:
    """Every cut, in order. Not sharded: lhotse samplers shard by the torch.distributed
    group when one exists, which would make rank 0's validation see 1/N of the set."""
    sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False, world_size=1, rank=0)
    dataset = K2SpeechRecognitionDataset(return_cuts=True, input_strategy=ModelInput())
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=0)


def unpack(batch: dict) -> tuple[torch.Tensor, torch.Tensor, list[str], list]:
    """Features, frame lengths, texts and cuts of a batch, in input-row order."""
    feats = batch["inputs"]
    sup = batch["supervisions"]
    n = feats.size(0)
    rows = sup["sequence_idx"].tolist()
    if sorted(rows) != list(range(n)):
        raise SpeechtlError("a cut with several supervisions reached training; trim cuts to supervisions first")
    lengths = torch.zeros(n, dtype=torch.long)
    texts = [""] * n
    cuts = [None] * n
    for i, r in enumerate(rows):
        lengths[r] = int(sup["start_frame"][i]) + int(sup["num_frames"][i])
        texts[r] = sup["text"][i]
        cuts[r] = sup["cut"][i]
    return feats, lengths, texts, cuts


def encode_targets(lang: Lang, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [lang.encode(t) for t in texts]
    return torch.tensor([i for x in ids for i in x], dtype=torch.long), torch.tensor([len(x) for x in ids])
