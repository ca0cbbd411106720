"""Synthetic corpora from text with Debian's TTS engines: espeak-ng, flite, festival.

A :class:`Voice` is one speaker: an engine, a voice name and ranges for the
speaking rate and pitch. Every utterance draws its voice, rate and pitch from
a random generator seeded with ``(seed, utterance id)``, so a corpus is the
same for a given seed whatever ``nj`` and job order. Audio is resampled to the
corpus rate and written as 16-bit wav; manifests come back as lhotse sets.
"""

import hashlib
import json
import logging
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource

from speechtl.atomic import atomic_path
from speechtl.cluster import get_executor
from speechtl.data.channel import band_limit, reverberate, trim_silence
from speechtl.data.layout import write_split
from speechtl.data.textfile import read_utf8
from speechtl.errors import SpeechtlError

Pathlike = str | Path


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    name: espeak-ng ``lang`` or ``lang+variant`` (``ga+f3``); flite voice (``slt``);
    festival voice without the ``voice_`` prefix (``kal_diphone``).
    rate, pitch: ranges of factors around the engine's default (1.0 = default).
    """

    engine: str
    name: str
    rate: tuple[float, float] = (0.9, 1.1)
    pitch: tuple[float, float] = (0.9, 1.1)

    @property
    def speaker(self) -> str:
        """One speaker id per voice configuration."""
        return f"{self.engine}-{self.name}-r{self.rate[0]:g}-{self.rate[1]:g}-p{self.pitch[0]:g}-{self.pitch[1]:g}"


def _run(cmd: list[str], stdin: str | None = None) -> None:
    try:
        subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True, timeout=120)
    except FileNotFoundError as e:
        raise SpeechtlError(f"{cmd[0]} is not installed. Fix: run 'make setup' (it installs the TTS packages).") from e
    except subprocess.CalledProcessError as e:
        raise SpeechtlError(f"{' '.join(cmd[:4])} ... failed: {e.stderr.strip()[:500]}") from e


def _espeak(text: str, voice: Voice, rate: float, pitch: float, out: Path) -> None:
    # Defaults: 175 words per minute, pitch 50 (of 0-99).
    _run(
        [
            "espeak-ng",
            "-v",
            voice.name,
            "-s",
            str(round(175 * rate)),
            "-p",
            str(min(99, round(50 * pitch))),
            "-w",
            str(out),
            "--stdin",
        ],
        stdin=text,
    )


def _flite(text: str, voice: Voice, rate: float, pitch: float, out: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        _run(
            [
                "flite",
                "-voice",
                voice.name,
                "--setf",
                f"duration_stretch={1 / rate:.4f}",
                "--setf",
                f"int_f0_target_mean={100 * pitch:.2f}",
                "-f",
                f.name,
                "-o",
                str(out),
            ]
        )


def _festival(text: str, voice: Voice, rate: float, pitch: float, out: Path) -> None:
    raw = out.with_suffix(".raw.wav")
    _run(
        [
            "text2wave",
            "-eval",
            f"(voice_{voice.name})",
            "-eval",
            f"(Parameter.set 'Duration_Stretch {1 / rate:.4f})",
            "-o",
            str(raw),
        ],
        stdin=text,
    )
    # festival's voices have no common pitch parameter: shift with sox (cents).
    cents = 1200 * np.log2(pitch)
    _run(["sox", "-D", "-R", str(raw), str(out), "pitch", f"{cents:.1f}"])  # no dither: repeatable
    raw.unlink(missing_ok=True)


ENGINES = {"espeak-ng": _espeak, "flite": _flite, "festival": _festival}


def check_engines(voices: Sequence[Voice]) -> None:
    """Fail early, naming the missing program, before any job starts."""
    need = {"espeak-ng": ["espeak-ng"], "flite": ["flite"], "festival": ["text2wave", "sox"]}
    for v in voices:
        if v.engine not in ENGINES:
            raise SpeechtlError(f"unknown TTS engine {v.engine!r}; known: {', '.join(ENGINES)}")
        for prog in need[v.engine]:
            if shutil.which(prog) is None:
                raise SpeechtlError(f"{prog} (for {v.engine}) is not installed. Fix: run 'make setup'.")


def read_texts(path: Pathlike) -> list[tuple[str, str]]:
    """(id, sentence) pairs from ``id<TAB>sentence`` .tsv or one-sentence-a-line .txt."""
    path = Path(path)
    items = []
    for n, line in enumerate(read_utf8(path, "text file").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".tsv":
            if "\t" not in line:
                raise SpeechtlError(f"{path}:{n}: expected 'id<TAB>sentence'")
            uid, text = line.split("\t", 1)
        else:
            uid, text = f"{path.stem}-{n}", line
        items.append((uid.strip(), " ".join(text.split())))
    return items


def plan(items: Sequence[tuple[str, str]], voices: Sequence[Voice], seed: int, language: str = "") -> list[dict]:
    """Voice, rate and pitch of every utterance, from an RNG keyed on (seed, id)."""
    if not voices:
        raise SpeechtlError("no voices given")
    out = []
    for uid, text in items:
        rng = random.Random(f"{seed}:{uid}")
        v = voices[rng.randrange(len(voices))]
        out.append(
            {
                "id": f"{v.speaker}_{uid}",
                "text": text,
                "voice": v,
                "language": language,
                "rate": rng.uniform(*v.rate),
                "pitch": rng.uniform(*v.pitch),
            }
        )
    return out


def add_noise(wave: torch.Tensor, snr_db: float, color: float, seed: str) -> torch.Tensor:
    """``wave`` plus Gaussian noise at ``snr_db`` below the speech power.

    ``color`` in (-1, 1) tilts the noise spectrum through a one-pole filter
    (positive: more low-frequency hum, negative: more hiss), so the source sees
    many channels rather than one. Speech power is measured over the loudest
    half of the samples, so leading silence does not lower the noise floor.
    """
    g = torch.Generator().manual_seed(int.from_bytes(seed.encode()[-8:].rjust(8, b"\0"), "little") & (2**63 - 1))
    noise = torch.randn(wave.numel(), generator=g, dtype=torch.float64)
    if color:
        noise = torchaudio.functional.lfilter(
            noise[None],
            torch.tensor([1.0, -color], dtype=torch.float64),
            torch.tensor([1.0, 0.0], dtype=torch.float64),
            clamp=False,
        )[0]
    loud = wave.double().pow(2).sort().values[wave.numel() // 2 :]
    speech_power = float(loud.mean()) if loud.numel() else 0.0
    if speech_power <= 0:
        return wave
    noise = noise * (speech_power / float(noise.pow(2).mean()) / 10 ** (snr_db / 10)) ** 0.5
    return (wave.double() + noise).float()


#: Per-job index files of the wavs a synthesis wrote: ``id<TAB>plan key`` lines, appended as each wav is done.
INDEX = ".synthesized.{n}.tsv"


def plan_key(job: dict, sampling_rate: int) -> str:
    """What made a wav: its planned text, voice, rate, pitch, speed, room, band, noise, and the rate."""
    text = json.dumps({**job, "sampling_rate": sampling_rate}, sort_keys=True, default=repr)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _done_before(wav_dir: Path) -> dict[str, str]:
    keys: dict[str, str] = {}
    for index in sorted(wav_dir.glob(INDEX.format(n="*"))):
        for line in index.read_text(encoding="utf-8").splitlines():
            uid, sep, key = line.partition("\t")
            if sep:
                keys[uid] = key
    return keys


def synthesize_job(jobs: list[dict], wav_dir: str, sampling_rate: int, n: int = 0) -> list[dict]:
    """One job: synthesize, resample, apply the planned ``speed`` factor (a vocal tract
    length and tempo change, as speed perturbation), then, where planned, a silence trim
    (``trim``), a room (``rt60``), a microphone band (``band``: high-pass, low-pass Hz;
    :mod:`speechtl.data.channel`) and noise (``snr``, ``color``), write 16-bit wav; returns
    what the manifests need."""
    done = []
    wav_dir = Path(wav_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for j in jobs:
            raw = Path(tmp) / "raw.wav"
            ENGINES[j["voice"].engine](j["text"], j["voice"], j["rate"], j["pitch"], raw)
            audio, sr = sf.read(str(raw), dtype="float32", always_2d=True)
            wave = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=1)))
            if sr != sampling_rate:
                wave = torchaudio.functional.resample(wave, sr, sampling_rate)
            if wave.numel() == 0:
                raise SpeechtlError(f"{j['voice'].engine} produced no audio for {j['id']}: {j['text'][:80]!r}")
            if j.get("speed"):  # speed perturbation: duration, pitch and formants scale together
                wave = torchaudio.functional.resample(wave, round(100 * j["speed"]), 100)
            if j.get("trim"):  # cut tight around the speech, as many real corpora are
                wave = trim_silence(wave, sampling_rate)
            if j.get("rt60"):  # a room
                wave = reverberate(wave, j["rt60"], sampling_rate, j["id"])
            if j.get("band"):  # a microphone's band
                wave = band_limit(wave, sampling_rate, *j["band"])
            if j.get("snr") is not None:
                wave = add_noise(wave, j["snr"], j.get("color", 0.0), j["id"])
                wave = wave * min(1.0, 0.95 / max(1e-6, float(wave.abs().max())))  # no clipping
            path = wav_dir / f"{j['id']}.wav"
            with atomic_path(path) as part:  # a kill leaves no half-written wav under the real name
                sf.write(str(part), wave.clamp(-1, 1).numpy(), sampling_rate, subtype="PCM_16", format="WAV")
            with open(wav_dir / INDEX.format(n=n), "a", encoding="utf-8") as index:
                index.write(f"{j['id']}\t{plan_key(j, sampling_rate)}\n")
            done.append({**j, "path": str(path.resolve()), "num_samples": wave.numel(), "speaker": j["voice"].speaker})
    return done


def synthesize(
    jobs: Sequence[dict], out_dir: Pathlike, sampling_rate: int = 16000, nj: int = 1, cmd: str = "local"
) -> list[dict]:
    """Run planned ``jobs`` (see :func:`plan`) over ``nj`` jobs; wavs go to ``out_dir/wav``. A wav an
    interrupted run already made from the same plan (its index line, :func:`plan_key`) is kept."""
    check_engines({j["voice"] for j in jobs})
    out_dir = Path(out_dir)
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    before = _done_before(wav_dir)
    kept, todo = [], []
    for j in jobs:
        path = wav_dir / f"{j['id']}.wav"
        if before.get(j["id"]) == plan_key(j, sampling_rate) and path.is_file():
            frames = sf.info(str(path)).frames
            kept.append({**j, "path": str(path.resolve()), "num_samples": frames, "speaker": j["voice"].speaker})
        else:
            todo.append(j)
    if kept:
        logging.info(f"{len(kept)} of {len(jobs)} wavs kept from an earlier run of the same plan; {len(todo)} to make")
    made = []
    if todo:
        n = max(1, min(nj, len(todo)))
        chunks = [list(todo[i::n]) for i in range(n)]
        ex = get_executor(cmd, n, out_dir / "log", "tts")
        args = [(c, str(wav_dir), sampling_rate, i) for i, c in enumerate(chunks)]
        made = [d for part in ex.map(synthesize_job, args) for d in part]
    return sorted(kept + made, key=lambda d: d["id"])


def to_manifests(
    done: Sequence[dict],
    sampling_rate: int,
    normalize: Callable[[str], str] | None = None,
) -> tuple[RecordingSet, SupervisionSet]:
    """lhotse manifests of synthesized utterances; supervision text is ``normalize(text)`` when given."""
    recordings, supervisions = [], []
    for d in done:
        dur = d["num_samples"] / sampling_rate
        recordings.append(
            Recording(
                id=d["id"],
                sources=[AudioSource(type="file", channels=[0], source=d["path"])],
                sampling_rate=sampling_rate,
                num_samples=d["num_samples"],
                duration=dur,
            )
        )
        text = normalize(d["text"]) if normalize else d["text"]
        supervisions.append(
            SupervisionSegment(
                id=d["id"],
                recording_id=d["id"],
                start=0.0,
                duration=dur,
                channel=0,
                text=text,
                speaker=d["speaker"],
                language=d.get("language") or None,
            )
        )
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def synthesize_corpus(
    items: Sequence[tuple[str, str]],
    voices: Sequence[Voice],
    out_dir: Pathlike,
    seed: int = 0,
    sampling_rate: int = 16000,
    nj: int = 1,
    cmd: str = "local",
    language: str = "",
    normalize: Callable[[str], str] | None = None,
) -> tuple[RecordingSet, SupervisionSet]:
    """Speak every sentence once with a voice drawn for it; returns lhotse manifests.

    The engines read the raw sentence (punctuation shapes prosody); supervisions
    carry ``normalize(sentence)`` when given.
    """
    done = synthesize(plan(items, voices, seed, language), out_dir, sampling_rate, nj, cmd)
    recs, sups = to_manifests(done, sampling_rate, normalize)
    logging.info(
        f"synthesized {len(done)} utterances, {sum(r.duration for r in recs) / 60:.1f} min, "
        f"{len({s.speaker for s in sups})} voices -> {Path(out_dir) / 'wav'}"
    )
    return recs, sups


def synthesize_splits(
    jobs: dict[str, list[dict]],
    output_dir: Pathlike,
    corpus: str,
    sampling_rate: int,
    nj: int = 1,
    cmd: str = "local",
    spoken: Callable[[str], str] | None = None,
    normalize: Callable[[str], str] | None = None,
) -> dict[str, dict]:
    """Speak every split's planned jobs in one pool of ``nj`` jobs, then write each split's
    manifests (``<corpus>_{recordings,supervisions}_<split>``) and ``<split>_text.txt``.

    The engines read ``spoken(text)`` when given (e.g. digits as words); the supervisions
    carry ``normalize(text)`` of the job's own text. One pool for all splits keeps every
    job busy however the splits' sizes differ. Returns ``{split: {recordings, supervisions}}``.
    """
    output_dir = Path(output_dir)
    order = [{**j, "text": spoken(j["text"])} if spoken else j for split_jobs in jobs.values() for j in split_jobs]
    done = {d["id"]: d for d in synthesize(order, output_dir / "audio", sampling_rate, nj, cmd)}
    output_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for split, split_jobs in jobs.items():
        recs, sups = to_manifests([{**done[j["id"]], "text": j["text"]} for j in split_jobs], sampling_rate, normalize)
        write_split(output_dir, corpus, split, recs, sups)
        (output_dir / f"{split}_text.txt").write_text("".join(s.text + "\n" for s in sups), encoding="utf-8")
        result[split] = {"recordings": recs, "supervisions": sups}
        logging.info(
            f"{split}: {len(recs)} utterances, {sum(r.duration for r in recs) / 60:.1f} min, "
            f"{len({s.speaker for s in sups})} voices"
        )
    return result


def load_voices(path: Pathlike) -> list[Voice]:
    """Voices from YAML: a list of {engine, name, rate: [lo, hi], pitch: [lo, hi]}."""
    from speechtl.config import from_dict, load_yaml

    data = load_yaml(Path(path))
    entries = data.get("voices")
    if not isinstance(entries, list) or not entries:
        raise SpeechtlError(f"{path}: expected 'voices:' with a list of {{engine, name, rate, pitch}}")
    voices = []
    for i, e in enumerate(entries):
        v = from_dict(Voice, dict(e), f"{path} voices[{i}]")
        voices.append(Voice(v.engine, v.name, tuple(v.rate), tuple(v.pitch)))
    return voices
