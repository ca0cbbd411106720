"""``speechtl <subcommand>``: a thin layer over library functions, one per recipe step."""

import argparse
import logging
import sys
from collections.abc import Sequence
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
            *((k, getattr(a, k)) for k in IMPORT_OPTIONS),
        )
        if v is not None
    }
    accepted = inspect.signature(prepare).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):  # importers: options of import_options
        from speechtl.data.corpora.imported import import_options

        accepted = {**accepted, **inspect.signature(import_options).parameters}
    unknown = [k for k in given if k not in accepted]
    if unknown:
        raise SpeechtlError(f"prepare {a.corpus} takes no --{', --'.join(k.replace('_', '-') for k in unknown)}")
    if a.corpus_dir is None and accepted["corpus_dir"].default is inspect.Parameter.empty:
        raise SpeechtlError(
            f"prepare {a.corpus} needs --corpus-dir. Fix: pass --corpus-dir DIR, or run 'speechtl download {a.corpus}'"
        )
    prepare(a.corpus_dir, a.output_dir, **given)


#: Options of the importers of users' corpora (folder, kaldi, commonvoice, librispeech), None when not given.
IMPORT_OPTIONS = (
    "language",
    "transcripts",
    "audio_column",
    "text_column",
    "speaker_column",
    "speaker_pattern",
    "tier",
    "prefix",
    "parts",
    "sampling_rate",
    "min_duration",
    "max_duration",
    "subsampling",
    "dev_fraction",
    "test_fraction",
    "seed",
    "split_by",
    "normalize_text",
    "keep_chars",
    "drop_chars",
    "map_chars",
    "join_zwnj",
    "turkic_case",
)


def add_import_options(s: argparse.ArgumentParser) -> None:
    """The options of ``prepare`` and ``validate`` for users' corpora (see speechtl.data.corpora.imported)."""
    s.add_argument(
        "--skip-bad", dest="skip_bad_audio", nargs="?", const=True, type=_bool, help="leave bad input out (true)"
    )
    s.add_argument("--language", default=None, help="language code of the corpus (commonvoice: its folder, e.g. ga)")
    s.add_argument("--transcripts", nargs="+", default=None, help="folder: transcript files (default: found)")
    s.add_argument("--audio-column", default=None, help="folder: the audio column of a transcript table")
    s.add_argument("--text-column", default=None, help="folder: the text column of a transcript table")
    s.add_argument("--speaker-column", default=None, help="folder: the speaker column of a transcript table")
    s.add_argument("--speaker-pattern", default=None, help="folder: regex over the relative path; (?P<speaker>...)")
    s.add_argument(
        "--tier",
        default=None,
        help="folder: the TextGrid/.eaf tier(s) holding the transcripts, comma-separated names or patterns ('tx@*')",
    )
    s.add_argument("--prefix", default=None, help="manifest name prefix (default: the corpus kind)")
    s.add_argument("--parts", nargs="+", default=None, help="librispeech: parts to import (default: all found)")
    s.add_argument("--sampling-rate", type=int, default=None, help="the rate features use; others are resampled")
    s.add_argument("--min-duration", type=float, default=None, help="shorter utterances are bad (default 0.1 s)")
    s.add_argument("--max-duration", type=float, default=None, help="longer utterances are bad (default 30 s)")
    s.add_argument("--subsampling", type=int, default=None, help="the model's subsampling, for the CTC check (4)")
    s.add_argument("--dev-fraction", type=float, default=None, help="made dev split, without split folders (0.1)")
    s.add_argument("--test-fraction", type=float, default=None, help="made test split (0.1)")
    s.add_argument("--seed", type=int, default=None, help="seed of the made splits (0)")
    s.add_argument(
        "--split-by",
        choices=("auto", "speaker", "utterance"),
        default=None,
        help="made splits: speaker-disjoint when the speakers allow it (auto), always (speaker), never (utterance)",
    )
    s.add_argument("--normalize-text", type=_bool, default=None, help="NFC, lower case, punctuation (true)")
    s.add_argument("--keep-chars", default=None, help="characters normalization keeps (e.g. '@+')")
    s.add_argument("--drop-chars", default=None, help="characters normalization deletes")
    s.add_argument(
        "--map-chars",
        default=None,
        help="characters written as others: 'ş=ș,ţ=ț' (the inventory's look-alikes; both forms of ş/ș or ţ/ț in one corpus are joined to the comma below unless named here); applied first, to the characters as typed, each pair in both cases where both have one ('I=ı' maps only the capital)",
    )
    s.add_argument(
        "--join-zwnj",
        type=_bool,
        default=None,
        help="words written with a ZWNJ (Persian می‌روید) and elsewhere with a space: joined (true)",
    )
    s.add_argument(
        "--turkic-case",
        type=_bool,
        default=None,
        help="Turkish casing, I -> ı and İ -> i (default: when the transcripts write ı or İ, or --language is tr/az)",
    )


def new_recipe_methods(given: list[str] | None) -> list[str]:
    """``--methods`` of new-recipe, as separate words or one quoted list (as run.sh takes them)."""
    from speechtl.recipe.generate import DEFAULT_METHODS

    if given is None:
        return list(DEFAULT_METHODS)
    methods = [m for g in given for m in g.split()]
    if not methods:
        raise SpeechtlError(
            "--methods is empty. Fix: name the methods (e.g. --methods 'scratch finetune'), or leave it out"
        )
    return methods


def cmd_validate(a):
    from speechtl.data.validate import ValidateConfig, validate_manifest_dir

    if (a.manifest_dir is None) == (a.corpus_dir is None):
        raise SpeechtlError("validate takes --manifest-dir DIR (written manifests) or --corpus-dir DIR --kind KIND")
    if a.manifest_dir is not None:
        opts = {k: getattr(a, k) for k in ("sampling_rate", "min_duration", "max_duration", "subsampling", "nj")}
        cfg = ValidateConfig(**{k: v for k, v in opts.items() if v is not None})
        report = validate_manifest_dir(a.manifest_dir, a.prefix, cfg, bool(a.skip_bad_audio))
        print(f"{a.manifest_dir}: {len(report.problems)} problem(s)" + (" skipped" if report.problems else ""))
        return
    if a.kind is None:
        raise SpeechtlError("validate --corpus-dir needs --kind (folder, kaldi, commonvoice, librispeech, ...)")
    a.corpus, a.output_dir = a.kind, None  # a dry run of the import: checks everything, writes nothing
    for k in ("config", "cmd", "train_speakers", "test_speakers"):
        setattr(a, k, None)
    cmd_prepare(a)
    print(f"{a.corpus_dir}: no problems that stop the import (the log's warnings, if any, are worth a look)")


