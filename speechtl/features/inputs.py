"""What a model reads, and the lhotse input strategies that deliver it.

Each encoder says which input it takes (:class:`InputSpec`): ``fbank`` (the
cuts' precomputed features, the default), ``whisper-mel`` (Whisper's log-mel,
computed from the audio per batch) or ``samples`` (the waveform, for the
wav2vec2 family). The model's config rebuilds its encoder, so a checkpoint
knows its input and decode, transcribe and training need no flag for it.

The data path learns it from the cuts: :func:`mark_cuts` writes the spec into
each cut's ``custom`` and :class:`ModelInput`, the input strategy of every
speechtl dataset, reads it from the batch's cuts (unmarked: precomputed
features, as before). Both on-the-fly inputs resample each cut to the model's
rate and return (batch, frames, features) with ``start_frame``/``num_frames``
supervision intervals in their own frames (samples for ``samples``, whose
"features" are one channel), so everything downstream of the dataset (length
bookkeeping, padding of streams, augmentation hooks) is unchanged.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from lhotse import CutSet
from lhotse.cut import MixedCut, PaddingCut
from lhotse.dataset.input_strategies import BatchIO, PrecomputedFeatures
from lhotse.utils import compute_num_samples, fastcopy

from speechtl.errors import SpeechtlError

#: Custom field of a cut: the InputSpec (as a dict) the model it feeds reads.
INPUT_KEY = "speechtl_input"
INPUT_KINDS = ("fbank", "whisper-mel", "samples")


@dataclass(frozen=True)
class InputSpec:
    kind: str = "fbank"
    #: Audio rate the input is computed at (0: the cuts' own, for precomputed fbank).
    sampling_rate: int = 0
    #: Features per frame (0: whatever the cuts hold).
    num_features: int = 0
    #: Seconds of silence (zero samples) added at both ends of each utterance's audio before
    #: the input is computed (on-the-fly kinds only; 0: none). See :class:`PaddedInput`.
    pad: float = 0.0

    def __post_init__(self):
        if self.kind not in INPUT_KINDS:
            raise SpeechtlError(f"unknown model input {self.kind!r}; known: {', '.join(INPUT_KINDS)}")
        if self.pad < 0 or (self.pad > 0 and self.kind == "fbank"):
            raise SpeechtlError(
                f"input pad {self.pad}: must be >= 0, and only inputs computed from audio (whisper-mel, samples) "
                "take one. Fix: model input_pad: 0 for an encoder on precomputed fbank"
            )


FBANK = InputSpec()


class Samples(torch.nn.Module):
    """``forward(list of 1-D waves) -> list of (samples, 1)``: the wave as one-channel frames."""

    def num_frames(self, num_samples: int) -> int:
        return num_samples

    def forward(self, waves: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [w.reshape(-1, 1).float() for w in waves]


class PaddedInput(torch.nn.Module):
    """``inner`` on each wave with ``pad`` zero samples added at both ends (0: ``inner`` as is).

    Why: an encoder pretrained on long windows can fail on a tightly trimmed short utterance.
    Whisper saw 30-s windows in which speech always had silence (or more speech) around it;
    whisper-tiny.en fine-tuned (lp-ft) on 5 shots per digit deleted all five of one FSDD
    speaker's 0.23-0.26-s test EIGHTs (11-13 encoder frames; blank at least 0.40 on every frame,
    EIGHT never above 0.01), and the same model, given the same audio with 0.5 s of zeros at each
    end, put EIGHT at 0.65-0.98 on every one of them (egs/fsdd/ASR/RESULTS.md).
    The model's config records the pad (``ModelConfig.input_pad``), so training, decode and
    transcribe pad alike.
    """

    def __init__(self, inner: torch.nn.Module, pad: int):
        super().__init__()
        self.inner = inner
        self.pad = pad

    def num_frames(self, num_samples: int) -> int:
        return self.inner.num_frames(num_samples + 2 * self.pad)

    def forward(self, waves: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self.pad:
            waves = [torch.nn.functional.pad(w, (self.pad, self.pad)) for w in waves]
        return self.inner(waves)


def wave_features(spec: InputSpec) -> torch.nn.Module:
    """The module computing a model's input from waves at ``spec.sampling_rate`` (on-the-fly kinds),
    with the spec's silence padding (a :class:`PaddedInput`, whatever the pad)."""
    if spec.kind == "whisper-mel":
        from speechtl.features.whisper_mel import BatchedWhisperMel, WhisperMelConfig

        features = BatchedWhisperMel(WhisperMelConfig(num_mels=spec.num_features, sampling_rate=spec.sampling_rate))
    elif spec.kind == "samples":
        features = Samples()
    else:
        raise SpeechtlError(f"input {spec.kind!r} is precomputed: it comes from the cuts' features, not from waves")
    return PaddedInput(features, compute_num_samples(spec.pad, spec.sampling_rate))


def audio_at(cut, sampling_rate: int):
    """``cut`` whose audio loads at ``sampling_rate``. Stored fbank is dropped first: a cut with
    features reports their rate (16 kHz after the fbank stage resampled it) while its recording
    may be at 8 kHz, and its audio would then be read at 8 kHz as if it were 16."""
    cut = cut.drop_features() if cut.has_features else cut
    return cut if cut.sampling_rate == sampling_rate else cut.resample(sampling_rate)


