"""``speechtl <subcommand>``: a thin layer over library functions, one per recipe step."""

import argparse
import logging
import sys
from pathlib import Path

from speechtl.errors import SpeechtlError
from speechtl.log import setup_logging


def _bool(s: str) -> bool:
    if s.lower() in ("true", "1", "yes"):
        return True
    if s.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def cmd_download(a):
    import inspect

    from speechtl.data.corpora import get_corpus

    download = get_corpus(a.corpus).download
    if a.from_web and "from_web" not in inspect.signature(download).parameters:
        raise SpeechtlError(f"download {a.corpus} always fetches from the web; drop --from-web")
    print(download(a.target_dir, **({"from_web": True} if a.from_web else {})))


def cmd_prepare(a):
    import inspect

    from speechtl.data.corpora import get_corpus

    prepare = get_corpus(a.corpus).prepare
    given = {
        k: v
        for k, v in (
            ("skip_bad_audio", a.skip_bad_audio),
            ("config", a.config),
            ("nj", a.nj),
            ("cmd", a.cmd),
            ("train_speakers", a.train_speakers),
            ("test_speakers", a.test_speakers),
        )
        if v is not None
    }
    accepted = inspect.signature(prepare).parameters
    unknown = [k for k in given if k not in accepted]
    if unknown:
        raise SpeechtlError(f"prepare {a.corpus} takes no --{', --'.join(k.replace('_', '-') for k in unknown)}")
    if a.corpus_dir is None and accepted["corpus_dir"].default is inspect.Parameter.empty:
        raise SpeechtlError(f"prepare {a.corpus} needs --corpus-dir (or run its download first)")
    prepare(a.corpus_dir, a.output_dir, **given)


def cmd_compute_fbank(a):
    from speechtl.features import FbankConfig
    from speechtl.features.compute import compute_fbank

    cfg = FbankConfig(sampling_rate=a.sampling_rate, num_mel_bins=a.num_mel_bins)
    compute_fbank(
        a.manifest_dir,
        a.output_dir,
        a.prefix,
        a.splits,
        cfg,
        nj=a.nj,
        cmd=a.cmd,
        device=a.device or None,
        log_dir=a.log_dir,
        speed_perturb=a.speed_perturb,
        perturb_splits=a.perturb_splits,
    )


def cmd_prepare_lang(a):
    from speechtl.lang.lexicon import read_lexicon
    from speechtl.lang.prepare import prepare_lang, prepare_lang_from_text

    if a.extra_lm_text:
        if a.lm_text is None:
            raise SpeechtlError("--extra-lm-text adds to --lm-text; give --lm-text too")
        a.lang_dir.mkdir(parents=True, exist_ok=True)
        combined = a.lang_dir / "lm_train.txt"
        parts = []
        for f in [a.lm_text, *a.extra_lm_text]:
            if not f.is_file():
                raise SpeechtlError(f"LM text {f} does not exist")
            parts.append(f.read_text(encoding="utf-8").rstrip("\n") + "\n")
        combined.write_text("".join(parts), encoding="utf-8")
        a.lm_text = combined
    if a.units in ("bpe", "char"):
        if a.lm_text is None:
            raise SpeechtlError(f"--units {a.units} trains its units on --lm-text; give it")
        prepare_lang_from_text(a.lm_text, a.lang_dir, a.units, a.vocab_size, a.lm_order, a.lm_prune_threshold)
        return
    if a.lexicon is None:
        raise SpeechtlError("--units lexicon needs --lexicon (or choose --units bpe or char)")
    prepare_lang(
        read_lexicon(a.lexicon),
        a.lang_dir,
        lm_text=a.lm_text,
        lm_order=a.lm_order,
        lm_prune_threshold=a.lm_prune_threshold,
        arpa=a.arpa,
        sil_token=a.sil_token or None,
    )


