"""Tune a method's options on the dev set at a fixed compute budget; never look at test.

``speechtl sweep`` trains one run per candidate (every point of a grid, or ``trials``
seeded random points of it) through ``speechtl train``'s own code path, each for the
same number of updates (``num_steps``: the budget every method gets, so a method cannot
win by training longer), decodes the dev set only, and writes the candidate with the
lowest dev WER into a conf YAML in the recipe's adapt.yaml format (``methods: {name:
{options, train, model}}``, see :func:`speechtl.cli.cmd_train`). The recipe then trains with
that conf and decodes test once, with the chosen options only: the choice of options
cannot fit the test set, and a method's reported number is not its best of many.

A search space names where each option goes: ``train.lr=0.001,0.003`` (a
:class:`speechtl.train.TrainConfig` field), ``option.bottom_layers=1,2`` (a method
option) or ``model.layer_mix=false,true`` (a :class:`speechtl.models.ModelConfig` field,
written into the method's own ``model`` entry); values are typed as YAML. Ties go to the earlier candidate in grid order.
Methods with their own outer loop (reptile, fomaml, ssl) count their steps in their
options; the budget binds only the Trainer's updates.

Seeds: with ``train_seeds`` every candidate trains once per training seed (``seed-S``) and
is scored by its errors over all of them, so the choice is not the lr at which one seed
happened to leave CTC's all-blank plateau.

Folds (cross-validation): with several train/dev pairs (leave-one-speaker-out: each
held-out speaker's training data and its dev part), every candidate trains once per
fold (``trial-NN/fold-K``) and is scored by its errors over all the folds' dev sets
together, so one option set is chosen for every fold and no fold's test is looked at.
"""

import functools
import hashlib
import itertools
import json
import logging
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from speechtl.atomic import atomic_path
from speechtl.config import load_yaml
from speechtl.errors import SpeechtlError

#: Where a search-space key goes: a train option, a method option, or a model option of the method.
PREFIXES = {"train": "train", "option": "options", "model": "model"}
#: Train options a sweep may not vary: the budget is fixed, and a seed is not an option to tune.
FIXED = ("num_steps", "num_epochs", "seed")
SWEEP_TSV_HEADER = ["trial", "dev_wer", "errors", "words", "options", "train", "model"]


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: method options, train overrides and model options."""

    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        items = [f"option.{k}={v}" for k, v in self.options.items()] + [f"train.{k}={v}" for k, v in self.train.items()]
        items += [f"model.{k}={v}" for k, v in self.model.items()]
        return " ".join(items) or "(the conf's options)"


@dataclass
class Trial:
    index: int
    candidate: Candidate
    dev_wer: float
    errors: int
    words: int
    exp_dir: Path


def _check_key(key: str, where: str) -> None:
    prefix, dot, name = key.partition(".")
    if not dot or prefix not in PREFIXES or not name:
        raise SpeechtlError(
            f"{where}: a search key is train.KEY, option.KEY or model.KEY, got {key!r}. "
            "Fix: e.g. --space train.lr=0.001,0.003 --space option.bottom_layers=1,2 --space model.layer_mix=false,true"
        )
    if prefix == "model" and name not in model_defaults():
        raise SpeechtlError(
            f"{where}: model.{name} is no model option. Fix: one of "
            + ", ".join(f"model.{k}" for k in model_defaults())
        )
    if prefix == "train" and name in FIXED:
        raise SpeechtlError(
            f"{where}: train.{name} is not searched (the budget is --num-steps for every "
            "candidate; to score each candidate over several seeds use --train-seeds). Fix: leave it out of the space."
        )


def parse_space(items: Sequence[str], space: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
    """``["train.lr=0.001,0.003", "option.dim=16,32"]`` -> ``{"train.lr": [0.001, 0.003], ...}``,
    added to ``space`` (e.g. from :func:`load_space`)."""
    space = dict(space or {})
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise SpeechtlError(f"--space takes train.KEY=V1,V2, option.KEY=V1,V2 or model.KEY=V1,V2, got {item!r}")
        _check_key(key, f"--space {item!r}")
        if key in space:
            raise SpeechtlError(f"--space names {key} twice. Fix: list all its values once: {key}=V1,V2")
        space[key] = [yaml.safe_load(v) for v in values.split(",")]
    return space


def load_space(path: Path, method: str) -> dict[str, list[Any]]:
    """``method``'s space from a YAML file of ``{method: {train.KEY: [values], option.KEY: [values]}}``."""
    spaces = load_yaml(path)
    if method not in spaces:
        raise SpeechtlError(f"{path} has no search space for {method}. Fix: add '{method}: {{train.lr: [...]}}'.")
    space = spaces[method] or {}
    if not isinstance(space, dict):
        raise SpeechtlError(
            f"{path} [{method}]: expected a mapping of train.KEY/option.KEY/model.KEY to lists of values"
        )
    for key, values in space.items():
        _check_key(key, f"{path} [{method}]")
        if not isinstance(values, list) or not values:
            raise SpeechtlError(f"{path} [{method}.{key}]: expected a non-empty list of values, got {values!r}")
    return {k: list(v) for k, v in space.items()}


