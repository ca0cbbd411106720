"""The one training loop: every recipe and method runs through :class:`Trainer`.

Per epoch it writes ``epoch-N.pt`` (model, optimizer, scheduler, RNG), logs
to ``log/log-train.txt`` and ``tensorboard/``; at the end it writes
``avg-K.pt``, the mean of the last K epochs (icefall's checkpoint averaging),
and ``final.pt`` pointing at it. Restarting with the same ``exp_dir``
resumes after the last finished epoch.

Under torchrun the model is wrapped in DistributedDataParallel, each rank
reads a disjoint shard of the cuts, all ranks take as many batches per epoch
as the rank with the fewest (so no rank waits forever in an all-reduce), and
rank 0 alone writes checkpoints, logs and tensorboard.
"""

import contextlib
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from lhotse import CutSet

from speechtl.adapt import Method
from speechtl.errors import SpeechtlError
from speechtl.features.compute import pick_device
from speechtl.lang import Lang
from speechtl.log import FORMAT
from speechtl.models import CtcModel
from speechtl.train.checkpoint import average_checkpoints, epoch_checkpoints, load_checkpoint, save_checkpoint
from speechtl.train.data import encode_targets, eval_dataloader, train_dataloader, unpack
from speechtl.train.dist import all_reduce_min, barrier, init_distributed

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


@dataclass
class TrainConfig:
    num_epochs: int = 15
    #: If > 0, train for this many updates instead (epochs = ceil(num_steps /
    #: batches per epoch)): a fixed compute budget whatever the amount of data,
    #: as fairseq's max_update. Compares methods and data amounts at equal cost.
    num_steps: int = 0
    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    #: "constant", or "cosine" (to 1% of lr by the last step), after ``warmup_steps``.
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    max_duration: float = 200.0  # seconds of audio per batch
    num_buckets: int = 10
    grad_clip: float = 5.0
    seed: int = 42
    average_last: int = 5
    log_interval: int = 10
    #: SpecAugment (lhotse) on training batches; None = off. Keys are lhotse's
    #: SpecAugment arguments, e.g. {num_feature_masks: 2, features_mask_size: 5}.
    spec_augment: Optional[Dict[str, Any]] = None
    device: str = ""  # empty: CUDA when present


def _lr_lambda(cfg: TrainConfig, total_steps: int):
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return 1.0

    return f