def cmd_train(a):
    import yaml
    from lhotse import CutSet

    from speechtl.adapt import get_method
    from speechtl.adapt.transfer import build_model_for
    from speechtl.config import from_dict, load_yaml
    from speechtl.lang import Lang
    from speechtl.models import ModelConfig
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.objectives import ClassifyObjective
    from speechtl.train.trainer import seed_everything

    conf = load_yaml(a.config)
    unknown = set(conf) - {"model", "train", "methods", "classify"}
    if unknown:
        raise SpeechtlError(
            f"{a.config}: unknown section(s) {sorted(unknown)}; expected 'model', 'train', 'methods', 'classify'"
        )
    model_cfg = from_dict(ModelConfig, conf["model"], f"{a.config} [model]") if "model" in conf else None
    # methods: {name: {options: {...}, train: {...}}}: per-method options and train overrides.
    per_method = (conf.get("methods") or {}).get(a.method) or {}
    bad = set(per_method) - {"options", "train"}
    if bad:
        raise SpeechtlError(f"{a.config} [methods.{a.method}]: unknown key(s) {sorted(bad)}; expected options, train")

    def key_values(items, flag):
        out = {}
        for kv in items or []:
            key, sep, value = kv.partition("=")
            if not sep:
                raise SpeechtlError(f"{flag} takes KEY=VALUE, got {kv!r}")
            out[key] = yaml.safe_load(value)  # typed as YAML: 0.01, true, {a: 1}
        return out

    train_cfg = from_dict(
        TrainConfig,
        {**conf.get("train", {}), **(per_method.get("train") or {}), **key_values(a.set, "--set")},
        f"{a.config} [train] with methods.{a.method}.train and --set",
    )
    method = get_method(a.method, {**(per_method.get("options") or {}), **key_values(a.option, "--option")})
    train_cuts = CutSet.from_file(a.train_cuts)
    seed_everything(train_cfg.seed)  # before the model exists: its init must be reproducible
    if a.task == "asr":
        if a.lang_dir is None:
            raise SpeechtlError("--task asr trains over the units of a lang dir; give --lang-dir")
        lang = Lang(a.lang_dir)
        model = build_model_for(method, lang, model_cfg, a.source_checkpoint)
        objective = None  # CTC over lang's units
    else:
        # classify: {pooling: stats}: how the head pools encoder frames (mean, stats, attention).
        pooling = (conf.get("classify") or {}).get("pooling", "stats")
        lang, objective = None, ClassifyObjective.from_cuts(a.task, train_cuts)
        model = build_model_for(method, objective, model_cfg, a.source_checkpoint, head=pooling)
    trainer = Trainer(model, lang, method, train_cfg, a.exp_dir, objective)
    valid = CutSet.from_file(a.valid_cuts) if a.valid_cuts else None
    aux = {
        name: CutSet.from_file(path)
        for name, path in (("unlabelled", a.unlabelled_cuts), ("source", a.source_cuts))
        if path is not None
    }
    trainer.fit(train_cuts, valid, aux)


def cmd_decode(a):
    from speechtl.decode.run import decode_test_set

    decode_test_set(
        a.checkpoint,
        a.lang_dir,
        a.cuts,
        a.test_set,
        a.out_dir,
        decodings=a.decoding.split(","),
        method=a.method,
        data=a.data,
        results_tsv=a.results,
        device=a.device or None,
        beam=a.beam,
        max_active=a.max_active,
        nj=a.nj,
        lm_scale=a.lm_scale,
        skip_blank=a.skip_blank,
        cmd=a.cmd,
    )


def cmd_classify(a):
    from speechtl.score.classify import evaluate_classifier

    evaluate_classifier(a.checkpoint, a.cuts, a.test_set, a.out_dir, a.method, a.data, a.results, a.device or None)


def cmd_run_job(a):
    from speechtl.cluster.launch import run_as_job

    argv = a.argv[1:] if a.argv and a.argv[0] == "--" else a.argv
    if not argv:
        raise SpeechtlError("run-job needs a command after --")
    run_as_job(argv, a.cmd, a.log_dir, a.name)


def cmd_subset(a):
    from speechtl.data.subset import write_subset

    write_subset(a.cuts, a.output, minutes=a.minutes, shots=a.shots, seed=a.seed)


def cmd_synthesize(a):
    from speechtl.data.layout import write_split
    from speechtl.data.text import normalize_text
    from speechtl.data.tts import load_voices, read_texts, synthesize_corpus

    items = read_texts(a.text)[: a.max_utterances or None]
    recs, sups = synthesize_corpus(
        items,
        load_voices(a.voices),
        a.output_dir / "audio" / f"{a.prefix}_{a.split}",
        seed=a.seed,
        sampling_rate=a.sampling_rate,
        nj=a.nj,
        cmd=a.cmd,
        language=a.language,
        normalize=normalize_text if a.normalize else None,
    )
    write_split(a.output_dir, a.prefix, a.split, recs, sups)


def cmd_report(a):
    from speechtl.score.report import plot_data_efficiency, write_results_md

    logging.info(f"wrote {write_results_md(a.results, a.results_md, a.title)}")
    if a.plot:
        png = plot_data_efficiency(a.results, a.plot, a.test_set, a.decoding)
        logging.info(f"wrote {png}" if png else "nothing to plot: no rows with an amount of data like 5min")