def candidates(space: dict[str, list[Any]], trials: int = 0, seed: int = 0) -> list[Candidate]:
    """Every point of the grid (``trials`` 0 or at least its size), else ``trials`` distinct
    points drawn with ``seed``, in grid order."""
    keys = list(space)
    grid = list(itertools.product(*(space[k] for k in keys)))
    if 0 < trials < len(grid):
        grid = [grid[i] for i in sorted(random.Random(seed).sample(range(len(grid)), trials))]
    out = []
    for values in grid:
        parts: dict[str, dict[str, Any]] = {"options": {}, "train": {}, "model": {}}
        for key, v in zip(keys, values, strict=True):
            prefix, _, name = key.partition(".")
            parts[PREFIXES[prefix]][name] = v
        out.append(Candidate(parts["options"], parts["train"], parts["model"]))
    return out


def best_trial(trials: Sequence[Trial]) -> Trial:
    """The lowest dev WER; on a tie, the earlier candidate."""
    if not trials:
        raise SpeechtlError("the sweep ran no trial. Fix: give at least one --space value.")
    return min(trials, key=lambda t: (t.dev_wer, t.index))


def budget_of(conf: dict[str, Any], method: str, num_steps: int | None, where: Path) -> int:
    """The sweep's budget: ``num_steps`` or the conf's train.num_steps; a method that sets its
    own num_steps would break the equal budget."""
    budget = num_steps or int((conf.get("train") or {}).get("num_steps") or 0)
    if budget <= 0:
        raise SpeechtlError(
            f"{where}: no compute budget: train.num_steps is 0. Fix: set train.num_steps (the same for "
            "every method) or give --num-steps."
        )
    own = (((conf.get("methods") or {}).get(method) or {}).get("train") or {}).get("num_steps")
    if own is not None and own != budget:
        raise SpeechtlError(
            f"{where}: methods.{method}.train.num_steps is {own}, not the budget {budget}. "
            "Fix: remove it, so every method trains for the same number of updates."
        )
    return budget


def _flag(value: Any) -> str:
    """A value as ``--set``/``--option`` read it back (YAML; JSON is YAML). Floats keep a
    decimal point before their exponent: YAML 1.1 reads ``5e-05`` as text, ``5.0e-05`` as a float."""
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(value, list):
        return "[" + ", ".join(_flag(v) for v in value) + "]"
    return json.dumps(value)


@dataclass(frozen=True)
class Fold:
    """One train/dev pair of a sweep: its training flags and its dev decoding."""

    train_argv: tuple[str, ...]
    dev: dict[str, Any] = field(hash=False)
    subdir: str = ""  # "" for a one-fold sweep: trial-NN/ itself
    #: What the run reads beyond its flags (:func:`_inputs_fingerprint`): part of a trial's key.
    inputs: str = ""
    #: The same by size and mtime, as trials were keyed before 2026-12-06: such a trial is kept.
    legacy_inputs: str = ""


def _content_digest(path: Path) -> str:
    """sha1 of a file's bytes, or of a directory's files (relative names and bytes), in order.
    Content, not size and mtime: a model directory copied or unpacked again (a fresh machine, a
    re-provisioned share, a hub cache filled anew) has new mtimes and the same weights, and its
    finished trials stay valid. Hashing a checkpoint costs seconds; a trial costs minutes."""
    files = sorted(q for q in path.rglob("*") if q.is_file() and not _hidden(q, path)) if path.is_dir() else [path]
    names = tuple(str(q.relative_to(path)) if path.is_dir() else "" for q in files)
    stats = tuple((st.st_size, st.st_mtime_ns) for st in map(Path.stat, files))
    return _digest_of(tuple(str(q) for q in files), names, stats)


def _hidden(q: Path, root: Path) -> bool:
    """Below a dot-folder or a dot-file: huggingface-cli's .cache/ (download times), .git/."""
    return any(part.startswith(".") for part in q.relative_to(root).parts)