def feature_info(cuts: CutSet) -> dict:
    """The fbank settings a model was trained on, so inference can compute the same."""
    f = next(iter(cuts)).features
    if f is None:
        raise SpeechtlError("training cuts have no features. Fix: run the fbank stage first.")
    return {"sampling_rate": f.sampling_rate, "num_mel_bins": f.num_features, "frame_shift": f.frame_shift}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, model: CtcModel, lang: Lang, method: Method, config: TrainConfig, exp_dir: Path):
        if config.optimizer not in OPTIMIZERS:
            raise SpeechtlError(f"unknown optimizer {config.optimizer!r}; known: {sorted(OPTIMIZERS)}")
        if config.lr_schedule not in ("constant", "cosine"):
            raise SpeechtlError(f"unknown lr_schedule {config.lr_schedule!r}; known: constant, cosine")
        self.cfg = config
        self.lang = lang
        self.method = method
        self.exp_dir = Path(exp_dir)
        self.dist = init_distributed()
        self.device = pick_device(config.device or None)
        if self.device.type == "cuda" and self.dist.world_size > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.model = model
        self.net = model  # what forward() runs: the DDP wrapper while training under torchrun
        if model.vocab_size != lang.vocab_size:
            raise SpeechtlError(f"model has {model.vocab_size} outputs but {lang.dir} has {lang.vocab_size} tokens")

    def _loss(self, batch: dict, net: torch.nn.Module):
        feats, lengths, texts, _ = unpack(batch)
        targets, target_lengths = encode_targets(self.lang, texts)
        log_probs, out_lens = net(feats.to(self.device), lengths.to(self.device))
        ctc = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1), targets.to(self.device), out_lens, target_lengths.to(self.device),
            blank=0, reduction="sum", zero_infinity=True,
        )
        loss = ctc / feats.size(0)
        extra = self.method.extra_loss(self.model, batch, log_probs)
        if extra is not None:
            loss = loss + extra
        return loss, ctc.detach(), int(out_lens.sum())

    @torch.no_grad()
    def validate(self, cuts: CutSet) -> float:
        """CTC loss per frame on ``cuts``."""
        self.model.eval()
        total, frames = 0.0, 0
        for batch in eval_dataloader(cuts, self.cfg.max_duration):
            _, ctc, n = self._loss(batch, self.model)
            total += float(ctc)
            frames += n
        self.model.train()
        return total / max(1, frames)

    @contextlib.contextmanager
    def _train_log(self):
        """On rank 0, also log to exp_dir/log/log-train.txt while training."""
        if not self.dist.is_main:
            yield
            return
        handler = logging.FileHandler(self.exp_dir / "log" / "log-train.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        logging.getLogger().addHandler(handler)
        try:
            yield
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()

    def fit(self, train_cuts: CutSet, valid_cuts: Optional[CutSet] = None) -> Path:
        """Train for ``num_epochs`` (resuming if epochs exist); returns ``final.pt``."""
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        (self.exp_dir / "log").mkdir(exist_ok=True)
        seed_everything(cfg.seed)
        self.method.prepare(self.model)
        self.model.to(self.device)
        if self.dist.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None
            )
        optimizer = OPTIMIZERS[cfg.optimizer](
            self.method.param_groups(self.model, cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        loader = train_dataloader(train_cuts, cfg.max_duration, cfg.num_buckets, cfg.seed, cfg.spec_augment,
                                  self.dist.world_size, self.dist.rank)
        steps_per_epoch = max(1, all_reduce_min(sum(1 for _ in loader.sampler), self.dist, self.device))
        num_epochs = math.ceil(cfg.num_steps / steps_per_epoch) if cfg.num_steps > 0 else cfg.num_epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps_per_epoch * num_epochs))
        features = feature_info(train_cuts)
        with self._train_log():
            start_epoch = 1
            done = epoch_checkpoints(self.exp_dir)
            if done:
                ckpt = load_checkpoint(done[-1])
                self.model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                scheduler.load_state_dict(ckpt["scheduler"])
                torch.set_rng_state(ckpt["rng"])
                start_epoch = ckpt["epoch"] + 1
                logging.info(f"resuming from {done[-1]} at epoch {start_epoch}")
            main = self.dist.is_main
            writer = SummaryWriter(str(self.exp_dir / "tensorboard")) if main else None
            logging.info(
                f"training {sum(p.numel() for p in self.model.parameters() if p.requires_grad):,} parameters "
                f"on {self.device}, method {self.method.name}, {len(train_cuts)} cuts, {steps_per_epoch} batches/epoch"
                + (f", rank {self.dist.rank} of world size {self.dist.world_size}" if self.dist.world_size > 1 else "")
            )
            step = (start_epoch - 1) * steps_per_epoch
            self.model.train()
            for epoch in range(start_epoch, num_epochs + 1):
                loader.sampler.set_epoch(epoch)
                # Shuffling changes how cuts pack into batches, so ranks agree on the count every epoch.
                n_batches = all_reduce_min(sum(1 for _ in loader.sampler), self.dist, self.device)
                t0, tot_loss, tot_frames = time.time(), 0.0, 0
                for i, batch in enumerate(loader):
                    if i == n_batches:
                        break  # as many batches as the rank with the fewest
                    loss, ctc, frames = self._loss(batch, self.net)
                    if not math.isfinite(float(loss.detach())):
                        raise SpeechtlError(
                            f"loss became {float(loss.detach())} at epoch {epoch} batch {i + 1}; "
                            f"the last good model is the latest epoch-N.pt in {self.exp_dir}. Fix: lower the lr."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    tot_loss += float(ctc)
                    tot_frames += frames
                    if step % cfg.log_interval == 0 and main:
                        writer.add_scalar("train/ctc_per_frame", float(ctc) / max(1, frames), step)
                        writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                        logging.info(f"epoch {epoch} batch {i + 1}/{steps_per_epoch} ctc/frame {float(ctc) / max(1, frames):.4f}")
                msg = f"epoch {epoch}/{num_epochs}: train ctc/frame {tot_loss / max(1, tot_frames):.4f}"
                if main:
                    writer.add_scalar("epoch/train_ctc_per_frame", tot_loss / max(1, tot_frames), epoch)
                if valid_cuts is not None and len(valid_cuts) and main:
                    v = self.validate(valid_cuts)
                    writer.add_scalar("epoch/valid_ctc_per_frame", v, epoch)
                    msg += f", valid {v:.4f}"
                logging.info(f"{msg} ({time.time() - t0:.1f}s)")
                if main:
                    save_checkpoint(
                        self.exp_dir / f"epoch-{epoch}.pt", self.model, epoch=epoch, optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(), rng=torch.get_rng_state(), train_config=asdict(cfg),
                        method=self.method.name, features=features, tokens=self.lang.token2id,
                    )
                barrier(self.dist)
            if self.dist.world_size > 1:
                checksum = sum(float(p.detach().double().sum()) for p in self.model.parameters())
                logging.info(f"rank {self.dist.rank}: parameter checksum {checksum:.10e}")
            final = self.exp_dir / "final.pt"
            if not main:
                barrier(self.dist)
                return final
            writer.close()
            epochs = epoch_checkpoints(self.exp_dir)[-max(1, cfg.average_last):]
            avg = self.exp_dir / f"avg-{len(epochs)}.pt"
            average_checkpoints(epochs, avg)
            final.unlink(missing_ok=True)
            final.symlink_to(avg.name)
            logging.info(f"averaged {[p.name for p in epochs]} -> {avg}; final model: {final}")
            barrier(self.dist)
            return final
