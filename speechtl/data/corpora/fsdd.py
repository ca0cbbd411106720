"""The Free Spoken Digit Dataset (FSDD): real speakers saying single English digits, 8 kHz.

Files are named ``{digit}_{speaker}_{index}.wav`` (``7_jackson_32.wav``); every
speaker says every digit 50 times (indices 0-49). The dataset's official split
puts indices 0-4 of every speaker in test and 5-49 in train.

Splits written by :func:`prepare_fsdd` (``fsdd_{recordings,supervisions}_<split>``):

``train``
    recordings of ``train_speakers``; for a speaker that is also a test speaker,
    only the indices outside ``test_indices`` (the official split).
``test``
    recordings of ``test_speakers``; for a speaker that also trains, only the
    ``test_indices``. Disjoint speaker lists therefore give a speaker-independent
    test (every recording of the held-out speakers), the default lists the
    official speaker-dependent one.

Supervision text is the digit's word in capitals (``SEVEN``), speaker the name.
"""

import logging
import re
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource

from speechtl.data.audio import validate_audio_files
from speechtl.data.layout import write_split
from speechtl.errors import SpeechtlError

FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")
Pathlike = str | Path


def download_fsdd(target_dir: Pathlike = "download", force_download: bool = False) -> Path:
    """Fetch the dataset's repository archive; returns its ``recordings`` directory."""
    target_dir = Path(target_dir)
    out = target_dir / "fsdd" / "recordings"
    if out.is_dir() and any(out.glob("*.wav")) and not force_download:
        return out
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        archive = Path(tmp) / "fsdd.zip"
        try:
            logging.info(f"downloading {FSDD_URL}")
            urllib.request.urlretrieve(FSDD_URL, archive)
            with zipfile.ZipFile(archive) as z:
                members = [m for m in z.namelist() if "/recordings/" in m and m.endswith(".wav")]
                z.extractall(tmp, members)
        except Exception as e:
            raise SpeechtlError(
                f"could not download FSDD from {FSDD_URL} into {target_dir}: {e}\n"
                "Fix: check the network, or pass --corpus-dir pointing at a local recordings/ dir."
            ) from e
        found = sorted(Path(tmp).glob("*/recordings"))
        if not found:
            raise SpeechtlError(f"{FSDD_URL} has no recordings/ directory; the dataset's layout changed")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(found[0]), out)
    return out


def parse_name(stem: str):
    """``7_jackson_32`` -> (7, "jackson", 32), or None for other names."""
    m = _NAME.match(stem)
    return (int(m.group(1)), m.group(2), int(m.group(3))) if m else None


def split_of(
    speaker: str, index: int, train_speakers: Sequence[str], test_speakers: Sequence[str], test_indices: Sequence[int]
) -> str | None:
    """``train``, ``test`` or None (a speaker in neither list) for one recording; see the module doc."""
    in_train, in_test = speaker in train_speakers, speaker in test_speakers
    if in_train and in_test:
        return "test" if index in test_indices else "train"
    if in_test:
        return "test"
    if in_train:
        return "train"
    return None


def prepare_fsdd(
    corpus_dir: Pathlike,
    output_dir: Pathlike | None = None,
    train_speakers: Sequence[str] = (),
    test_speakers: Sequence[str] = (),
    test_indices: Sequence[int] = range(5),
    skip_bad_audio: bool = False,
) -> dict[str, dict[str, RecordingSet | SupervisionSet]]:
    """Manifests of the ``train`` and ``test`` splits of an FSDD ``recordings`` directory.

    Empty speaker lists mean every speaker found (the official split). Every
    wav is checked before anything is written; a corrupt one stops preparation
    with its name, or with ``skip_bad_audio`` is listed in ``bad_audio.txt``.
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise SpeechtlError(
            f"FSDD corpus dir {corpus_dir} does not exist.\n"
            "Fix: pass --corpus-dir pointing at FSDD's recordings/, or leave it out to download."
        )
    wavs = sorted(corpus_dir.glob("*.wav"))
    parsed = {w: parse_name(w.stem) for w in wavs}
    bad_names = [w for w, p in parsed.items() if p is None]
    if bad_names:
        raise SpeechtlError(
            f"FSDD file names are <digit>_<speaker>_<index>.wav; these are not: "
            f"{', '.join(str(w) for w in bad_names[:10])}. Fix: remove or rename them."
        )
    if not wavs:
        raise SpeechtlError(f"{corpus_dir} holds no .wav files. Fix: point --corpus-dir at FSDD's recordings/.")
    speakers = sorted({p[1] for p in parsed.values()})
    train_speakers = list(train_speakers) or speakers
    test_speakers = list(test_speakers) or speakers
    unknown = sorted((set(train_speakers) | set(test_speakers)) - set(speakers))
    if unknown:
        raise SpeechtlError(f"speaker(s) {unknown} have no recordings in {corpus_dir}; found: {speakers}")
    chosen = {w: split_of(p[1], p[2], train_speakers, test_speakers, set(test_indices)) for w, p in parsed.items()}
    used = [w for w, s in chosen.items() if s is not None]
    out = Path(output_dir) if output_dir is not None else None
    infos = validate_audio_files(used, skip_bad=skip_bad_audio, bad_list=out / "bad_audio.txt" if out else None)
    good = {i.path: i for i in infos}
    manifests = {}
    for split in ("train", "test"):
        recordings, supervisions = [], []
        for path in used:
            info = good.get(path)
            if chosen[path] != split or info is None:
                continue
            digit, speaker, _ = parsed[path]
            recordings.append(
                Recording(
                    id=path.stem,
                    sources=[AudioSource(type="file", channels=[0], source=str(path.resolve()))],
                    sampling_rate=info.sampling_rate,
                    num_samples=info.num_samples,
                    duration=info.duration,
                )
            )
            supervisions.append(
                SupervisionSegment(
                    id=path.stem,
                    recording_id=path.stem,
                    start=0.0,
                    duration=info.duration,
                    channel=0,
                    text=DIGIT_WORDS[digit],
                    speaker=speaker,
                    language="English",
                )
            )
        if not recordings:
            raise SpeechtlError(
                f"no usable audio for the FSDD {split} split of {corpus_dir} "
                f"(train speakers {train_speakers}, test speakers {test_speakers})"
            )
        manifests[split] = {
            "recordings": RecordingSet.from_recordings(recordings),
            "supervisions": SupervisionSet.from_segments(supervisions),
        }
        logging.info(
            f"fsdd {split}: {len(recordings)} utterances of {sorted({s.speaker for s in supervisions})}, "
            f"{sum(r.duration for r in recordings) / 60:.1f} min"
        )
    if out is not None:
        for split, m in manifests.items():
            write_split(out, "fsdd", split, m["recordings"], m["supervisions"])
    return manifests
