#!/usr/bin/env python3
"""Decoding speed in one run: real-time factor per decoder, HLG search against the
network's forward pass, and HLG search throughput with 2 processes against 1.

Defaults use the default recipe's outputs (run ``make demo`` first): the
``finetune_5min`` model, the Irish lang dir and its ``target_test`` cuts.
Every time is the best of ``--repeats``; the 2-process pool is started and
warmed up before it is timed (its start-up is a one-off per decode job).
The forward pass runs at the machine's torch thread count.

The last two lines are ``search_over_forward=<ratio>`` (HLG one-best search
time / forward time) and ``nj2_over_nj1=<ratio>`` (throughput of 2 search
processes / 1).
"""

import argparse
import os
import time
from pathlib import Path

import torch
from lhotse import CutSet

from speechtl.decode.beam import ctc_prefix_beam_search
from speechtl.decode.greedy import ctc_greedy_search
from speechtl.decode.run import compute_log_probs
from speechtl.decode.search import HlgSearch

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "tts_xling" / "ASR"


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=RECIPE / "exp" / "finetune_5min" / "final.pt")
    p.add_argument("--lang-dir", type=Path, default=RECIPE / "data" / "lang_target")
    p.add_argument("--cuts", type=Path, default=RECIPE / "data" / "fbank" / "tts_xling_cuts_target_test.jsonl.gz")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--beam", type=float, default=16.0, help="HLG search beam (speechtl decode's default)")
    p.add_argument("--max-active", type=int, default=3000)
    p.add_argument("--skip-blank", type=float, default=0.0, help="skip frames with blank posterior >= this")
    a = p.parse_args()
    for f in (a.checkpoint, a.lang_dir / "HLG.fst", a.cuts):
        if not f.exists():
            raise SystemExit(f"{f} does not exist. Fix: run 'make demo' first, or pass --checkpoint/--lang-dir/--cuts")
    cuts = CutSet.from_file(a.cuts)
    storage = Path(next(iter(cuts)).features.storage_path)
    if not storage.is_absolute() and not storage.exists():
        # feature paths are relative to the recipe dir (as in icefall): data/fbank/<cuts> -> the recipe
        a.checkpoint, a.lang_dir = a.checkpoint.resolve(), a.lang_dir.resolve()
        os.chdir(a.cuts.resolve().parents[2])
    audio = sum(c.duration for c in cuts)
    print(f"{len(cuts)} utterances, {audio:.1f} s of audio, torch threads {torch.get_num_threads()}")

    scores = {}
    forward = best_of(a.repeats, lambda: scores.update(compute_log_probs(a.checkpoint, cuts, "cpu")))
    lps = {k: lp for k, (_, lp) in scores.items()}
    np_lps = {k: lp.numpy() for k, lp in lps.items()}

    def per_utt(fn):
        return lambda: [fn(lp[None], torch.tensor([lp.size(0)])) for lp in lps.values()]

    greedy = best_of(a.repeats, per_utt(ctc_greedy_search))
    beam = best_of(a.repeats, per_utt(ctc_prefix_beam_search))
    opts = dict(beam=a.beam, max_active=a.max_active, skip_blank=a.skip_blank)
    print(f"HLG search: beam {a.beam}, max_active {a.max_active}, skip_blank {a.skip_blank}")
    one = HlgSearch(a.lang_dir / "HLG.fst", a.lang_dir / "words.txt", nj=1, **opts)
    hlg1 = best_of(a.repeats, lambda: one.run(np_lps))
    two = HlgSearch(a.lang_dir / "HLG.fst", a.lang_dir / "words.txt", nj=2, **opts)
    two.run(dict(list(np_lps.items())[:4]))  # start and warm the workers
    hlg2 = best_of(a.repeats, lambda: two.run(np_lps))
    assert two.run(np_lps) == one.run(np_lps), "nj=2 must give the same words as nj=1"
    two.close()

    print(f"{'step':<28}{'seconds':>10}{'RTF':>10}")
    for name, t in [("forward (model, fbank in)", forward), ("greedy search", greedy), ("prefix beam search (8)", beam),
                    ("HLG one-best search, nj=1", hlg1), ("HLG one-best search, nj=2", hlg2)]:
        print(f"{name:<28}{t:>10.3f}{t / audio:>10.5f}")
    print(f"search_over_forward={hlg1 / forward:.3f}")
    print(f"nj2_over_nj1={hlg1 / hlg2:.3f}")


if __name__ == "__main__":
    main()
