"""Long recordings with time-aligned transcripts (Praat TextGrid, ELAN .eaf) and JSON-lines manifests
(NeMo, Hugging Face) through ``speechtl prepare folder``. The sessions are real FSDD digits put one
after another with pauses, so every segment's audio can be checked against the file it came from."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import RecordingSet, SupervisionSet

from speechtl.cli import main
from speechtl.data.corpora.annotations import AnnotationError, choose_tiers, read_annotation, read_textgrid
from speechtl.data.corpora.folder import prepare_folder
from speechtl.data.corpora.imported import SplitConfig, Utterance, assign_splits
from speechtl.errors import SpeechtlError

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PAUSE = 0.4


def make_session(out: Path, clips: list[Path]) -> list[tuple[float, float, str, Path]]:
    """One wav of ``clips`` with pauses between them; ``(start, end, word, clip)`` of each."""
    parts, spans, t = [np.zeros(int(PAUSE * 8000))], [], PAUSE
    for c in clips:
        x, sr = sf.read(c, dtype="float32")
        assert sr == 8000
        spans.append((t, t + len(x) / sr, DIGITS[int(c.name[0])], c))
        parts += [x, np.zeros(int(PAUSE * 8000))]
        t += len(x) / sr + PAUSE
    sf.write(out, np.concatenate(parts), 8000)
    return spans


def textgrid(tiers: dict[str, list[tuple[float, float, str]]], xmax: float, short: bool = False) -> str:
    """A TextGrid as Praat writes it, long or short text format; pauses between the labels as "" intervals."""

    def filled(spans):
        out, t = [], 0.0
        for s, e, text in spans:
            if s > t:
                out.append((t, s, ""))
            out.append((s, e, text))
            t = e
        return [*out, (t, xmax, "")] if t < xmax else out

    def q(text):
        return '"' + text.replace('"', '""') + '"'

    if short:
        lines = [
            'File type = "ooTextFile"',
            'Object class = "TextGrid"',
            "",
            "0",
            str(xmax),
            "<exists>",
            str(len(tiers)),
        ]
        for name, spans in tiers.items():
            ivs = filled(spans)
            lines += ['"IntervalTier"', q(name), "0", str(xmax), str(len(ivs))]
            for s, e, text in ivs:
                lines += [repr(s), repr(e), q(text)]
        return "\n".join(lines) + "\n"
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {xmax} "]
    lines += ["tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]
    for k, (name, spans) in enumerate(tiers.items(), 1):
        ivs = filled(spans)
        lines += [f"    item [{k}]:", '        class = "IntervalTier" ', f"        name = {q(name)} "]
        lines += ["        xmin = 0 ", f"        xmax = {xmax} ", f"        intervals: size = {len(ivs)} "]
        for j, (s, e, text) in enumerate(ivs, 1):
            lines += [f"        intervals [{j}]:", f"            xmin = {s!r} ", f"            xmax = {e!r} "]
            lines += [f"            text = {q(text)} "]
    return "\n".join(lines) + "\n"


def eaf(tiers: dict[str, tuple[str | None, list[tuple[float, float, str]]]], media: str, ref: bool = False) -> str:
    """An ELAN file: each tier (participant, spans) time-aligned, with a symbolic translation tier under it;
    ``ref``: the field-linguistics layout instead, a time-aligned ``ref@`` tier of utterance numbers with the
    transcription ``tx@`` and the translation ``ft@`` as symbolic tiers under it."""
    slots, body, n = [], [], 0

    def aligned(aid, s1, s2, value):
        return (
            f'<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="{aid}" TIME_SLOT_REF1="{s1}" TIME_SLOT_REF2="{s2}">'
            f"<ANNOTATION_VALUE>{value}</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>"
        )

    def symbolic(aid, parent, value):
        return (
            f'<ANNOTATION><REF_ANNOTATION ANNOTATION_ID="{aid}" ANNOTATION_REF="{parent}">'
            f"<ANNOTATION_VALUE>{value}</ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION>"
        )

    def tier(tid, items, parent=None, who=None):
        attrs = (f' PARENT_REF="{parent}"' if parent else "") + (f' PARTICIPANT="{who}"' if who else "")
        kind = "translation" if parent else "utterance"
        return f'<TIER TIER_ID="{tid}" LINGUISTIC_TYPE_REF="{kind}"{attrs}>{"".join(items)}</TIER>'

    for name, (who, spans) in tiers.items():
        top, words, trans = [], [], []
        for k, (s, e, text) in enumerate(spans):
            n += 1
            slots += [f'<TIME_SLOT TIME_SLOT_ID="ts{2 * n - 1}" TIME_VALUE="{round(s * 1000)}"/>']
            slots += [f'<TIME_SLOT TIME_SLOT_ID="ts{2 * n}" TIME_VALUE="{round(e * 1000)}"/>']
            top.append(aligned(f"a{n}", f"ts{2 * n - 1}", f"ts{2 * n}", f"{k:03d}" if ref else text))
            words.append(symbolic(f"w{n}", f"a{n}", text))
            trans.append(symbolic(f"r{n}", f"a{n}", f"digit {text}"))
        top_name = f"ref@{name}" if ref else name
        body.append(tier(top_name, top, who=who))
        if ref:
            body.append(tier(f"tx@{name}", words, parent=top_name))
        body.append(tier(f"ft@{name}", trans, parent=top_name))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ANNOTATION_DOCUMENT AUTHOR="" FORMAT="3.0" VERSION="3.0">'
        f'<HEADER MEDIA_FILE="" TIME_UNITS="milliseconds"><MEDIA_DESCRIPTOR MEDIA_URL="file:///C:/Users/me/field/{media}" '
        f'MIME_TYPE="audio/x-wav" RELATIVE_MEDIA_URL="./{media}"/></HEADER>'
        f"<TIME_ORDER>{''.join(slots)}</TIME_ORDER>{''.join(body)}"
        '<LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="utterance" TIME_ALIGNABLE="true"/>'
        '<LINGUISTIC_TYPE CONSTRAINTS="Symbolic_Association" LINGUISTIC_TYPE_ID="translation" TIME_ALIGNABLE="false"/>'
        "</ANNOTATION_DOCUMENT>\n"
    )


def sups_of(out: Path) -> dict[str, dict]:
    got = {}
    for split in ("train", "dev", "test"):
        p = out / f"folder_supervisions_{split}.jsonl.gz"
        if p.is_file():
            for s in SupervisionSet.from_file(p):
                got[s.id] = {"split": split, "sup": s}
    return got


@pytest.fixture
def sessions(tmp_path, fsdd_dir):
    """8 sessions of 6 digits, 4 of jackson and 4 of george: (folder, {wav: spans})."""
    root = tmp_path / "field"
    root.mkdir()
    out = {}
    for k, spk in enumerate(["jackson", "george"]):
        clips = sorted(fsdd_dir.glob(f"*_{spk}_*.wav"))
        for j in range(4):
            wav = root / f"session{4 * k + j:02d}.wav"
            out[wav] = make_session(wav, clips[j * 37 : j * 37 + 6 * 7 : 7])
    return root, out


def test_textgrid_long_and_short_formats_read_alike(tmp_path):
    """The long format (UTF-16, as Praat saves a label outside ASCII) and the short one give the same
    tiers and intervals; a point tier gives none; a label's quote ("") is one quote; lines are named."""
    spans = {
        "transcription": [(0.5, 1.25, 'ş "da"'), (2.0, 3.0, "nu")],
        "notes": [(0.0, 4.0, "interval [1]: xmin = 2")],
    }
    long_ = tmp_path / "a.TextGrid"
    text = textgrid(spans, 4.0)
    point = (
        '    item [3]:\n        class = "TextTier"\n        name = "events"\n        xmin = 0\n        xmax = 4\n'
        '        points: size = 1\n        points [1]:\n            number = 1.5\n            mark = "cough"\n'
    )
    long_.write_bytes((text.replace("size = 2 ", "size = 3 ", 1) + point).encode("utf-16"))
    short = tmp_path / "b.TextGrid"
    short.write_text(textgrid(spans, 4.0, short=True))
    a, b = read_textgrid(long_), read_textgrid(short)
    assert [t.name for t in a.tiers] == ["transcription", "notes"]  # the point tier is left out
    strip = [[(i.start, i.end, i.text) for i in t.intervals] for t in a.tiers]
    assert strip == [[(i.start, i.end, i.text) for i in t.intervals] for t in b.tiers]
    assert [(i.start, i.end, i.text) for i in a.tiers[0].spoken] == [(0.5, 1.25, 'ş "da"'), (2.0, 3.0, "nu")]
    line = a.tiers[0].spoken[0].where.rsplit(":", 1)[1]
    assert 'text = "ş ""da"""' in text.splitlines()[int(line) - 1]
    cut = tmp_path / "c.TextGrid"
    cut.write_text(textgrid(spans, 4.0)[:-200])
    with pytest.raises(AnnotationError, match=r"c\.TextGrid.*ends before.*Fix: open it in Praat"):
        read_textgrid(cut)
    (tmp_path / "d.TextGrid").write_bytes(b"ooBinaryFile\x08TextGrid")
    with pytest.raises(AnnotationError, match="binary TextGrid"):
        read_textgrid(tmp_path / "d.TextGrid")


