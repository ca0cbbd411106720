"""The one training loop: every recipe and method runs through :class:`Trainer`.

Per epoch it writes ``epoch-N.pt`` (model, optimizer, scheduler, RNG), logs
to ``log/log-train.txt`` and ``tensorboard/`` (with seconds and peak memory per
update); at the end it writes ``avg-K.pt``, the mean of the last K epochs
(icefall's checkpoint averaging), and ``final.pt`` pointing at it. Every
``save_every_n`` updates it also writes ``checkpoint-last.pt``; restarting with the
same command continues from whichever is further along, mid-epoch included, to the
weights an uninterrupted run reaches (:mod:`speechtl.train.resume`).

An update sums the gradients of ``accum_grad`` batches; a non-finite loss or
gradient skips it (no step, gradients zeroed, a warning naming the cuts) on every
rank together, and ``max_bad_batches`` of them in a row stop the run with an
error rather than a NaN model. ``amp`` runs forward passes in bf16/fp16 on a GPU
(:mod:`speechtl.train.precision`); ``activation_checkpointing`` recomputes encoder
layers in backward (:mod:`speechtl.train.activation_checkpointing`).

Under torchrun the model is wrapped in DistributedDataParallel, each rank
reads disjoint cuts (a shard of them, or with ``max_duration_scope: global``
its share of every one-process batch), all ranks take as many batches per epoch
as the rank with the fewest (so no rank waits forever in an all-reduce), and
rank 0 alone writes checkpoints, logs and tensorboard.
"""

import contextlib
import logging
import math
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from lhotse import CutSet
from tqdm import tqdm

from speechtl.adapt import Method
from speechtl.adapt.param_options import InitParam, apply_init_params, freeze_params, write_init_report
from speechtl.decode.longform import check_cuts_fit
from speechtl.errors import SpeechtlError
from speechtl.features.compute import pick_device
from speechtl.features.inputs import level_dependent, model_input, speech_track
from speechtl.features.warp import model_geometry
from speechtl.lang import Lang
from speechtl.log import FORMAT
from speechtl.models import CtcModel
from speechtl.models.layer_mix import layer_shares, with_layer_mix_group
from speechtl.train.activation_checkpointing import (
    enable_activation_checkpointing,
    restore_running_stats,
    running_stats,
)
from speechtl.train.augment import Vtlp, mel_noise_config, vtlp_config
from speechtl.train.checkpoint import average_checkpoints, epoch_checkpoints, prune_epochs, save_checkpoint
from speechtl.train.data import eval_dataloader, is_pad, seed_everything, set_epoch, train_dataloader, unpack
from speechtl.train.dist import (
    all_gather_objects,
    all_reduce_grads,
    all_reduce_min,
    all_reduce_sum,
    all_reduce_sums,
    any_rank,
    barrier,
    init_distributed,
)
from speechtl.train.objectives import CtcObjective
from speechtl.train.precision import AMP_DTYPES, Precision, make_precision
from speechtl.train.resume import (
    LAST,
    Position,
    data_id,
    exp_lock,
    find_resume,
    position_of,
    quiet_iter,
    resume_key,
    rng_states,
    set_rng_states,
    skip_batches,
)

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