@functools.lru_cache(maxsize=64)
def _digest_of(files: tuple[str, ...], names: tuple[str, ...], stats: tuple) -> str:
    """:func:`_content_digest`'s hash, once a process per files, names, sizes and mtimes: each fold
    of a sweep asks for the source's digest again, and a large checkpoint takes seconds to read."""
    del stats  # part of the cache key only
    h = hashlib.sha1()
    for q, name in zip(files, names, strict=True):
        h.update(f"{name}\0".encode())
        with open(q, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _inputs_fingerprint(config: Path, method: str, paths: Sequence[Path | str | None], legacy: bool = False) -> str:
    """The method's view of the conf (speechtl conf-key) and each local file's content.
    A finished trial is reused only when its flags *and* these are the same: the flags name
    the conf, the cuts and the source by path, and a path can keep its name while its content
    changes (an edited conf, a retrained source, a re-split dev set)."""
    from speechtl.config import method_digest

    parts = [method_digest(load_yaml(config), method)]
    for p in paths:
        if p is None:
            continue
        q = Path(str(p).split(":", 1)[1] if str(p).startswith(("whisper:", "hf:")) else p)
        if legacy:
            st = q.stat() if q.exists() else None
            parts.append(f"{p}:{st.st_size}:{st.st_mtime_ns}" if st else f"{p}:absent")
        else:
            parts.append(f"{p}:{_content_digest(q)}" if q.exists() else f"{p}:absent")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _drop_resume_state(run_dir: Path) -> None:
    """Delete a finished trial's resume state: its epoch checkpoints (with optimizer state) and
    checkpoint-last.pt. A trial is scored once and never trained on, and a sweep of N points would
    otherwise keep N times a training's checkpoints (about 0.5 GB a trial for whisper-tiny); the
    model it is scored with, final.pt and what it points to, stays."""
    final = (run_dir / "final.pt").resolve()
    for p in [*run_dir.glob("epoch-*.pt"), *run_dir.glob("avg-*.pt"), run_dir / "checkpoint-last.pt"]:
        if p.exists() and p.resolve() != final:
            p.unlink()


def _run_fold(index: int, cand: Candidate, fold: Fold, budget: int, trial_dir: Path):
    from speechtl.cli import build_parser
    from speechtl.decode.run import decode_test_set

    run_dir = trial_dir / fold.subdir if fold.subdir else trial_dir
    argv = [*fold.train_argv, "--exp-dir", str(run_dir), "--set", f"num_steps={budget}"]
    argv += [a for k, v in cand.train.items() for a in ("--set", f"{k}={_flag(v)}")]
    argv += [a for k, v in cand.options.items() for a in ("--option", f"{k}={_flag(v)}")]
    argv += [a for k, v in cand.model.items() for a in ("--model", f"{k}={_flag(v)}")]
    key = hashlib.sha1(json.dumps([argv, fold.dev["cuts_path"], fold.inputs], default=str).encode()).hexdigest()
    marker = run_dir / ".sweep-key"
    legacy = json.dumps([argv, fold.dev["cuts_path"], fold.legacy_inputs], default=str)
    if fold.legacy_inputs and marker.is_file() and marker.read_text() == hashlib.sha1(legacy.encode()).hexdigest():
        marker.write_text(key)  # keyed by size and mtime before: the same inputs, kept under the new key
    if marker.is_file() and marker.read_text() != key:
        shutil.rmtree(run_dir)  # another candidate's run: do not resume it
    if not (marker.is_file() and (run_dir / "final.pt").exists()):
        where = f" fold {fold.subdir}" if fold.subdir else ""
        logging.info(f"sweep trial {index}{where}: {cand.describe()} ({budget} updates) -> {run_dir}")
        run_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(key)
        args = build_parser().parse_args(argv)
        args.func(args)
        _drop_resume_state(run_dir)
    (row,) = decode_test_set(run_dir / "final.pt", out_dir=run_dir / "decode", **fold.dev)
    return row


def _run_trial(index: int, cand: Candidate, folds: Sequence[Fold], budget: int, exp_dir: Path) -> Trial:
    trial_dir = exp_dir / f"trial-{index:02d}"
    rows = [_run_fold(index, cand, f, budget, trial_dir) for f in folds]
    errors, words = sum(r.errors for r in rows), sum(r.words for r in rows)
    wer = 100.0 * errors / words if words else 0.0
    logging.info(
        f"sweep trial {index}: dev WER {wer:.2f}% ({errors}/{words}"
        + (f", {len(rows)} runs)" if len(rows) > 1 else ")")
    )
    return Trial(index, cand, wer, errors, words, trial_dir)


NOTE_PREFIX = "# sweep: "


def _notes(out: Path) -> dict[str, str]:
    """A tuned conf's ``# sweep: <method>: ...`` lines, by method, in file order."""
    out = Path(out)
    if not out.is_file():
        return {}
    lines = out.read_text(encoding="utf-8").splitlines()
    return {line[len(NOTE_PREFIX) :].split(":", 1)[0]: line for line in lines if line.startswith(NOTE_PREFIX)}


def tuned_methods(out: Path) -> list[str]:
    """The methods a tuned conf records as tuned: its ``# sweep: <method>: ...`` lines."""
    return list(_notes(out))


def _rebuilt(base: Path, out: Path, drop: Sequence[str]) -> tuple[dict, list[str]]:
    """``base`` as it is now, with the entries of the methods ``out`` records as tuned (less
    ``drop``) carried over, and the train.num_steps budget they were chosen at; the kept notes."""
    conf = load_yaml(base)
    conf["methods"] = dict(conf.get("methods") or {})
    recorded = _notes(out)
    keep = [m for m in recorded if m not in set(drop)]
    if keep:
        prev = load_yaml(out)
        old = prev.get("methods") or {}
        for m in keep:
            conf["methods"][m] = old.get(m) or {}
        steps = (prev.get("train") or {}).get("num_steps")
        if steps is not None:
            conf["train"] = {**(conf.get("train") or {}), "num_steps": steps}
    return conf, [recorded[m] for m in keep]


def _write(out: Path, conf: dict, notes: list[str]) -> None:
    with atomic_path(out) as tmp:
        tmp.write_text("".join(n + "\n" for n in notes) + yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")


def _locked(out: Path):
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    lock = open(out.with_name(out.name + ".lock"), "w")  # noqa: SIM115 (the caller's with closes it)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def refresh_tuned_config(base: Path, out: Path, drop: Sequence[str] = ()) -> Path:
    """Rebuild ``out`` from ``base`` as it is now, keeping the chosen options of the methods
    ``out`` records as tuned, except ``drop`` (whose choice is stale: they fall back to the
    base's options until swept again). Why rebuild: an edit of the base (another method's
    options, a new method, the train section) must reach the tuned conf without sweeping
    the methods it does not concern, and a stale choice must not outlive its base."""
    out = Path(out)
    with _locked(out):
        conf, notes = _rebuilt(base, out, drop)
        _write(out, conf, notes)
    return out


def model_defaults() -> dict[str, Any]:
    """What a model option is when no conf sets it (a chosen ``layer_mix: false`` is no change)."""
    from speechtl.models import ModelConfig

    return ModelConfig().to_dict()


def write_tuned_config(base: Path, out: Path, method: str, chosen: Candidate, budget: int, note: str) -> Path:
    """``out`` rebuilt from ``base`` (:func:`refresh_tuned_config`) with methods.<method> set to
    the base's own options and train overrides updated by those of ``chosen``'s that differ
    from what the method runs with already, and train.num_steps
    set to the budget the options were chosen at (the one every method then trains for).
    Sweeps of several methods may run at once (steps/tune.sh --nj): the read-modify-write
    holds a lock beside ``out``, so no method's choice is lost."""
    out = Path(out)
    with _locked(out):
        conf, notes = _rebuilt(base, out, [method])
        conf["train"] = {**(conf.get("train") or {}), "num_steps": budget}
        entry = dict(conf["methods"].get(method) or {})
        # A chosen value the method already runs with is not written again: the method's
        # conf-key (its .done) stays the same, so a system trained with it is not trained twice.
        now = {
            "options": entry.get("options") or {},
            "train": {**conf["train"], **(entry.get("train") or {})},
            "model": {**model_defaults(), **(conf.get("model") or {}), **(entry.get("model") or {})},
        }
        for part in ("options", "train", "model"):
            new = {k: v for k, v in getattr(chosen, part).items() if k not in now[part] or now[part][k] != v}
            merged = {**(entry.get(part) or {}), **new}
            if merged:
                entry[part] = merged
        conf["methods"][method] = entry
        _write(out, conf, [*notes, f"{NOTE_PREFIX}{method}: {note}"])
    return out


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, list | tuple) else [x]


def sweep(
    config: Path,
    method: str,
    space: dict[str, list[Any]],
    lang_dir: Path,
    train_cuts: Path | Sequence[Path],
    dev_cuts: Path | Sequence[Path],
    exp_dir: Path,
    output: Path,
    num_steps: int | None = None,
    trials: int = 0,
    seed: int = 0,
    source_checkpoint: Path | None = None,
    unlabelled_cuts: Path | Sequence[Path] | None = None,
    source_cuts: Path | None = None,
    decoding: str = "greedy",
    dev_set: str = "dev",
    device: str | None = None,
    train_seeds: Sequence[int] = (),
) -> tuple[Trial, list[Trial]]:
    """Train and dev-decode every candidate, write ``exp_dir``/sweep.tsv and the chosen
    options into ``output``; returns (the chosen trial, every trial). Test is not touched.

    Several ``train_cuts`` with as many ``dev_cuts`` (and ``unlabelled_cuts``, if any) are
    folds: the K-th of each belong together, and a candidate's dev WER is over all folds.
    ``train_seeds``: each fold trains once per seed (the conf's seed when empty), and the dev
    WER is over all of them."""
    config, exp_dir = Path(config), Path(exp_dir)
    trains, devs, unls = _as_list(train_cuts), _as_list(dev_cuts), _as_list(unlabelled_cuts)
    if not trains or len(trains) != len(devs) or (unls and len(unls) != len(trains)):
        raise SpeechtlError(
            f"sweep: {len(trains)} --train-cuts, {len(devs)} --dev-cuts and {len(unls)} --unlabelled-cuts. "
            "Fix: one dev set (and one unlabelled set, if any) per training set: the K-th of each form a fold."
        )
    budget = budget_of(load_yaml(config), method, num_steps, config)
    cands = candidates(space, trials, seed)
    folds = []
    for k, (train, dev_path) in enumerate(zip(trains, devs, strict=True)):
        argv = ["train", "--config", str(config), "--method", method, "--lang-dir", str(lang_dir)]
        argv += ["--train-cuts", str(train)]
        for flag, path in (
            ("--source-checkpoint", source_checkpoint),
            ("--unlabelled-cuts", unls[k] if unls else None),
            ("--source-cuts", source_cuts),
        ):
            if path is not None:
                argv += [flag, str(path)]
        dev = dict(
            lang_dir=lang_dir,
            cuts_path=dev_path,
            test_set=dev_set,
            decodings=[decoding],
            method=method,
            data="sweep",
            device=device,
        )
        fold_dir = f"fold-{k}" if len(trains) > 1 else ""
        read = [
            train,
            dev_path,
            unls[k] if unls else None,
            source_cuts,
            source_checkpoint,
            Path(lang_dir) / "tokens.txt",
        ]
        inputs = _inputs_fingerprint(config, method, read)
        legacy_inputs = _inputs_fingerprint(config, method, read, legacy=True)
        for s in train_seeds or [None]:
            seeded = argv if s is None else [*argv, "--set", f"seed={int(s)}"]
            sub = "/".join(p for p in (fold_dir, "" if s is None else f"seed-{int(s)}") if p)
            folds.append(Fold(tuple(seeded), dev, sub, inputs, legacy_inputs))
    done, failed = [], []
    for i, c in enumerate(cands):
        try:
            done.append(_run_trial(i, c, folds, budget, exp_dir))
        except SpeechtlError as e:  # a value this model cannot take (bottom_layers 3 of 2 layers): the others run
            logging.warning(
                f"sweep {method} trial {i} ({c.describe()}) cannot run and is left out of the choice: {e}. "
                "Fix, to stop trying it: take the value out of the search space (the recipe's conf/sweep*.yaml)"
            )
            failed.append((i, c, str(e)))
    if not done:
        raise SpeechtlError(
            f"sweep {method}: none of the {len(cands)} candidate(s) could run; the first said: {failed[0][2]}"
        )
    best = best_trial(done)
    with open(exp_dir / "sweep.tsv", "w", encoding="utf-8") as f:
        f.write("\t".join(SWEEP_TSV_HEADER) + "\n")
        for t in done:
            f.write(
                f"{t.index}\t{t.dev_wer:.2f}\t{t.errors}\t{t.words}\t{json.dumps(t.candidate.options)}\t"
                f"{json.dumps(t.candidate.train)}\t{json.dumps(t.candidate.model)}\n"
            )
    dev_names = ", ".join(map(str, devs))
    note = (
        f"{best.candidate.describe()} chosen on {dev_set} ({dev_names}, {decoding} WER {best.dev_wer:.2f}%) "
        f"from {len(done)} candidate(s) at {budget} updates each"
        + (f" over {len(trains)} folds" if len(trains) > 1 else "")
        + (f" x {len(train_seeds)} training seeds" if train_seeds else "")
        + (f" ({len(failed)} more could not run: {', '.join(c.describe() for _, c, _ in failed)})" if failed else "")
        + f"; see {exp_dir / 'sweep.tsv'}"
    )
    write_tuned_config(config, output, method, best.candidate, budget, note)
    logging.info(f"sweep {method}: {note} -> {output}")
    return best, done