def test_folder_imports_textgrid_and_eaf_sessions(sessions, tmp_path, caplog):
    """TextGrids beside their wavs (a transcript tier chosen by its name over translation and notes tiers)
    and .eaf files named unlike their wavs (found by their media link; translations under each tier left
    out; half with the words on a symbolic tx@ tier under a ref@ tier of numbers; ELAN's participant, given
    on the top tier, is the speaker): one utterance per spoken interval, whose audio is the very
    clip that was put there, and every segment of a session in one split."""
    root, spans = sessions
    for k, (wav, sp) in enumerate(spans.items()):
        labels = [(s, e, w.upper() + "!") for s, e, w, _ in sp]
        if k % 2 == 0:  # non-speech marks: an interval of a tag alone is no utterance, a tag is no word
            marked = [(0.05, 0.3, "[noise]"), (labels[0][0], labels[0][1], "<laugh> " + labels[0][2]), *labels[1:]]
            tiers = {"Translation": [(s, e, "x") for s, e, _ in labels], "transcription": marked}
            tiers["notes"] = [(0.0, 0.2, "noise")]
            wav.with_suffix(".TextGrid").write_bytes(
                textgrid(tiers, sp[-1][1] + PAUSE, short=k % 4 == 0).encode("utf-16")
            )
        else:
            who = sp[0][3].stem.split("_")[1]
            (root / f"annotated_{k}.eaf").write_text(eaf({"utterance": (who, labels)}, wav.name, ref=k % 4 == 3))
    with caplog.at_level(logging.INFO):
        prepare_folder(root, tmp_path / "out", dev_fraction=0.25, test_fraction=0.25)
    got = sups_of(tmp_path / "out")
    assert len(got) == sum(len(sp) for sp in spans.values()) == 48
    assert "4 non-speech and unknown-word token(s) left out of the transcripts" in caplog.text
    assert (
        "48 segments from tier(s) 'transcription' (4 file(s)), 'tx@utterance' (2 file(s)), 'utterance' (2 file(s)); recordings found by its media link 4, beside it 4"
        in caplog.text
    )
    splits_of_session = {}
    recs = {}
    for split in ("train", "dev", "test"):
        recs.update({r.id: r for r in RecordingSet.from_file(tmp_path / "out" / f"folder_recordings_{split}.jsonl.gz")})
    for wav, sp in spans.items():
        for s, e, word, _ in sp:
            uid = f"{wav.stem}-{round(s * 1000):07d}-{round(e * 1000):07d}"
            sup = got[uid]["sup"]
            assert sup.text == word and sup.recording_id == wav.stem
            assert sup.start == pytest.approx(s, abs=1e-3) and sup.duration == pytest.approx(e - s, abs=2e-3)
            splits_of_session.setdefault(wav, set()).add(got[uid]["split"])
        speakers = {got[f"{wav.stem}-{round(s * 1000):07d}-{round(e * 1000):07d}"]["sup"].speaker for s, e, _, _ in sp}
        assert speakers == ({sp[0][3].stem.split("_")[1]} if int(wav.stem[-2:]) % 2 else {None})
    assert all(len(v) == 1 for v in splits_of_session.values())  # a session is never split
    assert {next(iter(v)) for v in splits_of_session.values()} == {"train", "dev", "test"}
    # the audio of one segment is the clip itself
    wav, sp = next(iter(spans.items()))
    s, e, _, clip = sp[3]
    sup = got[f"{wav.stem}-{round(s * 1000):07d}-{round(e * 1000):07d}"]["sup"]
    audio = recs[wav.stem].load_audio(offset=sup.start, duration=sup.duration)[0]
    x, _ = sf.read(clip, dtype="float32")
    n = min(len(x), len(audio))
    assert n >= len(x) - 16 and np.abs(audio[:n] - x[:n]).max() < 1e-3


