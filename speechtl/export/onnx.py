"""A trained CTC checkpoint as an ONNX directory that sherpa-onnx loads and decodes.

sherpa-onnx has several offline CTC loaders; the one whose contract is ours is
its icefall Zipformer-CTC loader (``OfflineZipformerCtcModelConfig``): inputs
``x`` (N, T, C) float32 fbank and ``x_lens`` (N,) int64, outputs ``log_probs``
(N, T', V) and ``log_probs_len`` (N,) int64, passed straight to its greedy or
CTC FST (HLG) decoder. It reads the vocabulary size from the output's static
last dimension and needs no other metadata. The others do not fit: its TDNN
loader ignores ``x_lens`` (so a padded batch decodes wrong), and its NeMo
loader transposes the input and computes ``T' = T // subsampling_factor``
itself, which our Conformer's subsampling (``((T - 3) // 2 - 1) // 2``) does
not give.

Models on a wav2vec2-family source read the waveform instead: they go to sherpa-onnx's
raw-waveform CTC type with a one-input graph (:mod:`speechtl.export.wave`). So do models on a
Whisper encoder, with Whisper's log-mel computed in the graph (:mod:`speechtl.export.whisper`).

What else the export takes care of:

- The model's per-utterance input normalization (``input_norm`` mvn/mean/robust) runs
  inside the graph, over each utterance's own ``x_lens`` frames, as in training:
  sherpa-onnx only computes fbank.
- LoRA updates are merged into their weights (W + scale * B @ A): the graph has
  no extra ops for them. Adapters are small nonlinear modules (LayerNorm, ReLU
  bottleneck), which no weight can absorb: they are exported as part of the
  graph.
- Batch and time axes are dynamic; sherpa-onnx pads a batch with log(1e-10),
  and the encoders mask padding by ``x_lens``, so an utterance decodes the same
  alone or in any batch.
- ``model.int8.onnx``: onnxruntime dynamic quantization (int8 weights of the
  MatMul, Gemm and Conv ops, activations quantized per call).
- ``HLG.fst`` is the lang dir's, or (``graph="undeterminized"``) one where
  sherpa-onnx's decoder reads every word label (:mod:`speechtl.export.graph`).
- The metadata says what sherpa-onnx cannot infer and speechtl needs to decode
  (the fbank options, the input norm, the subsampling factor), so the
  directory alone is enough for ``speechtl decode/transcribe --onnx DIR``.

The exporter is torch.export's (``dynamo=True``): the TorchScript exporter
(``dynamo=False``) baked the time axis of the traced example into
``nn.MultiheadAttention``'s reshapes, so a Conformer exported that way failed
on any other length; torch.export keeps T symbolic (the output's time axis
comes out as ``(T - 3) // 4``) and the vocabulary dimension static.
"""

import contextlib
import io
import json
import logging
import math
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import kaldifst
import torch
from torch import nn
from torch.nn.utils import parametrize

from speechtl.decode.checks import check_model_fits
from speechtl.errors import SpeechtlError
from speechtl.features import FbankConfig
from speechtl.features.inputs import level_dependent
from speechtl.lang import Lang
from speechtl.models.ctc import CtcModel
from speechtl.train.checkpoint import checkpoint_label, config_digest, load_checkpoint, model_from_state

#: Encoders whose graph traces to ONNX: fbank models, and models on the waveform: wav2vec2-family
#: (hf-ssl, :mod:`speechtl.export.wave`) and Whisper encoders (the log-mel in the graph,
#: :mod:`speechtl.export.whisper`).
EXPORTABLE_ENCODERS = ("tdnn", "conformer", "hf-ssl", "whisper")
#: Files copied from the lang dir: sherpa-onnx needs tokens.txt; the rest makes the
#: directory a lang dir speechtl can read words with. HLG.fst: see write_graph.
LANG_FILES = ("tokens.txt", "words.txt", "lexicon.txt", "bpe.model", "optional_silence.txt", "spaceless.txt")
INPUT_NAMES = ["x", "x_lens"]
OUTPUT_NAMES = ["log_probs", "log_probs_len"]
#: Metadata key holding the fbank options (JSON), read back by speechtl.export.sherpa.
FBANK_KEY = "speechtl_fbank"


