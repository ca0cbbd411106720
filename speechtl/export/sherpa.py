"""Decoding an exported ONNX directory with sherpa-onnx: greedy, HLG, test sets, files.

The recognizer is sherpa-onnx's offline CTC recognizer with the Zipformer-CTC
model config (see :mod:`speechtl.export.onnx` for why) and a feature config
built from the model's own metadata, so sherpa-onnx computes the fbank the
model was trained on:

======================  ==============================  ==========================
option                  speechtl (``FbankConfig``)      sherpa-onnx / knf
======================  ==============================  ==========================
sample rate, bins       from the checkpoint             ``sampling_rate``, ``feature_dim``
low / high freq         20 / -400 Hz                    ``low_freq`` / ``high_freq`` (set)
dither                  0                               ``dither`` (set)
snip_edges              false                           ``snip_edges`` (set)
samples                 float in [-1, 1]                ``normalize_samples=True``
frame 25 ms / 10 ms,    Kaldi's defaults                knf's defaults (not settable
povey window, pre-emph                                  from Python)
0.97, DC removal,
FFT size power of two
======================  ==============================  ==========================

Options sherpa-onnx cannot set from Python (frame length and shift, window,
pre-emphasis, DC removal, FFT rounding) must be Kaldi's defaults;
:func:`feature_config` refuses a model trained otherwise. Greedy results come
back as token strings, mapped to ids by tokens.txt and to words by the lang
dir's lexicon (:class:`speechtl.lang.Lang`); HLG results as word ids of
words.txt. sherpa-onnx's CTC FST decoder is kaldi-decoder's FasterDecoder
(beam 16) on the same HLG.fst, ilabel = token id + 1, as
:class:`speechtl.decode.HlgDecoder` reads it.
"""

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lhotse import CutSet

from speechtl.decode.longform import DEFAULT_MAX_SECONDS, piece_limit
from speechtl.decode.transcribe import Transcript, read_audio_or_error, transcript_of
from speechtl.errors import SpeechtlError
from speechtl.export.onnx import FBANK_KEY
from speechtl.export.wave import MODEL_TYPE as WAVE_MODEL_TYPE
from speechtl.features import FbankConfig
from speechtl.lang import Lang
from speechtl.lang.units import WORD_START
from speechtl.score.results import ResultRow, update_results
from speechtl.score.wer import Hyp

#: decoding name -> (int8 model, HLG search)
ONNX_DECODINGS = {
    "onnx-greedy": (False, False),
    "onnx-hlg": (False, True),
    "onnx-int8-greedy": (True, False),
    "onnx-int8-hlg": (True, True),
}
#: FbankConfig options sherpa-onnx's Python feature config cannot set: they must keep these values.
FIXED_FBANK = {
    k: v
    for k, v in FbankConfig().to_dict().items()
    if k in ("frame_length", "frame_shift", "preemph_coeff", "remove_dc_offset", "window_type", "round_to_power_of_two")
}
_BYTE_TOKEN = re.compile(r"<0x([0-9A-F]{2})>")


def model_path(onnx_dir: Path, int8: bool = False) -> Path:
    path = Path(onnx_dir) / ("model.int8.onnx" if int8 else "model.onnx")
    if not path.is_file():
        raise SpeechtlError(f"{path} does not exist. Fix: run `speechtl export-onnx --out {onnx_dir}` first.")
    return path


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def fbank_of(meta: dict[str, str], path: Path) -> dict:
    if FBANK_KEY not in meta:
        raise SpeechtlError(f"{path} has no {FBANK_KEY} metadata. Fix: export it with `speechtl export-onnx`.")
    return json.loads(meta[FBANK_KEY])


def feature_config(fbank: dict, path: Path):
    """sherpa-onnx's FeatureExtractorConfig for a model trained on ``fbank`` (FbankConfig options)."""
    import sherpa_onnx

    differ = {k: (fbank[k], v) for k, v in FIXED_FBANK.items() if k in fbank and fbank[k] != v}
    if differ:
        raise SpeechtlError(
            f"{path} was trained on fbank options sherpa-onnx cannot set: {differ} (trained, sherpa-onnx's). "
            "Fix: retrain with Kaldi's defaults for them."
        )
    return sherpa_onnx.FeatureExtractorConfig(
        sampling_rate=int(fbank["sampling_rate"]),
        feature_dim=int(fbank["num_mel_bins"]),
        low_freq=float(fbank["low_freq"]),
        high_freq=float(fbank["high_freq"]),
        dither=float(fbank["dither"]),
        normalize_samples=True,
        snip_edges=bool(fbank["snip_edges"]),
    )


@dataclass
class SherpaOptions:
    num_threads: int = 1
    #: HLG search: most active states per frame (sherpa-onnx's beam is kaldi-decoder's default, 16).
    max_active: int = 3000
    #: Streams per decode_streams call, for an fp32 model. An int8 model decodes one stream at a time,
    #: as a deployment does: its dynamically quantized activations take their scale from the whole
    #: batch, so a batch of 16 changed an utterance's words (yesno: one inserted YES) against one alone.
    batch_size: int = 16


