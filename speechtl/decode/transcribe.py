"""Transcribe audio files with a trained model: any sample rate, mono or stereo."""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechtl.data.audio import probe_audio
from speechtl.decode.checks import check_model_fits
from speechtl.decode.greedy import ctc_greedy_search
from speechtl.decode.hlg import HlgDecoder
from speechtl.decode.longform import DEFAULT_MAX_SECONDS, Piece, decode_pieces, model_max_seconds, piece_limit
from speechtl.errors import SpeechtlError
from speechtl.features import BatchedFbank, FbankConfig
from speechtl.features.compute import pick_device
from speechtl.features.inputs import InputSpec, wave_features
from speechtl.lang import Lang
from speechtl.train.checkpoint import load_checkpoint, model_from_state


def read_audio(path: Path, sampling_rate: int) -> torch.Tensor:
    """Mono float waveform at ``sampling_rate``: channels averaged, resampled if needed."""
    if not Path(path).is_file():  # probe_audio's fix speaks of corpora and their transcript lines
        raise SpeechtlError(f"audio file {path} does not exist. Fix: check the path")
    _, problem = probe_audio(Path(path))  # the checks of data preparation: truncated, NaN, ...
    if problem is not None:
        raise SpeechtlError(f"audio file {path} {problem}. Fix: pass a readable mono or stereo recording.")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise SpeechtlError(
            f"cannot read audio file {path}: {e}. Fix: pass a wav/flac/ogg file soundfile can open."
        ) from e
    if data.shape[0] == 0:
        raise SpeechtlError(f"audio file {path} has no samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != sampling_rate:
        wave = torchaudio.functional.resample(wave, orig_freq=sr, new_freq=sampling_rate)
    return wave


def resolve_checkpoint(model: Path) -> Path:
    """``model`` is a checkpoint file or an experiment dir holding final.pt."""
    model = Path(model)
    ckpt = model / "final.pt" if model.is_dir() else model
    if not ckpt.is_file():
        raise SpeechtlError(f"no model at {ckpt}. Fix: pass --model-dir of a trained system (with final.pt).")
    return ckpt


def model_features(ckpt: dict, spec: InputSpec, where: Path) -> tuple[int, torch.nn.Module]:
    """The audio rate and the module computing a checkpoint's model input from waves: the fbank
    it was trained on (recorded in the checkpoint), or its encoder's Whisper log-mel or samples."""
    if spec.kind != "fbank":
        return spec.sampling_rate, wave_features(spec)
    meta = ckpt.get("features")
    if meta is None:
        raise SpeechtlError(f"{where} records no feature settings; retrain with this version of speechtl")
    cfg = FbankConfig(
        sampling_rate=meta["sampling_rate"], num_mel_bins=meta["num_mel_bins"], frame_shift=meta["frame_shift"]
    )
    return meta["sampling_rate"], BatchedFbank(cfg)


class Transcript(NamedTuple):
    """One file's result: its words (None when unreadable, with ``error`` saying why) and the
    pieces it was decoded in (one for a recording within the piece length)."""

    path: Path
    words: list[str] | None
    error: str | None
    pieces: tuple[Piece, ...] = ()


def read_audio_or_error(path: Path, sampling_rate: int) -> torch.Tensor | Transcript:
    """The wave, or an unreadable file's :class:`Transcript` (its error logged)."""
    try:
        return read_audio(Path(path), sampling_rate)
    except SpeechtlError as e:
        logging.error(str(e))
        return Transcript(Path(path), None, str(e))


def transcript_of(path: Path, wave: np.ndarray, sampling_rate: int, max_seconds: float, decode) -> Transcript:
    """``wave`` decoded in pieces of at most ``max_seconds`` (:mod:`speechtl.decode.longform`)."""
    pieces = decode_pieces(wave, sampling_rate, max_seconds, decode)
    if len(pieces) > 1:
        logging.info(
            f"{path}: {len(wave) / sampling_rate:.1f} s decoded in {len(pieces)} pieces of at most "
            f"{max_seconds:g} s, split at pauses"
        )
    return Transcript(Path(path), [w for p in pieces for w in p.words], None, tuple(pieces))


@torch.no_grad()
def transcribe(
    model: Path,
    lang_dir: Path,
    files: Sequence[Path],
    decoding: str = "hlg",
    device: str | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> list[Transcript]:
    """A :class:`Transcript` per file, in order. Recordings longer than ``max_seconds`` (or than
    the model takes: a Whisper encoder 30 s) are decoded in pieces split at pauses; 0: split
    only where the model needs it."""
    if decoding not in ("hlg", "greedy"):
        raise SpeechtlError(f"transcribe decodes with 'hlg' or 'greedy', not {decoding!r}")
    ckpt_path = resolve_checkpoint(model)
    ckpt = load_checkpoint(ckpt_path)
    dev = pick_device(device)
    net = model_from_state(ckpt).to(dev).eval()
    sampling_rate, featurize = model_features(ckpt, net.input_spec, ckpt_path)
    featurize = featurize.to(dev)
    lang = Lang(lang_dir)
    check_model_fits(ckpt, ckpt_path, lang)  # another lang dir's units: fluent-looking wrong words
    hlg = HlgDecoder(lang.dir / "HLG.fst", lang.dir / "words.txt") if decoding == "hlg" else None
    limit = piece_limit(max_seconds, model_max_seconds(net), net.input_spec.pad)

    def decode(waves: Sequence[np.ndarray]) -> list[list[str]]:
        out = []
        for wave in waves:
            feats = featurize([torch.from_numpy(wave)])[0]
            log_probs, lens = net(feats[None], torch.tensor([feats.size(0)], device=dev))
            if hlg is not None:
                out.append(hlg.decode(log_probs[0, : int(lens[0])].float().cpu().numpy()))
            else:
                out.append(lang.decode(ctc_greedy_search(log_probs, lens)[0]))
        return out

    out = []
    for f in files:
        wave = read_audio_or_error(f, sampling_rate)
        if isinstance(wave, Transcript):
            out.append(wave)
        else:
            out.append(transcript_of(f, wave.numpy(), sampling_rate, limit, decode))
    return out
