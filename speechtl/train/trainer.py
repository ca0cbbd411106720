"""The one training loop: every recipe and method runs through :class:`Trainer`.

Per epoch it writes ``epoch-N.pt`` (model, optimizer, scheduler, RNG), logs
to ``log/log-train.txt`` and ``tensorboard/``; at the end it writes
``avg-K.pt``, the mean of the last K epochs (icefall's checkpoint averaging),
and ``final.pt`` pointing at it. Restarting with the same ``exp_dir``
resumes after the last finished epoch.

Under torchrun the model is wrapped in DistributedDataParallel, each rank
reads disjoint cuts (a shard of them, or with ``max_duration_scope: global``
its share of every one-process batch), all ranks take as many batches per epoch
as the rank with the fewest (so no rank waits forever in an all-reduce), and
rank 0 alone writes checkpoints, logs and tensorboard.
"""

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from lhotse import CutSet
from tqdm import tqdm

from speechtl.adapt import Method
from speechtl.errors import SpeechtlError
from speechtl.features.compute import pick_device
from speechtl.lang import Lang
from speechtl.log import FORMAT
from speechtl.models import CtcModel
from speechtl.train.augment import mel_noise_config
from speechtl.train.checkpoint import average_checkpoints, epoch_checkpoints, load_checkpoint, save_checkpoint
from speechtl.train.data import eval_dataloader, is_pad, seed_everything, set_epoch, train_dataloader, unpack
from speechtl.train.dist import all_reduce_grads, all_reduce_min, all_reduce_sum, barrier, init_distributed
from speechtl.train.objectives import CtcObjective

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
    #: "rank": max_duration per process (icefall's meaning: N processes take N times
    #: the audio per update, and 1/N the updates). "global": every process draws the
    #: batches one process would and trains on its share of each (cut i to rank
    #: i mod N), augmentation is seeded per cut and the loss normalized by the whole
    #: batch, so N processes make one process's updates (dropout draws aside);
    #: update-limited runs (small corpora) need this to match.
    max_duration_scope: str = "rank"
    num_buckets: int = 10
    grad_clip: float = 5.0
    seed: int = 42
    average_last: int = 5
    log_interval: int = 10
    #: SpecAugment (lhotse) on training batches; None = off. Keys are lhotse's
    #: SpecAugment arguments, e.g. {num_feature_masks: 2, features_mask_size: 5}.
    spec_augment: dict[str, Any] | None = None
    #: Additive noise on the training features (:class:`speechtl.train.augment.MelNoiseConfig`
    #: keys: snr [low, high] dB, prob, tilt, jitter); None = off.
    mel_noise: dict[str, Any] | None = None
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


@dataclass
class StepContext:
    """What a method's hooks see of one training step (see :class:`speechtl.adapt.Method`).

    ``log_probs``/``out_lens``/``encoder_out`` are the network's outputs on the
    labelled batch (log_probs per frame for CTC, per utterance for classifiers); ``aux[name]`` holds the same triple, computed in the same
    forward pass, for each auxiliary stream the method asked for (``aux_data``),
    and ``aux_feats[name]`` its (features, lengths). ``progress`` runs 0 -> 1.
    """

    trainer: "Trainer"
    feats: torch.Tensor
    lengths: torch.Tensor
    texts: list[str]
    log_probs: torch.Tensor
    out_lens: torch.Tensor
    encoder_out: torch.Tensor
    aux: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    aux_feats: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    progress: float = 0.0
    #: The labelled batch's cuts, in row order (supervision fields beyond the text).
    cuts: list = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return self.trainer.device