def cmd_export(a):
    from speechtl.data.corpora.kaldi import export_kaldi

    for d in export_kaldi(a.manifest_dir, a.output_dir, a.prefix, a.splits):
        print(d)


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
    from speechtl.data.textfile import read_utf8
    from speechtl.lang.lexicon import read_lexicon
    from speechtl.lang.prepare import prepare_lang, prepare_lang_from_text

    if a.extra_lm_text and a.lm_text is None:
        raise SpeechtlError("--extra-lm-text adds to --lm-text; give --lm-text too")
    if a.units in ("bpe", "char"):
        if a.lm_text is None:
            raise SpeechtlError(f"--units {a.units} trains its units on --lm-text; give it")
        prepare_lang_from_text(
            a.lm_text, a.lang_dir, a.units, a.vocab_size, a.lm_order, a.lm_prune_threshold, a.extra_lm_text
        )
        return
    if a.extra_lm_text:
        a.lang_dir.mkdir(parents=True, exist_ok=True)
        combined = a.lang_dir / "lm_train.txt"
        parts = []
        for f in [a.lm_text, *a.extra_lm_text]:
            parts.append(read_utf8(f, "LM text").rstrip("\n") + "\n")
        combined.write_text("".join(parts), encoding="utf-8")
        a.lm_text = combined
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
    from speechtl.atomic import writable_dir
    from speechtl.config import from_dict, load_yaml, method_train
    from speechtl.decode.checks import check_features
    from speechtl.features.inputs import mark_cuts
    from speechtl.lang import Lang
    from speechtl.models import ENCODERS, ModelConfig
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.objectives import ClassifyObjective
    from speechtl.train.trainer import seed_everything

    conf = load_yaml(a.config)
    unknown = set(conf) - {"model", "train", "methods", "classify"}
    if unknown:
        raise SpeechtlError(
            f"{a.config}: unknown section(s) {sorted(unknown)}; expected 'model', 'train', 'methods', 'classify'"
        )
    not_maps = sorted(k for k, v in conf.items() if v is not None and not isinstance(v, dict))
    if not_maps:
        raise SpeechtlError(f"{a.config}: section(s) {not_maps} must be mappings (indented 'key: value' lines)")
    # methods: {name: {options: {...}, train: {...}, model: {...}}}: per-method options and overrides.
    per_method = (conf.get("methods") or {}).get(a.method) or {}
    bad = set(per_method) - {"options", "train", "model"}
    if bad:
        raise SpeechtlError(
            f"{a.config} [methods.{a.method}]: unknown key(s) {sorted(bad)}; expected options, train, model"
        )
    not_maps = sorted(k for k, v in per_method.items() if v is not None and not isinstance(v, dict))
    if not_maps:
        raise SpeechtlError(
            f"{a.config} [methods.{a.method}]: {', '.join(not_maps)} must be mappings (e.g. model: {{layer_mix: true}})"
        )

    def key_values(items, flag):
        out = {}
        for kv in items or []:
            key, sep, value = kv.partition("=")
            if not sep:
                raise SpeechtlError(f"{flag} takes KEY=VALUE, got {kv!r}")
            out[key] = yaml.safe_load(value)  # typed as YAML: 0.01, true, {a: 1}
        return out

    model_options = {**(conf.get("model") or {}), **(per_method.get("model") or {}), **key_values(a.model, "--model")}
    model_where = f"{a.config} [model] with methods.{a.method}.model and --model"
    model_cfg = None
    if "model" in conf or per_method.get("model") or a.model:
        model_cfg = from_dict(ModelConfig, model_options, model_where)
        # the encoder's options too, so their errors name this file
        if model_cfg.encoder not in ENCODERS:
            raise SpeechtlError(f"{model_where}: unknown encoder {model_cfg.encoder!r}; known: {sorted(ENCODERS)}")
        from_dict(ENCODERS[model_cfg.encoder].Config, model_cfg.encoder_options, f"{a.config} [model.encoder_options]")

    train_options = {**method_train(conf, a.method), **key_values(a.set, "--set")}
    warn_own_budget(a.config, a.method, conf.get("train") or {}, per_method.get("train") or {})
    for key, given in (("init_param", a.init_param), ("freeze_param", a.freeze_param)):
        listed = train_options.get(key) or []  # one spec alone (a conf's string, --set k=v) is a list of one
        if isinstance(listed, str) or given:
            train_options[key] = [*([listed] if isinstance(listed, str) else listed), *given]  # the flags add
    train_cfg = from_dict(
        TrainConfig, train_options, f"{a.config} [train] with methods.{a.method}.train, --set and --init/freeze-param"
    )
    method = get_method(a.method, {**(per_method.get("options") or {}), **key_values(a.option, "--option")})
    writable_dir(a.exp_dir, "--exp-dir")  # before any work: a read-only or full disk fails here
    if not a.train_cuts.is_file():
        raise SpeechtlError(f"training cuts {a.train_cuts} do not exist. Fix: run the fbank stage first.")
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
    check_features(model, train_cuts, a.source_checkpoint or a.config, "the training cuts")
    trainer = Trainer(model, lang, method, train_cfg, a.exp_dir, objective)
    # The cuts deliver what the model reads: their fbank, or Whisper log-mel / samples from their audio.
    spec = model.input_spec
    valid = mark_cuts(CutSet.from_file(a.valid_cuts), spec) if a.valid_cuts else None
    aux = {
        name: mark_cuts(CutSet.from_file(path), spec)
        for name, path in (("unlabelled", a.unlabelled_cuts), ("source", a.source_cuts))
        if path is not None
    }
    trainer.fit(mark_cuts(train_cuts, spec), valid, aux)


#: Train options that set how much a run computes: a method's conf entry that changes one trains at
#: another budget than the conf's other methods, so its rows no longer compare at equal compute.
BUDGET_KEYS = ("num_steps", "num_epochs", "step_budget", "max_duration", "accum_grad")


