"""Fbank over a CutSet, split into ``--nj`` jobs, stored with LilcomChunkyWriter."""

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet, LilcomChunkyWriter, RecordingSet, SupervisionSet
from lhotse.features.base import Features
from lhotse.utils import fastcopy
from tqdm import tqdm

from speechtl.atomic import atomic_open, atomic_path, writable_dir
from speechtl.cluster import get_executor
from speechtl.data.downmix import is_downmixed  # the module registers DownmixToMono, which stereo imports name
from speechtl.data.levels import HEADER as LEVELS_HEADER
from speechtl.data.levels import level_issue, say_level_issues
from speechtl.errors import SpeechtlError
from speechtl.features.fbank import BatchedFbank, FbankConfig


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, unless the caller names a device."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _batches(cuts: CutSet, batch_duration: float) -> Iterator[list]:
    batch, total = [], 0.0
    for cut in cuts:
        batch.append(cut)
        total += cut.duration
        if total >= batch_duration:
            yield batch
            batch, total = [], 0.0
    if batch:
        yield batch


def compute_fbank_job(
    cuts_path: str,
    storage_path: str,
    out_cuts_path: str,
    config: dict,
    batch_duration: float = 600.0,
    device: str | None = None,
) -> str:
    """One job: features for every cut in ``cuts_path``; returns ``out_cuts_path``.

    Both outputs are written under temporary names and moved into place at the
    end (features first, then the cuts that point at them): a killed job
    leaves no half-written archive or manifest under the final names.
    """
    cfg = FbankConfig(**config)
    dev = pick_device(device)
    fbank = BatchedFbank(cfg).to(dev)
    cuts = CutSet.from_file(cuts_path)
    levels: list[str] = []  # cuts whose level says the audio is wrong (speechtl.data.levels)
    with (
        atomic_path(Path(out_cuts_path)) as cuts_tmp,
        atomic_path(Path(storage_path)) as feats_tmp,
        LilcomChunkyWriter(feats_tmp) as writer,
        CutSet.open_writer(cuts_tmp) as out,
    ):
        for batch in tqdm(list(_batches(cuts, batch_duration)), desc="fbank", mininterval=5):
            waves = []
            for cut in batch:
                if cut.sampling_rate != cfg.sampling_rate:
                    cut = cut.resample(cfg.sampling_rate)
                try:
                    audio = cut.load_audio()
                except Exception as e:
                    raise SpeechtlError(
                        f"cannot read audio of cut {cut.id} ({cut.recording.sources[0].source}): {e}. "
                        "Fix: replace the file, or rerun data preparation with --skip-bad."
                    ) from e
                if not np.isfinite(audio[0]).all():
                    raise SpeechtlError(
                        f"audio of cut {cut.id} ({cut.recording.sources[0].source}) has NaN or Inf samples. "
                        "Fix: replace the file, or rerun data preparation with --skip-bad."
                    )
                issue = level_issue(audio[0], is_downmixed(cut.recording))
                if issue:
                    uid = cut.supervisions[0].id if cut.supervisions else cut.id  # the utterance, as imported
                    levels.append(f"{uid}\t{cut.recording.sources[0].source}\t{issue}\n")
                waves.append(torch.from_numpy(audio[0]))  # first channel
            feats = fbank(waves)
            for cut, f in zip(batch, feats, strict=False):
                arr = f.cpu().numpy()
                if arr.shape[0] == 0:
                    raise SpeechtlError(
                        f"cut {cut.id} ({cut.recording.sources[0].source}) is {cut.duration * 1000:.1f} ms long and "
                        f"gives no fbank frame (a frame is {cfg.frame_length * 1000:.0f} ms). Fix: remove it, or "
                        "rerun data preparation with --skip-bad."
                    )
                key = writer.write(cut.id, arr)
                cut.features = Features(
                    type="speechtl-fbank",
                    num_frames=arr.shape[0],
                    num_features=arr.shape[1],
                    frame_shift=cfg.frame_shift,
                    sampling_rate=cfg.sampling_rate,
                    start=cut.start,
                    duration=cut.duration,
                    storage_type=writer.name,
                    storage_path=str(storage_path),
                    storage_key=key,
                    recording_id=cut.recording_id,
                    channels=0,
                )
                out.write(cut)
    with atomic_open(levels_file(out_cuts_path)) as f:
        f.write("\t".join(LEVELS_HEADER) + "\n" + "".join(levels))
    logging.info(f"wrote features of {len(cuts)} cuts to {storage_path}")
    return out_cuts_path


def levels_file(out_cuts_path: str | Path) -> Path:
    """Where a job writes the cuts whose level is wrong, beside its cuts (``cuts.3.levels.tsv``)."""
    out = Path(out_cuts_path)
    return out.with_name(out.name.removesuffix(".jsonl.gz") + ".levels.tsv")


def _within(sup, duration: float, overshoot: float = 0.5):
    """``sup`` cut at ``duration`` when it ends past it by at most ``overshoot`` seconds."""
    if sup.start < duration < sup.end <= duration + overshoot:
        return fastcopy(sup, duration=duration - sup.start)
    return sup


