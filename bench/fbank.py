#!/usr/bin/env python3
"""Fbank speed: speechtl's batched Kaldi fbank against its peers, in one run.

Real audio (../shared/data yesno + FSDD, 8 kHz recordings resampled to 16 kHz
before timing), 80 mel bins, 25/10 ms frames, Kaldi options (snip_edges=False,
no dither). Kaldi-equality is checked on the recordings at their own rate: in
the upsampled copies the band above 4 kHz is empty (energies ~e^-16, 20 nats
under the peak), where any two float32 FFTs differ by ~2e-3 in the log (lhotse's
too), so that difference is only reported.
Peers: kaldi-native-fbank, lhotse's Fbank, torchaudio.compliance.kaldi.fbank,
and kaldifeat when installed. Each is timed at 1 and 2 threads (best of
--repeats, the systems taking turns), in frames per second; ratios are against
the fastest peer measured in the same run. The output is first checked equal
to kaldi-native-fbank. --profile adds speechtl's time per stage at 1 thread.

The last line is ``speedup_vs_fastest_peer=<ratio at 1 thread>``.
"""

import argparse
import glob
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

SR = 16000
BINS = 80


def load(data_dir: Path, max_files: int, rate: int = SR):
    files = sorted(glob.glob(str(data_dir / "yesno/waves_yesno/*.wav")))
    files += sorted(glob.glob(str(data_dir / "fsdd/recordings/*.wav")))[: max(0, max_files - len(files))]
    waves = []
    for f in files:
        w, sr = sf.read(f, dtype="float32")
        waves.append(torchaudio.functional.resample(torch.from_numpy(w), sr, rate).numpy() if sr != rate else w)
    return waves


def knf_fbank(waves, rate: int = SR):
    import kaldi_native_fbank as knf

    out = []
    for w in waves:
        o = knf.FbankOptions()
        o.frame_opts.dither = 0
        o.frame_opts.samp_freq = rate
        o.frame_opts.snip_edges = False
        o.mel_opts.num_bins = BINS
        o.mel_opts.high_freq = -400
        f = knf.OnlineFbank(o)
        f.accept_waveform(rate, w)
        f.input_finished()
        out.append(np.stack([f.get_frame(i) for i in range(f.num_frames_ready)]))
    return out


def peers():
    from lhotse import Fbank, FbankConfig

    lh = Fbank(FbankConfig(sampling_rate=SR, num_mel_bins=BINS))
    found = {
        "kaldi-native-fbank": knf_fbank,
        "lhotse": lambda ws: [lh.extract(w, SR) for w in ws],
        # lhotse's own batching (pads to the longest wave), the fair peer of our batched path.
        "lhotse-batch": lambda ws: lh.extract_batch(list(ws), SR),
        "torchaudio": lambda ws: [
            torchaudio.compliance.kaldi.fbank(
                torch.from_numpy(w)[None] * 32768,
                num_mel_bins=BINS,
                sample_frequency=SR,
                dither=0.0,
                snip_edges=False,
                high_freq=-400,
            )
            for w in ws
        ],
    }
    try:
        import kaldifeat

        o = kaldifeat.FbankOptions()
        o.frame_opts.dither = 0
        o.frame_opts.snip_edges = False
        o.frame_opts.samp_freq = SR
        o.mel_opts.num_bins = BINS
        o.mel_opts.high_freq = -400
        kf = kaldifeat.Fbank(o)
        found["kaldifeat"] = lambda ws: kf([torch.from_numpy(w) for w in ws])
    except ImportError:
        print("kaldifeat: not installed, left out")
    return found


def ours(batch_seconds: float, rate: int = SR):
    from speechtl.features import BatchedFbank, FbankConfig

    fb = BatchedFbank(FbankConfig(sampling_rate=rate, num_mel_bins=BINS))

    def run(ws):
        out, batch, dur = [], [], 0.0
        for w in ws:
            batch.append(torch.from_numpy(w))
            dur += len(w) / rate
            if dur >= batch_seconds:
                out += fb(batch)
                batch, dur = [], 0.0
        return out + (fb(batch) if batch else [])

    run.fbank = fb
    return run