def warn_own_budget(config: Path, method: str, base: dict, own: dict) -> None:
    from speechtl.train import TrainConfig

    default = TrainConfig()
    changed = [
        f"{k}={own[k]} (the conf's {base.get(k, getattr(default, k))})"
        for k in BUDGET_KEYS
        if k in own and own[k] != base.get(k, getattr(default, k))
    ]
    if changed:
        logging.warning(
            f"{config} [methods.{method}.train]: {', '.join(changed)}: {method} trains at another budget than the "
            "conf's other methods, so its rows do not compare with theirs at equal compute. Fix: remove it from "
            f"methods.{method}.train, or say in RESULTS.md that the budgets differ"
        )


def cmd_export_onnx(a):
    from speechtl.export import ExportConfig, export_onnx

    export_onnx(a.checkpoint, a.lang_dir, a.out, ExportConfig(opset=a.opset, int8=a.int8, graph=a.graph))


def cmd_average(a):
    from speechtl.train.checkpoint import average_epochs

    average_epochs(a.exp_dir, a.epoch, a.avg, a.out)
    print(a.out)


def decode_checkpoint(a) -> Path | None:
    """The checkpoint ``speechtl decode`` decodes: ``--checkpoint``, or of ``--exp-dir`` the average
    of ``--epoch N --avg K`` (made now, or reused: ``EXP/avg-epoch-N-K.pt``), or its ``final.pt``."""
    from speechtl.train.checkpoint import ensure_epoch_average

    if a.avg is not None and a.epoch is None:
        raise SpeechtlError("--avg K needs --epoch N: the average of epoch-(N-K+1)..epoch-N")
    if a.exp_dir is None:
        if a.epoch is not None:
            where = f"--exp-dir {a.checkpoint.parent}" if a.checkpoint is not None else "--exp-dir EXP"
            raise SpeechtlError(
                f"--epoch/--avg average the epoch-N.pt of an exp dir. Fix: {where} instead of --checkpoint"
            )
        return a.checkpoint
    if a.checkpoint is not None:
        raise SpeechtlError("decode takes --checkpoint FILE or --exp-dir DIR, not both")
    if a.epoch is None:
        return a.exp_dir / "final.pt"
    return ensure_epoch_average(a.exp_dir, a.epoch, 1 if a.avg is None else a.avg)


def cmd_decode(a):
    from speechtl.decode.labels import checkpoint_labels, export_labels
    from speechtl.decode.run import decode_test_set

    if a.onnx is not None:
        from speechtl.export.sherpa import ONNX_DECODINGS, SherpaOptions, decode_onnx_test_set

        if a.exp_dir is not None or a.epoch is not None or a.avg is not None:
            raise SpeechtlError(
                "--onnx decodes an exported model; --exp-dir/--epoch/--avg choose a torch checkpoint. Fix: export "
                "the average first (speechtl average ... --out A.pt; speechtl export-onnx --checkpoint A.pt ...)"
            )

        names = (a.decoding or ",".join(ONNX_DECODINGS)).split(",")
        options = SherpaOptions(num_threads=a.num_threads, max_active=a.max_active)
        method, data = export_labels(a.onnx, a.method, a.data)
        decode_onnx_test_set(a.onnx, a.cuts, a.test_set, a.out_dir, names, method, data, a.results, options, a.seed)
        return
    if (a.checkpoint is None and a.exp_dir is None) or a.lang_dir is None:
        raise SpeechtlError(
            "decode needs --checkpoint (or --exp-dir) and --lang-dir, or --onnx DIR (from speechtl export-onnx)"
        )
    checkpoint = decode_checkpoint(a)
    method, data = checkpoint_labels(checkpoint, a.method, a.data) if a.results else (a.method, a.data)
    decode_test_set(
        checkpoint,
        a.lang_dir,
        a.cuts,
        a.test_set,
        a.out_dir,
        decodings=(a.decoding or "greedy,hlg").split(","),
        method=method or "scratch",
        data=data or "all",
        results_tsv=a.results,
        device=a.device or None,
        beam=a.beam,
        max_active=a.max_active,
        nj=a.nj,
        lm_scale=a.lm_scale,
        skip_blank=a.skip_blank,
        cmd=a.cmd,
        seed=a.seed,
    )


def cmd_sweep(a):
    from speechtl.adapt.sweep import load_space, parse_space, sweep

    space = parse_space(a.space or [], load_space(a.space_file, a.method) if a.space_file else None)
    if not space:
        raise SpeechtlError("sweep needs a search space: --space train.KEY=V1,V2 ... or --space-file")
    sweep(
        a.config,
        a.method,
        space,
        a.lang_dir,
        a.train_cuts,
        a.dev_cuts,
        a.exp_dir,
        a.output,
        num_steps=a.num_steps or None,
        trials=a.trials,
        seed=a.seed,
        source_checkpoint=a.source_checkpoint,
        unlabelled_cuts=a.unlabelled_cuts,
        source_cuts=a.source_cuts,
        decoding=a.decoding,
        dev_set=a.dev_set,
        device=a.device or None,
        train_seeds=a.train_seeds or (),
    )


