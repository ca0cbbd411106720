"""Audio validation before any work starts (Kaldi's ``validate_data_dir`` spirit).

A corrupt or empty file found while computing features would surface as a
traceback from deep inside a decoder library, after other work was written.
Checking every file up front lets a recipe stop with the file's name and the
fix, or skip the file and list it, before anything is written.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from speechtl.data.validate import FIXES, probe_file
from speechtl.data.validate import AudioInfo as FileInfo
from speechtl.errors import SpeechtlError


@dataclass(frozen=True)
class AudioInfo(FileInfo):
    """What :func:`speechtl.data.validate.probe_file` found, and the file it is about."""

    path: Path = Path()


#: Shorter files give no fbank frame (one analysis window is 25 ms): nothing to learn from.
MIN_DURATION = 0.025
#: Longer files are kept with a warning: each fills a training batch on its own.
LONG_DURATION = 60.0
#: Recordings are read as mono or stereo (channel 0 trains); more is likely a mistake.
MAX_CHANNELS = 2


def probe_audio(path: Path) -> tuple[AudioInfo | None, str | None]:
    """Return ``(info, None)`` for a usable file, else ``(None, problem)``.

    The container checks are the importers' (:func:`speechtl.data.validate.probe_file`:
    empty, truncated, content not what the extension says, undecodable, NaN or Inf
    float samples); on top, a file must be at least one analysis frame long and
    have at most two channels.
    """
    path = Path(path)
    found = probe_file(path)
    if isinstance(found, tuple):
        kind, detail = found
        return None, f"{detail} ({kind}: {FIXES[kind]})"
    info = AudioInfo(found.sampling_rate, found.num_samples, found.num_channels, found.misnamed, path)
    if info.num_samples < MIN_DURATION * info.sampling_rate:
        return None, (
            f"is {1000 * info.duration:.1f} ms long, shorter than one "
            f"{1000 * MIN_DURATION:.0f} ms analysis frame (it would give no features)"
        )
    if info.num_channels > MAX_CHANNELS:
        return None, (
            f"has {info.num_channels} channels; speechtl reads mono or stereo. "
            f"Keep one, e.g. sox {path.name} {path.stem}.mono.wav remix 1"
        )
    return info, None


def validate_audio_files(
    paths: Iterable[Path], skip_bad: bool = False, bad_list: Path | None = None
) -> list[AudioInfo]:
    """Probe every file; stop on the first bad ones or skip and list them.

    Args:
      paths: audio files to check.
      skip_bad: if False (the default) raise :class:`SpeechtlError` naming every
        bad file; if True, leave them out, log them and write them to ``bad_list``.
      bad_list: where skipped files are listed, one ``path<TAB>problem`` a line.
    Returns:
      Information about the good files, in input order.
    """
    good, bad = [], []
    for p in paths:
        info, problem = probe_audio(Path(p))
        if info is None:
            bad.append((Path(p), problem))
        else:
            good.append(info)
    if bad and not skip_bad:
        listing = "\n".join(f"  {p}: {why}" for p, why in bad)
        raise SpeechtlError(
            f"{len(bad)} bad audio file(s):\n{listing}\n"
            "Fix: replace or delete these files, or rerun with --skip-bad "
            "to leave them out (they are then listed in bad_audio.txt next to the manifests)."
        )
    if bad:
        for p, why in bad:
            logging.warning(f"skipping bad audio {p}: {why}")
        if bad_list is not None:
            bad_list.parent.mkdir(parents=True, exist_ok=True)
            bad_list.write_text("".join(f"{p}\t{why}\n" for p, why in bad), encoding="utf-8")
            logging.warning(f"{len(bad)} skipped file(s) listed in {bad_list}")
    long = [i for i in good if i.duration > LONG_DURATION]
    if long:
        longest = max(long, key=lambda i: i.duration)
        logging.warning(
            f"{len(long)} file(s) longer than {LONG_DURATION:.0f} s (longest {longest.path}: {longest.duration:.0f} s): "
            "each fills a training batch on its own and needs memory in proportion; consider segmenting them"
        )
    return good