def test_tier_choice_is_asked_when_it_cannot_be_read_from_the_names(sessions, tmp_path):
    """Two speakers' tiers named A and B: the error lists them with --tier; --tier 'A,B' imports both,
    each tier its speaker; word and phone alignments are named as such; a --tier naming nothing is said."""
    root, spans = sessions
    for k, (wav, sp) in enumerate(spans.items()):
        tiers = {"A": [(s, e, w) for s, e, w, _ in sp[:3]], "B": [(s, e, w) for s, e, w, _ in sp[3:]]}
        if k >= 6:  # two sessions of one speaker, transcribed on the usual tier (and a notes tier)
            tiers = {"transcription": [(s, e, w) for s, e, w, _ in sp], "notes": [(0.0, 0.2, "x")]}
        wav.with_suffix(".TextGrid").write_text(textgrid(tiers, sp[-1][1] + PAUSE))
    with pytest.raises(
        SpeechtlError, match=r"and 5 other\(s\) have several tiers.*'A' \(6 file\(s\), 18 intervals\).*Fix: --tier NAME"
    ):
        prepare_folder(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["prepare", "folder", "--corpus-dir", str(root), "--output-dir", str(tmp_path / "out"),
                 "--tier", "a,b"]) == 0  # fmt: skip
    got = sups_of(tmp_path / "out")  # A and B where the files have them, the transcription tier elsewhere
    assert len(got) == 48 and {g["sup"].speaker for g in got.values()} == {"A", "B", None}
    assert sum(g["sup"].speaker is None for g in got.values()) == 12
    with pytest.raises(SpeechtlError, match=r"--tier 'tx@\*' names no tier.*'A'"):
        prepare_folder(root, tmp_path / "out2", tier="tx@*")
    wav, sp = next(iter(spans.items()))
    ann = tmp_path / "mfa.TextGrid"
    ann.write_text(
        textgrid({"words": [(s, e, w) for s, e, w, _ in sp], "phones": [(s, e, "a") for s, e, _, _ in sp]}, 9)
    )
    with pytest.raises(SpeechtlError, match="word and phone alignments"):
        choose_tiers([read_annotation(ann)], None)


