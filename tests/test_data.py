"""Corpus preparation: manifests, the split, and bad audio named before any work."""

import shutil
import subprocess
import sys

import pytest

from speechtl.data.corpora.yesno import prepare_yesno, text_from_name
from speechtl.errors import SpeechtlError


def copy_corpus(src, dst, n=None):
    dst.mkdir()
    for f in sorted(src.glob("*.wav"))[:n]:
        shutil.copy(f, dst / f.name)
    return dst


def test_prepare_yesno_split_and_text(yesno_dir, tmp_path):
    m = prepare_yesno(yesno_dir, tmp_path / "manifests")
    assert len(m["train"]["recordings"]) == 30 and len(m["test"]["recordings"]) == 30
    train_ids = {r.id for r in m["train"]["recordings"]}
    test_ids = {r.id for r in m["test"]["recordings"]}
    assert not train_ids & test_ids
    wavs = sorted(p.stem for p in yesno_dir.glob("*.wav"))
    assert train_ids == set(wavs[::2])
    sup = next(iter(m["test"]["supervisions"]))
    assert sup.text == text_from_name(sup.recording_id) and len(sup.text.split()) == 8
    assert (tmp_path / "manifests" / "yesno_recordings_train.jsonl.gz").is_file()
    assert text_from_name("0_1_1_0_0_0_0_1") == "NO YES YES NO NO NO NO YES"


def test_corrupt_and_empty_wavs_are_named(yesno_dir, tmp_path):
    corpus = copy_corpus(yesno_dir, tmp_path / "waves", 10)
    (corpus / "1_1_1_1_1_1_1_1.wav").write_bytes(b"")
    (corpus / "0_0_0_0_0_0_0_0.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    out = tmp_path / "manifests"
    with pytest.raises(SpeechtlError) as e:
        prepare_yesno(corpus, out)
    msg = str(e.value)
    assert "1_1_1_1_1_1_1_1.wav" in msg and "empty" in msg
    assert "0_0_0_0_0_0_0_0.wav" in msg and "--skip-bad" in msg and "--skip-bad-audio" not in msg
    assert not out.exists(), "nothing may be written before the checks pass"

    m = prepare_yesno(corpus, out, skip_bad_audio=True)
    ids = {r.id for s in m.values() for r in s["recordings"]}
    assert len(ids) == 10 and "1_1_1_1_1_1_1_1" not in ids and "0_0_0_0_0_0_0_0" not in ids
    listed = (out / "bad_audio.txt").read_text()
    assert "1_1_1_1_1_1_1_1.wav" in listed and "0_0_0_0_0_0_0_0.wav" in listed


def test_cli_reports_bad_audio_without_traceback(yesno_dir, tmp_path):
    corpus = copy_corpus(yesno_dir, tmp_path / "waves", 4)
    (corpus / "1_0_1_0_1_0_1_0.wav").write_bytes(b"not audio at all")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechtl.cli",
            "prepare",
            "yesno",
            "--corpus-dir",
            str(corpus),
            "--output-dir",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "1_0_1_0_1_0_1_0.wav" in r.stderr and "Traceback" not in r.stderr


def test_misnamed_files_and_missing_dir(yesno_dir, tmp_path):
    with pytest.raises(SpeechtlError, match=r"does not exist"):
        prepare_yesno(tmp_path / "nope")
    corpus = copy_corpus(yesno_dir, tmp_path / "waves", 3)
    shutil.copy(next(corpus.glob("*.wav")), corpus / "hello.wav")
    with pytest.raises(SpeechtlError, match=r"hello.wav"):
        prepare_yesno(corpus)