class SherpaCtc:
    """One sherpa-onnx recognizer over an exported directory: waves in, words out."""

    def __init__(self, onnx_dir: Path, int8: bool = False, hlg: bool = False, options: SherpaOptions | None = None):
        import sherpa_onnx
        from sherpa_onnx.lib._sherpa_onnx import (
            OfflineCtcFstDecoderConfig,
            OfflineModelConfig,
            OfflineRecognizer,
            OfflineRecognizerConfig,
            OfflineZipformerCtcModelConfig,
        )

        self.options = options or SherpaOptions()
        self.dir = Path(onnx_dir)
        self.model = model_path(self.dir, int8)
        self.meta = read_metadata(self.model)
        #: A waveform model (:mod:`speechtl.export.wave`) runs as sherpa-onnx's Omnilingual-ASR CTC type.
        self.waveform = self.meta.get("model_type") == WAVE_MODEL_TYPE
        if self.waveform:
            self.fbank = None
            self.sampling_rate = int(self.meta["sample_rate"])
            feat_config = sherpa_onnx.FeatureExtractorConfig(sampling_rate=self.sampling_rate, feature_dim=80)
            try:  # only in sherpa-onnx releases with Omnilingual ASR (late 2025 on)
                from sherpa_onnx.lib._sherpa_onnx import OfflineOmnilingualAsrCtcModelConfig
            except ImportError as e:
                raise SpeechtlError(
                    f"{self.model} is a waveform model, which sherpa-onnx runs as its Omnilingual-ASR CTC type, "
                    "and this sherpa-onnx has none. Fix: pip install -U sherpa-onnx"
                ) from e
            model = {"omnilingual": OfflineOmnilingualAsrCtcModelConfig(model=str(self.model))}
        else:
            self.fbank = fbank_of(self.meta, self.model)
            self.sampling_rate = int(self.fbank["sampling_rate"])
            feat_config = feature_config(self.fbank, self.model)
            model = {"zipformer_ctc": OfflineZipformerCtcModelConfig(model=str(self.model))}
        #: The longest wave the graph takes (a Whisper encoder's positions); None: any.
        self.max_seconds = float(self.meta["max_seconds"]) if self.meta.get("max_seconds") else None
        self.lang = Lang(self.dir)
        graph = ""
        if hlg:
            if not (self.dir / "HLG.fst").is_file():
                raise SpeechtlError(
                    f"{self.dir / 'HLG.fst'} is missing. Fix: export with a --lang-dir that has HLG.fst."
                )
            graph = str(self.dir / "HLG.fst")
        config = OfflineRecognizerConfig(
            feat_config=feat_config,
            model_config=OfflineModelConfig(
                **model,
                tokens=str(self.dir / "tokens.txt"),
                num_threads=self.options.num_threads,
                provider="cpu",
            ),
            ctc_fst_decoder_config=OfflineCtcFstDecoderConfig(graph=graph, max_active=self.options.max_active),
            decoding_method="greedy_search",
        )
        self.hlg = hlg
        self.int8 = int8
        self.recognizer = OfflineRecognizer(config)

    def _token_id(self, sym: str) -> int:
        if sym in self.lang.token2id:
            return self.lang.token2id[sym]
        if sym == " " and WORD_START in self.lang.token2id:  # sherpa-onnx shows sentencepiece's ▁ as a space
            return self.lang.token2id[WORD_START]
        m = _BYTE_TOKEN.fullmatch(sym)  # sherpa-onnx writes one-byte tokens outside 0x20-0x7e as <0xNN>
        if m and chr(int(m.group(1), 16)) in self.lang.token2id:
            return self.lang.token2id[chr(int(m.group(1), 16))]
        raise SpeechtlError(f"sherpa-onnx returned token {sym!r}, not in {self.dir / 'tokens.txt'}")

    def _words(self, result) -> list[str]:
        if self.hlg:
            return self.lang.regroup([self.lang.id2word[i] for i in result.words])
        return self.lang.decode([self._token_id(t) for t in result.tokens])

    def decode(self, waves: Sequence[np.ndarray]) -> list[list[str]]:
        """Words of each mono float32 wave at the model's sample rate, values in [-1, 1]."""
        out: list[list[str]] = []
        step = 1 if self.int8 else max(1, self.options.batch_size)
        for start in range(0, len(waves), step):
            streams = []
            for wave in waves[start : start + step]:
                s = self.recognizer.create_stream()
                s.accept_waveform(self.sampling_rate, np.ascontiguousarray(wave, dtype=np.float32))
                streams.append(s)
            self.recognizer.decode_streams(streams)
            out.extend(self._words(s.result) for s in streams)
        return out


def onnx_decodings(names: Sequence[str]) -> list[str]:
    """Decoding names with their ``onnx-`` prefix (``hlg`` and ``int8-hlg`` are ``onnx-hlg``, ``onnx-int8-hlg``)."""
    full = [n if n.startswith("onnx-") else f"onnx-{n}" for n in names]
    unknown = [n for n, f in zip(names, full, strict=True) if f not in ONNX_DECODINGS]
    if unknown:
        raise SpeechtlError(f"unknown onnx decoding(s) {unknown}; known: {', '.join(ONNX_DECODINGS)}")
    return full