@dataclass
class ExportConfig:
    opset: int = 18
    #: Also write model.int8.onnx.
    int8: bool = True
    #: Ops whose weights dynamic quantization makes int8 (Conv: the TDNN is all
    #: convolutions, the Conformer's subsampling and depthwise convolutions too).
    quantize_ops: list[str] = field(default_factory=lambda: ["MatMul", "Gemm", "Conv"])
    #: HLG.fst: one of GRAPHS.
    graph: str = "lang"


@dataclass
class OnnxExport:
    out_dir: Path
    model: Path
    model_int8: Path | None
    metadata: dict[str, str]


class OnnxCtc(nn.Module):
    """(x, x_lens) -> (log_probs, log_probs_len int64): the sherpa-onnx CTC contract."""

    def __init__(self, model: CtcModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, out_lens = self.model(x, x_lens)
        return log_probs, out_lens.to(torch.int64)


def merge_lora(model: nn.Module) -> int:
    """Bake every parametrization into its weight: LoRA's (W <- W + scale * B @ A), and any other (the
    weight norm of wav2vec2's positional convolution); returns how many were LoRA's."""
    from speechtl.models.peft import LoraDelta

    n = 0
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                n += any(isinstance(p, LoraDelta) for p in module.parametrizations[name])
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return n


def exportable_model(ckpt: dict, source: Path) -> CtcModel:
    """The checkpoint's CTC model in eval mode, LoRA merged; refuses what cannot be exported."""
    cfg = ckpt.get("model_config", {})
    if cfg.get("head", "ctc") != "ctc":
        raise SpeechtlError(f"{source} is an utterance classifier (head {cfg['head']!r}); only CTC models export")
    if cfg.get("encoder") not in EXPORTABLE_ENCODERS:
        raise SpeechtlError(
            f"{source}: encoder {cfg.get('encoder')!r} is not exported to ONNX yet "
            f"(exportable: {', '.join(EXPORTABLE_ENCODERS)})"
        )
    model = model_from_state(ckpt).eval()
    if model.input_spec.kind not in ("fbank", "samples", "whisper-mel"):
        raise SpeechtlError(f"{source}: only fbank and waveform models export (this one reads {model.input_spec.kind})")
    merged = merge_lora(model)
    if merged:
        logging.info(f"merged {merged} LoRA update(s) into their weights")
    if model.input_spec.kind == "samples":
        from speechtl.export.wave import check_sampling_rate

        check_sampling_rate(model, source)
    return model


@torch.no_grad()
def subsampling_factor(model: CtcModel, num_features: int, frames: int = 1000) -> int:
    """Input frames per output frame, measured on a long input."""
    out_lens = model(torch.zeros(1, frames, num_features), torch.tensor([frames]))[1]
    return max(1, round(frames / int(out_lens[0])))


def fbank_options(ckpt: dict, source: Path) -> dict:
    """The fbank the model was trained on: the checkpoint's settings over FbankConfig defaults."""
    feats = ckpt.get("features")
    if feats is None:
        raise SpeechtlError(f"{source} records no feature settings; retrain with this version of speechtl")
    opts = FbankConfig(sampling_rate=feats["sampling_rate"], num_mel_bins=feats["num_mel_bins"]).to_dict()
    opts["frame_shift"] = feats["frame_shift"]
    opts.pop("backend")
    return opts


def export_metadata(
    model: CtcModel, fbank: dict | None, seed: int | None, level: float | None = None
) -> dict[str, str]:
    """Strings sherpa-onnx and speechtl read back (all ONNX metadata values are strings).
    ``fbank`` None: a waveform model (:mod:`speechtl.export.wave`); ``level``: the level its graph brings
    sherpa-onnx's unit-variance waves to (:func:`speechtl.export.wave.export_level`; None: none)."""
    if fbank is None:
        from speechtl.decode.longform import model_max_seconds, piece_limit
        from speechtl.export.wave import MODEL_TYPE

        rate = model.input_spec.sampling_rate
        longest = piece_limit(0.0, model_max_seconds(model), model.input_spec.pad)  # inf: any length
        return {
            "model_type": MODEL_TYPE,
            "model_author": "speechtl",
            "version": "1",
            "comment": "load with sherpa-onnx's omnilingual_asr_ctc (offline CTC) model config",
            "vocab_size": str(model.vocab_size),
            "subsampling_factor": str(waveform_subsampling(model, rate, level)),
            "input_norm": model.norm,
            "encoder": model.config.encoder,
            "blank_id": "0",
            "sample_rate": str(rate),
            "seed": "" if seed is None else str(seed),
            # The level sherpa-onnx's unit-variance waves are brought to (Whisper encoders, waveform models on
            # unnormalized audio), and the longest wave the graph takes (a Whisper encoder's positions less the
            # input pad): transcribe splits longer ones.
            "input_level": "" if level is None else f"{level:.6g}",
            "max_seconds": "" if math.isinf(longest) else f"{longest:g}",
        }
    return {
        "model_type": "speechtl_ctc",
        "model_author": "speechtl",
        "version": "1",
        "comment": "load with sherpa-onnx's zipformer_ctc (offline CTC) model config",
        "vocab_size": str(model.vocab_size),
        "subsampling_factor": str(subsampling_factor(model, model.config.num_features)),
        # sherpa-onnx's NeMo-style feature normalization stays off: the model's own runs in the graph.
        "normalize_type": "",
        "input_norm": model.norm,
        "encoder": model.config.encoder,
        "blank_id": "0",
        "sample_rate": str(fbank["sampling_rate"]),
        "feature_dim": str(fbank["num_mel_bins"]),
        FBANK_KEY: json.dumps(fbank, sort_keys=True),
        # The training seed, for the results.tsv rows of onnx decodings (as the torch decode writes).
        "seed": "" if seed is None else str(seed),
    }


def add_metadata(path: Path, meta: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(path))


@torch.no_grad()
def waveform_subsampling(model: CtcModel, sampling_rate: int, level: float | None = None) -> int:
    """Samples per output frame of a waveform model (320 for wav2vec2 and Whisper: 20 ms at 16 kHz)."""
    from speechtl.export.wave import wave_graph

    wrapper = wave_graph(model, level).eval()
    samples = 10 * sampling_rate  # the frames that 10 more seconds add: the edges' lost frames cancel
    more = wrapper(torch.zeros(1, 2 * samples)).size(1) - wrapper(torch.zeros(1, samples)).size(1)
    return max(1, round(samples / more))


def trace_wave_to_onnx(model: CtcModel, path: Path, opset: int, level: float | None = None) -> None:
    """A waveform model with sherpa-onnx's one-input contract (:mod:`speechtl.export.wave`; a Whisper
    encoder's: :mod:`speechtl.export.whisper`), its waves brought to ``level``."""
    from speechtl.export import wave, whisper

    rate = model.input_spec.sampling_rate
    graph = whisper if model.input_spec.kind == "whisper-mel" else wave
    shapes = whisper.dynamic_shapes(model) if graph is whisper else wave.dynamic_shapes(rate)
    with quiet():
        torch.onnx.export(
            wave.wave_graph(model, level).eval(),
            (graph.example_input(rate),),
            str(path),
            input_names=wave.INPUT_NAMES,
            output_names=wave.OUTPUT_NAMES,
            dynamic_shapes=shapes,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def trace_to_onnx(model: CtcModel, path: Path, opset: int, level: float | None = None) -> None:
    """torch.export (the dynamo exporter) with dynamic batch and time axes."""
    if model.input_spec.kind != "fbank":
        trace_wave_to_onnx(model, path, opset, level)
        return
    wrapper = OnnxCtc(model).eval()
    t = 200
    x = torch.randn(2, t, model.config.num_features)
    x_lens = torch.tensor([t, t - 37], dtype=torch.int64)
    batch, frames = torch.export.Dim("N", min=1, max=4096), torch.export.Dim("T", min=16, max=1_000_000)
    with quiet():
        torch.onnx.export(
            wrapper,
            (x, x_lens),
            str(path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_shapes={"x": {0: batch, 1: frames}, "x_lens": {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one file: sherpa-onnx reads the model into memory and loads it from there
            verbose=False,
        )


@contextlib.contextmanager
def quiet():
    """No progress lines, warnings or INFO logs from the exporter's and quantizer's passes."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


#: Weights of a front end computed in the graph (a Whisper encoder's DFT and mel filters,
#: :mod:`speechtl.export.whisper`): in int8 they would distort the features every later layer
#: reads, so the nodes that use them stay float.
FLOAT_INITIALIZERS = ("mel.basis", "mel.filters")


def float_nodes(path: Path) -> list[str]:
    """Names of the nodes of ``path`` that read one of FLOAT_INITIALIZERS."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [n.name for n in graph.node if any(i in FLOAT_INITIALIZERS for i in n.input)]


def quantize_int8(src: Path, dst: Path, ops: list[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = float_nodes(src)
    with quiet():
        quantize_dynamic(
            str(src), str(dst), op_types_to_quantize=list(ops), weight_type=QuantType.QInt8, nodes_to_exclude=keep
        )


def copy_lang_files(lang_dir: Path, out_dir: Path) -> None:
    lang_dir = Path(lang_dir)
    for name in ("tokens.txt", "words.txt", "lexicon.txt"):
        if not (lang_dir / name).is_file():
            raise SpeechtlError(f"{lang_dir / name} is missing. Fix: pass the --lang-dir the model was trained with.")
    for name in LANG_FILES:
        if (lang_dir / name).is_file():
            shutil.copy(lang_dir / name, out_dir / name)


#: HLG.fst of an export: "lang" copies the lang dir's (the graph the torch decode searches);
#: "undeterminized" writes H∘(L∘G), with every word on a token arc (:mod:`speechtl.export.graph`).
GRAPHS = ("lang", "undeterminized")


def write_graph(lang_dir: Path, out: Path, kind: str = "lang") -> dict:
    """out = the export's HLG.fst (see GRAPHS); returns what export.json records of it."""
    from speechtl.export.graph import sherpa_hlg, word_arcs_sherpa_drops

    if kind not in GRAPHS:
        raise SpeechtlError(f"export graph must be one of {', '.join(GRAPHS)}, got {kind!r}")
    lang_dir = Path(lang_dir)
    if not (lang_dir / "HLG.fst").is_file():
        logging.warning(f"{lang_dir} has no HLG.fst: the export decodes greedy only")
        return {}
    if kind == "lang":
        shutil.copy(lang_dir / "HLG.fst", out)
    else:
        sherpa_hlg(lang_dir).write(str(out))
    hlg = kaldifst.StdVectorFst.read(str(out))
    drops = word_arcs_sherpa_drops(hlg)
    if drops:
        logging.warning(
            f"{out}: {drops} word label(s) on epsilon or blank arcs, which sherpa-onnx's decoder skips "
            "(--graph undeterminized avoids them)"
        )
    return {"kind": kind, "states": hlg.num_states, "from": str(lang_dir), "word_arcs_sherpa_drops": drops}


def export_onnx(checkpoint: Path, lang_dir: Path, out_dir: Path, config: ExportConfig | None = None) -> OnnxExport:
    """checkpoint + lang dir -> out_dir/{model.onnx, model.int8.onnx, tokens.txt, words.txt, lexicon.txt, HLG.fst}."""
    config = config or ExportConfig()
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    model = exportable_model(ckpt, checkpoint)
    check_model_fits(ckpt, checkpoint, Lang(lang_dir))  # before anything is written: other units read as garbage
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_lang_files(lang_dir, out_dir)
    graph = write_graph(lang_dir, out_dir / "HLG.fst", config.graph)
    tokens = sum(1 for line in (out_dir / "tokens.txt").read_text(encoding="utf-8").split("\n") if line.strip())
    if tokens < model.vocab_size:
        raise SpeechtlError(
            f"{Path(lang_dir) / 'tokens.txt'} has {tokens} tokens but {checkpoint} outputs {model.vocab_size}. "
            "Fix: pass the lang dir the model was trained with."
        )
    seed = (ckpt.get("train_config") or {}).get("seed")
    fbank = fbank_options(ckpt, checkpoint) if model.input_spec.kind == "fbank" else None
    level = None
    if level_dependent(model):
        from speechtl.export.wave import export_level

        level = export_level(ckpt, checkpoint)
    meta = export_metadata(model, fbank, seed, level)
    meta["config"] = config_digest(ckpt)  # the decode rows of the exported model name their conf too
    label = checkpoint_label(ckpt)
    if label:  # and an epoch average, so its rows do not replace the final model's
        meta["checkpoint"] = label
    path = out_dir / "model.onnx"
    trace_to_onnx(model, path, config.opset, level)
    add_metadata(path, meta)
    int8 = None
    if config.int8:
        int8 = out_dir / "model.int8.onnx"
        quantize_int8(path, int8, config.quantize_ops)
        add_metadata(int8, meta)
    (out_dir / "export.json").write_text(
        json.dumps(
            {
                "checkpoint": str(checkpoint),
                "method": ckpt.get("method"),  # the decode's results rows name it (speechtl.decode.labels)
                "config": asdict(config),
                "hlg": graph,
                "metadata": meta,
            },
            indent=2,
        )
        + "\n"
    )
    logging.info(f"exported {checkpoint} -> {path}" + (f", {int8.name}" if int8 else ""))
    return OnnxExport(out_dir, path, int8, meta)