def test_bad_and_unmatched_annotations_are_named_and_skippable(sessions, tmp_path):
    """A cut-short TextGrid, an .eaf that is not XML and a TextGrid without its recording stop the import,
    each named with its file (and line) and the fix; --skip-bad imports the rest, listing them."""
    root, spans = sessions
    wavs = list(spans)
    for wav, sp in spans.items():
        wav.with_suffix(".TextGrid").write_text(textgrid({"text": [(s, e, w) for s, e, w, _ in sp]}, sp[-1][1] + PAUSE))
    wavs[0].with_suffix(".TextGrid").write_text(textgrid({"text": [(0.4, 0.9, "one")]}, 9.0)[:-60])
    wavs[1].with_suffix(".TextGrid").unlink()
    (root / "session01.eaf").write_text("<ANNOTATION_DOCUMENT><TIER>")
    (root / "orphan.TextGrid").write_text(textgrid({"text": [(0.4, 0.9, "one")]}, 2.0))
    with pytest.raises(SpeechtlError) as err:
        prepare_folder(root, tmp_path / "out")
    msg = str(err.value)
    assert "session00.TextGrid: bad-annotation: it ends before" in msg and "Save as text file" in msg
    assert "session01.eaf: bad-annotation: not well-formed XML" in msg
    assert "orphan.TextGrid: missing-audio: no audio file is named 'orphan'" in msg
    assert "session01.wav: no-transcript" in msg and "session00.wav: no-transcript" in msg
    prepare_folder(root, tmp_path / "out", skip_bad_audio=True)
    assert len(sups_of(tmp_path / "out")) == 36
    bad = (tmp_path / "out" / "bad_audio.txt").read_text()
    assert "orphan.TextGrid\tmissing-audio" in bad and "session00.wav\tno-transcript" in bad