def cut_waves(cuts: CutSet, sampling_rate: int) -> dict[str, np.ndarray]:
    """``{cut id: mono float32 wave}`` at ``sampling_rate``, read as the fbank stage reads it."""
    from speechtl.features.inputs import audio_at

    out = {}
    for cut in cuts:
        cut = audio_at(cut, sampling_rate)
        try:
            out[cut.id] = cut.load_audio().mean(axis=0)  # the channels mixed, as training read them
        except Exception as e:
            raise SpeechtlError(
                f"cannot read audio of cut {cut.id} ({cut.recording.sources[0].source}): {e}. "
                "Fix: onnx decoding computes features from the audio; make the recordings readable."
            ) from e
    return out


def check_lengths(cuts: CutSet, rec: SherpaCtc) -> None:
    """Stop before decoding when a cut is longer than the exported graph takes (a Whisper encoder's
    30 s less its input pad): onnxruntime would fail on it with a shape error naming no cut."""
    if rec.max_seconds is None:
        return
    long = [f"{c.id} ({c.duration:.1f} s)" for c in cuts if c.duration > rec.max_seconds]
    if long:
        raise SpeechtlError(
            f"{len(long)} test cut(s) are longer than the {rec.max_seconds:g} s {rec.model} takes: "
            f"{', '.join(long[:3])}{', ...' if len(long) > 3 else ''}. Fix: split them into utterances, or "
            f"transcribe the recordings (speechtl transcribe --onnx {rec.dir}), which decodes long ones in pieces"
        )


def decode_onnx_test_set(
    onnx_dir: Path,
    cuts_path: Path,
    test_set: str,
    out_dir: Path,
    decodings: Sequence[str] = ("onnx-greedy", "onnx-hlg", "onnx-int8-hlg"),
    method: str = "scratch",
    data: str = "all",
    results_tsv: Path | None = None,
    options: SherpaOptions | None = None,
    seed: int | None = None,
) -> list[ResultRow]:
    """The torch decode's files and results.tsv rows (:func:`speechtl.decode.run.score_decoding`)
    for decodings through sherpa-onnx, from the cuts' audio."""
    from speechtl.decode.checks import check_references
    from speechtl.decode.run import score_decoding

    decodings = onnx_decodings(decodings)
    if not Path(cuts_path).is_file():
        raise SpeechtlError(f"test cuts {cuts_path} do not exist. Fix: run the fbank stage first.")
    cuts = CutSet.from_file(cuts_path)
    lang = Lang(onnx_dir)
    refs = {c.id: lang.words(" ".join(s.text for s in c.supervisions)) for c in cuts}
    oov = check_references(refs, lang, Path(cuts_path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    waves = None
    rows = []
    for decoding in decodings:
        int8, hlg = ONNX_DECODINGS[decoding]
        rec = SherpaCtc(onnx_dir, int8=int8, hlg=hlg, options=options)
        if waves is None:
            check_lengths(cuts, rec)
            waves = cut_waves(cuts, rec.sampling_rate)
        ids = list(waves)
        hyps = dict(zip(ids, rec.decode([waves[k] for k in ids]), strict=True))
        if seed is None and rec.meta.get("seed"):
            seed = int(rec.meta["seed"])
        results: list[Hyp] = [(k, refs[k], hyps[k]) for k in sorted(refs)]
        rows.append(
            score_decoding(
                results,
                out_dir,
                test_set,
                decoding,
                method,
                data,
                results_tsv,
                seed,
                oov=oov,
                spaceless=lang.spaceless,
                config=rec.meta.get("config", ""),
                checkpoint=rec.meta.get("checkpoint", ""),
            )
        )
    if results_tsv is not None:
        update_results(results_tsv, rows)
        logging.info(f"results: {results_tsv}")
    return rows


def transcribe_onnx(
    onnx_dir: Path,
    files: Sequence[Path],
    decoding: str = "hlg",
    int8: bool = False,
    num_threads: int = 1,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> list[Transcript]:
    """As :func:`speechtl.decode.transcribe.transcribe`, through sherpa-onnx: a Transcript per file,
    long recordings in pieces split at pauses."""
    if decoding not in ("hlg", "greedy"):
        raise SpeechtlError(f"transcribe decodes with 'hlg' or 'greedy', not {decoding!r}")
    rec = SherpaCtc(onnx_dir, int8=int8, hlg=decoding == "hlg", options=SherpaOptions(num_threads=num_threads))
    limit = piece_limit(max_seconds, rec.max_seconds)  # fbank and wav2vec2-family graphs take any length
    out = []
    for f in files:
        wave = read_audio_or_error(f, rec.sampling_rate)
        out.append(
            wave
            if isinstance(wave, Transcript)
            else transcript_of(f, wave.numpy(), rec.sampling_rate, limit, rec.decode)
        )
    return out