@dataclass
class TrainConfig:
    num_epochs: int = 15
    #: If > 0, train for this many updates instead: a fixed compute budget whatever the
    #: amount of data, as fairseq's max_update. Compares methods and data amounts at equal cost.
    num_steps: int = 0
    #: How ``num_steps`` ends. "exact": at num_steps updates, mid-epoch if need be (the last
    #: epoch is cut short; with a pool of more than num_steps batches, one partial epoch).
    #: "epochs": rounded up to whole epochs (ceil(num_steps / updates per epoch) of them), as
    #: speechtl did before 2026-12-06: a larger pool then got more updates (one whole epoch of
    #: 1200 against 400), and a method with more batches an epoch other updates than finetune.
    #: The built-in recipes pin "epochs": their RESULTS.md was measured so.
    step_budget: str = "exact"
    optimizer: str = "adam"
    lr: float = 1e-2
    weight_decay: float = 0.0
    #: The learning rate of a layer mix's weights (``model.layer_mix``); 0: their group's. A handful
    #: of scalars that start with every layer alike move little at a head's rate in a few hundred
    #: updates (fsdd, whisper-tiny.en: shares 0.17-0.23 after 200 at 5e-3). No weight decay on
    #: them: it would pull the mix back to uniform.
    layer_mix_lr: float = 0.0
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
    #: Vocal tract length perturbation of the training features
    #: (:class:`speechtl.train.augment.VtlpConfig` keys: low, high, prob); None = off.
    vtlp: dict[str, Any] | None = None
    device: str = ""  # empty: CUDA when present
    #: Batches per optimizer update. Their gradients are summed and the loss divided by
    #: all their utterances, so k batches of b make the update one batch of k*b would
    #: (a method's extra terms are averaged over the k); max_duration stays per batch.
    accum_grad: int = 1
    #: "none", "bf16" or "fp16": autocast forward passes on a GPU (fp16 with a gradient
    #: scaler); on a CPU a no-op, said in the log.
    amp: str = "none"
    #: Recompute each encoder layer in backward instead of keeping its activations
    #: (the encoder exposes ``layers``; see speechtl/train/activation_checkpointing.py).
    activation_checkpointing: bool = False
    #: Write checkpoint-last.pt every this many updates (0: epoch checkpoints only),
    #: so a killed run continues mid-epoch.
    save_every_n: int = 100
    #: Updates with a non-finite loss or gradient are skipped; this many in a row stop the run.
    max_bad_batches: int = 5
    #: Keep only the newest this many epoch-N.pt (never fewer than average_last, so the
    #: average still finds its epochs); 0 keeps every one. Each holds the optimizer state
    #: (a pretrained encoder's ~3x its weights), and a short run of many small epochs writes
    #: dozens: 60 few-shot systems of 75 epochs filled 38 GB here before this default.
    keep_epochs: int = 10
    #: Parts of other models to start from, ESPnet's --init_param: ``PATH[:SRC[:DST[:EXCLUDE,...]]]``
    #: each, applied in order on top of what the method starts from
    #: (:mod:`speechtl.adapt.param_options`). Not re-applied when a run resumes.
    init_param: list[str] = field(default_factory=list)
    #: Name prefixes whose parameters do not train, whatever the method (ESPnet's --freeze_param).
    freeze_param: list[str] = field(default_factory=list)


def check_same_init(found: tuple[Path, dict], cfg: TrainConfig) -> None:
    """A run resumes from an epoch checkpoint whatever its settings; but one trained without (or with
    other) ``init_param``/``freeze_param`` would continue without what they do, while its checkpoints
    say they were applied."""
    path, ckpt = found
    saved = ckpt.get("resume_key") or ckpt.get("train_config") or {}
    for name in ("init_param", "freeze_param"):
        before, now = saved.get(name) or [], getattr(cfg, name)
        if any(spec not in before for spec in now):  # one dropped on resume loses nothing: its weights are in
            raise SpeechtlError(
                f"{path} was trained with train.{name} {before}, and this run asks for {now}: resuming from it "
                f"would not apply them. Fix: train into a new --exp-dir, or delete {path.parent}'s checkpoints"
            )


def _lr_lambda(cfg: TrainConfig, total_steps: int):
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        return 1.0

    return f


def feature_info(cuts: CutSet, reads_waves: bool = False) -> dict | None:
    """The fbank settings a model was trained on, so inference can compute the same. A model that
    computes its input from the audio (Whisper log-mel, samples: ``reads_waves``) needs none, and
    records them only when the cuts have them."""
    f = getattr(speech_track(next(iter(cuts))), "features", None)
    if f is None:
        if reads_waves:
            return None
        raise SpeechtlError("training cuts have no features. Fix: run the fbank stage first.")
    return {"sampling_rate": f.sampling_rate, "num_mel_bins": f.num_features, "frame_shift": f.frame_shift}


def training_level(cuts: CutSet, model) -> float | None:
    """For a model whose output depends on its input's level (:func:`~speechtl.features.inputs.level_dependent`:
    Whisper's log-mel, a waveform model that does not scale its input to unit variance): the median level of
    the training audio, which an ONNX export restores (:mod:`speechtl.export.wave`)."""
    if not level_dependent(model):
        return None
    from speechtl.features.inputs import audio_level

    return audio_level(cuts, model_input(model).sampling_rate)


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


