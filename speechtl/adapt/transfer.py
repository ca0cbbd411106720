"""Initialize a target model from a source checkpoint (ESPnet's --init-param idea).

Parameters whose names and shapes match are copied; mismatches are skipped
and reported, never fatal. The output layer is matched by unit *symbol*:
the row of every target unit that the source also has (``<blk>``, shared
letters or pieces) is copied from the source, the other rows keep their fresh
initialization. This is vocabulary transfer when source and target units differ.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from speechtl.data.normalize import SAME_LETTER
from speechtl.errors import SpeechtlError
from speechtl.models.pretrained import build_pretrained, parse_source
from speechtl.train.checkpoint import load_checkpoint

OUTPUT = "output."


@dataclass
class TransferReport:
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    shared_units: int = 0
    new_units: list[str] = field(default_factory=list)
    same_letter: dict[str, str] = field(default_factory=dict)  # new target unit -> the source unit it starts as


def same_letter_unit(unit: str, source_tokens: dict[str, int]) -> str | None:
    """The source's spelling of ``unit`` when it writes the same letters another way: Romanian's ş/ș
    and ţ/ț (:data:`~speechtl.data.normalize.SAME_LETTER`; the import joins them to the comma below,
    a source trained on legacy text has the cedilla), or the other case of a cased source. None: no
    such unit. A letter that is only similar (á and a) is a new unit: its sound may differ."""
    for candidate in (unit.translate(SAME_LETTER), unit.lower(), unit.upper()):
        if candidate != unit and candidate in source_tokens:
            return candidate
    return None


def init_from_source(
    model: torch.nn.Module,
    checkpoint: Path | dict,
    source_tokens: dict[str, int],
    target_tokens: dict[str, int],
    exclude: Sequence[str] = (),
) -> TransferReport:
    """Load ``checkpoint`` (a path or a loaded checkpoint) into ``model``; output rows mapped by unit symbol.

    ``exclude``: parameter-name prefixes to leave at their fresh values.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    source = ckpt["model"]
    own = model.state_dict()
    report = TransferReport()
    for name, value in source.items():
        if name.startswith(OUTPUT) or any(name.startswith(p) for p in exclude):
            continue
        if name in own and own[name].shape == value.shape:
            own[name] = value.clone()
            report.copied.append(name)
        else:
            report.skipped.append(name)
    if not any(OUTPUT.startswith(p) or p.startswith(OUTPUT) for p in exclude):
        shared = [(i, source_tokens[t]) for t, i in target_tokens.items() if t in source_tokens]
        for t in target_tokens:
            if t not in source_tokens and (other := same_letter_unit(t, source_tokens)) is not None:
                report.same_letter[t] = other
        rows = shared + [(target_tokens[t], source_tokens[o]) for t, o in report.same_letter.items()]
        for suffix in ("weight", "bias"):
            key = OUTPUT + suffix
            if key in source and key in own:
                if own[key].shape[1:] != source[key].shape[1:]:
                    continue  # e.g. a statistics-pooling head over twice the encoder width
                for ti, si in rows:
                    if ti < own[key].shape[0] and si < source[key].shape[0]:
                        own[key][ti] = source[key][si]
        report.shared_units = len(shared)
        report.new_units = sorted(t for t in target_tokens if t not in source_tokens and t not in report.same_letter)
    model.load_state_dict(own)
    logging.info(
        f"initialized from {checkpoint if not isinstance(checkpoint, dict) else 'the source checkpoint'}: {len(report.copied)} tensors copied, {len(report.skipped)} skipped "
        f"(shape/name mismatch), {report.shared_units} shared output units, {len(report.new_units)} new"
        + (
            f", {len(report.same_letter)} started from the source's spelling of the same letter ("
            + ", ".join(f"{t} from {o}" for t, o in sorted(report.same_letter.items()))
            + ")"
            if report.same_letter
            else ""
        )
    )
    _warn_few_shared(report, len(target_tokens))
    return report


#: Below this share of the target's units found in the source's output layer, the log says what that means.
FEW_SHARED = 0.25