def one_cut_per_supervision(cuts: CutSet, split: str) -> CutSet:
    """Cuts of one utterance each. A Kaldi ``segments`` file (or any corpus of long recordings)
    gives recordings holding several supervisions: one cut per recording would put a whole
    recording in a batch (training and decoding stop at its several supervisions) and count its
    silences in the amounts of labelled speech. A cut whose one supervision spans it stays as it
    is (its id, its features), which is every built-in corpus."""
    # A supervision ending past its recording by up to Kaldi's 0.5 s overshoot (manifests made elsewhere;
    # the importers cut it already) ends with it: lhotse's trim to it failed with an AssertionError
    # ("supervisions with different channels") that named neither the cut nor the cause.
    cuts = CutSet.from_cuts(
        fastcopy(c, supervisions=[_within(s, c.duration) for s in c.supervisions]) for c in cuts
    ).to_eager()
    whole = all(
        len(c.supervisions) == 1 and c.supervisions[0].start <= 1e-3 and c.supervisions[0].end >= c.duration - 1e-3
        for c in cuts
    )
    if whole:
        return cuts
    trimmed = cuts.trim_to_supervisions(keep_overlapping=False).to_eager()
    logging.info(
        f"{split}: {len(cuts)} recordings hold {len(trimmed)} supervisions (segments): one cut each, "
        f"{sum(c.duration for c in trimmed) / 60:.1f} of {sum(c.duration for c in cuts) / 60:.1f} min"
    )
    return trimmed


def compute_fbank(
    manifest_dir: Path,
    output_dir: Path,
    prefix: str,
    splits: Sequence[str],
    config: FbankConfig,
    nj: int = 1,
    cmd: str = "local",
    device: str | None = None,
    log_dir: Path | None = None,
    speed_perturb: Sequence[float] = (),
    perturb_splits: Sequence[str] = ("train",),
) -> list[Path]:
    """Write ``<output_dir>/<prefix>_cuts_<split>.jsonl.gz`` for every split.

    ``speed_perturb`` factors (e.g. 0.9 1.1, Kaldi's 3-way perturbation) add a
    resampled copy of every cut of ``perturb_splits`` per factor, with its own
    features, so small corpora see more speaking rates.
    """
    manifest_dir, output_dir = Path(manifest_dir), Path(output_dir)
    writable_dir(output_dir, "fbank output dir")
    log_dir = Path(log_dir) if log_dir else output_dir / "log"
    written = []
    for split in splits:  # every input checked before any work
        for kind in ("recordings", "supervisions"):
            p = manifest_dir / f"{prefix}_{kind}_{split}.jsonl.gz"
            if not p.is_file():
                raise SpeechtlError(f"missing manifest {p}. Fix: run the data preparation stage first.")
    for split in splits:
        rec = manifest_dir / f"{prefix}_recordings_{split}.jsonl.gz"
        sup = manifest_dir / f"{prefix}_supervisions_{split}.jsonl.gz"
        cuts = CutSet.from_manifests(recordings=RecordingSet.from_file(rec), supervisions=SupervisionSet.from_file(sup))
        cuts = one_cut_per_supervision(cuts, split)
        if speed_perturb and split in perturb_splits:
            original = cuts
            for factor in speed_perturb:
                cuts = cuts + original.perturb_speed(factor)
            logging.info(f"{split}: speed perturbation {list(speed_perturb)}: {len(original)} -> {len(cuts)} cuts")
        n = max(1, min(nj, len(cuts)))
        split_dir = output_dir / f"{prefix}_feats_{split}"
        split_dir.mkdir(parents=True, exist_ok=True)
        inputs = [split_dir / f"cuts_in.{j}.jsonl.gz" for j in range(n)]
        combined = output_dir / f"{prefix}_cuts_{split}.jsonl.gz"
        try:
            for part, part_path in zip(cuts.split(n), inputs, strict=True):
                with atomic_path(part_path) as tmp:
                    part.to_file(tmp)
            job = (asdict(config), 600.0, device)
            args = [
                (str(p), str(split_dir / f"feats.{j}.lca"), str(split_dir / f"cuts.{j}.jsonl.gz"), *job)
                for j, p in enumerate(inputs)
            ]
            outs = get_executor(cmd, n, log_dir, f"fbank_{prefix}_{split}").map(compute_fbank_job, args)
            with atomic_path(combined) as tmp:
                CutSet.from_cuts(c for p in outs for c in CutSet.from_file(p)).to_file(tmp)
            rows = [
                tuple(line.split("\t", 2))
                for p in outs
                if levels_file(p).is_file()
                for line in levels_file(p).read_text(encoding="utf-8").splitlines()[1:]
            ]
            say_level_issues(rows, output_dir / f"{prefix}_level_warnings_{split}.tsv", split)
        finally:  # the jobs' inputs go whether they succeeded or not
            for p in inputs:
                p.unlink(missing_ok=True)
        logging.info(f"{split}: {len(cuts)} cuts -> {combined}")
        written.append(combined)
    return written
