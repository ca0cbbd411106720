"""tts_digits: connected English digit strings spoken by many synthetic voices.

The source domain of sim-to-real digit recognition (the FSDD recipe): strings
of ``min_digits``-``max_digits`` digit words ("SEVEN ONE FOUR") spoken by
espeak-ng (every configured accent times every voice variant), flite and
festival voices, each utterance at its own speaking rate and pitch. Engines
are drawn by ``weights`` first, then a voice of that engine, so the few
flite and festival voices are not drowned by espeak-ng's many.

``sampling_rate: 8000`` is the 8 kHz band simulation: the synthesized speech
is resampled (low-passed at 4 kHz) to telephone bandwidth, FSDD's own rate.

Splits: ``source_train`` and ``source_dev`` (``tts_digits_{recordings,supervisions}_<split>``),
and ``<split>_text.txt``, one transcript a line (the LM and unit text).
"""

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from speechtl.config import from_dict, load_yaml
from speechtl.data.corpora.fsdd import DIGIT_WORDS
from speechtl.data.tts import Voice, synthesize_splits
from speechtl.errors import SpeechtlError

Pathlike = str | Path
SPLITS = ("source_train", "source_dev")


@dataclass
class TtsDigitsConfig:
    train_utterances: int = 3000
    dev_utterances: int = 100
    min_digits: int = 1
    max_digits: int = 7
    seed: int = 0
    #: 8000: the 8 kHz band simulation (see the module doc); 16000 for wideband.
    sampling_rate: int = 8000
    #: Ranges of factors around each engine's default speaking rate and pitch.
    rate: tuple[float, float] = (0.75, 1.25)
    pitch: tuple[float, float] = (0.8, 1.25)
    #: espeak-ng voices: every accent (``en-us``) with every variant (``m3``; "" = the plain voice).
    espeak_accents: list[str] = field(default_factory=lambda: ["en-us", "en-gb"])
    espeak_variants: list[str] = field(default_factory=lambda: ["", "m3", "f2"])
    flite_voices: list[str] = field(default_factory=lambda: ["kal", "slt"])
    festival_voices: list[str] = field(default_factory=lambda: ["kal_diphone"])
    #: Share of utterances per engine (normalized; engines without voices are skipped).
    weights: dict[str, float] = field(default_factory=lambda: {"espeak-ng": 0.6, "flite": 0.3, "festival": 0.1})
    #: Channel simulation: this share of utterances gets noise at an SNR (dB) drawn from
    #: ``noise_snr`` with a spectral tilt from ``noise_color`` (see speechtl.data.tts.add_noise).
    #: Per-utterance speed factor range (resampling: tempo, pitch and formants scale
    #: together, as a shorter or longer vocal tract); (1, 1) = off.
    speed: tuple[float, float] = (1.0, 1.0)
    noise_prob: float = 0.0
    noise_snr: tuple[float, float] = (10.0, 40.0)
    noise_color: tuple[float, float] = (-0.5, 0.95)
    #: Rooms, microphones, trimming (speechtl.data.channel), each on this share of utterances:
    #: reverberation of RT60 (s) drawn from ``rt60``; a band from a high-pass and a low-pass
    #: cutoff (Hz) drawn from ``highpass`` and ``lowpass``; leading/trailing silence cut.
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.15, 0.6)
    band_prob: float = 0.0
    highpass: tuple[float, float] = (50.0, 300.0)
    lowpass: tuple[float, float] = (2500.0, 3800.0)
    trim_prob: float = 0.0


def load_config(path: Pathlike | None) -> TtsDigitsConfig:
    if path is None:
        return TtsDigitsConfig()
    return from_dict(TtsDigitsConfig, load_yaml(Path(path)), str(path))


def voices_by_engine(cfg: TtsDigitsConfig) -> dict[str, list[Voice]]:
    rate, pitch = tuple(cfg.rate), tuple(cfg.pitch)
    espeak = [f"{a}+{v}" if v else a for a in cfg.espeak_accents for v in cfg.espeak_variants]
    names = {"espeak-ng": espeak, "flite": cfg.flite_voices, "festival": cfg.festival_voices}
    unknown = set(cfg.weights) - set(names)
    if unknown:
        raise SpeechtlError(f"tts_digits weights name unknown engine(s) {sorted(unknown)}; known: {sorted(names)}")
    return {e: [Voice(e, n, rate, pitch) for n in names[e]] for e in names if names[e] and cfg.weights.get(e, 0) > 0}