def _warn_few_shared(report: TransferReport, target_units: int) -> None:
    """A source of another script (tts_xling's Latin and Cyrillic units for Thai: 4 of 68) starts
    nearly every output row at random; the user should know that only the encoder transfers."""
    known = report.shared_units + len(report.same_letter)
    if report.new_units and target_units >= 10 and known < FEW_SHARED * target_units:
        logging.warning(
            f"only {known} of the target's {target_units} units are in the source's output layer (e.g. new: "
            f"{' '.join(report.new_units[:8])}): the rest start at random, and only the encoder transfers. "
            "Its layers can still help (compare with scratch in RESULTS.md); a new layer needs some hundred "
            "updates to leave blank. A source that writes the script, or a pretrained encoder (whisper:/hf:), "
            "may transfer more"
        )


#: The model options a pretrained source leaves to the adapt conf's ``model`` section.
PRETRAINED_OPEN = ("blank_bias", "input_pad", "layer_mix")


def build_model_for(method, lang, model_config=None, source_checkpoint: Path | None = None, head: str | None = None):
    """The model a method trains on ``lang``: its architecture and initial weights.

    ``lang``: what the outputs mean, anything with ``vocab_size`` and
    ``token2id`` (a lang dir's units, or a classification objective's classes).
    With a source checkpoint the architecture is the source's (so every method,
    ``scratch`` included, trains the same network) and methods with
    ``uses_source`` load its weights; the source's unit symbols are stored in
    the checkpoint, so output rows transfer by symbol. ``head`` replaces the
    output head (an utterance classifier's pooling on a CTC-trained encoder).
    ``source_checkpoint`` may also name a pretrained model, ``whisper:PATH_OR_ID``
    or ``hf:PATH_OR_ID`` (:mod:`speechtl.models.pretrained`): its encoder under a
    new output layer, the config's ``model`` section unused but for :data:`PRETRAINED_OPEN`.
    """
    import dataclasses

    from speechtl.models import ModelConfig, build_model

    def with_head(cfg):
        return cfg if head is None else dataclasses.replace(cfg, head=head)

    if source_checkpoint is None:
        if method.uses_source:
            raise SpeechtlError(
                f"method {method.name} starts from a source model. Fix: give --source-checkpoint "
                "(the source training's final.pt)"
            )
        if model_config is None:
            raise SpeechtlError("no model configuration: give a config with a 'model' section or --source-checkpoint")
        return build_model(with_head(model_config), lang.vocab_size)
    pretrained = parse_source(source_checkpoint)
    if pretrained is not None:  # whisper:... / hf:...: its encoder, a new output layer for lang's units
        # The config's model section sets what a pretrained encoder leaves open: the new head's blank bias,
        # the input's silence padding, whether the head reads a mix of every layer.
        open_options = {k: getattr(model_config, k) for k in PRETRAINED_OPEN} if model_config else {}
        if model_config is not None:
            defaults = ModelConfig().to_dict()
            ignored = [k for k, v in model_config.to_dict().items() if k not in PRETRAINED_OPEN and v != defaults[k]]
            if ignored:
                logging.warning(
                    f"model option(s) {', '.join(ignored)} of the config are not used with {pretrained}: its encoder "
                    f"and input are the pretrained model's; only {', '.join(PRETRAINED_OPEN)} apply"
                )
        logging.info(f"method {method.name}: {'weights' if method.uses_source else 'architecture'} of {pretrained}")
        return build_pretrained(pretrained, lang.vocab_size, head, method.uses_source, **open_options)
    ckpt = load_checkpoint(source_checkpoint)
    source_cfg = ModelConfig(**ckpt["model_config"])
    if model_config is not None and model_config.layer_mix and not source_cfg.layer_mix:
        raise SpeechtlError(
            f"model layer_mix: true, but {source_checkpoint} was trained without a layer mix, and a speechtl "
            "checkpoint keeps its own architecture. Fix: layer_mix with a pretrained source (whisper:/hf:), whose "
            "head is new, or layer_mix: false"
        )
    if model_config is not None and with_head(source_cfg) != with_head(model_config):
        logging.warning(f"the config's model section differs from {source_checkpoint}'s; using the source architecture")
    model = build_model(with_head(source_cfg), lang.vocab_size)
    if not method.uses_source:
        logging.info(f"method {method.name}: architecture of {source_checkpoint}, random initialization")
        return model
    if "tokens" not in ckpt:
        raise SpeechtlError(
            f"{source_checkpoint} does not store its unit symbols (trained by an older speechtl). "
            "Fix: retrain the source model."
        )
    logging.info(f"method {method.name}: weights from {source_checkpoint}")
    init_from_source(model, ckpt, ckpt["tokens"], lang.token2id, exclude=method.init_exclude)
    return model
