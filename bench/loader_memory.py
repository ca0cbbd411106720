"""Peak memory of the training data loader over a large cut manifest: lazy against eager reading.

Writes a ``--num-cuts`` (300,000) cut manifest whose cuts point into one small
real feature file (fbank of a few yesno recordings, written with
LilcomChunkyWriter), then, each in a fresh process, builds
``speechtl.train.data.train_dataloader`` over it read two ways and does what
the trainer does with it: one counting pass over the sampler (the trainer's
batches-per-epoch) and ``--batches`` batches of features through the
DataLoader.

- eager: ``CutSet.from_file(...).to_eager()``, every cut in memory (how a
  manifest is read when anything materializes it);
- lazy: ``CutSet.from_file(...)`` on ``.jsonl.gz``, read as a stream (what
  ``speechtl train`` passes).

Prints each process's peak RSS, time, and the ratio eager / lazy.

    python bench/loader_memory.py [--num-cuts 300000] [--batches 50]
"""

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_manifest(d: Path, n: int, yesno: Path) -> Path:
    """``n`` cuts over 8 real feature matrices (yesno recordings, about 6 s each)."""
    from lhotse import CutSet

    from speechtl.data.corpora.yesno import prepare_yesno
    from speechtl.features import FbankConfig
    from speechtl.features.compute import compute_fbank

    prepare_yesno(yesno, d / "m")
    compute_fbank(d / "m", d / "fb", "yesno", ["train"], FbankConfig(sampling_rate=8000, num_mel_bins=23))
    templates = [c.to_dict() for c in CutSet.from_file(d / "fb" / "yesno_cuts_train.jsonl.gz").subset(first=8)]
    path = d / "big_cuts.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for i in range(n):
            c = json.loads(json.dumps(templates[i % len(templates)]))
            c["id"] = f"cut{i:07d}"
            c["supervisions"][0]["id"] = c["id"]
            f.write(json.dumps(c) + "\n")
    return path


def run_mode(path: Path, mode: str, batches: int) -> None:
    """In this process: the loader over ``path`` read ``mode``-ly; prints peak RSS (MiB) and seconds."""
    from lhotse import CutSet

    from speechtl.train.data import train_dataloader

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # python, torch, lhotse loaded
    t = time.perf_counter()
    cuts = CutSet.from_file(path)
    if mode == "eager":
        cuts = cuts.to_eager()
    loader = train_dataloader(cuts, max_duration=200.0, num_buckets=10, seed=0)
    n_batches = sum(1 for _ in loader.sampler)  # the trainer's batches-per-epoch pass
    for i, batch in enumerate(loader):
        assert batch["inputs"].dim() == 3
        if i + 1 >= batches:
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"mode": mode, "peak_mib": peak, "base_mib": base, "seconds": time.perf_counter() - t, "batches": n_batches}
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-cuts", type=int, default=300_000)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--run-mode", choices=["eager", "lazy"], help=argparse.SUPPRESS)
    p.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.run_mode:
        run_mode(a.manifest, a.run_mode, a.batches)
        return
    with tempfile.TemporaryDirectory(prefix="bench_loader.") as tmp:
        t = time.perf_counter()
        path = make_manifest(Path(tmp), a.num_cuts, a.data / "yesno" / "waves_yesno")
        print(f"wrote {a.num_cuts} cuts ({path.stat().st_size / 2**20:.1f} MiB gz) in {time.perf_counter() - t:.1f} s")
        res = {}
        for mode in ("lazy", "eager"):
            cmd = [sys.executable, __file__, "--run-mode", mode, "--manifest", str(path), "--batches", str(a.batches)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res[mode] = json.loads(out.strip().splitlines()[-1])
            r = res[mode]
            r["data_mib"] = r["peak_mib"] - r["base_mib"]
            print(
                f"{mode:5s}: peak RSS {r['peak_mib']:8.1f} MiB ({r['data_mib']:7.1f} MiB above the "
                f"{r['base_mib']:.0f} MiB of the loaded libraries), {r['seconds']:6.1f} s, {r['batches']} batches/epoch"
            )
        e, z = res["eager"], res["lazy"]
        print(f"ratio eager/lazy peak memory: {e['peak_mib'] / z['peak_mib']:.2f}x in all, ", end="")
        print(f"{e['data_mib'] / max(z['data_mib'], 1.0):.1f}x above the libraries")


if __name__ == "__main__":
    main()