def test_nemo_and_hugging_face_json_lines_manifests(sessions, fsdd_dir, tmp_path, caplog):
    """NeMo's manifest written on another machine (absolute paths that are not here, offset/duration
    segments of the sessions) and Hugging Face's metadata.jsonl (file_name, transcription)."""
    root, spans = sessions
    rows = []
    for wav, sp in list(spans.items())[:4]:
        for s, e, w, _ in sp:
            rows.append({"audio_filepath": f"/mnt/cluster/data/field/{wav.name}", "offset": s, "duration": e - s,
                         "text": w, "speaker": "spk" + wav.stem[-1]})  # fmt: skip
    for wav, sp in list(spans.items())[4:]:
        wav.with_suffix(".txt").write_text(" ".join(w for _, _, w, _ in sp))  # whole-file transcripts
    (root / "train_manifest.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    clips = sorted(fsdd_dir.glob("*_lucas_*.wav"))[:6]
    (root / "test").mkdir()
    for c in clips:
        sf.write(root / "test" / c.name, sf.read(c)[0], 8000)
    meta = "".join(json.dumps({"file_name": c.name, "transcription": DIGITS[int(c.name[0])]}) + "\n" for c in clips)
    (root / "test" / "metadata.jsonl").write_text(meta)
    with caplog.at_level(logging.INFO):
        prepare_folder(root, tmp_path / "out")
    got = sups_of(tmp_path / "out")
    assert "24 audio path(s) from another machine matched here" in caplog.text
    assert "segments by offset/duration" in caplog.text
    segs = [g for g in got.values() if g["sup"].recording_id != g["sup"].id]
    assert len(segs) == 24 and {g["sup"].speaker for g in segs} == {"spk0", "spk1", "spk2", "spk3"}
    first = next(iter(spans.values()))[0]
    assert any(g["sup"].start == pytest.approx(first[0], abs=1e-3) and g["sup"].text == first[2] for g in segs)
    assert {got[c.stem]["split"] for c in clips} == {"test"}
    assert all(got[c.stem]["sup"].text == DIGITS[int(c.name[0])] for c in clips)
    assert {got[w.stem]["split"] for w in list(spans)[4:]} <= {"train", "dev"}


def test_segments_of_a_recording_stay_together_without_speakers():
    """Speakers unknown: a recording's segments go to one split (no session heard in train and test),
    unless whole recordings would starve train; then utterance by utterance, with a warning."""
    utts = [
        Utterance(f"r{r}-{k}", f"r{r}.wav", "a", "x", recording_id=f"r{r}", start=k)
        for r in range(10)
        for k in range(5)
    ]
    line = assign_splits(utts, SplitConfig(dev_fraction=0.1, test_fraction=0.1))
    assert "by recording (speakers unknown)" in line
    for r in range(10):
        assert len({u.split for u in utts if u.recording_id == f"r{r}"}) == 1
    few = [
        Utterance(f"r{r}-{k}", f"r{r}.wav", "a", "x", recording_id=f"r{r}", start=k)
        for r in range(3)
        for k in range(20)
    ]
    assert "by utterance" in assign_splits(few, SplitConfig(dev_fraction=0.1, test_fraction=0.1))
    assert sum(u.split == "train" for u in few) == 48  # not one recording of 20 (whole recordings: 1 each)


def test_speakers_of_one_recording_are_dealt_together():
    """Two speakers' tiers of one session: speaker-disjoint splits deal both speakers together, so the
    session is never half in train and half in test (before, it was at some seeds); recordings of one
    speaker each are dealt by speaker as before."""
    utts = []
    for r in range(12):  # sessions 0-5: two speakers each (a pair of their own); 6-11: one speaker each
        pair = [f"p{r}a", f"p{r}b"] if r < 6 else [f"s{r}"]
        utts += [
            Utterance(f"r{r}-{k}", f"r{r}.wav", "a", "x", pair[k % len(pair)], recording_id=f"r{r}") for k in range(6)
        ]
    for seed in range(8):
        for u in utts:
            u.split = None
        line = assign_splits(utts, SplitConfig(dev_fraction=0.15, test_fraction=0.15, seed=seed))
        assert "speaker-disjoint" in line
        for r in range(12):
            assert len({u.split for u in utts if u.recording_id == f"r{r}"}) == 1, (seed, r)
        assert {u.split for u in utts} == {"train", "dev", "test"}


def test_a_speaker_in_every_session_falls_back_to_whole_recordings():
    """The linguist who runs every interview joins all speakers into one group: no speaker-disjoint
    split exists. Before, everything silently went to train (dev and test empty); now whole recordings
    are dealt, saying why, and --split-by speaker says it cannot be done."""
    utts = []
    for r in range(12):
        for k in range(6):
            spk = "EL" if k % 2 else f"guest{r}"
            utts.append(Utterance(f"r{r}-{k}", f"r{r}.wav", "a", "x", spk, recording_id=f"r{r}"))
    line = assign_splits(utts, SplitConfig(dev_fraction=0.15, test_fraction=0.15))
    assert "by recording (the 13 speakers are heard together in recordings: 1 group(s))" in line
    assert {u.split for u in utts} == {"train", "dev", "test"}
    for r in range(12):
        assert len({u.split for u in utts if u.recording_id == f"r{r}"}) == 1
    for u in utts:
        u.split = None
    with pytest.raises(SpeechtlError, match="form 1 group"):
        assign_splits(utts, SplitConfig(dev_fraction=0.15, test_fraction=0.15, by="speaker"))


def test_review_cases_of_manifests_and_annotation_files(sessions, tmp_path, caplog):
    """NeMo's test.json with offsets names its split; a JSON manifest made from the CSV beside it (the same
    transcripts) reads once; a top-level x.wav annotated while day2/x.wav exists is not ambiguous; two
    annotation files of one recording (ELAN's import of a TextGrid saved beside it) are named, not read
    twice; a text file whose first line starts with '{' is text."""
    root, spans = sessions
    wavs = list(spans)
    rows = {"train": [], "test": []}
    for k, (wav, sp) in enumerate(spans.items()):
        part = "test" if k in (0, 4) else "train"
        rows[part] += [{"audio_filepath": wav.name, "offset": s, "duration": e - s, "text": w} for s, e, w, _ in sp]
    for part, rs in rows.items():
        (root / f"{part}.json").write_text("".join(json.dumps(r) + "\n" for r in rs))
    prepare_folder(root, tmp_path / "out1")
    got = sups_of(tmp_path / "out1")
    assert {g["sup"].recording_id for g in got.values() if g["split"] == "test"} == {wavs[0].stem, wavs[4].stem}
    for part in rows:
        (root / f"{part}.json").unlink()
    # a CSV and a JSON manifest made from it; '{' starting a plain transcript line
    (root / "metadata.csv").write_text("file,text\n" + "".join(f"{w.name},hello {k}\n" for k, w in enumerate(wavs)))
    (root / "meta.jsonl").write_text(
        "".join(json.dumps({"file_name": w.name, "text": f"hello {k}"}) + "\n" for k, w in enumerate(wavs))
    )
    with caplog.at_level(logging.INFO):
        prepare_folder(root, tmp_path / "out2")
    assert "8 transcript(s) given again, word for word, by a second file: read once" in caplog.text
    (root / "meta.jsonl").unlink()
    (root / "metadata.csv").unlink()
    (root / "braces.txt").write_text("".join(f"{w.stem}\t{{noise}} hello\n" for w in wavs))
    prepare_folder(root, tmp_path / "out3")
    assert {g["sup"].text for g in sups_of(tmp_path / "out3").values()} == {"noise hello"}
    (root / "braces.txt").unlink()
    # annotations: a same-named recording in a sub-folder, and a second annotation file of one recording
    for wav, sp in spans.items():
        wav.with_suffix(".TextGrid").write_text(textgrid({"text": [(s, e, w) for s, e, w, _ in sp]}, sp[-1][1] + PAUSE))
    (root / "day2").mkdir()
    sf.write(root / "day2" / "other.wav", np.zeros(8000), 8000)
    sf.write(root / "day2" / wavs[0].name, np.zeros(8000), 8000)  # session00.wav again, unannotated
    (root / "day2" / wavs[0].with_suffix(".txt").name).write_text("zero")
    (root / "day2" / "other.txt").write_text("one")
    prepare_folder(root, tmp_path / "out4")
    assert len(sups_of(tmp_path / "out4")) == 48 + 2
    (root / f"{wavs[1].stem}.eaf").write_text(
        eaf({"default": (None, [(s, e, w) for s, e, w, _ in spans[wavs[1]]])}, wavs[1].name)
    )
    with pytest.raises(
        SpeechtlError, match=r"session01.eaf: duplicate-id: .*session01.wav is transcribed by .*session01.TextGrid"
    ):
        prepare_folder(root, tmp_path / "out5")


def test_elan_time_subdivisions_and_utf16_without_a_mark(tmp_path):
    """A time subdivision's inner boundaries without times get ELAN's evenly spread ones (the tier
    vanished before); a symbolic subdivision's words follow their PREVIOUS_ANNOTATION chain, not the
    document's order; a TIME_VALUE that is not a number is named; a BOM-less UTF-16 TextGrid reads."""
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?><ANNOTATION_DOCUMENT><HEADER TIME_UNITS="milliseconds"/>'
        '<TIME_ORDER><TIME_SLOT TIME_SLOT_ID="t1" TIME_VALUE="1000"/><TIME_SLOT TIME_SLOT_ID="t2"/>'
        '<TIME_SLOT TIME_SLOT_ID="t3"/><TIME_SLOT TIME_SLOT_ID="t4" TIME_VALUE="4000"/></TIME_ORDER>'
        '<TIER TIER_ID="ref"><ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a0" TIME_SLOT_REF1="t1" '
        'TIME_SLOT_REF2="t4"><ANNOTATION_VALUE>1</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION></TIER>'
        '<TIER TIER_ID="sentences" PARENT_REF="ref">'
        + "".join(
            f'<ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="s{k}" TIME_SLOT_REF1="{a}" TIME_SLOT_REF2="{b}">'
            f"<ANNOTATION_VALUE>part {k}</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>"
            for k, (a, b) in enumerate([("t1", "t2"), ("t2", "t3"), ("t3", "t4")])
        )
        + '</TIER><TIER TIER_ID="words" PARENT_REF="ref">'
        '<ANNOTATION><REF_ANNOTATION ANNOTATION_ID="w2" ANNOTATION_REF="a0" PREVIOUS_ANNOTATION="w1">'
        "<ANNOTATION_VALUE>second</ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION>"
        '<ANNOTATION><REF_ANNOTATION ANNOTATION_ID="w1" ANNOTATION_REF="a0">'
        "<ANNOTATION_VALUE>first</ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION></TIER></ANNOTATION_DOCUMENT>"
    )
    (tmp_path / "a.eaf").write_text(doc)
    tiers = {t.name: t for t in read_annotation(tmp_path / "a.eaf").tiers}
    got = [(i.start, i.end, i.text) for i in tiers["sentences"].intervals]
    assert got == [(1.0, 2.0, "part 0"), (2.0, 3.0, "part 1"), (3.0, 4.0, "part 2")]
    assert [i.text for i in tiers["words"].intervals] == ["first second"]
    (tmp_path / "b.eaf").write_text(doc.replace('TIME_VALUE="4000"', 'TIME_VALUE="4s"'))
    with pytest.raises(AnnotationError, match=r"time slot t4 has TIME_VALUE '4s'"):
        read_annotation(tmp_path / "b.eaf")
    (tmp_path / "c.TextGrid").write_bytes(textgrid({"text": [(0.5, 1.0, "da")]}, 2.0).encode("utf-16-le"))
    assert [i.text for i in read_textgrid(tmp_path / "c.TextGrid").tiers[0].spoken] == ["da"]


def test_textgrid_times_keep_their_precision_and_names_do_not_clash(tmp_path, capsys):
    """A 34-hour recording's times survive the round trip (.6g kept 6 digits: 123457 for 123456.789);
    --textgrid-dir refuses two inputs that would write one <name>.TextGrid, before any decoding."""
    from speechtl.data.corpora.annotations import write_textgrid

    write_textgrid(tmp_path / "long.TextGrid", {"speechtl": [(100000.25, 123456.5, "da")]}, 123456.789)
    [tier] = read_textgrid(tmp_path / "long.TextGrid").tiers
    assert [(i.start, i.end) for i in tier.spoken] == [(100000.25, 123456.5)] and tier.intervals[-1].end == 123456.789
    for d in ("day1", "day2"):
        (tmp_path / d).mkdir()
        sf.write(tmp_path / d / "rec1.wav", np.zeros(8000), 8000)
    args = ["transcribe", "--model-dir", str(tmp_path / "none"), "--lang-dir", str(tmp_path / "none"),
            "--textgrid-dir", str(tmp_path / "tg"), str(tmp_path / "day1"), str(tmp_path / "day2")]  # fmt: skip
    assert main(args) == 1
    assert "'rec1'): one would overwrite another" in capsys.readouterr().err
