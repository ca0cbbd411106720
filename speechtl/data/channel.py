"""Rooms, microphones and trimming for synthetic speech: what TTS voices do not vary.

A synthetic source covers voices and rates, but every utterance is rendered
dry, full-band, with the engine's own leading and trailing silence. Real
recordings differ in exactly these ways, and unseen speakers bring their own
room and microphone. Each function here is a seeded per-utterance transform:

- :func:`reverberate`: a room, as an exponentially decaying noise impulse
  response of a given RT60 after a direct path (Lehmann and Johansson's
  statistical model in its simplest form; no image sources);
- :func:`band_limit`: a microphone / channel band, a high-pass and a low-pass
  biquad at drawn cutoffs;
- :func:`trim_silence`: recordings cut tight around the speech, as many corpora
  (FSDD among them) are, with a few milliseconds of margin.
"""

import hashlib
import math

import torch
import torchaudio


def _generator(seed: str) -> torch.Generator:
    """A generator keyed on all of ``seed`` (torch's CPU generator keeps only 32 bits of its seed)."""
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha1(seed.encode()).digest()[:4], "little"))


def room_impulse(rt60: float, sampling_rate: int, seed: str, direct_gain: float = 1.0) -> torch.Tensor:
    """A 1-D impulse response: a unit direct path, then noise decaying 60 dB over ``rt60`` seconds."""
    n = max(2, int(rt60 * sampling_rate))
    t = torch.arange(n, dtype=torch.float64) / sampling_rate
    tail = torch.randn(n, generator=_generator(seed), dtype=torch.float64) * torch.exp(-3 * math.log(10) * t / rt60)
    tail[0] = 0.0
    tail = tail / tail.norm().clamp(min=1e-12) * 0.5  # reverberant energy of the same order as the direct path
    h = tail
    h[0] = direct_gain
    return h


def reverberate(wave: torch.Tensor, rt60: float, sampling_rate: int, seed: str) -> torch.Tensor:
    """``wave`` convolved with :func:`room_impulse`, cut to its length, at its peak level."""
    h = room_impulse(rt60, sampling_rate, seed)
    out = torchaudio.functional.fftconvolve(wave.double(), h)[: wave.numel()]
    peak_in, peak_out = float(wave.abs().max()), float(out.abs().max())
    return (out * (peak_in / peak_out if peak_out > 0 else 1.0)).float()


def band_limit(wave: torch.Tensor, sampling_rate: int, highpass: float, lowpass: float) -> torch.Tensor:
    """A high-pass at ``highpass`` Hz and a low-pass at ``lowpass`` Hz (biquads, Q 0.707)."""
    x = wave.double()
    if highpass > 0:
        x = torchaudio.functional.highpass_biquad(x, sampling_rate, highpass)
    if 0 < lowpass < sampling_rate / 2:
        x = torchaudio.functional.lowpass_biquad(x, sampling_rate, lowpass)
    return x.float()


def trim_silence(wave: torch.Tensor, sampling_rate: int, top_db: float = 35.0, margin: float = 0.02) -> torch.Tensor:
    """``wave`` without its leading and trailing frames more than ``top_db`` below its loudest
    10-ms frame, keeping ``margin`` seconds either side; unchanged if nothing is that quiet."""
    hop = max(1, sampling_rate // 100)
    frames = wave[: wave.numel() // hop * hop].reshape(-1, hop)
    if frames.size(0) < 3:
        return wave
    db = 10 * torch.log10(frames.double().pow(2).mean(1).clamp(min=1e-12))
    loud = torch.nonzero(db > db.max() - top_db).flatten()
    pad = int(margin * sampling_rate)
    start = max(0, int(loud[0]) * hop - pad)
    end = min(wave.numel(), (int(loud[-1]) + 1) * hop + pad)
    return wave[start:end]