class UpdateMeter:
    """Wall time per update and peak memory since :meth:`reset`: on a GPU the CUDA
    allocator's peak, on a CPU the process's peak resident size (which never goes down)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.memory_kind = "cuda allocated" if self.cuda else "max rss"
        self.reset()

    def reset(self) -> None:
        self.start, self.updates = time.perf_counter(), 0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def tick(self) -> None:
        self.updates += 1

    def read(self) -> tuple[float, float]:
        """(seconds per update, peak MiB)."""
        seconds = (time.perf_counter() - self.start) / max(1, self.updates)
        if self.cuda:
            return seconds, torch.cuda.max_memory_allocated(self.device) / 2**20
        return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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
        if config.step_budget not in ("exact", "epochs"):
            raise SpeechtlError(f"train.step_budget must be 'exact' or 'epochs', got {config.step_budget!r}")
        if config.lr_schedule not in ("constant", "cosine"):
            raise SpeechtlError(f"unknown lr_schedule {config.lr_schedule!r}; known: constant, cosine")
        if config.amp not in AMP_DTYPES:
            raise SpeechtlError(f"train.amp must be one of {', '.join(AMP_DTYPES)}, got {config.amp!r}")
        for name in ("accum_grad", "max_bad_batches"):
            if getattr(config, name) < 1:
                raise SpeechtlError(f"train.{name} must be 1 or more, got {getattr(config, name)}")
        if config.save_every_n < 0:
            raise SpeechtlError(f"train.save_every_n must be 0 (off) or more, got {config.save_every_n}")
        resumable = (Path(exp_dir) / LAST).is_file() or bool(epoch_checkpoints(Path(exp_dir)))
        for spec in config.init_param if not resumable else ():  # a typo'd path stops the run before any work
            if not (path := InitParam.parse(spec).path).is_file():
                raise SpeechtlError(f"train.init_param {spec!r}: {path} does not exist. Fix: the path of a checkpoint")
        # Parsed here, so bad options stop the run before any work.
        self.mel_noise = None if config.mel_noise is None else mel_noise_config(config.mel_noise)
        self.vtlp = None if config.vtlp is None else vtlp_config(config.vtlp)
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
        divisor: float | None = None,
        extra_scale: float = 1.0,
    ):
        """The objective on the labelled batch (+ the method's terms); one forward pass covers the aux batches too.

        ``training_step``: an update every DDP rank makes together, normalized by the
        global batch (:meth:`_batch_share`); other calls (validation, a method's
        inner steps) divide by their own batch. ``divisor`` overrides both (the
        utterances of all batches of an accumulated update), and ``extra_scale``
        weighs the method's extra terms (1/accum_grad: their mean over the batches).
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
        if divisor is None:
            divisor = self._batch_share(b) if training_step else max(1, b)
        loss = main / divisor
        extra = self.method.extra_loss(ctx) if hooks else None
        if extra is not None:
            loss = loss + extra * extra_scale
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

    def aux_batches(self, cuts: CutSet, seed: int, skip: int = 0) -> Iterator[dict]:
        """Endless shuffled batches of ``cuts`` (this rank's shard), epoch after epoch;
        ``skip``: start after that many (a resumed run's stream continues where it was)."""
        loader = train_dataloader(
            cuts, self.batch_duration, self.cfg.num_buckets, seed, None, self.dist.world_size, self.dist.rank
        )
        epoch = 0
        while True:
            set_epoch(loader, epoch)
            if skip:
                n = sum(1 for _ in loader.sampler)
                if n == 0:
                    raise SpeechtlError("an auxiliary cut set produced no batches; is it empty?")
                if skip >= n:  # a whole epoch drawn before the restart
                    skip -= n
                    epoch += 1
                    continue
                batches, skip = quiet_iter(skip_batches(loader, skip)), 0
            else:
                batches = iter(loader)
            got = False
            for b in batches:
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
        """Train (resuming from ``checkpoint-last.pt`` or the last ``epoch-N.pt``); returns ``final.pt``.

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
        empty = [n for n in self.method.aux_data if next(iter(aux_cuts[n]), None) is None]
        if empty:
            raise SpeechtlError(
                f"method {self.method.name} also trains on {empty[0]} audio, but the --{empty[0]}-cuts given hold "
                "no cuts. Fix: leave more of the corpus untranscribed (fewer shots or dev recordings) or pick a "
                "method without it"
            )
        check_cuts_fit(train_cuts, self.model, "training")  # a Whisper encoder stops at 30 s: say so before any work
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        (self.exp_dir / "log").mkdir(exist_ok=True)
        lock = exp_lock(self.exp_dir) if self.dist.is_main else contextlib.nullcontext()
        with lock, self._train_log():
            seed_everything(cfg.seed)
            opts = self.method.options
            key = resume_key(
                asdict(cfg),
                self.method.name,
                self.dist.world_size,
                data_id(train_cuts),
                asdict(opts) if is_dataclass(opts) else None,
            )
            found = find_resume(self.exp_dir, key, asdict(TrainConfig()))
            if found is None:  # a resumed run's checkpoint has the weights these gave, and more
                reports = apply_init_params(self.model, cfg.init_param, self.lang.token2id if self.lang else None)
                if reports and self.dist.is_main:
                    write_init_report(reports, self.exp_dir / "init_param.tsv")
            else:
                check_same_init(found, cfg)
            self.method.prepare(self.model)
            if cfg.freeze_param:
                names = freeze_params(self.model, cfg.freeze_param)
                logging.info(f"freeze_param {' '.join(cfg.freeze_param)}: {len(names)} parameter tensors fixed")
            self.model.to(self.device)
            extra = self.method.modules()
            if extra is not None:
                extra.to(self.device)
            if found is None:  # a resumed run has these weights in its checkpoint already
                self.method.before_training(self, train_cuts, aux_cuts)
            train_cuts = self.method.prepare_data(self, train_cuts, aux_cuts)
            if cfg.activation_checkpointing:
                n = enable_activation_checkpointing(self.model)
                logging.info(f"activation checkpointing: {n} encoder layers recompute their activations in backward")
            if self.dist.world_size > 1:  # DDP broadcasts rank 0's weights here
                self.net = torch.nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None
                )
            groups = with_layer_mix_group(self.method.param_groups(self.model, cfg.lr), self.model, cfg.layer_mix_lr)
            if extra is not None:
                groups.append(
                    {"params": [p for p in extra.parameters() if p.requires_grad], "lr": cfg.lr, "name": "method"}
                )
            if not any(p.requires_grad for g in groups for p in g["params"]):
                raise SpeechtlError(
                    f"nothing trains: method {self.method.name}"
                    + (f" with train.freeze_param {cfg.freeze_param}" if cfg.freeze_param else "")
                    + " leaves no parameter with a gradient. Fix: freeze less (e.g. keep the output layer trainable)"
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
                vtlp=None if self.vtlp is None else Vtlp(self.vtlp, model_geometry(self.model, train_cuts)),
            )
            batches = max(1, all_reduce_min(sum(1 for _ in loader.sampler), self.dist, self.device))
            steps_per_epoch = math.ceil(batches / cfg.accum_grad)  # updates
            num_epochs = math.ceil(cfg.num_steps / steps_per_epoch) if cfg.num_steps > 0 else cfg.num_epochs
            exact = cfg.num_steps > 0 and cfg.step_budget == "exact"
            total_steps = cfg.num_steps if exact else steps_per_epoch * num_epochs
            if exact and cfg.num_steps < steps_per_epoch:
                logging.warning(
                    f"num_steps {cfg.num_steps} is less than one epoch ({steps_per_epoch} updates): this run sees "
                    f"{100 * cfg.num_steps / steps_per_epoch:.0f}% of its {len(train_cuts)} cuts once. Fix, to see "
                    f"them all: train.num_steps={2 * steps_per_epoch} (two passes) for every method and amount"
                )
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total_steps))
            precision = make_precision(cfg.amp, self.device)
            pos = Position()
            if found is not None:
                pos = self._restore(found, optimizer, scheduler, extra, precision, steps_per_epoch)
            aux_iters = {
                n: self.aux_batches(aux_cuts[n], cfg.seed + 1 + i, skip=pos.batches_total)
                for i, n in enumerate(self.method.aux_data)
            }
            logging.info(
                f"training {sum(p.numel() for p in self.model.parameters() if p.requires_grad):,} parameters "
                f"on {self.device}, method {self.method.name}, {len(train_cuts)} cuts, {batches} batches/epoch"
                + (f" ({steps_per_epoch} updates of {cfg.accum_grad})" if cfg.accum_grad > 1 else "")
                + (f", aux: {', '.join(f'{n} {len(aux_cuts[n])} cuts' for n in aux_iters)}" if aux_iters else "")
                + (f", rank {self.dist.rank} of world size {self.dist.world_size}" if self.dist.world_size > 1 else "")
            )
            state = {
                "optimizer": optimizer,
                "scheduler": scheduler,
                "extra": extra,
                "precision": precision,
                "features": feature_info(train_cuts, model_input(self.model).kind != "fbank"),
                "input_level": training_level(train_cuts, self.model),
                "total_steps": total_steps,
                "max_steps": total_steps if exact else math.inf,
                "steps_per_epoch": steps_per_epoch,
                "resume_key": key,
            }
            self._epochs(loader, state, aux_iters, pos, num_epochs, valid_cuts)
            return self._finish()

    def _restore(
        self, found: tuple[Path, dict], optimizer, scheduler, extra, precision: Precision, steps_per_epoch: int
    ) -> Position:
        """Load a checkpoint's training state; the RNG last, so the next draw is the one the
        interrupted run would have made."""
        path, ckpt = found
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as e:  # size mismatch / missing keys: another architecture or other units
            raise SpeechtlError(
                f"{path} holds another model than this run builds "
                f"({(str(e).splitlines()[1:] or [str(e)])[0].strip().rstrip('.')[:200]}). "
                f"Fix: train into a new --exp-dir, or delete {self.exp_dir}'s checkpoints to start afresh."
            ) from e
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as e:  # other parameter groups: another method, or its options (layers frozen...)
            raise SpeechtlError(
                f"{path} was written by a run that trains other parameters than this one (method "
                f"{ckpt.get('resume_key', {}).get('method', '?')}; another method or other method options, "
                f"e.g. layers frozen, or another train.layer_mix_lr: {str(e).rstrip('.')}). Fix: train into a new --exp-dir, or delete "
                f"{self.exp_dir}'s checkpoints to start afresh."
            ) from e
        scheduler.load_state_dict(ckpt["scheduler"])
        precision.load_state_dict(ckpt.get("scaler"))
        if extra is not None and "method_state" in ckpt:
            extra.load_state_dict(ckpt["method_state"])
        pos = position_of(ckpt, steps_per_epoch)
        states = ckpt.get("rng_states")
        if states:
            set_rng_states(states[self.dist.rank] if len(states) == self.dist.world_size else states[0])
        else:  # epoch-N.pt of an older speechtl
            torch.set_rng_state(ckpt["rng"])
        within = f" batch {pos.batches_done + 1} (update {pos.step + 1})" if pos.batches_done else ""
        logging.info(f"resuming from {path} at epoch {pos.epoch}{within}")
        return pos

    def _save(self, path: Path, state: dict, pos: Position) -> None:
        """A checkpoint that continues the run at ``pos`` (every rank calls this: the RNG states are gathered)."""
        rng = all_gather_objects(rng_states(), self.dist)
        if not self.dist.is_main:
            return
        extra = state["extra"]
        save_checkpoint(
            path,
            self.model,
            epoch=pos.epoch - 1,  # finished epochs
            position=pos.to_dict(),
            optimizer=state["optimizer"].state_dict(),
            scheduler=state["scheduler"].state_dict(),
            scaler=state["precision"].state_dict(),
            rng=torch.get_rng_state(),
            rng_states=rng,
            train_config=asdict(self.cfg),
            resume_key=state["resume_key"],
            method=self.method.name,
            method_options=state["resume_key"].get("options", {}),  # kept by averaging (config_digest)
            features=state["features"],
            **({"input_level": state["input_level"]} if state["input_level"] else {}),
            **self.objective.checkpoint_info(),
            **({"method_state": extra.state_dict()} if extra is not None else {}),
        )

    def _update(self, group: list[dict], aux: list[dict], state: dict, params: list, pos: Position):
        """One optimizer update over ``group`` (accum_grad batches, with one batch of each
        aux stream per batch). Returns (objective sum, frames, loss), or None when the
        update was skipped as non-finite on some rank."""
        cfg, precision = self.cfg, state["precision"]
        optimizer, scheduler, extra, scaler = state["optimizer"], state["scheduler"], state["extra"], precision.scaler
        kept = sum(sum(not is_pad(c) for c in b["supervisions"]["cut"]) for b in group)
        divisor = self._batch_share(kept) if len(group) > 1 else None  # None: _loss's own (one batch)
        optimizer.zero_grad(set_to_none=True)
        # A NaN batch would leave NaN in BatchNorm's running statistics even with no step.
        stats = running_stats(self.model) + (running_stats(extra) if extra is not None else [])
        bad_cuts, value, frames, loss_sum = [], 0.0, 0, 0.0
        for j, (batch, aux_j) in enumerate(zip(group, aux, strict=True)):
            # DDP all-reduces in the last batch's backward only (accumulation).
            sync = contextlib.nullcontext() if j == len(group) - 1 or self.net is self.model else self.net.no_sync()
            with sync:
                with precision.autocast():
                    loss, v, n = self._loss(
                        batch,
                        self.net,
                        aux_j,
                        progress=pos.step / state["total_steps"],
                        training_step=True,
                        divisor=divisor,
                        extra_scale=1.0 / len(group),
                    )
                if not math.isfinite(float(loss.detach())):
                    bad_cuts += [c.id for c in batch["supervisions"]["cut"] if not is_pad(c)]
                # Even a non-finite loss goes through backward: DDP's gradient all-reduce
                # must run on every rank once a forward has.
                (scaler.scale(loss) if scaler is not None else loss).backward()
            value, frames, loss_sum = value + float(v), frames + n, loss_sum + float(loss.detach())
        if extra is not None:
            all_reduce_grads(extra, self.dist)  # DDP syncs the model only
        if scaler is not None:
            scaler.unscale_(optimizer)
        norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf))
        # With fp16 an overflowing gradient is the scaler's business (it skips and lowers the scale).
        bad_grad = scaler is None and not math.isfinite(norm)
        if any_rank(bool(bad_cuts) or bad_grad, self.dist, self.device):
            optimizer.zero_grad(set_to_none=True)
            restore_running_stats(stats)
            if scaler is not None:
                scaler.update()
            self._skip_update(pos, bad_cuts, f"gradient norm {norm}" if bad_grad else "")
            return None
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        pos.bad_in_a_row = 0
        return value, frames, loss_sum

    def _skip_update(self, pos: Position, bad_cuts: list[str], why: str) -> None:
        """Warn about a skipped update (naming this rank's bad cuts); stop after max_bad_batches in a row."""
        pos.bad_in_a_row += 1
        where = f"epoch {pos.epoch} batch {pos.batches_done + 1}"
        if self.dist.world_size > 1:
            where = f"rank {self.dist.rank}: {where}"
        shown = ", ".join(bad_cuts[:10]) + (f" and {len(bad_cuts) - 10} more" if len(bad_cuts) > 10 else "")
        what = f"non-finite loss on cuts {shown}" if bad_cuts else why or "non-finite loss on another rank's share"
        n, limit = pos.bad_in_a_row, self.cfg.max_bad_batches
        if bad_cuts or self.dist.is_main:
            logging.warning(f"{where}: {what}: skipped (no update), {n} in a row (train.max_bad_batches {limit})")
        if n >= limit:
            raise SpeechtlError(
                f"{n} updates in a row had a non-finite loss or gradient (last: {where}, {what}); stopped "
                f"before the model turns NaN. The last good weights are in {self.exp_dir} "
                f"({LAST} or the latest epoch-N.pt). Fix: lower train.lr (now {self.cfg.lr}), set train.grad_clip, "
                "check those cuts' audio and features for NaN/Inf, or raise train.max_bad_batches"
            )

    def _epochs(
        self,
        loader,
        state: dict,
        aux_iters: dict[str, Iterator[dict]],
        pos: Position,
        num_epochs: int,
        valid_cuts: CutSet | None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        main = self.dist.is_main
        writer = SummaryWriter(str(self.exp_dir / "tensorboard")) if main else None
        extra = state["extra"]
        params = list(self.model.parameters()) + (list(extra.parameters()) if extra is not None else [])
        metric = f"{self.objective.metric}/{self.objective.unit}"  # ctc/frame, ce/utt
        per = f"{self.objective.metric}_per_{self.objective.unit}"
        meter = UpdateMeter(self.device)
        self.model.train()
        for epoch in range(pos.epoch, num_epochs + 1):
            set_epoch(loader, epoch)
            # Shuffling changes how cuts pack into batches, so ranks agree on the count every epoch.
            n_batches = all_reduce_min(sum(1 for _ in loader.sampler), self.dist, self.device)
            start = pos.batches_done if epoch == pos.epoch else 0
            pos.epoch, pos.batches_done = epoch, start
            batches = quiet_iter(skip_batches(loader, start)) if start else iter(loader)
            t0, tot_loss, tot_frames, updates = time.time(), 0.0, 0, 0
            epoch_meter = UpdateMeter(self.device)
            # A progress bar on an interactive terminal; logs and job files get the periodic lines.
            bar = tqdm(
                total=n_batches,
                initial=start,
                desc=f"epoch {epoch}/{num_epochs}",
                leave=False,
                disable=not (main and sys.stderr.isatty()),
            )
            # As many batches as the rank with the fewest; an exact budget stops at its last update.
            while pos.batches_done < n_batches and pos.step < state["max_steps"]:
                group = [next(batches) for _ in range(min(cfg.accum_grad, n_batches - pos.batches_done))]
                aux = [{n: next(it) for n, it in aux_iters.items()} for _ in group]
                result = self._update(group, aux, state, params, pos)
                pos.batches_done += len(group)
                pos.batches_total += len(group)
                bar.update(len(group))
                if result is None:
                    continue
                value, frames, loss = result
                pos.step += 1
                updates += 1
                meter.tick()
                epoch_meter.tick()
                tot_loss += value
                tot_frames += frames
                if pos.step % cfg.log_interval == 0 and main:
                    seconds, peak = meter.read()
                    meter.reset()
                    writer.add_scalar(f"train/{per}", value / max(1, frames), pos.step)
                    writer.add_scalar("train/loss", loss, pos.step)
                    writer.add_scalar("train/lr", state["scheduler"].get_last_lr()[0], pos.step)
                    writer.add_scalar("train/seconds_per_update", seconds, pos.step)
                    writer.add_scalar("train/peak_memory_mib", peak, pos.step)
                    logging.info(
                        f"epoch {epoch} batch {pos.batches_done}/{n_batches} {metric} "
                        f"{value / max(1, frames):.4f} loss {loss:.4f} ({seconds:.3f} s/update, peak {peak:.0f} MiB "
                        f"{meter.memory_kind})"
                    )
                if cfg.save_every_n and pos.step % cfg.save_every_n == 0 and pos.batches_done < n_batches:
                    self._save(self.exp_dir / LAST, state, pos)
            bar.close()
            seconds, peak = epoch_meter.read()
            # every rank's share summed: one line, the whole epoch's loss (each rank logged its own before)
            tot_loss, tot_frames = all_reduce_sums([tot_loss, tot_frames], self.dist, self.device)
            msg = f"epoch {epoch}/{num_epochs}: train {metric} {tot_loss / max(1, tot_frames):.4f}"
            if main:
                writer.add_scalar(f"epoch/train_{per}", tot_loss / max(1, tot_frames), epoch)
            if valid_cuts is not None and len(valid_cuts) and main:
                v = self.validate(valid_cuts)
                writer.add_scalar(f"epoch/valid_{per}", v, epoch)
                msg += f", valid {v:.4f}"
            if main:
                logging.info(
                    f"{msg} ({time.time() - t0:.1f}s, {updates} updates, {seconds:.3f} s/update, "
                    f"peak {peak:.0f} MiB {epoch_meter.memory_kind})"
                )
            pos.epoch, pos.batches_done = epoch + 1, 0
            self._save(self.exp_dir / f"epoch-{epoch}.pt", state, pos)
            if main and self.cfg.keep_epochs > 0:
                prune_epochs(self.exp_dir, max(self.cfg.keep_epochs, self.cfg.average_last, 1))
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
        averaged = average_checkpoints(epochs, avg)
        final.unlink(missing_ok=True)
        final.symlink_to(avg.name)
        logging.info(f"averaged {[p.name for p in epochs]} -> {avg}; final model: {final}")
        if getattr(self.model, "layer_mix", None) is not None:  # the final (averaged) model's
            shares = " ".join(f"{x:.2f}" for x in layer_shares(averaged["model"]["layer_mix.weights"]))
            logging.info(f"layer mix of {final} (the first layer's input, then each layer's output): {shares}")
        (self.exp_dir / LAST).unlink(missing_ok=True)  # mid-epoch state of a run that has finished
        self.method.finalize(self, final)
        barrier(self.dist)
        return final