def cmd_zero_shot(a):
    from speechtl.decode.zero_shot import zero_shot

    zero_shot(
        str(a.source),
        a.cuts,
        a.test_set,
        a.out_dir,
        method=a.method,
        data=a.data,
        results_tsv=a.results,
        device=a.device or None,
        spell_digits=a.spell_digits,
        language=a.language or None,
        text_norm=a.text_norm,
        text_norm_config=a.text_norm_config,
        skip_unavailable=a.skip_unavailable,
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


def cmd_conf_key(a):
    from speechtl.config import init_stamp, load_yaml, method_digest, method_train  # no torch: called per system

    conf = load_yaml(a.config)
    init = init_stamp(method_train(conf, a.method).get("init_param"))
    print(f"conf={method_digest(conf, a.method)}" + (f" init={init}" if init else ""))


def cmd_tuned_conf(a):
    from speechtl.adapt.sweep import refresh_tuned_config

    refresh_tuned_config(a.config, a.output, a.drop)


def cmd_rest_split(a):
    from speechtl.data.subset import write_rest

    write_rest(a.cuts, a.dev_output, a.unlabelled_output, a.labelled_shots, a.dev_shots, seed=a.seed)


def cmd_holdout(a):
    from speechtl.data.holdout import HoldoutConfig, write_holdout

    cfg = HoldoutConfig(test_fraction=a.test_fraction, dev_fraction=a.dev_fraction, seed=a.seed)
    for name, path in write_holdout(a.cuts, a.speaker, a.output_dir, cfg).items():
        logging.info(f"{name}: {path}")


def cmd_folds(a):
    from speechtl.data.folds import FoldsConfig, write_folds

    for train, dev in write_folds(a.cuts, a.output_dir, FoldsConfig(k=a.k, by=a.by, seed=a.seed)):
        print(train, dev)


def cmd_speakers(a):
    from speechtl.data.holdout import read_pool, speakers

    print(" ".join(speakers(read_pool(a.cuts))))


def cmd_pool_sets(a):
    from speechtl.score.pool_sets import pool_sets

    pool_sets(a.results, a.sets.split(), a.name, a.out_dir)


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
    from speechtl.score.stats import BASELINES

    md = write_results_md(a.results, a.results_md, a.title, a.baselines or BASELINES)
    print(md.read_text(encoding="utf-8"))  # the tables, intervals and significance marks
    logging.info(f"wrote {md}")
    if a.plot:
        from speechtl.score.report import choose_decoding

        decoding = choose_decoding(a.results, a.choose_on) if a.decoding == "auto" else a.decoding
        png = plot_data_efficiency(a.results, a.plot, a.test_set, decoding)
        logging.info(f"wrote {png}" if png else "nothing to plot: no rows with an amount of data like 5min")
        if png:  # RESULTS.md says which plot it is: its test set and decoding (and why that decoding)
            import os

            rel = os.path.relpath(Path(png).resolve(), Path(md).resolve().parent)
            why = f", the decoding best on {a.choose_on}" if a.decoding == "auto" else ""
            with open(md, "a", encoding="utf-8") as f:
                f.write(f"\nPlot: {rel} ({a.test_set}, {decoding}{why}).\n")


def audio_files(paths: Sequence[Path]) -> list[Path]:
    """``paths`` with each folder replaced by the audio files under it (sorted, recursively), as
    ``speechtl prepare folder`` finds them (:func:`~speechtl.data.corpora.folder.scan`)."""
    from speechtl.data.corpora.folder import scan
    from speechtl.data.validate import AUDIO_EXTENSIONS

    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        found = sorted(f for f in scan(p)[0] if f.suffix.lower() in AUDIO_EXTENSIONS)
        if not found:
            raise SpeechtlError(
                f"{p} is a folder with no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}). Fix: name the files"
            )
        logging.info(f"{p}: {len(found)} audio files")
        out += found
    return out


def cmd_transcribe(a):
    from speechtl.decode.longform import DEFAULT_MAX_SECONDS
    from speechtl.decode.transcribe import transcribe
    from speechtl.lang import Lang

    a.files = audio_files(a.files)
    if a.textgrid_dir is not None:
        from collections import Counter

        from speechtl.atomic import writable_dir

        writable_dir(a.textgrid_dir, "--textgrid-dir")  # before any decoding, not after it
        clash = sorted(s for s, n in Counter(f.stem for f in a.files).items() if n > 1)
        if clash:
            raise SpeechtlError(
                f"--textgrid-dir writes <name>.TextGrid per file, and {len(clash)} name(s) are shared by files of "
                f"different folders (e.g. {clash[0]!r}): one would overwrite another. Fix: transcribe each "
                "folder with its own --textgrid-dir"
            )
    if a.max_seconds is None:
        a.max_seconds = DEFAULT_MAX_SECONDS
    if a.onnx is not None:
        from speechtl.export.sherpa import transcribe_onnx

        results = transcribe_onnx(a.onnx, a.files, a.decoding, a.int8, a.num_threads, a.max_seconds)
    elif a.model_dir is None or a.lang_dir is None:
        raise SpeechtlError("transcribe needs --model-dir and --lang-dir, or --onnx DIR (from speechtl export-onnx)")
    else:
        results = transcribe(a.model_dir, a.lang_dir, a.files, a.decoding, a.device or None, a.max_seconds)
    text = Lang(a.onnx if a.onnx is not None else a.lang_dir).text  # characters of a spaceless script unspaced
    failed = 0
    for r in results:
        if r.error is not None:
            failed += 1
            continue
        if a.textgrid_dir is not None:
            write_pieces_textgrid(a.textgrid_dir, r, text)
        if a.segments:
            for p in r.pieces:
                print(f"{r.path}\t{p.start:.2f}\t{p.end:.2f}\t{text(p.words)}", flush=True)
        else:
            print(f"{r.path}\t{text(r.words)}", flush=True)
    if failed:
        raise SpeechtlError(f"{failed} of {len(a.files)} file(s) could not be read (see above)")


def write_pieces_textgrid(out_dir: Path, r, text=" ".join) -> Path:
    """``OUT/<stem>.TextGrid`` of one transcribed file: a ``speechtl`` tier of its pieces' words, to
    correct in Praat or ELAN and import again as a transcript (``speechtl prepare folder``)."""
    from speechtl.data.corpora.annotations import write_textgrid

    spans = [(p.start, p.end, text(p.words)) for p in r.pieces]
    xmax = max((p.end for p in r.pieces), default=0.0)
    path = write_textgrid(out_dir / f"{r.path.stem}.TextGrid", {"speechtl": spans}, xmax)
    logging.info(f"{r.path}: {len(spans)} piece(s) -> {path}")
    return path


def cmd_vtln(a):
    from lhotse import CutSet

    from speechtl.adapt.vtln import VtlnOptions, warp_checkpoint

    if not a.cuts.is_file():
        raise SpeechtlError(f"cuts {a.cuts} do not exist. Fix: compute the speaker's fbank first (compute-fbank)")
    options = VtlnOptions(low=a.low, high=a.high, step=a.step, criterion=a.criterion, max_utterances=a.max_utterances)
    table = a.output.with_name(a.output.stem + ".vtln.tsv")
    warp_checkpoint(a.checkpoint, CutSet.from_file(a.cuts), a.output, options, table, a.device or None)


def cmd_new_recipe(a):
    from speechtl.recipe.generate import DEFAULT_MINUTES, RecipeConfig, new_recipe

    cfg = RecipeConfig(
        name=a.name,
        corpus=a.corpus,
        corpus_dir=a.corpus_dir,
        source=a.source,
        lm_text=a.lm_text,
        methods=new_recipe_methods(a.methods),
        minutes=a.minutes or DEFAULT_MINUTES,
        skip_bad=a.skip_bad,
        prepare_opts=a.prepare_opts,
        validate_opts=a.validate_opts,
        speed_perturb=a.speed_perturb,
        units=a.units,
        egs_dir=a.egs_dir,
    )
    out = new_recipe(cfg, force=a.force)
    print(out)


def cmd_recipe_info(a):
    from speechtl.recipe import info

    if a.what == "features":
        f = info.source_features(a.source)
        print(f"{f.sampling_rate} {f.num_mel_bins}")
    elif a.what == "units":
        c = info.choose_units(a.text, a.units, a.vocab_size, a.min_words)
        logging.info(f"units: {c.reason}")
        print(f"{c.units} {c.vocab_size} {c.reason}")
    elif a.what == "amounts":
        for amount in info.plan_amounts(a.cuts, a.minutes, a.output_prefix):
            print(f"{amount.label} {'all' if amount.minutes == float('inf') else f'{amount.minutes:g}'}")
    elif a.what == "text":
        info.write_transcripts(a.supervisions, a.output)
    elif a.what == "lm-text":
        info.normalize_lm_text(a.text, a.output, a.text_norm_config)
    elif a.what == "import-rules":  # stage 0's key: an import by other rules is done again
        from speechtl.data.corpora.imported import IMPORT_RULES

        print(IMPORT_RULES)
    elif a.what == "corpus-key":  # stage 0's key: a corpus with files fixed or added is imported again
        if a.corpus_dir is None:
            raise SpeechtlError("recipe-info corpus-key needs --corpus-dir")
        print(info.corpus_fingerprint(a.corpus_dir, info.named_files(a.prepare_opts, a.corpus_dir)))
    elif a.what == "methods":  # the names a run.sh was given, checked before any stage makes a dir for them
        from speechtl.adapt import METHODS

        unknown = [m for m in a.names if m not in METHODS]
        if unknown:
            raise SpeechtlError(f"unknown method(s) {unknown}; known: {', '.join(sorted(METHODS))}")
    else:  # sources
        print(info.sources_message(a.egs_dirs))


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
    s.add_argument("--skip-bad-audio", type=_bool, default=None, help="the older spelling of --skip-bad")
    s.add_argument("--train-speakers", nargs="*", default=None, help="speakers whose recordings train (fsdd)")
    s.add_argument("--test-speakers", nargs="*", default=None, help="speakers whose recordings test (fsdd)")
    s.add_argument("--config", type=Path, default=None, help="corpus config YAML (tts_xling)")
    s.add_argument("--nj", type=int, default=None, help="parallel jobs (synthesized corpora)")
    s.add_argument("--cmd", default=None, help="job runner: local (synthesized corpora)")
    add_import_options(s)
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("validate", help="check a corpus or its manifests: every problem with its file and fix")
    s.add_argument("--manifest-dir", type=Path, default=None, help="manifests written by prepare")
    s.add_argument("--corpus-dir", type=Path, default=None, help="a corpus, checked as --kind imports it")
    s.add_argument("--kind", default=None, help="with --corpus-dir: folder, kaldi, commonvoice, ...")
    s.add_argument("--nj", type=int, default=None, help="threads probing audio")
    add_import_options(s)
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("export", help="manifests -> other toolkits' formats (kaldi: one data dir per split)")
    s.add_argument("format", choices=["kaldi"])
    s.add_argument("--manifest-dir", type=Path, required=True)
    s.add_argument("--prefix", required=True, help="the manifests' corpus name, e.g. folder")
    s.add_argument("--output-dir", type=Path, required=True, help="gets <split>/{wav.scp,segments,text,...}")
    s.add_argument("--splits", nargs="*", default=None, help="default: every split found")
    s.set_defaults(func=cmd_export)

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
        help="more normalized text, one sentence a line, for the LM (and, with bpe/char units, the lexicon; "
        "the units are trained on --lm-text alone, so more LM text leaves the models trained on them valid)",
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
        "--source",
        type=Path,
        default=None,
        help="the source model: its architecture, and its weights for transfer methods; our checkpoint "
        "(final.pt) or a pretrained encoder, whisper:PATH_OR_ID or hf:PATH_OR_ID (wav2vec2, HuBERT, WavLM, XLS-R)",
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
        "--model",
        action="append",
        metavar="KEY=VALUE",
        help="override a model option (e.g. layer_mix=true; over the conf's model section and methods.<m>.model)",
    )
    s.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="override a method option (e.g. teacher=PATH)"
    )
    s.add_argument(
        "--init-param",
        action="append",
        default=[],
        metavar="PATH[:SRC[:DST[:EXCLUDE,...]]]",
        help="after the method's own start, copy PATH's tensors named SRC.* into the model's DST.* (ESPnet's "
        "--init_param; e.g. exp/other/final.pt:encoder:encoder); repeatable, added to the conf's train.init_param",
    )
    s.add_argument(
        "--freeze-param",
        action="append",
        default=[],
        metavar="PREFIX",
        help="parameters under this name prefix do not train, whatever the method (e.g. encoder.subsampling); "
        "repeatable, added to the conf's train.freeze_param",
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

    s = sub.add_parser(
        "export-onnx", help="a CTC checkpoint -> model.onnx, model.int8.onnx, tokens.txt, HLG.fst for sherpa-onnx"
    )
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--lang-dir", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True, help="output dir, e.g. exp/X/onnx")
    s.add_argument("--opset", type=int, default=18)
    s.add_argument("--int8", type=_bool, default=True, help="also write model.int8.onnx (dynamic quantization)")
    s.add_argument(
        "--graph",
        default="lang",
        choices=["lang", "undeterminized"],
        help="HLG.fst: the lang dir's, or H∘(L∘G) with every word where sherpa-onnx reads it",
    )
    s.set_defaults(func=cmd_export_onnx)

    s = sub.add_parser(
        "average",
        help="icefall's --epoch N --avg K: the mean of an exp dir's epoch-(N-K+1).pt..epoch-N.pt, a checkpoint "
        "that decode, transcribe and export-onnx take as they take final.pt",
    )
    s.add_argument("--exp-dir", type=Path, required=True, help="the training's dir, with its epoch-N.pt")
    s.add_argument("--epoch", type=int, required=True, help="the last epoch averaged, N")
    s.add_argument("--avg", type=int, required=True, help="how many epochs, K: epoch-(N-K+1)..epoch-N")
    s.add_argument("--out", type=Path, required=True, help="the averaged checkpoint, e.g. EXP/avg-epoch-30-10.pt")
    s.set_defaults(func=cmd_average)

    s = sub.add_parser(
        "decode",
        help="decode a test set, write recogs/errs/wer-summary and results.tsv rows",
        description="Decode a test set with --checkpoint FILE (e.g. exp/X/final.pt), or, as icefall's "
        "decode.py, with --exp-dir exp/X --epoch 30 --avg 10: the average of epoch-21..30.pt (kept as "
        "exp/X/avg-epoch-30-10.pt and reused while those files stay), whose files end in -epoch-30-avg-10 and "
        "whose results.tsv rows (checkpoint epoch-30-avg-10) sit beside the final model's. --exp-dir alone "
        "decodes its final.pt.",
    )
    s.add_argument("--checkpoint", type=Path, default=None, help="the checkpoint file (or --exp-dir)")
    s.add_argument("--exp-dir", type=Path, default=None, help="the training's dir: its final.pt, or with --epoch")
    s.add_argument(
        "--epoch", type=int, default=None, help="with --exp-dir: decode the average of the epochs up to epoch-N.pt"
    )
    s.add_argument(
        "--avg", type=int, default=None, help="with --epoch: how many epochs, K: epoch-(N-K+1)..epoch-N (default 1)"
    )
    s.add_argument("--lang-dir", type=Path, default=None)
    s.add_argument("--onnx", type=Path, default=None, help="decode with sherpa-onnx from this export-onnx dir")
    s.add_argument("--num-threads", type=int, default=1, help="--onnx: onnxruntime threads")
    s.add_argument("--cuts", type=Path, required=True)
    s.add_argument("--test-set", required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.add_argument(
        "--decoding",
        default=None,
        help="comma-separated: greedy,beam,hlg,hlg-lattice (default greedy,hlg); with --onnx: "
        "onnx-greedy,onnx-hlg,onnx-int8-greedy,onnx-int8-hlg (default all)",
    )
    s.add_argument("--nj", type=int, default=1, help="processes (or --cmd jobs) for HLG search")
    s.add_argument("--cmd", default="local", help="job runner for the HLG search jobs: local or slurm [options]")
    s.add_argument("--lm-scale", type=float, default=1.0, help="LM scale of hlg-lattice's recogs and results row")
    s.add_argument("--method", default=None, help="the rows' method (default: the one the checkpoint was trained with)")
    s.add_argument(
        "--data", default=None, help="the rows' data (default: from the system dir exp/<method>_<data>/, else all)"
    )
    s.add_argument("--results", type=Path, default=None, help="results.tsv to add rows to")
    s.add_argument(
        "--seed", type=int, default=None, help="the rows' seed column (default: the checkpoint's training seed)"
    )
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

    s = sub.add_parser(
        "zero-shot",
        help="decode a test set with a pretrained model's own decoder (Whisper's generate, or a fine-tuned "
        "wav2vec2-family model's CTC head), normalized like the references; recogs/errs/wer-summary and a "
        "results.tsv row",
    )
    s.add_argument(
        "--source",
        required=True,
        help="whisper:PATH_OR_ID (an HF Whisper directory or hub id), or hf:PATH_OR_ID of a model fine-tuned "
        "with a CTC head (config.json lists a ...ForCTC architecture; decoding greedy over its vocab.json)",
    )
    s.add_argument("--cuts", type=Path, required=True)
    s.add_argument("--test-set", required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.add_argument("--method", default="zero-shot-whisper")
    s.add_argument("--data", default="0")
    s.add_argument("--results", type=Path, default=None, help="results.tsv to add the row to")
    s.add_argument("--device", default="")
    s.add_argument("--spell-digits", action="store_true", help="score '7' as 'seven' (references that spell digits)")
    s.add_argument("--language", default="", help="multilingual models: the language to transcribe (e.g. ga)")
    s.add_argument(
        "--text-norm",
        choices=("tts", "import"),
        default="tts",
        help="how references and hypotheses are normalized: the built-in corpora's (tts) or the importers' "
        "(import: corpora of speechtl prepare folder/kaldi/commonvoice)",
    )
    s.add_argument(
        "--text-norm-config",
        type=Path,
        default=None,
        help="with --text-norm import: the <prefix>_text_norm.json the import wrote (its keep/drop/map options)",
    )
    s.add_argument(
        "--skip-unavailable",
        type=_bool,
        default=False,
        help="a source that cannot give the row (an OpenAI .pt, no tokenizer files, an old generation config): "
        "a warning and no row instead of an error (what recipes pass, so their other results stand); an hf: "
        "model without a CTC head of its own: no row, said at info level",
    )
    s.set_defaults(func=cmd_zero_shot)

    s = sub.add_parser(
        "sweep",
        help="tune a method's options on the dev set at a fixed budget (num_steps); write them into a conf YAML",
    )
    s.add_argument("--config", type=Path, required=True, help="the recipe's adapt conf (methods: {name: ...})")
    s.add_argument("--method", required=True)
    s.add_argument(
        "--space",
        action="append",
        metavar="train.KEY=V1,V2|option.KEY=V1,V2",
        help="values to search (repeatable): train options (train.lr=...) or method options (option.dim=...)",
    )
    s.add_argument(
        "--space-file", type=Path, default=None, help="YAML {method: {train.KEY: [values], option.KEY: [values]}}"
    )
    s.add_argument("--trials", type=int, default=0, help="0: the whole grid; N: N seeded random points of it")
    s.add_argument("--seed", type=int, default=0, help="which random points --trials draws")
    s.add_argument(
        "--train-seeds",
        type=int,
        nargs="+",
        default=None,
        help="train every candidate once per training seed; its dev errors are summed over them",
    )
    s.add_argument("--num-steps", type=int, default=0, help="updates per candidate (default: the conf's num_steps)")
    s.add_argument("--lang-dir", type=Path, required=True)
    s.add_argument(
        "--train-cuts",
        type=Path,
        required=True,
        action="append",
        help="repeat with as many --dev-cuts for folds (e.g. one per held-out speaker): the K-th of each pair up",
    )
    s.add_argument(
        "--dev-cuts", type=Path, required=True, action="append", help="the dev set: the only set the sweep decodes"
    )
    s.add_argument("--dev-set", default="dev", help="its name in the trials' decode files")
    s.add_argument("--decoding", default="greedy", help="how the dev set is decoded: greedy,beam,hlg,hlg-lattice")
    s.add_argument("--source-checkpoint", type=Path, default=None)
    s.add_argument("--unlabelled-cuts", type=Path, default=None, action="append", help="one per fold, if any")
    s.add_argument("--source-cuts", type=Path, default=None)
    s.add_argument("--exp-dir", type=Path, required=True, help="trial-NN/ runs and sweep.tsv go here")
    s.add_argument(
        "--output", type=Path, required=True, help="conf YAML to write the chosen options into (e.g. conf/tuned.yaml)"
    )
    s.add_argument("--device", default="")
    s.set_defaults(func=cmd_sweep)

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

    s = sub.add_parser(
        "conf-key",
        help="a digest of what METHOD reads from an adapt conf (every section but methods, and methods.METHOD), "
        "and init=SIZE-MTIME of its train.init_param files: the recipes' .done key, so editing one method's options "
        "(or retraining its init file) retrains only it",
    )
    s.add_argument("--config", type=Path, required=True)
    s.add_argument("--method", required=True)
    s.set_defaults(func=cmd_conf_key)

    s = sub.add_parser(
        "tuned-conf",
        help="rebuild a tuned conf from its base conf as it is now, keeping the options chosen for the methods "
        "it records as tuned (its '# sweep: METHOD:' lines), except --drop's (steps/tune.sh: their choice is stale)",
    )
    s.add_argument("--config", type=Path, required=True, help="the base adapt conf")
    s.add_argument("--output", type=Path, required=True, help="the tuned conf (created from the base if missing)")
    s.add_argument("--drop", nargs="*", default=[], metavar="METHOD")
    s.set_defaults(func=cmd_tuned_conf)

    s = sub.add_parser(
        "rest-split",
        help="what --labelled-shots shots per (speaker, transcript) leave of a pool: the last --dev-shots "
        "of each class as a dev set, the others untranscribed (texts removed)",
    )
    s.add_argument("--cuts", type=Path, required=True)
    s.add_argument("--labelled-shots", type=int, required=True, help="the largest shot amount the recipe uses")
    s.add_argument("--dev-shots", type=int, required=True, help="dev utterances per (speaker, transcript) class")
    s.add_argument("--dev-output", type=Path, required=True)
    s.add_argument("--unlabelled-output", type=Path, required=True)
    s.add_argument("--seed", type=int, default=0, help="the seed the shot subsets were drawn with")
    s.set_defaults(func=cmd_rest_split)

    s = sub.add_parser(
        "holdout",
        help="leave-one-speaker-out: the other speakers' cuts to train on, and the held-out speaker's "
        "test, dev and untranscribed parts (disjoint)",
    )
    s.add_argument("--cuts", type=Path, required=True, action="append", help="cut manifests (repeatable; unioned)")
    s.add_argument("--speaker", required=True)
    s.add_argument("--output-dir", type=Path, required=True, help="train/test/dev/unlabelled/own.jsonl.gz go here")
    s.add_argument("--test-fraction", type=float, default=0.2)
    s.add_argument("--dev-fraction", type=float, default=0.1, help="labelled, for choosing options only")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_holdout)

    s = sub.add_parser(
        "folds",
        help="k-fold dev sets from a training pool (a corpus without a dev set): prints each fold's "
        "train and dev manifests, for speechtl sweep's --train-cuts/--dev-cuts pairs",
    )
    s.add_argument("--cuts", type=Path, required=True, action="append", help="cut manifests (repeatable; unioned)")
    s.add_argument("--k", type=int, default=3)
    s.add_argument("--by", choices=("recording", "speaker"), default="recording", help="what a fold is made of")
    s.add_argument("--output-dir", type=Path, required=True, help="train_f<k>/dev_f<k>.jsonl.gz go here")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_folds)

    s = sub.add_parser("speakers", help="print the speakers of cut manifests, space-separated")
    s.add_argument("--cuts", type=Path, required=True, action="append")
    s.set_defaults(func=cmd_speakers)

    s = sub.add_parser(
        "pool-sets",
        help="rows over several test sets together (the leave-one-speaker-out mean): summed errors, "
        "a bootstrap interval over all their utterances",
    )
    s.add_argument("--results", type=Path, required=True)
    s.add_argument("--sets", required=True, help="the test sets, space-separated (e.g. 'test_a test_b')")
    s.add_argument("--name", required=True, help="the pooled rows' test_set (e.g. test_loso_mean)")
    s.add_argument("--out-dir", type=Path, default=None, help="per-utterance files (default: <results dir>/pooled)")
    s.set_defaults(func=cmd_pool_sets)

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
    s.add_argument(
        "--results", type=Path, default=Path("exp/results.tsv"), help="the rows to report (decode writes them)"
    )
    s.add_argument(
        "--results-md", type=Path, default=Path("RESULTS.md"), help="the tables, intervals and tests written"
    )
    s.add_argument("--title", default="Results", help="RESULTS.md's first line")
    s.add_argument(
        "--plot", type=Path, default=None, help="WER against target data, e.g. exp/plots/data_efficiency.png"
    )
    s.add_argument("--test-set", default="test")
    s.add_argument("--decoding", default="hlg", help="the plot's decoding; auto: the best on --choose-on rows")
    s.add_argument("--choose-on", default="dev", help="--decoding auto: the test set it is chosen on")
    s.add_argument(
        "--baselines", nargs="+", default=None, help="methods every row is paired with (default: scratch finetune)"
    )
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("transcribe", help="print 'file<TAB>words' for each audio file (any rate, mono or stereo)")
    s.add_argument("--model-dir", type=Path, default=None, help="experiment dir with final.pt, or a checkpoint")
    s.add_argument("--lang-dir", type=Path, default=None)
    s.add_argument("--onnx", type=Path, default=None, help="transcribe with sherpa-onnx from this export-onnx dir")
    s.add_argument("--int8", type=_bool, default=False, help="--onnx: use model.int8.onnx")
    s.add_argument("--num-threads", type=int, default=1, help="--onnx: onnxruntime threads")
    s.add_argument("--decoding", default="hlg", choices=["hlg", "greedy"])
    s.add_argument("--device", default="")
    s.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="longer recordings are decoded in pieces of at most this length, split at pauses (default: 30, "
        "the longest utterance speechtl validate lets into training; 0: only where the model needs it, "
        "e.g. Whisper's 30 s)",
    )
    s.add_argument(
        "--segments",
        type=_bool,
        default=False,
        help="print 'file<TAB>start<TAB>end<TAB>words' per piece (seconds) instead of one line per file",
    )
    s.add_argument(
        "--textgrid-dir",
        type=Path,
        default=None,
        help="also write DIR/<stem>.TextGrid per file: its pieces' words on a tier 'speechtl' (Praat, ELAN)",
    )
    s.add_argument("files", type=Path, nargs="+", help="audio files, or folders of them (searched recursively)")
    s.set_defaults(func=cmd_transcribe)

    s = sub.add_parser(
        "vtln",
        help="test-time VTLN: a checkpoint -> the same model with one warp factor for a new voice, "
        "chosen on that voice's untranscribed cuts (no training)",
    )
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--cuts", type=Path, required=True, help="the new speaker's cuts (transcripts unused)")
    s.add_argument("--output", type=Path, required=True, help="the warped checkpoint (+ OUTPUT-stem.vtln.tsv)")
    s.add_argument("--criterion", default="entropy", choices=["entropy", "best-path"])
    s.add_argument("--low", type=float, default=0.8)
    s.add_argument("--high", type=float, default=1.2)
    s.add_argument("--step", type=float, default=0.02)
    s.add_argument("--max-utterances", type=int, default=300)
    s.add_argument("--device", default="")
    s.set_defaults(func=cmd_vtln)

    s = sub.add_parser(
        "new-recipe", help="write egs/NAME/ASR/ for your own corpus: import, fbank, units, adapt, decode, report"
    )
    s.add_argument("name", help="the recipe's name, e.g. the language: egs/NAME/ASR")
    s.add_argument("--corpus", required=True, help="the importer: folder, kaldi, commonvoice, librispeech, ...")
    s.add_argument("--corpus-dir", type=Path, required=True, help="your recordings and transcripts")
    s.add_argument(
        "--source",
        default="",
        help="the source model: a checkpoint (exp/source/final.pt), whisper:PATH_OR_ID or hf:PATH_OR_ID "
        "(wav2vec2, HuBERT, WavLM, XLS-R)",
    )
    s.add_argument("--lm-text", type=Path, default=None, help="more text for the word LM, one sentence a line")
    s.add_argument("--methods", nargs="+", default=None, help="adaptation methods (default: scratch, finetune family)")
    s.add_argument("--minutes", type=float, nargs="+", default=None, help="nested amounts (default: 5 15 30 60)")
    s.add_argument(
        "--prepare-opts",
        default="",
        help="more options of speechtl prepare, one string: --prepare-opts='--language sw'",
    )
    s.add_argument("--validate-opts", default="", help="more options of speechtl validate: --validate-opts='--nj 8'")
    s.add_argument("--skip-bad", action="store_true", help="leave bad audio/text out (data/manifests/bad_audio.txt)")
    s.add_argument("--speed-perturb", default="0.9 1.1", help="speed factors of extra train copies ('' = none)")
    s.add_argument("--units", default="auto", choices=["auto", "char", "bpe"], help="auto: by the text's size")
    s.add_argument("--egs-dir", type=Path, default=Path("egs"))
    s.add_argument("--force", action="store_true", help="rewrite an existing recipe's files (data/, exp/ kept)")
    s.set_defaults(func=cmd_new_recipe)

    s = sub.add_parser("recipe-info", help="what a generated recipe's stages ask (speechtl.recipe.info)")
    s.add_argument(
        "what",
        choices=["features", "units", "amounts", "text", "lm-text", "sources", "methods", "import-rules", "corpus-key"],
    )
    s.add_argument("--corpus-dir", type=Path, default=None, help="corpus-key: the corpus folder")
    s.add_argument("--prepare-opts", default="", help="corpus-key: the import's options (files they name count too)")
    s.add_argument("names", nargs="*", default=[], help="methods: the method names to check")
    s.add_argument("--source", default="", help="features: the source model")
    s.add_argument("--text", type=Path, default=None, help="units: the training text; lm-text: the text")
    s.add_argument("--units", default="auto", choices=["auto", "char", "bpe"])
    s.add_argument("--vocab-size", type=int, default=0, help="units: BPE pieces (0: from the text's size)")
    s.add_argument("--min-words", type=int, default=50000, help="units: BPE from this many words")
    s.add_argument("--cuts", type=Path, default=None, help="amounts: the labelled pool")
    s.add_argument("--minutes", type=float, nargs="*", default=[], help="amounts: minutes asked for")
    s.add_argument("--output-prefix", type=Path, default=None, help="amounts: write <prefix>_<label>.jsonl.gz")
    s.add_argument("--supervisions", type=Path, default=None, help="text: a supervision manifest")
    s.add_argument("--output", type=Path, default=None, help="text, lm-text: the file written")
    s.add_argument("--text-norm-config", type=Path, default=None, help="lm-text: the import's <prefix>_text_norm.json")
    s.add_argument("--egs-dirs", type=Path, nargs="*", default=[Path("egs")], help="sources: where to look")
    s.set_defaults(func=cmd_recipe_info)
    return p


def _terminate_as_interrupt() -> None:
    """SIGTERM (kill, a job runner stopping a step) ends the command as Ctrl-C does: its cleanup runs
    (Slurm jobs cancelled, the interrupted line said) instead of a silent death. In a forked worker
    (a pool's), the default: it dies."""
    import os
    import signal

    me = os.getpid()

    def handler(signum, frame):
        if os.getpid() != me:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(getattr(args, "log_file", None))
    if argv is None:  # the console command (not a test calling main in its own process)
        _terminate_as_interrupt()
    try:
        args.func(args)
    except SpeechtlError as e:
        logging.error(str(e))
        return 1
    # Ctrl-C or SIGTERM: a line, not a traceback; writes are atomic, so nothing half-written stays
    except KeyboardInterrupt:
        logging.error(
            "interrupted: what was finished is kept. Run the same command again to go on (a training resumes "
            "from its last epoch checkpoint, a recipe skips the stages its .done markers say are done)"
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
