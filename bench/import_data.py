"""Import + validation time of a user's corpus against lhotse's own import of the same files.

Makes ``--num-files`` audio files (half wav, half mp3, copies of a few real
yesno/FSDD recordings) in a temp dir, laid out twice over the same files: a
folder with an ``id<TAB>text`` transcript file, and a Kaldi data dir. Then
times, in this one run:

- speechtl ``prepare_folder`` and ``prepare_kaldi`` (every file probed: format
  sniffed, header and last block decoded; durations and text checked; manifests
  written), and
- the anchors: lhotse's ``load_kaldi_data_dir`` on the same Kaldi dir (reads
  each file's duration; no checks) and lhotse's folder import
  (``RecordingSet.from_dir`` + one supervision per recording, written the same).

Prints each time and the ratio speechtl / lhotse.

    python bench/import_data.py [--num-files 10000] [--nj 4]
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_corpus(root: Path, n: int, sources: list[Path]) -> tuple[Path, Path]:
    """``n`` files under root/audio (wav and mp3 alternately), a transcript file, and a Kaldi dir."""
    audio = root / "folder" / "audio"
    audio.mkdir(parents=True)
    blobs = []
    for s in sources:
        x, sr = sf.read(s, dtype="float32")
        blobs.append((".wav", s.read_bytes()))
        mp3 = root / f"{s.stem}.mp3"
        sf.write(mp3, x, sr, format="MP3")
        blobs.append((".mp3", mp3.read_bytes()))
    kaldi = root / "kaldi" / "train"
    kaldi.mkdir(parents=True)
    trans, wav_scp, text, utt2spk = [], [], [], []
    for i in range(n):
        ext, data = blobs[i % len(blobs)]
        uid = f"spk{i % 50:02d}-utt{i:06d}"
        path = audio / f"{uid}{ext}"
        path.write_bytes(data)
        trans.append(f"{uid}\tyes\n")
        wav_scp.append(f"{uid} {path}\n")
        text.append(f"{uid} yes\n")
        utt2spk.append(f"{uid} spk{i % 50:02d}\n")
    (root / "folder" / "transcripts.tsv").write_text("".join(trans))
    for name, lines in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk)):
        (kaldi / name).write_text("".join(lines))
    return root / "folder", root / "kaldi"


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def lhotse_folder(folder: Path, out: Path) -> None:
    from lhotse import RecordingSet, SupervisionSegment, SupervisionSet

    texts = dict(line.split("\t", 1) for line in (folder / "transcripts.tsv").read_text().splitlines())
    recs = RecordingSet.from_recordings(
        r
        for pattern in ("*.wav", "*.mp3")
        for r in RecordingSet.from_dir(folder / "audio", pattern=pattern, num_jobs=1)
    )
    sups = SupervisionSet.from_segments(
        SupervisionSegment(r.id, r.id, 0.0, r.duration, channel=0, text=texts[r.id]) for r in recs
    )
    out.mkdir(parents=True, exist_ok=True)
    recs.to_file(out / "lhotse_recordings_train.jsonl.gz")
    sups.to_file(out / "lhotse_supervisions_train.jsonl.gz")


def lhotse_kaldi(kaldi: Path, out: Path) -> None:
    from lhotse.kaldi import load_kaldi_data_dir

    recs, sups, _ = load_kaldi_data_dir(kaldi / "train", sampling_rate=8000, num_jobs=1)
    out.mkdir(parents=True, exist_ok=True)
    recs.to_file(out / "lk_recordings_train.jsonl.gz")
    sups.to_file(out / "lk_supervisions_train.jsonl.gz")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-files", type=int, default=10000)
    p.add_argument("--nj", type=int, default=4, help="speechtl's probing threads")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    a = p.parse_args()
    import logging

    from speechtl.data.corpora.folder import prepare_folder
    from speechtl.data.corpora.kaldi import prepare_kaldi

    logging.basicConfig(level=logging.WARNING)
    sources = sorted((a.data / "yesno" / "waves_yesno").glob("*.wav"))[:2]
    sources += sorted((a.data / "fsdd" / "recordings").glob("*.wav"))[:2]
    tmp = Path(tempfile.mkdtemp(prefix="bench_import."))
    try:
        t = time.perf_counter()
        folder, kaldi = make_corpus(tmp, a.num_files, sources)
        print(f"made {a.num_files} files (wav and mp3) in {time.perf_counter() - t:.1f} s under {tmp}")
        results = {
            "lhotse folder import": timed(lambda: lhotse_folder(folder, tmp / "m_lf")),
            "speechtl prepare folder": timed(lambda: prepare_folder(folder, tmp / "m_f", nj=a.nj)),
            "lhotse load_kaldi_data_dir": timed(lambda: lhotse_kaldi(kaldi, tmp / "m_lk")),
            "speechtl prepare kaldi": timed(lambda: prepare_kaldi(kaldi, tmp / "m_k", nj=a.nj)),
        }
        for name, s in results.items():
            print(f"{name:28s} {s:7.2f} s  ({a.num_files / s:7.0f} files/s)")
        f = results["speechtl prepare folder"] / results["lhotse folder import"]
        k = results["speechtl prepare kaldi"] / results["lhotse load_kaldi_data_dir"]
        print(f"ratio speechtl/lhotse (import + validation vs import only): folder {f:.2f}x, kaldi {k:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
