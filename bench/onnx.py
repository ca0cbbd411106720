#!/usr/bin/env python3
"""Real-time factor of sherpa-onnx (fp32, int8) against speechtl's torch decode, in one run.

Every engine decodes the same test set from audio already in memory, at 1 and 2
threads (``--threads``), greedy and HLG: torch computes speechtl's fbank, runs the
checkpoint and searches (CTC greedy, kaldi-decoder HLG); sherpa-onnx computes its
fbank (kaldi-native-fbank), runs model.onnx or model.int8.onnx through onnxruntime
and searches (its greedy, its CTC FST decoder on the same HLG.fst). Both take the
utterances in batches of ``--batch-size``. Recognizer and model loading are not
timed; each time is the best of ``--repeats``.

Each line: ``engine model decoding threads rtf=<seconds per audio second>
vs_torch=<torch time / this time>`` (above 1: faster than torch at the same
decoding and threads) ``same_hyps=<utterances whose words equal torch's>/<n>``;
then the file sizes. Defaults: the yesno recipe's system (run it first);
``--onnx-dir`` defaults to ``<checkpoint dir>/onnx`` and is exported there if missing.
"""

import sys
from pathlib import Path

# This file is bench/onnx.py: with its directory first on sys.path (as `python bench/onnx.py`
# puts it), `import onnx` anywhere below would import this script instead of the onnx package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lhotse import CutSet  # noqa: E402

from speechtl.decode.greedy import ctc_greedy_search  # noqa: E402
from speechtl.decode.hlg import HlgDecoder  # noqa: E402
from speechtl.decode.transcribe import model_features  # noqa: E402
from speechtl.export import export_onnx  # noqa: E402
from speechtl.export.sherpa import SherpaCtc, SherpaOptions, cut_waves  # noqa: E402
from speechtl.lang import Lang  # noqa: E402
from speechtl.train.checkpoint import load_checkpoint, model_from_state  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "yesno" / "ASR"


def best_of(repeats: int, fn):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


class TorchDecode:
    """speechtl's own path from waves: fbank, network, greedy or HLG, in batches."""

    def __init__(self, checkpoint: Path, lang_dir: Path, batch_size: int):
        ckpt = load_checkpoint(checkpoint)
        self.net = model_from_state(ckpt).eval()
        self.sampling_rate, self.featurize = model_features(ckpt, self.net.input_spec, checkpoint)
        self.lang = Lang(lang_dir)
        self.hlg = HlgDecoder(self.lang.dir / "HLG.fst", self.lang.dir / "words.txt")
        self.batch_size = batch_size

    @torch.no_grad()
    def decode(self, waves: list[np.ndarray], hlg: bool) -> list[list[str]]:
        out = []
        for start in range(0, len(waves), self.batch_size):
            feats = self.featurize([torch.from_numpy(w) for w in waves[start : start + self.batch_size]])
            lens = torch.tensor([f.size(0) for f in feats])
            log_probs, out_lens = self.net(torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lens)
            if hlg:
                out += [self.hlg.decode(lp[: int(n)].numpy()) for lp, n in zip(log_probs, out_lens, strict=True)]
            else:
                out += [self.lang.decode(u) for u in ctc_greedy_search(log_probs, out_lens)]
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=RECIPE / "exp" / "scratch_all" / "final.pt")
    p.add_argument("--lang-dir", type=Path, default=RECIPE / "data" / "lang")
    p.add_argument("--cuts", type=Path, default=RECIPE / "data" / "fbank" / "yesno_cuts_test.jsonl.gz")
    p.add_argument("--onnx-dir", type=Path, default=None)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    a = p.parse_args()
    for f in (a.checkpoint, a.lang_dir / "HLG.fst", a.cuts):
        if not f.exists():
            raise SystemExit(f"{f} does not exist. Fix: run the recipe first, or pass --checkpoint/--lang-dir/--cuts")
    onnx_dir = a.onnx_dir or a.checkpoint.parent / "onnx"
    if not (onnx_dir / "model.int8.onnx").is_file():
        export_onnx(a.checkpoint, a.lang_dir, onnx_dir)
    ref = TorchDecode(a.checkpoint, a.lang_dir, a.batch_size)
    waves_by_id = cut_waves(CutSet.from_file(a.cuts), ref.sampling_rate)
    waves = list(waves_by_id.values())
    seconds = sum(w.size for w in waves) / ref.sampling_rate
    print(f"test set: {len(waves)} utterances, {seconds:.1f} s of audio ({a.cuts})")
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        for hlg in (False, True):
            decoding = "hlg" if hlg else "greedy"
            t_torch, hyps = best_of(a.repeats, lambda hlg=hlg: ref.decode(waves, hlg))
            print(f"torch fp32 {decoding} threads={threads} rtf={t_torch / seconds:.5f} vs_torch=1.00")
            for int8 in (False, True):
                opts = SherpaOptions(num_threads=threads, batch_size=a.batch_size)
                rec = SherpaCtc(onnx_dir, int8=int8, hlg=hlg, options=opts)
                t, ours = best_of(a.repeats, lambda rec=rec: rec.decode(waves))
                same = sum(x == y for x, y in zip(ours, hyps, strict=True))
                print(
                    f"sherpa-onnx {'int8' if int8 else 'fp32'} {decoding} threads={threads} "
                    f"rtf={t / seconds:.5f} vs_torch={t_torch / t:.2f} same_hyps={same}/{len(waves)}"
                )
    ckpt_kb = a.checkpoint.stat().st_size / 1024
    state_kb = sum(v.numel() * v.element_size() for v in ref.net.state_dict().values()) / 1024
    print(f"size checkpoint={ckpt_kb:.0f}KB (weights {state_kb:.0f}KB)", end=" ")
    for name in ("model.onnx", "model.int8.onnx"):
        print(f"{name}={(onnx_dir / name).stat().st_size / 1024:.0f}KB", end=" ")
    print(
        f"int8_over_fp32={(onnx_dir / 'model.int8.onnx').stat().st_size / (onnx_dir / 'model.onnx').stat().st_size:.2f}"
    )


if __name__ == "__main__":
    main()
