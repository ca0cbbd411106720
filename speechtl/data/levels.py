"""Recordings whose level says something went wrong before the import: silent, far too quiet, clipped.

The import reads headers only, so these pass it; the fbank stage reads every sample and asks
:func:`level_issue` of each cut. Such a cut still trains (its transcript may be right, and the user
decides), but a silent one teaches the model to emit words from silence: a stereo file whose channels
are one microphone with the wire inverted averages to zeros, and trained three times over with
speed perturbation without a word. :func:`say_level_issues` lists them in a file beside the cuts and
in a warning that names the first and the fix.
"""

import logging
import re
from pathlib import Path

import numpy as np

from speechtl.atomic import atomic_open

#: Peak below this (-80 dBFS, under one step of 13-bit audio): no signal at all.
SILENT_PEAK = 1e-4
#: Peak below this (-40 dBFS): a microphone's gain far too low, or the wrong input.
QUIET_PEAK = 0.01
#: The level of a recording's loud frames (the 90th percentile of 25-ms frame RMS) below which it is
#: far too quiet, in dBFS: speech is read at -30 to -15; FSDD's quietest real recording is at -40.
QUIET_LOUD_FRAMES = -42.0
#: A sample at or above this magnitude is at full scale (8-bit audio's largest is 0.992).
FULL_SCALE = 0.99
#: Share of samples at full scale above which a cut is clipped (loud speech touches it now and then).
CLIPPED_SHARE = 0.01

HEADER = ["utt_id", "source", "issue"]


def level_issue(samples: np.ndarray, downmixed: bool = False) -> str | None:
    """What is wrong with the level of ``samples`` (float, full scale 1), or None."""
    x = np.abs(np.asarray(samples, dtype=np.float32))
    if x.size == 0:
        return None
    peak = float(x.max())
    if peak < SILENT_PEAK:
        if downmixed:
            return (
                "silent after the down-mix: its channels cancel when averaged (one is the other inverted, a "
                "miswired microphone). Fix: keep one channel, sox IN.wav OUT.wav remix 1"
            )
        return "silent (no sample above -80 dBFS). Fix: replace the file, or delete the utterance"
    loud = _loud_frames_db(x)
    if peak < QUIET_PEAK or loud < QUIET_LOUD_FRAMES:
        cancel = " (or, down-mixed from stereo, its channels nearly cancel: try sox IN.wav OUT.wav remix 1)"
        return (
            f"very quiet: peak {20 * np.log10(peak):.0f} dBFS, its loud frames at {loud:.0f} dBFS"
            f"{cancel if downmixed else ''}. Fix: check the recording's input and gain (sox IN.wav OUT.wav "
            "gain -n -3 raises it, with its noise)"
        )
    clipped = float(np.mean(x >= FULL_SCALE))
    if clipped > CLIPPED_SHARE:
        return f"clipped: {100 * clipped:.1f}% of its samples at full scale. Fix: record again with less gain"
    return None


def _loud_frames_db(x: np.ndarray, frame: int = 200) -> float:
    """The 90th percentile of the RMS of ``frame``-sample frames, in dBFS (200 samples: 25 ms at 8 kHz,
    12.5 ms at 16 kHz: the rate does not matter for a level)."""
    n = max(1, x.size // frame)
    frames = x[: n * frame].reshape(n, -1) if x.size >= frame else x.reshape(1, -1)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return float(20 * np.log10(max(np.percentile(rms, 90), 1e-10)))


def unperturbed(name: str) -> str:
    """The utterance or recording a speed-perturbed copy was made from (lhotse: ``<id>_sp<factor>``)."""
    return re.sub(r"_sp\d+(\.\d+)?$", "", name)


def say_level_issues(rows: list[tuple[str, str, str]], path: Path, split: str) -> None:
    """Write ``rows`` (utterance id, source, issue) to ``path`` and warn naming the first; a speed-perturbed
    copy of a listed recording is not listed again. Nothing to say: ``path`` is removed (an earlier
    run's list is of other audio)."""
    seen: set[str] = set()
    kept = []
    for uid, source, issue in rows:
        if unperturbed(uid) not in seen:
            seen.add(unperturbed(uid))
            kept.append((uid, source, issue))
    if not kept:
        Path(path).unlink(missing_ok=True)
        return
    with atomic_open(path) as f:
        f.write("\t".join(HEADER) + "\n")
        f.writelines(f"{c}\t{s}\t{i}\n" for c, s, i in kept)
    uid, source, issue = kept[0]
    logging.warning(
        f"{split}: {len(kept)} cut(s) with a level that says the audio is wrong (kept; listed in {path}), "
        f"e.g. {uid} ({source}): {issue}"
    )
