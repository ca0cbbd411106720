#!/usr/bin/env python3
"""Decoding speed in one run: real-time factor per decoder, HLG search against the
network's forward pass, and HLG search throughput with 2 processes against 1.

Defaults use the default recipe's outputs (run ``make demo`` first): the
``finetune_5min`` model, the Irish lang dir and its ``target_test`` cuts.
Every time is the best of ``--repeats``; the 2-process pool is started and
warmed up before it is timed (its start-up is a one-off per decode job).
The forward pass runs at the machine's torch thread count, the CTC searches on
one torch thread (their tensors are small; spare threads only wait on busy
cores). Prefix beam search (beam 8) is timed per utterance (as ``speechtl
decode`` calls it), on the whole test set as one padded batch, and as the
per-utterance Python reference (``prefix_beam_search_one``);
``beam_reference_over_batched=<ratio>`` and ``beam_per_utt_over_batched=<ratio>``
compare them.

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

from speechtl.decode.beam import ctc_prefix_beam_search, prefix_beam_search_one
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

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    greedy = best_of(a.repeats, per_utt(ctc_greedy_search))
    beam = best_of(a.repeats, per_utt(ctc_prefix_beam_search))
    batch = torch.nn.utils.rnn.pad_sequence(list(lps.values()), batch_first=True)
    batch_lens = torch.tensor([lp.size(0) for lp in lps.values()])
    hyps = {}
    beam_batched = best_of(a.repeats, lambda: hyps.update(batched=ctc_prefix_beam_search(batch, batch_lens)))
    beam_ref = best_of(a.repeats, lambda: hyps.update(ref=[prefix_beam_search_one(lp) for lp in np_lps.values()]))
    assert hyps["batched"] == hyps["ref"], "batched prefix beam search must give the reference's units"
    torch.set_num_threads(threads)
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
    rows = [
        ("forward (model, fbank in)", forward),
        ("greedy search", greedy),
        ("prefix beam (8) per utt", beam),
        ("prefix beam (8) one batch", beam_batched),
        ("prefix beam (8) reference", beam_ref),
        ("HLG one-best search, nj=1", hlg1),
        ("HLG one-best search, nj=2", hlg2),
    ]
    for name, t in rows:
        print(f"{name:<28}{t:>10.3f}{t / audio:>10.5f}")
    print(f"beam_reference_over_batched={beam_ref / beam_batched:.3f}")
    print(f"beam_per_utt_over_batched={beam / beam_batched:.3f}")
    print(f"search_over_forward={hlg1 / forward:.3f}")
    print(f"nj2_over_nj1={hlg1 / hlg2:.3f}")


if __name__ == "__main__":
    main()