def cmd_transcribe(a):
    from speechtl.decode.transcribe import transcribe

    failed = 0
    for path, words, error in transcribe(a.model_dir, a.lang_dir, a.files, a.decoding, a.device or None):
        if error is None:
            print(f"{path}\t{' '.join(words)}", flush=True)
        else:
            failed += 1
    if failed:
        raise SpeechtlError(f"{failed} of {len(a.files)} file(s) could not be read (see above)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="speechtl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("download", help="download a corpus")
    s.add_argument("corpus")
    s.add_argument("--target-dir", type=Path, default=Path("download"))
    s.add_argument(
        "--from-web",
        action="store_true",
        help="fetch afresh where speechtl ships a copy (tts_xling's sentences); the others always download",
    )
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("prepare", help="corpus -> lhotse manifests")
    s.add_argument("corpus")
    s.add_argument("--corpus-dir", type=Path, default=None, help="the corpus (synthesized corpora need none)")
    s.add_argument("--output-dir", type=Path, required=True)
    s.add_argument("--skip-bad-audio", type=_bool, default=None, help="leave out unreadable audio (yesno, fsdd)")
    s.add_argument("--train-speakers", nargs="*", default=None, help="speakers whose recordings train (fsdd)")
    s.add_argument("--test-speakers", nargs="*", default=None, help="speakers whose recordings test (fsdd)")
    s.add_argument("--config", type=Path, default=None, help="corpus config YAML (tts_xling)")
    s.add_argument("--nj", type=int, default=None, help="parallel jobs (synthesized corpora)")
    s.add_argument("--cmd", default=None, help="job runner: local (synthesized corpora)")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("compute-fbank", help="manifests -> cuts with fbank features")
    s.add_argument("--manifest-dir", type=Path, required=True)
    s.add_argument("--output-dir", type=Path, required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--splits", nargs="+", required=True)
    s.add_argument("--sampling-rate", type=int, default=16000)
    s.add_argument("--num-mel-bins", type=int, default=80)
    s.add_argument("--nj", type=int, default=1)
    s.add_argument("--cmd", default="local")
    s.add_argument("--device", default="")
    s.add_argument("--log-dir", type=Path, default=None)
    s.add_argument("--speed-perturb", type=float, nargs="*", default=[], help="factors, e.g. 0.9 1.1")
    s.add_argument("--perturb-splits", nargs="*", default=["train"])
    s.set_defaults(func=cmd_compute_fbank)

    s = sub.add_parser("prepare-lang", help="lexicon or sentencepiece units + LM text -> lang dir with HLG.fst")
    s.add_argument(
        "--units",
        choices=["lexicon", "bpe", "char"],
        default="lexicon",
        help="lexicon: from --lexicon; bpe/char: sentencepiece trained on --lm-text",
    )
    s.add_argument("--vocab-size", type=int, default=500, help="BPE vocabulary size")
    s.add_argument("--lexicon", type=Path, default=None)
    s.add_argument("--lang-dir", type=Path, required=True)
    s.add_argument("--lm-text", type=Path, default=None)
    s.add_argument(
        "--extra-lm-text",
        type=Path,
        action="append",
        default=[],
        help="more normalized text, one sentence a line, for the LM (and, with bpe/char units, the lexicon)",
    )
    s.add_argument("--lm-order", type=int, default=3)
    s.add_argument("--lm-prune-threshold", type=float, default=0.0)
    s.add_argument("--arpa", type=Path, default=None, help="use this ARPA LM instead of training one")
    s.add_argument("--sil-token", default="", help="add this optional-silence unit (e.g. SIL)")
    s.set_defaults(func=cmd_prepare_lang)

    s = sub.add_parser("train", help="train a CTC model (or an utterance classifier) with the one Trainer")
    s.add_argument("--config", type=Path, required=True, help="YAML with 'model' and 'train' sections")
    s.add_argument(
        "--task",
        default="asr",
        choices=["asr", "classify-digit", "classify-speaker"],
        help="asr: CTC over the lang dir's units; classify-digit / classify-speaker: one label per "
        "utterance (its transcript / its speaker) from a pooled encoder",
    )
    s.add_argument("--lang-dir", type=Path, default=None, help="units of --task asr")
    s.add_argument("--train-cuts", type=Path, required=True)
    s.add_argument("--valid-cuts", type=Path, default=None)
    s.add_argument("--exp-dir", type=Path, required=True)
    s.add_argument("--method", default="scratch")
    s.add_argument(
        "--source-checkpoint",
        type=Path,
        default=None,
        help="the source model: its architecture, and its weights for transfer methods",
    )
    s.add_argument(
        "--unlabelled-cuts",
        type=Path,
        default=None,
        help="unlabelled target audio for the methods that use it (dann, mmd, coral, reweight, kd, ...)",
    )
    s.add_argument("--source-cuts", type=Path, default=None, help="source audio for methods that use it")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a train option")
    s.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="override a method option (e.g. teacher=PATH)"
    )
    s.set_defaults(func=cmd_train)

    s = sub.add_parser(
        "classify",
        help="score an utterance classifier on a test set: predictions, metrics, "
        "confusion-matrix PNG, a classify.tsv row",
    )
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--cuts", type=Path, required=True)
    s.add_argument("--test-set", required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.add_argument("--method", default="scratch")
    s.add_argument("--data", default="all")
    s.add_argument("--results", type=Path, default=None, help="classify.tsv to add the row to")
    s.add_argument("--device", default="")
    s.set_defaults(func=cmd_classify)

    s = sub.add_parser("decode", help="decode a test set, write recogs/errs/wer-summary and results.tsv rows")
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--lang-dir", type=Path, required=True)
    s.add_argument("--cuts", type=Path, required=True)
    s.add_argument("--test-set", required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.add_argument("--decoding", default="greedy,hlg", help="comma-separated: greedy,beam,hlg,hlg-lattice")
    s.add_argument("--nj", type=int, default=1, help="processes (or --cmd jobs) for HLG search")
    s.add_argument("--cmd", default="local", help="job runner for the HLG search jobs: local or slurm [options]")
    s.add_argument("--lm-scale", type=float, default=1.0, help="LM scale of hlg-lattice's recogs and results row")
    s.add_argument("--method", default="scratch")
    s.add_argument("--data", default="all")
    s.add_argument("--results", type=Path, default=None, help="results.tsv to add rows to")
    s.add_argument("--device", default="")
    s.add_argument("--beam", type=float, default=16.0)
    s.add_argument("--max-active", type=int, default=3000)
    s.add_argument(
        "--skip-blank",
        type=float,
        default=0.0,
        help="HLG: skip frames whose blank posterior is at least this (e.g. 0.99; 0 = off)",
    )
    s.set_defaults(func=cmd_decode)

    s = sub.add_parser("run-job", help="run one command as a job of a runner (e.g. training under Slurm)")
    s.add_argument("--cmd", required=True, help="local or slurm [options]")
    s.add_argument("--log-dir", type=Path, required=True)
    s.add_argument("--name", default="job")
    s.add_argument("argv", nargs=argparse.REMAINDER, help="-- command args...")
    s.set_defaults(func=cmd_run_job)

    s = sub.add_parser(
        "subset",
        help="the first N minutes, or N shots per (speaker, transcript), of a training pool "
        "(nested amounts of labelled data)",
    )
    s.add_argument("--cuts", type=Path, required=True)
    s.add_argument("--minutes", type=float, default=0.0)
    s.add_argument("--shots", type=int, default=0, help="utterances per (speaker, transcript) class")
    s.add_argument("--output", type=Path, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_subset)

    s = sub.add_parser("synthesize", help="text -> synthetic speech with TTS voices -> lhotse manifests")
    s.add_argument("--text", type=Path, required=True, help="id<TAB>sentence .tsv or one sentence a line .txt")
    s.add_argument("--voices", type=Path, required=True, help="YAML: voices: [{engine, name, rate, pitch}]")
    s.add_argument("--output-dir", type=Path, required=True, help="manifests go here, audio under audio/")
    s.add_argument("--prefix", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sampling-rate", type=int, default=16000)
    s.add_argument("--language", default="")
    s.add_argument("--normalize", type=_bool, default=True, help="normalize supervision text")
    s.add_argument("--max-utterances", type=int, default=0)
    s.add_argument("--nj", type=int, default=1)
    s.add_argument("--cmd", default="local")
    s.set_defaults(func=cmd_synthesize)

    s = sub.add_parser("report", help="RESULTS.md (and a data-efficiency PNG) from results.tsv")
    s.add_argument("--results", type=Path, default=Path("exp/results.tsv"))
    s.add_argument("--results-md", type=Path, default=Path("RESULTS.md"))
    s.add_argument("--title", default="Results")
    s.add_argument("--plot", type=Path, default=None, help="e.g. exp/plots/data_efficiency.png")
    s.add_argument("--test-set", default="test")
    s.add_argument("--decoding", default="hlg")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("transcribe", help="print 'file<TAB>words' for each audio file (any rate, mono or stereo)")
    s.add_argument("--model-dir", type=Path, required=True, help="experiment dir with final.pt, or a checkpoint")
    s.add_argument("--lang-dir", type=Path, required=True)
    s.add_argument("--decoding", default="hlg", choices=["hlg", "greedy"])
    s.add_argument("--device", default="")
    s.add_argument("files", type=Path, nargs="+")
    s.set_defaults(func=cmd_transcribe)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "log_file", None))
    try:
        args.func(args)
    except SpeechtlError as e:
        logging.error(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
