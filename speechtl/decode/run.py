"""Decode a test set with a trained model and score it into files and results.tsv."""

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from lhotse import CutSet

from speechtl.atomic import writable_dir
from speechtl.decode.beam import ctc_prefix_beam_search
from speechtl.decode.checks import check_features, check_graph, check_model_fits, check_references
from speechtl.decode.greedy import ctc_greedy_search
from speechtl.decode.longform import check_cuts_fit
from speechtl.decode.search import ExecutorSearch, HlgSearch
from speechtl.errors import SpeechtlError
from speechtl.features.compute import pick_device
from speechtl.features.inputs import mark_cuts
from speechtl.lang import Lang
from speechtl.score.results import ResultRow, update_results
from speechtl.score.stats import UttErrors, bootstrap_ci
from speechtl.score.wer import Hyp, compute_wer, write_errs, write_recogs, write_utt_errs, write_wer_summary
from speechtl.train.checkpoint import checkpoint_label, config_digest, load_checkpoint, model_from_checkpoint
from speechtl.train.data import eval_dataloader, unpack

#: greedy: batched CTC greedy search; beam: CTC prefix beam search (no LM);
#: hlg: HLG one-best; hlg-lattice: HLG lattice
#: rescored at every LM scale of the sweep (wer-summary lists them all; recogs,
#: errs and results.tsv use ``lm_scale``).
DECODINGS = ("greedy", "beam", "hlg", "hlg-lattice")
LM_SCALES = (0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 1.7, 2.0)


@torch.no_grad()
def compute_log_probs(
    checkpoint: Path,
    cuts: CutSet,
    device: str | None = None,
    max_duration: float = 200.0,
    cuts_path: Path | None = None,
):
    """``{cut_id: (reference text, log-probs (frames, vocab) float32 numpy)}``; ``cuts_path``, the
    file ``cuts`` came from, names the dir to run from when their features are not found."""
    dev = pick_device(device)
    model = model_from_checkpoint(checkpoint).to(dev).eval()
    check_features(model, cuts, Path(checkpoint), cuts_path=cuts_path)
    check_cuts_fit(cuts, model, "decoded")
    out = {}
    for batch in eval_dataloader(mark_cuts(cuts, model.input_spec), max_duration):
        feats, lengths, texts, batch_cuts = unpack(batch)
        log_probs, out_lens = model(feats.to(dev), lengths.to(dev))
        for i, cut in enumerate(batch_cuts):
            out[cut.id] = (texts[i], log_probs[i, : int(out_lens[i])].float().cpu())
    return out


def score_decoding(
    results: Sequence[Hyp],
    out_dir: Path,
    test_set: str,
    decoding: str,
    method: str,
    data: str,
    results_tsv: Path | None,
    seed: int | None,
    summary: list[tuple[str, float]] | None = None,
    oov: float | None = None,
    spaceless: bool = False,
    config: str = "",
    checkpoint: str = "",
) -> ResultRow:
    """recogs-/errs-/wer-summary-/utt-errs-<test_set>-<decoding> files and the results.tsv row of one
    decoding (shared by the torch decode and ``speechtl.export.sherpa``'s onnx decodings); ``oov``: the
    share of reference words outside words.txt (:func:`~speechtl.decode.checks.check_references`);
    ``spaceless``: the words are characters already (:mod:`speechtl.lang.spaceless`), so the CER
    counts the code points of the text they make, without spaces; ``checkpoint``: which model of the
    training, empty for its final one, else (``epoch-30-avg-10``) icefall's suffix of every file name, so
    the final model's files stay, and the row's ``checkpoint`` column."""
    name = f"{test_set}-{decoding}" + (f"-{checkpoint}" if checkpoint else "")
    write_recogs(results, out_dir / f"recogs-{name}.txt")
    stats = write_errs(results, out_dir / f"errs-{name}.txt", decoding)
    write_wer_summary(summary or [(decoding, stats.wer)], out_dir / f"wer-summary-{name}.txt")
    sep = "" if spaceless else " "
    cer = compute_wer([(k, list(sep.join(r)), list(sep.join(h))) for k, r, h in results]).wer
    if results and not any(h for _, _, h in results):
        graph = "hlg" in decoding  # an empty graph search can also mean no path of the graph fits the audio
        logging.warning(
            f"{test_set} {decoding}: every hypothesis is empty, so the WER is all deletions: the model emits only "
            "blank"
            + (
                ", or no word sequence of the graph (words.txt, the LM) fits what it emits: see its greedy decoding"
                if graph
                else ""
            )
            + ". Fix: train longer (more num_steps; a new output layer needs some "
            "hundred updates) or check lr" + (", or give the LM more text of the language" if graph else "")
        )
    logging.info(
        f"{test_set} {decoding}: WER {stats.wer:.2f}% ({stats.errors}/{stats.words}), CER {cer:.2f}% -> {out_dir}"
    )
    utt_path = out_dir / f"utt-errs-{name}.tsv"
    lo, hi = bootstrap_ci(UttErrors.from_counts(write_utt_errs(results, utt_path)))
    # The row names its evidence relative to results.tsv, so exp/ can move as a whole.
    rel = os.path.relpath(utt_path, Path(results_tsv).parent) if results_tsv is not None else str(utt_path)
    return ResultRow(
        test_set,
        method,
        data,
        decoding,
        stats.wer,
        stats.errors,
        stats.words,
        seed,
        lo,
        hi,
        rel,
        cer,
        oov,
        "char" if spaceless else "word",
        config,
        checkpoint,
    )


