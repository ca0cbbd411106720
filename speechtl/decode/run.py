"""Decode a test set with a trained model and score it into files and results.tsv."""

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from lhotse import CutSet

from speechtl.decode.greedy import ctc_greedy_search
from speechtl.decode.hlg import HlgDecoder
from speechtl.errors import SpeechtlError
from speechtl.features.compute import pick_device
from speechtl.lang import Lang
from speechtl.score.results import ResultRow, update_results
from speechtl.score.wer import Hyp, write_errs, write_recogs, write_wer_summary
from speechtl.train.checkpoint import model_from_checkpoint
from speechtl.train.data import eval_dataloader, unpack

DECODINGS = ("greedy", "hlg")


@torch.no_grad()
def compute_log_probs(checkpoint: Path, cuts: CutSet, device: Optional[str] = None, max_duration: float = 200.0):
    """``{cut_id: (reference text, log-probs (frames, vocab) float32 numpy)}``."""
    dev = pick_device(device)
    model = model_from_checkpoint(checkpoint).to(dev).eval()
    out = {}
    for batch in eval_dataloader(cuts, max_duration):
        feats, lengths, texts, batch_cuts = unpack(batch)
        log_probs, out_lens = model(feats.to(dev), lengths.to(dev))
        for i, cut in enumerate(batch_cuts):
            out[cut.id] = (texts[i], log_probs[i, : int(out_lens[i])].float().cpu())
    return out


def decode_test_set(
    checkpoint: Path, lang_dir: Path, cuts_path: Path, test_set: str, out_dir: Path,
    decodings: Sequence[str] = DECODINGS, method: str = "scratch", data: str = "all",
    results_tsv: Optional[Path] = None, device: Optional[str] = None, beam: float = 16.0,
    max_active: int = 3000,
) -> List[ResultRow]:
    """Write recogs-/errs-/wer-summary-<test_set>-<decoding>.txt and add rows to results.tsv."""
    unknown = [d for d in decodings if d not in DECODINGS]
    if unknown:
        raise SpeechtlError(f"unknown decoding(s) {unknown}; known: {', '.join(DECODINGS)}")
    if not Path(cuts_path).is_file():
        raise SpeechtlError(f"test cuts {cuts_path} do not exist. Fix: run the fbank stage first.")
    lang = Lang(lang_dir)
    cuts = CutSet.from_file(cuts_path)
    scores = compute_log_probs(checkpoint, cuts, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for decoding in decodings:
        results: List[Hyp] = []
        if decoding == "greedy":
            for cut_id, (text, lp) in scores.items():
                tokens = ctc_greedy_search(lp[None], torch.tensor([lp.size(0)]))[0]
                results.append((cut_id, text.split(), lang.decode(tokens)))
        else:
            hlg = HlgDecoder(lang.dir / "HLG.fst", lang.dir / "words.txt", beam=beam, max_active=max_active)
            for cut_id, (text, lp) in scores.items():
                results.append((cut_id, text.split(), hlg.decode(lp.numpy())))
        name = f"{test_set}-{decoding}"
        write_recogs(results, out_dir / f"recogs-{name}.txt")
        stats = write_errs(results, out_dir / f"errs-{name}.txt", decoding)
        write_wer_summary([(decoding, stats.wer)], out_dir / f"wer-summary-{name}.txt")
        logging.info(f"{test_set} {decoding}: WER {stats.wer:.2f}% ({stats.errors}/{stats.words}) -> {out_dir}")
        rows.append(ResultRow(test_set, method, data, decoding, stats.wer, stats.errors, stats.words))
    if results_tsv is not None:
        update_results(results_tsv, rows)
        logging.info(f"results: {results_tsv}")
    return rows
