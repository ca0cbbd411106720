"""The yesno corpus (OpenSLR 1): 60 wavs, 8 kHz, one speaker saying 8 yes/no words.

The label is the file name: ``0_1_1_0_0_1_0_1.wav`` says "NO YES YES NO NO YES NO YES".
The split follows lhotse's and icefall's: files sorted by name, even positions
train, odd positions test (30 + 30 for the full corpus).
"""

import logging
import re
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource

from speechtl.data.audio import validate_audio_files
from speechtl.data.layout import write_split
from speechtl.errors import SpeechtlError

YESNO_URL = "http://www.openslr.org/resources/1/waves_yesno.tar.gz"
_NAME = re.compile(r"^[01](_[01]){7}$")
WORDS = {"0": "NO", "1": "YES"}
#: The yesno lexicon in letters. Kaldi's and icefall's give each word one unit
#: plus a silence unit in an HMM/k2 training graph; plain CTC has no optional
#: silence, and with one unit per word "NO NO" needs a blank exactly in the
#: pause between words, which a small model often fails to learn (it labels
#: the whole stretch N, collapsing the words). Letters never repeat across
#: these words (N O N O, Y E S Y E S), so no blank is needed between them.
LEXICON = {"YES": ["Y"], "NO": ["N"]}

Pathlike = str | Path


def download_yesno(target_dir: Pathlike = ".", force_download: bool = False) -> Path:
    """Download and extract the corpus; returns the ``waves_yesno`` directory."""
    from lhotse.recipes.yesno import download_yesno as _lhotse_download

    try:
        return Path(_lhotse_download(target_dir, force_download=force_download, url=YESNO_URL))
    except Exception as e:
        raise SpeechtlError(
            f"could not download yesno from {YESNO_URL} into {target_dir}: {e}\n"
            "Fix: check the network, or pass --corpus-dir pointing at a local waves_yesno."
        ) from e


def text_from_name(stem: str) -> str:
    return " ".join(WORDS[c] for c in stem.split("_"))


def prepare_yesno(
    corpus_dir: Pathlike, output_dir: Pathlike | None = None, skip_bad_audio: bool = False
) -> dict[str, dict[str, RecordingSet | SupervisionSet]]:
    """Build train/test manifests from a ``waves_yesno`` directory.

    Every wav is checked first; a corrupt or empty one stops preparation with
    its name (or, with ``skip_bad_audio``, is left out and listed in
    ``output_dir/bad_audio.txt``). Nothing is written before the checks pass.
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise SpeechtlError(
            f"yesno corpus dir {corpus_dir} does not exist.\n"
            "Fix: pass --corpus-dir pointing at waves_yesno, or leave it out to download."
        )
    wavs = sorted(corpus_dir.glob("*.wav"))
    if len(wavs) < 2:
        raise SpeechtlError(
            f"{corpus_dir} holds {len(wavs)} wav file(s); yesno needs its 60 "
            "x_x_x_x_x_x_x_x.wav files. Fix: point --corpus-dir at waves_yesno."
        )
    misnamed = [w for w in wavs if not _NAME.match(w.stem)]
    if misnamed:
        raise SpeechtlError(
            "yesno file names must be 8 labels (0 or 1) joined by '_', e.g. 0_1_1_0_0_1_0_1.wav; "
            f"these are not: {', '.join(str(w) for w in misnamed[:10])}. "
            "Fix: remove or rename them."
        )
    out = Path(output_dir) if output_dir is not None else None
    infos = validate_audio_files(wavs, skip_bad=skip_bad_audio, bad_list=out / "bad_audio.txt" if out else None)
    good = {i.path: i for i in infos}
    splits = {"train": wavs[::2], "test": wavs[1::2]}
    manifests = {}
    for split, files in splits.items():
        recordings, supervisions = [], []
        for path in files:
            info = good.get(path)
            if info is None:
                continue
            rec = Recording(
                id=path.stem,
                sources=[AudioSource(type="file", channels=[0], source=str(path.resolve()))],
                sampling_rate=info.sampling_rate,
                num_samples=info.num_samples,
                duration=info.duration,
            )
            recordings.append(rec)
            supervisions.append(
                SupervisionSegment(
                    id=path.stem,
                    recording_id=path.stem,
                    start=0.0,
                    duration=rec.duration,
                    channel=0,
                    text=text_from_name(path.stem),
                    language="English",
                    speaker="yesno",
                )
            )
        if not recordings:
            raise SpeechtlError(f"no usable audio left for the {split} split of {corpus_dir}")
        manifests[split] = {
            "recordings": RecordingSet.from_recordings(recordings),
            "supervisions": SupervisionSet.from_segments(supervisions),
        }
        logging.info(f"yesno {split}: {len(recordings)} utterances")
    if out is not None:
        for split, m in manifests.items():
            write_split(out, "yesno", split, m["recordings"], m["supervisions"])
    return manifests