def decode_test_set(
    checkpoint: Path,
    lang_dir: Path,
    cuts_path: Path,
    test_set: str,
    out_dir: Path,
    decodings: Sequence[str] = DECODINGS,
    method: str = "scratch",
    data: str = "all",
    results_tsv: Path | None = None,
    device: str | None = None,
    beam: float = 16.0,
    max_active: int = 3000,
    nj: int = 1,
    lm_scale: float = 1.0,
    lm_scales: Sequence[float] = LM_SCALES,
    skip_blank: float = 0.0,
    cmd: str = "local",
    seed: int | None = None,
) -> list[ResultRow]:
    """Write recogs-/errs-/wer-summary-<test_set>-<decoding>.txt and add rows to results.tsv.

    Each decoding also keeps its per-utterance errors (utt-errs-<test_set>-<decoding>.tsv),
    and its row gets their 95% bootstrap interval and ``seed`` (by default the training
    seed the checkpoint records), so the report can pool seeds and test differences.
    An epoch average (``speechtl decode --epoch N --avg K``) names itself: its files end in
    ``-epoch-N-avg-K`` and its rows say so in ``checkpoint``, beside the final model's.

    The network runs once over the test set; HLG searches run in ``nj`` processes,
    or, with a ``cmd`` other than ``local`` (``slurm ...``), as ``nj`` jobs of that runner.
    """
    unknown = [d for d in decodings if d not in DECODINGS]
    if unknown:
        raise SpeechtlError(f"unknown decoding(s) {unknown}; known: {', '.join(DECODINGS)}")
    if not Path(cuts_path).is_file():
        raise SpeechtlError(f"test cuts {cuts_path} do not exist. Fix: run the fbank stage first.")
    lang = Lang(lang_dir)
    cuts = CutSet.from_file(cuts_path)
    # Everything checked before the network runs or a file is written (speechtl.decode.checks).
    check_graph(lang, decodings)
    ckpt = load_checkpoint(checkpoint)
    check_model_fits(ckpt, Path(checkpoint), lang)
    writable_dir(Path(out_dir), "decode output dir")
    if seed is None:
        seed = (ckpt.get("train_config") or {}).get("seed")
    config = config_digest(ckpt)
    label = checkpoint_label(ckpt)
    del ckpt  # compute_log_probs loads the model itself
    scores = compute_log_probs(checkpoint, cuts, device, cuts_path=Path(cuts_path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = {k: lang.words(text) for k, (text, _) in scores.items()}
    oov = check_references(refs, lang, Path(cuts_path))
    rows = []
    search = None
    try:
        for decoding in decodings:
            summary = None
            if decoding in ("greedy", "beam"):
                # One padded batch: both searches are batched (and run on the log-probs' device).
                search_fn = ctc_greedy_search if decoding == "greedy" else ctc_prefix_beam_search
                ids = list(scores)
                lps = [scores[k][1] for k in ids]
                padded = torch.nn.utils.rnn.pad_sequence(lps, batch_first=True)
                units = search_fn(padded, torch.tensor([lp.size(0) for lp in lps]))
                hyps = {k: lang.decode(u) for k, u in zip(ids, units, strict=False)}
            else:
                if search is None:  # one searcher for every HLG decoding of this test set
                    graph = (lang.dir / "HLG.fst", lang.dir / "words.txt")
                    if (cmd or "local").split()[0] == "local":
                        search = HlgSearch(*graph, nj, beam, max_active, skip_blank)
                    else:
                        search = ExecutorSearch(*graph, nj, cmd, out_dir / "log", beam, max_active, skip_blank)
                lps = {k: lp.numpy() for k, (_, lp) in scores.items()}
                if decoding == "hlg":
                    hyps = search.run(lps)
                else:
                    scales = sorted(set(lm_scales) | {lm_scale})
                    per_scale = search.run(lps, scales)
                    summary = [
                        (
                            f"lm_scale_{s}",
                            compute_wer([(k, refs[k], lang.regroup(h[s])) for k, h in per_scale.items()]).wer,
                        )
                        for s in scales
                    ]
                    hyps = {k: h[lm_scale] for k, h in per_scale.items()}
            results: list[Hyp] = [(k, refs[k], lang.regroup(hyps[k])) for k in sorted(refs)]
            row = score_decoding(
                results, out_dir, test_set, decoding, method, data, results_tsv, seed, summary, oov, lang.spaceless,
                config, checkpoint=label,
            )  # fmt: skip
            rows.append(row)
    finally:
        if search is not None:
            search.close()
    if results_tsv is not None:
        update_results(results_tsv, rows)
        logging.info(f"results: {results_tsv}")
    return rows
