"""Data loaders over lhotse cuts with precomputed features."""

from typing import Any, Dict, List, Optional, Tuple

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, K2SpeechRecognitionDataset, SimpleCutSampler, SpecAugment
from torch.utils.data import DataLoader

from speechtl.errors import SpeechtlError
from speechtl.lang import Lang
from speechtl.train.augment import MelNoise, MelNoiseConfig


def train_dataloader(
    cuts: CutSet, max_duration: float, num_buckets: int, seed: int,
    spec_augment: Optional[Dict[str, Any]] = None, world_size: int = 1, rank: int = 0,
    mel_noise: Optional[MelNoiseConfig] = None,
) -> DataLoader:
    """Shuffled, duration-bucketed batches; under DDP each rank draws a disjoint shard."""
    sampler = DynamicBucketingSampler(
        cuts, max_duration=max_duration, shuffle=True, num_buckets=num_buckets, seed=seed, drop_last=False,
        world_size=world_size, rank=rank,
    )
    transforms = []
    if mel_noise is not None:  # before SpecAugment: masked regions stay masked
        transforms.append(MelNoise(mel_noise, torch.Generator().manual_seed(seed * 1009 + rank)))
    if spec_augment is not None:
        try:
            transforms.append(SpecAugment(**spec_augment))
        except TypeError as e:
            raise SpeechtlError(f"bad spec_augment options {spec_augment}: {e}") from e
    dataset = K2SpeechRecognitionDataset(return_cuts=True, input_transforms=transforms)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=0)


def eval_dataloader(cuts: CutSet, max_duration: float) -> DataLoader:
    """Every cut, in order. Not sharded: lhotse samplers shard by the torch.distributed
    group when one exists, which would make rank 0's validation see 1/N of the set."""
    sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False, world_size=1, rank=0)
    return DataLoader(K2SpeechRecognitionDataset(return_cuts=True), sampler=sampler, batch_size=None, num_workers=0)


def unpack(batch: dict) -> Tuple[torch.Tensor, torch.Tensor, List[str], List]:
    """Features, frame lengths, texts and cuts of a batch, in input-row order."""
    feats = batch["inputs"]
    sup = batch["supervisions"]
    n = feats.size(0)
    rows = sup["sequence_idx"].tolist()
    if sorted(rows) != list(range(n)):
        raise SpeechtlError(
            "a cut with several supervisions reached training; trim cuts to supervisions first"
        )
    lengths = torch.zeros(n, dtype=torch.long)
    texts = [""] * n
    cuts = [None] * n
    for i, r in enumerate(rows):
        lengths[r] = int(sup["start_frame"][i]) + int(sup["num_frames"][i])
        texts[r] = sup["text"][i]
        cuts[r] = sup["cut"][i]
    return feats, lengths, texts, cuts


def encode_targets(lang: Lang, texts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    ids = [lang.encode(t) for t in texts]
    return torch.tensor([i for x in ids for i in x], dtype=torch.long), torch.tensor([len(x) for x in ids])
