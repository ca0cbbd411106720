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

import soundfile as sf

from speechtl.errors import SpeechtlError


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sampling_rate: int
    num_samples: int
    num_channels: int

    @property
    def duration(self) -> float:
        return self.num_samples / self.sampling_rate


def probe_audio(path: Path) -> tuple[AudioInfo | None, str | None]:
    """Return ``(info, None)`` for a readable non-empty file, else ``(None, problem)``."""
    path = Path(path)
    if not path.is_file():
        return None, "file does not exist"
    if path.stat().st_size == 0:
        return None, "file is empty (0 bytes)"
    try:
        info = sf.info(str(path))
        # Reading the data catches files whose header is fine but whose body is cut.
        with sf.SoundFile(str(path)) as f:
            data = f.read(frames=min(info.frames, 1 << 20), dtype="float32")
    except Exception as e:  # soundfile raises several types for bad files
        return None, f"cannot be decoded ({type(e).__name__}: {str(e).strip()})"
    if info.frames == 0 or len(data) == 0:
        return None, "has no audio samples"
    return AudioInfo(path, int(info.samplerate), int(info.frames), int(info.channels)), None


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
            "Fix: replace or delete these files, or rerun with --skip-bad-audio true "
            "to leave them out (they are then listed in bad_audio.txt next to the manifests)."
        )
    if bad:
        for p, why in bad:
            logging.warning(f"skipping bad audio {p}: {why}")
        if bad_list is not None:
            bad_list.parent.mkdir(parents=True, exist_ok=True)
            bad_list.write_text("".join(f"{p}\t{why}\n" for p, why in bad), encoding="utf-8")
            logging.warning(f"{len(bad)} skipped file(s) listed in {bad_list}")
    return good