def digit_string(rng: random.Random, cfg: TtsDigitsConfig) -> list[str]:
    return [DIGIT_WORDS[rng.randrange(10)] for _ in range(rng.randint(cfg.min_digits, cfg.max_digits))]


def plan_digits(cfg: TtsDigitsConfig) -> dict[str, list[dict]]:
    """Synthesis jobs of both splits; each utterance's words, engine, voice, rate and pitch
    come from an RNG keyed on (seed, utterance id), so the corpus is the same for any nj."""
    if not 1 <= cfg.min_digits <= cfg.max_digits:
        raise SpeechtlError(f"tts_digits: need 1 <= min_digits <= max_digits, got {cfg.min_digits}, {cfg.max_digits}")
    voices = voices_by_engine(cfg)
    if not voices:
        raise SpeechtlError(
            "tts_digits: no voices (give espeak_accents, flite_voices or festival_voices with a weight > 0)"
        )
    engines = sorted(voices)
    weights = [cfg.weights[e] for e in engines]
    jobs: dict[str, list[dict]] = {}
    for split, n in (("source_train", cfg.train_utterances), ("source_dev", cfg.dev_utterances)):
        jobs[split] = []
        for i in range(n):
            uid = f"{split}-{i:06d}"
            rng = random.Random(f"{cfg.seed}:{uid}")
            words = digit_string(rng, cfg)
            engine = rng.choices(engines, weights)[0]
            v = voices[engine][rng.randrange(len(voices[engine]))]
            job = {
                "id": f"{v.speaker}_{uid}",
                "text": " ".join(words),
                "voice": v,
                "language": "en",
                "rate": rng.uniform(*v.rate),
                "pitch": rng.uniform(*v.pitch),
            }
            if tuple(cfg.speed) != (1.0, 1.0):
                job["speed"] = rng.uniform(*cfg.speed)
            if rng.random() < cfg.noise_prob:
                job.update(snr=rng.uniform(*cfg.noise_snr), color=rng.uniform(*cfg.noise_color))
            # Drawn from their own RNG, so turning them on leaves every other draw as it was.
            extra = random.Random(f"{cfg.seed}:{uid}:channel")
            if extra.random() < cfg.trim_prob:
                job["trim"] = True
            if extra.random() < cfg.reverb_prob:
                job["rt60"] = extra.uniform(*cfg.rt60)
            if extra.random() < cfg.band_prob:
                job["band"] = (extra.uniform(*cfg.highpass), extra.uniform(*cfg.lowpass))
            jobs[split].append(job)
    return jobs


def _spoken(text: str) -> str:
    """What the engine reads: lower-case words (some engines spell out capitals)."""
    return text.lower()


def download_tts_digits(target_dir: Pathlike = ".") -> Path:
    raise SpeechtlError("tts_digits is synthesized locally; there is nothing to download")


def prepare_tts_digits(
    corpus_dir: Pathlike | None = None,
    output_dir: Pathlike = "data/manifests",
    config: Pathlike | None = None,
    nj: int = 1,
    cmd: str = "local",
) -> dict[str, dict]:
    """Synthesize ``source_train`` and ``source_dev``; writes and returns manifests (``corpus_dir`` is unused)."""
    cfg = load_config(config)
    output_dir = Path(output_dir)
    jobs = plan_digits(cfg)
    order = [j for s in SPLITS for j in jobs[s]]
    per_engine = {}
    for j in order:
        per_engine[j["voice"].engine] = per_engine.get(j["voice"].engine, 0) + 1
    logging.info(
        f"synthesizing {len(order)} digit strings with {nj} job(s) at {cfg.sampling_rate} Hz; per engine {per_engine}"
    )
    return synthesize_splits(
        {s: jobs[s] for s in SPLITS}, output_dir, "tts_digits", cfg.sampling_rate, nj, cmd, spoken=_spoken
    )