def _pad_cat(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (batch, frames, dim) feature batches along batch, zero-padding frames."""
    t = max(f.size(1) for f, _ in parts)
    feats = torch.cat([torch.nn.functional.pad(f, (0, 0, 0, t - f.size(1))) for f, _ in parts])
    return feats, torch.cat([n for _, n in parts])


class Trainer:
    """Trains ``model`` on labelled cuts with ``method``; the loss is ``objective``'s
    (default: CTC over ``lang``'s units; :class:`ClassifyObjective` for utterance labels)."""

    def __init__(
        self, model: CtcModel, lang: Lang | None, method: Method, config: TrainConfig, exp_dir: Path, objective=None
    ):
        if config.optimizer not in OPTIMIZERS:
            raise SpeechtlError(f"unknown optimizer {config.optimizer!r}; known: {sorted(OPTIMIZERS)}")
        if config.max_duration_scope not in ("rank", "global"):
            raise SpeechtlError(f"max_duration_scope must be 'rank' or 'global', got {config.max_duration_scope!r}")
        if config.num_buckets < 2:
            raise SpeechtlError(f"num_buckets must be 2 or more (lhotse's bucketing sampler), got {config.num_buckets}")
        if config.lr_schedule not in ("constant", "cosine"):
            raise SpeechtlError(f"unknown lr_schedule {config.lr_schedule!r}; known: constant, cosine")
        # Parsed here, so bad options stop the run before any work.
        self.mel_noise = None if config.mel_noise is None else mel_noise_config(config.mel_noise)
        self.cfg = config
        self.lang = lang
        if objective is None:
            if lang is None:
                raise SpeechtlError("a Trainer needs a lang dir (CTC) or a classification objective")
            objective = CtcObjective(lang)
        self.objective = objective
        if method.ctc_only and not isinstance(objective, CtcObjective):
            raise SpeechtlError(
                f"method {method.name} works on CTC posteriors; it cannot train a {objective.metric} "
                "classifier. Fix: pick another method (finetune, linear-probe, freeze, ...)"
            )
        self.method = method
        self.exp_dir = Path(exp_dir)
        self.dist = init_distributed()
        self.device = pick_device(config.device or None)
        if self.device.type == "cuda" and self.dist.world_size > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.model = model
        self.net = model  # what forward() runs: the DDP wrapper while training under torchrun
        if model.vocab_size != objective.vocab_size:
            raise SpeechtlError(
                f"model has {model.vocab_size} outputs but the {objective.metric} objective has "
                f"{objective.vocab_size} symbols"
            )

    @property
    def batch_duration(self) -> float:
        """Seconds of audio per batch of a method's auxiliary stream in this process: those
        streams are sharded by lhotse, so under scope global each rank reads 1/N."""
        if self.cfg.max_duration_scope == "global":
            return self.cfg.max_duration / self.dist.world_size
        return self.cfg.max_duration

    def _loss(
        self,
        batch: dict,
        net: torch.nn.Module,
        aux: dict[str, dict] | None = None,
        progress: float = 0.0,
        hooks: bool = True,
        training_step: bool = False,
    ):
        """The objective on the labelled batch (+ the method's terms); one forward pass covers the aux batches too.

        ``training_step``: an update every DDP rank makes together, normalized by the
        global batch (:meth:`_batch_share`); other calls (validation, a method's
        inner steps) divide by their own batch.
        Returns (loss to minimize, the objective's unweighted sum, frames or utterances it is over)."""
        feats, lengths, texts, cuts = unpack(batch)
        parts = [(feats, lengths)]
        for name in sorted(aux or {}):
            f, n, _, _ = unpack(aux[name])
            parts.append((f, n))
        all_feats, all_lengths = _pad_cat(parts) if len(parts) > 1 else parts[0]
        log_probs, out_lens, enc = net(all_feats.to(self.device), all_lengths.to(self.device), return_encoder=True)
        b = feats.size(0)
        ctx = StepContext(
            self,
            feats.to(self.device),
            lengths.to(self.device),
            texts,
            log_probs[:b],
            out_lens[:b],
            enc[:b],
            progress=progress,
            cuts=cuts,
        )
        start = b
        for name, (f, n) in zip(sorted(aux or {}), parts[1:], strict=False):
            end = start + f.size(0)
            ctx.aux[name] = (log_probs[start:end], out_lens[start:end], enc[start:end])
            ctx.aux_feats[name] = (f.to(self.device), n.to(self.device))
            start = end
        weights = self.method.utterance_weights(ctx) if hooks else None
        pads = [is_pad(c) for c in cuts]
        if any(pads):  # a DDP rank's stand-in for an empty share of the batch (SplitBatches)
            keep = torch.tensor([0.0 if p else 1.0 for p in pads], device=self.device)
            weights = keep if weights is None else weights * keep
            b -= sum(pads)
        main, total, count = self.objective.loss(ctx, weights)
        loss = main / (self._batch_share(b) if training_step else max(1, b))
        extra = self.method.extra_loss(ctx) if hooks else None
        if extra is not None:
            loss = loss + extra
        return loss, total, count

    def _batch_share(self, b: int) -> float:
        """What this rank divides its loss sum by. One process: its batch size. With
        ``max_duration_scope: global`` the ranks' batches are one batch split N ways,
        so each divides by (global batch / N): DDP's gradient average is then the
        mean over the global batch, as one process computes it, even when the
        ranks' shares differ in size. Per-rank scope keeps icefall's per-rank mean."""
        if self.dist.world_size == 1 or self.cfg.max_duration_scope != "global":
            return max(1, b)
        return max(1, all_reduce_sum(b, self.dist, self.device)) / self.dist.world_size

    @torch.no_grad()
    def validate(self, cuts: CutSet) -> float:
        """The objective's loss per frame (CTC) or per utterance (classification) on ``cuts``."""
        self.model.eval()
        total, frames = 0.0, 0
        for batch in eval_dataloader(cuts, self.cfg.max_duration):
            _, value, n = self._loss(batch, self.model, hooks=False)
            total += float(value)
            frames += n
        self.model.train()
        return total / max(1, frames)

    def aux_batches(self, cuts: CutSet, seed: int) -> Iterator[dict]:
        """Endless shuffled batches of ``cuts`` (this rank's shard), epoch after epoch."""
        loader = train_dataloader(
            cuts, self.batch_duration, self.cfg.num_buckets, seed, None, self.dist.world_size, self.dist.rank
        )
        epoch = 0
        while True:
            set_epoch(loader, epoch)
            got = False
            for b in loader:
                got = True
                yield b
            if not got:
                raise SpeechtlError("an auxiliary cut set produced no batches; is it empty?")
            epoch += 1

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

    def fit(
        self, train_cuts: CutSet, valid_cuts: CutSet | None = None, aux_cuts: dict[str, CutSet] | None = None
    ) -> Path:
        """Train (resuming if epochs exist); returns ``final.pt``.

        ``aux_cuts``: extra cut sets by name (``unlabelled``, ``source``) for
        methods whose ``aux_data`` asks for them.
        """
        cfg = self.cfg
        aux_cuts = dict(aux_cuts or {})
        missing = [n for n in self.method.aux_data if n not in aux_cuts]
        if missing:
            raise SpeechtlError(
                f"method {self.method.name} also trains on {' and '.join(missing)} audio. Fix: give --{missing[0]}-cuts"
            )
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        (self.exp_dir / "log").mkdir(exist_ok=True)
        with self._train_log():
            seed_everything(cfg.seed)
            done = epoch_checkpoints(self.exp_dir)
            self.method.prepare(self.model)
            self.model.to(self.device)
            extra = self.method.modules()
            if extra is not None:
                extra.to(self.device)
            if not done:  # a resumed run has these weights in its checkpoint already
                self.method.before_training(self, train_cuts, aux_cuts)
            train_cuts = self.method.prepare_data(self, train_cuts, aux_cuts)
            if self.dist.world_size > 1:  # DDP broadcasts rank 0's weights here
                self.net = torch.nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None
                )
            groups = self.method.param_groups(self.model, cfg.lr)
            if extra is not None:
                groups.append(
                    {"params": [p for p in extra.parameters() if p.requires_grad], "lr": cfg.lr, "name": "method"}
                )
            optimizer = OPTIMIZERS[cfg.optimizer](groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
            # max_duration is each rank's batch (scope rank) or the one-process batch every
            # rank draws and keeps its share of (scope global).
            loader = train_dataloader(
                train_cuts,
                cfg.max_duration,
                cfg.num_buckets,
                cfg.seed,
                cfg.spec_augment,
                self.dist.world_size,
                self.dist.rank,
                mel_noise=self.mel_noise,
                split_batches=cfg.max_duration_scope == "global",
            )
            steps_per_epoch = max(1, all_reduce_min(sum(1 for _ in loader.sampler), self.dist, self.device))
            num_epochs = math.ceil(cfg.num_steps / steps_per_epoch) if cfg.num_steps > 0 else cfg.num_epochs
            total_steps = steps_per_epoch * num_epochs
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total_steps))
            start_epoch = 1
            if done:
                ckpt = load_checkpoint(done[-1])
                self.model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                scheduler.load_state_dict(ckpt["scheduler"])
                torch.set_rng_state(ckpt["rng"])
                if extra is not None and "method_state" in ckpt:
                    extra.load_state_dict(ckpt["method_state"])
                start_epoch = ckpt["epoch"] + 1
                logging.info(f"resuming from {done[-1]} at epoch {start_epoch}")
            aux_iters = {n: self.aux_batches(aux_cuts[n], cfg.seed + 1 + i) for i, n in enumerate(self.method.aux_data)}
            logging.info(
                f"training {sum(p.numel() for p in self.model.parameters() if p.requires_grad):,} parameters "
                f"on {self.device}, method {self.method.name}, {len(train_cuts)} cuts, {steps_per_epoch} batches/epoch"
                + (f", aux: {', '.join(f'{n} {len(aux_cuts[n])} cuts' for n in aux_iters)}" if aux_iters else "")
                + (f", rank {self.dist.rank} of world size {self.dist.world_size}" if self.dist.world_size > 1 else "")
            )
            state = {
                "optimizer": optimizer,
                "scheduler": scheduler,
                "extra": extra,
                "features": feature_info(train_cuts),
                "total_steps": total_steps,
                "steps_per_epoch": steps_per_epoch,
            }
            self._epochs(loader, state, aux_iters, start_epoch, num_epochs, valid_cuts)
            return self._finish()

    def _epochs(
        self,
        loader,
        state: dict,
        aux_iters: dict[str, Iterator[dict]],
        start_epoch: int,
        num_epochs: int,
        valid_cuts: CutSet | None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        optimizer, scheduler, extra = state["optimizer"], state["scheduler"], state["extra"]
        main = self.dist.is_main
        writer = SummaryWriter(str(self.exp_dir / "tensorboard")) if main else None
        step = (start_epoch - 1) * state["steps_per_epoch"]
        params = list(self.model.parameters()) + (list(extra.parameters()) if extra is not None else [])
        metric = f"{self.objective.metric}/{self.objective.unit}"  # ctc/frame, ce/utt
        per = f"{self.objective.metric}_per_{self.objective.unit}"
        self.model.train()
        for epoch in range(start_epoch, num_epochs + 1):
            set_epoch(loader, epoch)
            # Shuffling changes how cuts pack into batches, so ranks agree on the count every epoch.
            n_batches = all_reduce_min(sum(1 for _ in loader.sampler), self.dist, self.device)
            t0, tot_loss, tot_frames = time.time(), 0.0, 0
            # A progress bar on an interactive terminal; logs and job files get the periodic lines.
            bar = tqdm(
                total=n_batches,
                desc=f"epoch {epoch}/{num_epochs}",
                leave=False,
                disable=not (main and sys.stderr.isatty()),
            )
            for i, batch in enumerate(loader):
                if i == n_batches:
                    break  # as many batches as the rank with the fewest
                aux = {n: next(it) for n, it in aux_iters.items()}
                loss, value, frames = self._loss(
                    batch, self.net, aux, progress=step / state["total_steps"], training_step=True
                )
                if not math.isfinite(float(loss.detach())):
                    raise SpeechtlError(
                        f"loss became {float(loss.detach())} at epoch {epoch} batch {i + 1}; "
                        f"the last good model is the latest epoch-N.pt in {self.exp_dir}. Fix: lower the lr."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if extra is not None:
                    all_reduce_grads(extra, self.dist)  # DDP syncs the model only
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                bar.update(1)
                tot_loss += float(value)
                tot_frames += frames
                if step % cfg.log_interval == 0 and main:
                    writer.add_scalar(f"train/{per}", float(value) / max(1, frames), step)
                    writer.add_scalar("train/loss", float(loss.detach()), step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                    logging.info(
                        f"epoch {epoch} batch {i + 1}/{state['steps_per_epoch']} {metric} "
                        f"{float(value) / max(1, frames):.4f} loss {float(loss.detach()):.4f}"
                    )
            bar.close()
            msg = f"epoch {epoch}/{num_epochs}: train {metric} {tot_loss / max(1, tot_frames):.4f}"
            if main:
                writer.add_scalar(f"epoch/train_{per}", tot_loss / max(1, tot_frames), epoch)
            if valid_cuts is not None and len(valid_cuts) and main:
                v = self.validate(valid_cuts)
                writer.add_scalar(f"epoch/valid_{per}", v, epoch)
                msg += f", valid {v:.4f}"
            logging.info(f"{msg} ({time.time() - t0:.1f}s)")
            if main:
                save_checkpoint(
                    self.exp_dir / f"epoch-{epoch}.pt",
                    self.model,
                    epoch=epoch,
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    rng=torch.get_rng_state(),
                    train_config=asdict(cfg),
                    method=self.method.name,
                    features=state["features"],
                    **self.objective.checkpoint_info(),
                    **({"method_state": extra.state_dict()} if extra is not None else {}),
                )
            barrier(self.dist)
        if main:
            writer.close()

    def _finish(self) -> Path:
        """Average the last epochs into avg-K.pt, point final.pt at it, let the method finish."""
        if self.dist.world_size > 1:
            checksum = sum(float(p.detach().double().sum()) for p in self.model.parameters())
            logging.info(f"rank {self.dist.rank}: parameter checksum {checksum:.10e}")
        final = self.exp_dir / "final.pt"
        if not self.dist.is_main:
            barrier(self.dist)
            return final
        epochs = epoch_checkpoints(self.exp_dir)[-max(1, self.cfg.average_last) :]
        avg = self.exp_dir / f"avg-{len(epochs)}.pt"
        average_checkpoints(epochs, avg)
        final.unlink(missing_ok=True)
        final.symlink_to(avg.name)
        logging.info(f"averaged {[p.name for p in epochs]} -> {avg}; final model: {final}")
        self.method.finalize(self, final)
        barrier(self.dist)
        return final