def best_times(systems, waves, repeats):
    """Best of ``repeats`` seconds per system, timed round-robin: load from other
    processes on the machine then slows every system alike, not just the one that
    happens to run during it, so the ratios stay meaningful."""
    for fn in systems.values():
        fn(waves[:4])  # warm-up
    best = {name: float("inf") for name in systems}
    for _ in range(repeats):
        for name, fn in systems.items():
            t0 = time.perf_counter()
            fn(waves)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def print_profile(waves, batch_seconds: float, repeats: int):
    """speechtl's time per stage at 1 thread, from the stage clocks in its code
    (best of ``repeats`` by total; "other" is the Python glue between stages)."""
    torch.set_num_threads(1)
    run = ours(batch_seconds)
    run(waves[:4])
    best = None
    for _ in range(repeats):
        run.fbank.stage_times = times = {}
        t0 = time.perf_counter()
        run(waves)
        total = time.perf_counter() - t0
        if best is None or total < best[0]:
            best = (total, times)
    run.fbank.stage_times = None
    total, times = best
    times["other"] = total - sum(times.values())
    print(f"\nspeechtl at 1 thread, per stage ({total * 1e3:.1f} ms in all):")
    for name, sec in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"  {name:24s} {sec * 1e3:8.2f} ms {100 * sec / total:6.1f}%")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parents[1]
    ap.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("SPEECHTL_SHARED_DATA", here.parent / "shared/data"))
    )
    ap.add_argument("--max-files", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-seconds", type=float, default=60.0)
    ap.add_argument("--profile", action="store_true", help="also print speechtl's time per stage at 1 thread")
    args = ap.parse_args()

    native = load(args.data_dir, args.max_files, rate=8000)
    if not native:
        raise SystemExit(f"no audio under {args.data_dir}")
    ref = knf_fbank(native, 8000)
    for name, fn in [("speechtl", ours(args.batch_seconds, 8000)), ("speechtl-per-utt", ours(0.0, 8000))]:
        diff = max(float(np.abs(np.asarray(o) - r).max()) for o, r in zip(fn(native), ref, strict=False))
        print(f"{name}: max |diff| vs kaldi-native-fbank on the recordings (8 kHz) = {diff:.2e}")
        assert diff <= 1e-3, "not Kaldi-equal"
    waves = load(args.data_dir, args.max_files)
    ref = knf_fbank(waves)
    frames = sum(len(r) for r in ref)
    diff = max(
        float(np.abs(np.asarray(o) - r).max()) for o, r in zip(ours(args.batch_seconds)(waves), ref, strict=False)
    )
    print(f"speechtl: max |diff| on the 16 kHz copies = {diff:.2e} (empty upper band, see the docstring)")
    print(f"{len(waves)} utterances, {sum(len(w) for w in waves) / SR:.0f} s of audio, {frames} frames at {SR} Hz")

    if args.profile:
        print_profile(waves, args.batch_seconds, args.repeats)

    systems = {"speechtl": ours(args.batch_seconds), "speechtl-per-utt": ours(0.0), **peers()}
    rate = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, seconds in best_times(systems, waves, args.repeats).items():
            rate[name, threads] = frames / seconds
    peer_names = [n for n in systems if not n.startswith("speechtl")]
    print(f"\n{'system':20s} {'1 thread':>14s} {'2 threads':>14s}   (frames/s)")
    for name in systems:
        print(f"{name:20s} {rate[name, 1]:14,.0f} {rate[name, 2]:14,.0f}")
    for threads in (1, 2):
        fastest = max(peer_names, key=lambda n: rate[n, threads])
        print(f"{threads} thread(s): speechtl / {fastest} = {rate['speechtl', threads] / rate[fastest, threads]:.2f}")
    fastest1 = max(peer_names, key=lambda n: rate[n, 1])
    print(f"speedup_vs_fastest_peer={rate['speechtl', 1] / rate[fastest1, 1]:.2f}")


if __name__ == "__main__":
    main()