def audio_level(cuts, sampling_rate: int, limit: int = 64) -> float | None:
    """The median standard deviation of the samples of ``limit`` cuts spread over ``cuts`` (their
    first channel mixes, at ``sampling_rate``): the level the model heard its training audio at,
    which a Whisper-source export restores (:mod:`speechtl.export.whisper`). None: no audio read."""
    import numpy as np

    cuts = list(cuts)
    if not cuts:
        return None
    picked = [cuts[i * len(cuts) // min(limit, len(cuts))] for i in range(min(limit, len(cuts)))]
    levels = []
    for c in picked:
        try:
            levels.append(float(audio_at(c, sampling_rate).load_audio().mean(0).std()))
        except Exception:  # unreadable audio: the training batches report it, naming the cut
            continue
    return float(np.median(levels)) if levels else None


class WaveInput(BatchIO):
    """Reads each cut's audio at the spec's rate and computes the input (one batched call)."""

    def __init__(self, spec: InputSpec):
        super().__init__()
        self.spec = spec
        self.features = wave_features(spec)

    def _cuts(self, cuts: CutSet) -> list:
        return [audio_at(c, self.spec.sampling_rate) for c in cuts]

    def __call__(self, cuts: CutSet) -> tuple[torch.Tensor, torch.Tensor]:
        waves = []
        for c in self._cuts(cuts):
            try:
                waves.append(torch.from_numpy(c.load_audio()).float().mean(0))
            except Exception as e:
                raise SpeechtlError(
                    f"cut {c.id}: cannot read its audio for the model's {self.spec.kind} input ({e}). "
                    "Fix: the cuts' recordings must be readable (models on fbank need no audio)"
                ) from e
        feats = self.features(waves)
        lens = torch.tensor([f.size(0) for f in feats], dtype=torch.long)
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lens

    def supervision_intervals(self, cuts: CutSet) -> dict[str, torch.Tensor]:
        """Each supervision's frames; with a pad, a supervision that reaches an end of its cut
        reaches the end of the padding too (the padding is part of the utterance's input)."""
        sr, idx, starts, nums = self.spec.sampling_rate, [], [], []
        pad, inner = self.features.pad, self.features.inner.num_frames
        for i, c in enumerate(self._cuts(cuts)):
            total = self.features.num_frames(c.num_samples)
            for s in c.supervisions:
                first, last = compute_num_samples(max(0.0, s.start), sr), compute_num_samples(s.end, sr)
                start = 0 if first == 0 else min(total, inner(first + pad))
                end = total if last >= c.num_samples else min(total, inner(last + pad))
                idx.append(i)
                starts.append(start)
                nums.append(end - start)
        return {
            "sequence_idx": torch.tensor(idx, dtype=torch.int32),
            "start_frame": torch.tensor(starts, dtype=torch.int32),
            "num_frames": torch.tensor(nums, dtype=torch.int32),
        }


def speech_track(cut):
    """The cut itself; of a mixed cut (padded, mixed with noise...), which has no ``custom`` or
    ``features`` of its own, its first non-padding track's cut (None when there is none)."""
    if isinstance(cut, MixedCut):
        return next((speech_track(t.cut) for t in cut.tracks if not isinstance(t.cut, PaddingCut)), None)
    return cut


def _mark_of(cut) -> dict | None:
    return (getattr(speech_track(cut), "custom", None) or {}).get(INPUT_KEY)


def _with_mark(cut, mark: dict):
    """``cut`` marked; a mixed cut has no ``custom`` of its own, so each of its non-padding tracks is."""
    if isinstance(cut, MixedCut):
        tracks = [t if isinstance(t.cut, PaddingCut) else fastcopy(t, cut=_with_mark(t.cut, mark)) for t in cut.tracks]
        return fastcopy(cut, tracks=tracks)
    return fastcopy(cut, custom={**(getattr(cut, "custom", None) or {}), INPUT_KEY: mark})


def spec_of(cuts) -> InputSpec:
    """The input marked on the first cut (precomputed fbank when unmarked)."""
    mark = _mark_of(next(iter(cuts), None))
    return FBANK if mark is None else InputSpec(**mark)


class ModelInput(BatchIO):
    """The input strategy of speechtl's datasets: the one the batch's cuts are marked with."""

    def __init__(self):
        super().__init__()
        self._strategies: dict[InputSpec, BatchIO] = {FBANK: PrecomputedFeatures()}

    def strategy(self, cuts: CutSet) -> BatchIO:
        spec = spec_of(cuts)
        if spec not in self._strategies:
            self._strategies[spec] = WaveInput(spec)
        return self._strategies[spec]

    def __call__(self, cuts: CutSet):
        return self.strategy(cuts)(cuts)

    def supervision_intervals(self, cuts: CutSet) -> dict[str, torch.Tensor]:
        return self.strategy(cuts).supervision_intervals(cuts)


def mark_cuts(cuts: CutSet, spec: InputSpec) -> CutSet:
    """``cuts`` marked to deliver ``spec`` (unchanged for precomputed fbank)."""
    if spec.kind == "fbank":
        return cuts
    mark = asdict(spec)

    def marked(c):
        return _with_mark(c, mark)

    return cuts.map(marked)


def model_input(model: torch.nn.Module) -> InputSpec:
    """What ``model`` (a CtcModel or its encoder) reads."""
    model = getattr(model, "module", model)  # a training wrapper (DDP)
    encoder = getattr(model, "encoder", model)
    return getattr(encoder, "input_spec", FBANK)


def level_dependent(model: torch.nn.Module) -> bool:
    """Whether ``model``'s output depends on its input's level in a way an ONNX export must restore
    (sherpa-onnx scales each wave to unit variance): Whisper's log-mel, and a waveform model that
    does not scale its input to unit variance itself (``input_norm: none``, a feature extractor's
    ``do_normalize: false``; ``mean`` and ``robust`` keep the level, or some of it). A model in a
    training wrapper (DDP) is looked through."""
    kind = model_input(model).kind
    model = getattr(model, "module", model)
    return kind == "whisper-mel" or (kind == "samples" and getattr(model, "norm", "mvn") != "mvn")
