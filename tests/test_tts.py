"""Synthetic corpora: every engine speaks, and a seed fixes the corpus for any nj."""

import hashlib
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from conftest import shared_data

from speechtl.data.tts import Voice, plan, read_texts, synthesize_corpus
from speechtl.errors import SpeechtlError

needs_tts = pytest.mark.skipif(
    not all(shutil.which(p) for p in ["espeak-ng", "flite", "text2wave", "sox"]),
    reason="TTS engines not installed (make setup installs them)",
)

ITEMS = [("u1", "hello world"), ("u2", "the quick brown fox"), ("u3", "one two three"), ("u4", "good morning")]
VOICES = [
    Voice("espeak-ng", "en+f3"),
    Voice("espeak-ng", "nl", rate=(1.0, 1.3)),
    Voice("flite", "slt"),
    Voice("festival", "kal_diphone"),
]


def digest(recs):
    return {r.id: hashlib.md5(open(r.sources[0].source, "rb").read()).hexdigest() for r in recs}


@needs_tts
def test_every_engine_speaks_at_16k(tmp_path):
    for v in VOICES:
        recs, sups = synthesize_corpus([("x", "testing one two")], [v], tmp_path / v.engine / v.name)
        r = next(iter(recs))
        info = sf.info(r.sources[0].source)
        assert info.samplerate == 16000 and info.channels == 1 and 0.5 < r.duration < 5, (v, r.duration)
        assert next(iter(sups)).speaker == v.speaker


@needs_tts
def test_synthesis_is_deterministic_for_any_nj(tmp_path):
    a = synthesize_corpus(ITEMS, VOICES, tmp_path / "a", seed=7, nj=1)
    b = synthesize_corpus(ITEMS, VOICES, tmp_path / "b", seed=7, nj=2)
    assert sorted(digest(a[0]).values()) == sorted(digest(b[0]).values())
    assert [s.text for s in a[1]] == [s.text for s in b[1]]
    c = synthesize_corpus(ITEMS, VOICES, tmp_path / "c", seed=8, nj=1)
    assert digest(c[0]) != digest(a[0])


def test_plan_draws_rates_within_ranges_and_depends_only_on_seed_and_id():
    voices = [Voice("espeak-ng", "en", rate=(0.8, 0.9), pitch=(1.2, 1.3))]
    p1 = plan(ITEMS, voices, seed=3)
    assert all(0.8 <= j["rate"] <= 0.9 and 1.2 <= j["pitch"] <= 1.3 for j in p1)
    p2 = plan(list(reversed(ITEMS)), voices, seed=3)
    assert {j["id"]: j["rate"] for j in p1} == {j["id"]: j["rate"] for j in p2}


def test_read_texts_tsv_and_txt(tmp_path):
    tsv = tmp_path / "ga.tsv"
    tsv.write_text("a1\tDia  duit\n\na2\tSlán\n", encoding="utf-8")
    assert read_texts(tsv) == [("a1", "Dia duit"), ("a2", "Slán")]
    txt = tmp_path / "x.txt"
    txt.write_text("one\ntwo\n")
    assert read_texts(txt) == [("x-1", "one"), ("x-2", "two")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n")
    with pytest.raises(SpeechtlError, match=r"bad.tsv:1"):
        read_texts(bad)
    real = shared_data() / "text" / "ga.tsv"
    if real.is_file():
        assert len(read_texts(real)) > 1000


def test_unknown_engine_is_named(tmp_path):
    with pytest.raises(SpeechtlError, match=r"unknown TTS engine 'sapi'"):
        synthesize_corpus(ITEMS, [Voice("sapi", "x")], tmp_path)


@needs_tts
def test_synthesize_command(tmp_path):
    import subprocess
    import sys

    from lhotse import RecordingSet, SupervisionSet

    text = tmp_path / "en.tsv"
    text.write_text("s1\tHello, World!\ns2\tIt's a test.\n", encoding="utf-8")
    voices = tmp_path / "voices.yaml"
    voices.write_text("voices:\n  - {engine: espeak-ng, name: en+m3, rate: [0.9, 1.1], pitch: [1.0, 1.2]}\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechtl.cli",
            "synthesize",
            "--text",
            str(text),
            "--voices",
            str(voices),
            "--output-dir",
            str(tmp_path / "m"),
            "--prefix",
            "tts_en",
            "--split",
            "train",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    sups = SupervisionSet.from_file(tmp_path / "m" / "tts_en_supervisions_train.jsonl.gz")
    assert sorted(s.text for s in sups) == ["hello world", "it's a test"]
    recs = RecordingSet.from_file(tmp_path / "m" / "tts_en_recordings_train.jsonl.gz")
    assert all(r.sampling_rate == 16000 and r.duration > 0.3 for r in recs)
    voices.write_text("voices:\n  - {engine: espeak-ng, nam: en}\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechtl.cli",
            "synthesize",
            "--text",
            str(text),
            "--voices",
            str(voices),
            "--output-dir",
            str(tmp_path / "m2"),
            "--prefix",
            "x",
            "--split",
            "y",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "unknown option" in r.stderr and "Traceback" not in r.stderr


@needs_tts
def test_an_interrupted_synthesis_keeps_what_it_made_from_the_same_plan(tmp_path, caplog):
    """fsdd's stage 1 killed at wav 1252 of 3100 made all 3100 again."""
    import logging

    voices = VOICES[:2]
    a = synthesize_corpus(ITEMS, voices, tmp_path / "c", seed=7, nj=2)
    wavs = {r.id: r.sources[0].source for r in a[0]}
    times = {uid: Path(w).stat().st_mtime_ns for uid, w in wavs.items()}
    gone = sorted(wavs)[0]
    Path(wavs[gone]).unlink()  # as if killed before it was written
    with caplog.at_level(logging.INFO):
        b = synthesize_corpus(ITEMS, voices, tmp_path / "c", seed=7, nj=1)
    assert f"{len(wavs) - 1} of {len(wavs)} wavs kept from an earlier run of the same plan; 1 to make" in caplog.text
    assert digest(b[0]) == digest(a[0]) and list(b[0]) == list(a[0])  # the same corpus, manifests included
    assert all(Path(wavs[u]).stat().st_mtime_ns == t for u, t in times.items() if u != gone)
    c = synthesize_corpus(ITEMS, voices, tmp_path / "c", seed=8, nj=1)  # another plan: nothing kept
    assert all(Path(wavs[u]).stat().st_mtime_ns != t for u, t in times.items() if u in digest(c[0]))
