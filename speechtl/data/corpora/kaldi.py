"""Kaldi data directories in and out: ``speechtl prepare kaldi`` and ``speechtl export kaldi``.

Import reads ``wav.scp`` (file paths, ``cmd args |`` pipes, which are run to
probe them, or ``FILE.ark:OFFSET`` through Kaldi's ``wav-copy`` when it is on PATH), ``text``, ``utt2spk``, optional ``segments``, ``spk2gender``,
``utt2lang`` and ``reco2dur``. ``--corpus-dir`` is one data dir (its name, if
train/dev/test-like, is its split; otherwise dev and test are made from it by
the seeded rule) or a parent holding one data dir per split (``train/``,
``dev/``, ``test/``; valid/val are dev; names that start like them, e.g.
``train_clean_5/``, ``dev_clean_2/``, as :func:`~speechtl.data.corpora.imported.part_splits`
says; other names are kept as parts, e.g. ``test_other/`` beside ``test/``, and
decoded as test sets; a missing dev or test is drawn from train). Kaldi's copies
of train beside it (``train_sp/``, ``train_hires/``) are left out and said; a
parent whose one data dir has another name (``data/all/``) is that dir.
Transcripts lose Kaldi's tags (``<UNK>``, ``[noise]``: :func:`drop_tags`), and a
segment that ends up to 0.5 s past its recording is cut at its end, as
``extract-segments`` does.
lhotse's ``load_kaldi_data_dir`` reads the same files, but it takes one
sampling rate for every recording, reads no rates or channels from the audio,
and drops unreadable files with a warning; this reader probes every recording
and names each problem with its file and line (:mod:`speechtl.data.validate`).
``reco2dur``, when present, is checked against the audio: a recording shorter
than it says was cut short.

Export (:func:`export_kaldi`) writes ``wav.scp``, ``segments``, ``text``,
``utt2spk``, ``spk2utt``, ``reco2dur`` (and ``spk2gender`` when known) per
split, so the corpus goes back to Kaldi or ESPnet as it came.
"""

import logging
import re
import shlex
import shutil
from collections import Counter, defaultdict
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet

from speechtl.atomic import atomic_open
from speechtl.data.corpora.imported import (
    Manifests,
    Pathlike,
    Utterance,
    build_corpus,
    draw_missing_splits,
    drop_tags,
    import_options,
    is_derived_copy,
    part_splits,
    read_lines,
    safe_id,
    say_dropped_tags,
    split_of_split_dir,
)
from speechtl.data.downmix import is_downmixed
from speechtl.data.validate import AUDIO_EXTENSIONS, Report, sniff_file
from speechtl.errors import SpeechtlError


def read_mapping(path: Path, report: Report, min_fields: int = 2) -> dict[str, tuple[str, str]]:
    """``key -> (rest of the line, file:line)`` of a Kaldi ``key value...`` file ('' when absent)."""
    out: dict[str, tuple[str, str]] = {}
    if not path.is_file():
        return out
    for n, line in read_lines(path, report):
        if line is None or not line.strip():
            continue
        parts = line.strip().split(None, 1)
        where = f"{path}:{n}"
        if len(parts) < min_fields:
            report.add("bad-line", where, f"expected '<id> <value>' in {path.name}")
            continue
        if parts[0] in out:
            report.add("duplicate-id", where, f"{parts[0]!r} is also on {out[parts[0]][1]}", parts[0])
            continue
        out[parts[0]] = (parts[1] if len(parts) > 1 else "", where)
    return out


def data_dirs(corpus_dir: Path) -> list[tuple[str | None, Path]]:
    """``(split, data dir)`` pairs (:func:`~speechtl.data.corpora.imported.part_splits`: several
    train dirs are all train); the split is None for a lone dir not named like a split."""
    if (corpus_dir / "wav.scp").is_file():
        return [(split_of_split_dir(corpus_dir.name), corpus_dir)]
    subs = sorted(d for d in corpus_dir.iterdir() if (d / "wav.scp").is_file())
    if not subs:
        raise SpeechtlError(
            f"{corpus_dir} is not a Kaldi data dir (no wav.scp) and holds none. "
            "Fix: point --corpus-dir at a data dir, or at the parent of train/, dev/, test/ data dirs."
        )
    exact = {d: split_of_split_dir(d.name) for d in subs}
    for split in {v for v in exact.values() if v}:
        same = [d.name for d in subs if exact[d] == split]
        if len(same) > 1:
            raise SpeechtlError(
                f"{corpus_dir}: data dirs {same} are all the {split} split. Fix: keep one, or point --corpus-dir at it."
            )
    # Kaldi's derived copies of train (train_sp, train_clean_5_sp, train_hires) beside the dir they
    # were made from: left out, said.
    kinds = part_splits([d.name for d in subs])
    derived = [d for d in subs if kinds[d.name] == "train" and is_derived_copy(d.name)]
    if len(derived) == sum(1 for d in subs if kinds[d.name] == "train"):
        derived = []  # only copies: one of them is the training data there is
    if derived:
        logging.warning(
            f"{corpus_dir}: {[d.name for d in derived]} not imported: copies of train (speed-perturbed, hires...); "
            "speechtl makes its own. To import one, point --corpus-dir at it."
        )
    subs = [d for d in subs if d not in derived]
    kinds = part_splits([d.name for d in subs])
    if len(subs) == 1 and not kinds[subs[0].name]:  # data/all: the whole corpus, dev and test drawn from it
        logging.info(f"{subs[0]}: not named like a split: the whole corpus, dev and test drawn from it")
        return [(None, subs[0])]
    out = [(kinds[d.name] or d.name, d) for d in subs]
    renamed = [f"{d.name} -> {split}" for split, d in out if split != d.name]
    if renamed:
        logging.info(f"{corpus_dir}: data dirs taken as {', '.join(renamed)}")
    if "train" not in {split for split, _ in out}:
        logging.warning(
            f"{corpus_dir}: no data dir is named train (found {sorted(d.name for d in subs)}): a recipe adapts "
            "on the train part. Fix, for a recipe: name the training dir train (and dev, test), or point "
            "--corpus-dir at one dir."
        )
    return out


#: A wav.scp entry that is an offset into a Kaldi archive: ``wav.ark:1234``.
ARK_OFFSET = re.compile(r"\S+\.ark:\d+")


def archive_entries(wavs: dict[str, tuple[str, str]]) -> set[str]:
    """Recordings of ``wavs`` stored as offsets into Kaldi archives. With Kaldi's ``wav-copy`` on
    PATH each becomes a ``wav-copy FILE.ark:OFFSET - |`` pipe (``wavs`` is changed in place);
    without it they are returned, to be named as problems (they read as missing files before)."""
    found = {rid for rid, (entry, _) in wavs.items() if ARK_OFFSET.fullmatch(entry.strip())}
    if found and shutil.which("wav-copy"):
        for rid in found:
            entry, where = wavs[rid]
            wavs[rid] = (f"wav-copy {entry.strip()} - |", where)
        logging.info(f"{len(found)} recording(s) in Kaldi archives, read through wav-copy pipes")
        return set()
    return found


def read_data_dir(d: Path, split: str | None, report: Report) -> list[Utterance]:
    """The utterances of one Kaldi data dir; format problems go to ``report``."""
    wavs = read_mapping(d / "wav.scp", report)
    texts = read_mapping(d / "text", report, min_fields=1)
    spk = read_mapping(d / "utt2spk", report)
    gender = read_mapping(d / "spk2gender", report)
    lang = read_mapping(d / "utt2lang", report)
    segments = read_mapping(d / "segments", report)
    if not (d / "utt2spk").is_file():
        logging.warning(f"{d} has no utt2spk: speakers unknown, dev/test cannot be made speaker-disjoint")
    archived = archive_entries(wavs)
    utts = []
    if segments:
        items = []
        for uid, (rest, where) in segments.items():
            f = rest.split()
            try:
                rec, start, end = f[0], float(f[1]), float(f[2])
            except (IndexError, ValueError):
                report.add("bad-line", where, "segments lines are '<utt> <recording> <start> <end>'", uid)
                continue
            if rec not in wavs:
                report.add("missing-audio", where, f"recording {rec!r} is not in {d / 'wav.scp'}", uid)
                continue
            items.append((uid, rec, start, end))
        unused = len(wavs.keys() - {rec for _, rec, _, _ in items})
        if unused:
            logging.warning(f"{d}: {unused} recording(s) of wav.scp have no segment; not imported")
    else:
        items = [(rid, None, 0.0, None) for rid in wavs]
    tags: Counter[str] = Counter()
    named: set[str] = set()  # archived recordings already reported: once a recording, not once per segment
    for uid, rec, start, end in items:
        rid = rec or uid
        if rid in archived:
            if rid not in named:
                entry, where = wavs[rid]
                report.add("kaldi-archive", where, f"{entry} is an offset into a Kaldi archive", uid)
                named.add(rid)
            continue
        s = spk.get(uid, (None,))[0]
        utts.append(
            Utterance(
                id=uid,
                audio=wavs[rid][0],
                text=drop_tags(texts[uid][0], tags) if uid in texts else None,
                where=texts[uid][1] if uid in texts else wavs[rid][1],
                speaker=s,
                split=split,
                recording_id=rec,
                start=start,
                end=end,
                gender=gender.get(s, (None,))[0] if s else None,
                language=lang.get(uid, (None,))[0],
            )
        )
    say_dropped_tags(str(d / "text"), tags)
    known = {u.id for u in utts}
    for uid, (_, where) in texts.items():
        if uid not in known and not (segments and uid in segments):
            report.add(
                "missing-audio", where, f"utterance {uid!r} has a transcript but no audio in wav.scp or segments"
            )
    return utts


def check_reco2dur(d: Path, utts: list[Utterance], infos: dict, report: Report) -> None:
    """A recording shorter than its ``reco2dur`` was cut short (or wav.scp points at the wrong file)."""
    for rid, (value, where) in read_mapping(d / "reco2dur", Report()).items():
        info = infos.get(rid)
        try:
            said = float(value)
        except ValueError:
            continue
        if info is not None and info.duration < said - 0.05:
            ids = [u.id for u in utts if u.rec_id == rid]
            for uid in ids:
                report.add(
                    "truncated", where, f"reco2dur says {said:.2f} s, the audio holds {info.duration:.2f} s", uid
                )


def prepare_kaldi(
    corpus_dir: Pathlike,
    output_dir: Pathlike | None = None,
    prefix: str = "kaldi",
    **options,
) -> Manifests:
    """Manifests of Kaldi data dir(s) (see the module doc); ``options`` as
    :func:`~speechtl.data.corpora.imported.import_options`."""
    opts = import_options(**options)
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise SpeechtlError(f"Kaldi data dir {corpus_dir} does not exist. Fix: check --corpus-dir.")
    report = Report()
    dirs = data_dirs(corpus_dir)
    utts: list[Utterance] = []
    for split, d in dirs:
        utts += read_data_dir(d, split, report)
    opts = draw_missing_splits(utts, opts)

    def reco2dur_checks(infos: dict) -> None:
        for _, d in dirs:
            check_reco2dur(d, utts, infos, report)

    return build_corpus(prefix, utts, output_dir, opts, report, corpus_dir, after_probe=reco2dur_checks)


def export_kaldi(
    manifest_dir: Pathlike, output_dir: Pathlike, prefix: str, splits: list[str] | None = None
) -> list[Path]:
    """Write one Kaldi data dir per split of ``<prefix>_*`` manifests; returns the dirs.

    A recording's source is written as its path (wav), a ``flac -c -d -s`` or ``sox ... -t wav -``
    pipe (flac; mp3, ogg, opus: Kaldi reads wav only), or ``cmd |`` for a command source; a
    multi-channel recording is down-mixed by a ``sox ... -c 1`` pipe. Utterances are sorted by id,
    as Kaldi's tools expect, with the speaker first in the id where it was not (:func:`kaldi_utt_ids`)."""
    manifest_dir, output_dir = Path(manifest_dir), Path(output_dir)
    found = sorted(manifest_dir.glob(f"{prefix}_recordings_*.jsonl.gz"))
    names = [p.name[len(f"{prefix}_recordings_") : -len(".jsonl.gz")] for p in found]
    if splits:
        unknown = sorted(set(splits) - set(names))
        if unknown:
            raise SpeechtlError(f"no {prefix} manifests for split(s) {unknown} in {manifest_dir}; found {names}")
        names = list(splits)
    if not names:
        raise SpeechtlError(
            f"no {prefix}_recordings_*.jsonl.gz in {manifest_dir}. Fix: check --manifest-dir, --prefix."
        )
    out = []
    for split in names:
        recs = RecordingSet.from_file(manifest_dir / f"{prefix}_recordings_{split}.jsonl.gz")
        sups = SupervisionSet.from_file(manifest_dir / f"{prefix}_supervisions_{split}.jsonl.gz")
        out.append(write_data_dir(recs, sups, output_dir / split))
        logging.info(f"{split}: Kaldi data dir {output_dir / split}")
    return out


def _wav_entry(rec, flac: bool, kind: str | None = None) -> str:
    """``rec``'s wav.scp entry. ``flac``: decode FLAC with the ``flac`` tool (Kaldi's LibriSpeech pipe),
    else with sox; ``kind``: its file's :func:`container` (found here when not given). Paths are quoted
    for the shell (a file name with spaces)."""
    if len(rec.sources) != 1:
        raise SpeechtlError(f"recording {rec.id} has {len(rec.sources)} sources; Kaldi's wav.scp takes one")
    src = rec.sources[0]
    mono = is_downmixed(rec)  # its sources' channels averaged
    if src.type == "command":  # a multi-channel one down-mixed as speechtl reads it, not Kaldi's channel 0
        return f"{src.source} | sox -t wav - -t wav -c 1 - |" if mono else f"{src.source} |"
    if src.type != "file":
        raise SpeechtlError(f"recording {rec.id} is stored as {src.type!r}; only files and commands export to wav.scp")
    path = shlex.quote(src.source)
    kind = kind or container(src.source)
    # an mp3 saved as .wav (read by its content at import) is named to sox by its content
    typed = f"-t {kind} " if Path(src.source).suffix.lower() == ".wav" and kind != "wav" else ""
    if mono:  # channels averaged by sox in the pipe, as speechtl's down-mix does
        return f"sox {typed}{path} -t wav -c 1 - |"
    if kind == "flac" and flac:  # Kaldi reads RIFF wav only: its LibriSpeech recipe's pipe
        return f"flac -c -d -s {path} |"
    if kind != "wav":  # mp3 (Common Voice), ogg, opus, flac: as Kaldi's commonvoice recipe does
        return f"sox {typed}{path} -t wav - |"
    # Kaldi reads the rest of the line as the file: only whitespace, a final '|' or ':<offset>' need a pipe
    plain = not re.search(r"\s", src.source) and not src.source.endswith("|") and not re.search(r":\d+$", src.source)
    return src.source if plain else f"cat {path} |"


def container(path: str) -> str:
    """The audio container of ``path`` by its first bytes (wav, flac, mp3, ogg...), else by its suffix."""
    try:
        real = sniff_file(path)
    except OSError:
        real = "unknown"
    return real if real in AUDIO_EXTENSIONS.values() else Path(path).suffix.lower().lstrip(".")


def sox_formats() -> set[str]:
    """The file formats this machine's sox reads (``sox -h``'s AUDIO FILE FORMATS); empty without sox."""
    import subprocess

    try:
        out = subprocess.run(["sox", "-h"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    line = next((ln for ln in out.splitlines() if ln.startswith("AUDIO FILE FORMATS:")), "")
    return set(line.split(":", 1)[1].split()) if line else set()


def warn_sox_formats(piped: set[str], d: Path) -> None:
    """Say when the sox pipes written for ``d`` (of the formats ``piped``: mp3, ...) cannot run on this
    machine (Debian's sox reads mp3 only with libsox-fmt-mp3): Kaldi will run them, here or on the
    machine the dir goes to."""
    if not piped:
        return
    missing = sorted(piped - sox_formats())
    if missing:
        logging.warning(
            f"{d / 'wav.scp'}: sox here cannot read {', '.join(missing)} (sox -h lists its formats), and Kaldi will "
            "read the audio through sox pipes. Fix, where Kaldi runs: apt-get install libsox-fmt-all (or libsox-fmt-mp3)"
        )


def kaldi_utt_ids(sups) -> dict[str, str]:
    """``{utterance id: its id in the Kaldi dir}``. Kaldi sorts utt2spk by utterance and spk2utt by
    speaker, and its tools need the two orders to agree: each speaker id must begin its utterances'
    ids. Common Voice's clip ids do not (its speakers interleave), so every id of such a split
    becomes ``<speaker>-<id>``; ids that already begin with their speaker stay as they are."""
    if all(not s.speaker or s.id.startswith(s.speaker) for s in sups):
        return {s.id: s.id for s in sups}
    return {s.id: f"{s.speaker}-{s.id}" if s.speaker else s.id for s in sups}


def kaldi_ids(names: dict[str, str], what: str, d: Path) -> dict[str, str]:
    """``{key: its Kaldi id}`` for the ids ``names`` gives each key (an utterance's is ``<speaker>-<id>``,
    :func:`kaldi_utt_ids`): whitespace (a file name with spaces) becomes ``_``, since Kaldi's files
    split their lines at whitespace. Two keys that would share an id are an error naming both (speaker
    a's utterance b-c and speaker a-b's utterance c; "a b" and "a_b")."""
    ids = {k: safe_id(n) for k, n in names.items()}
    seen: dict[str, str] = {}
    for k, i in ids.items():
        if seen.setdefault(i, k) != k:
            raise SpeechtlError(
                f"{d}: the {what}s {seen[i]!r} and {k!r} would both be {i!r} in Kaldi's files, whose ids take no "
                "spaces and put the speaker first. Fix: rename one file (or speaker) and import again"
            )
    changed = [names[k] for k, i in ids.items() if i != names[k]]
    if changed:
        logging.info(
            f"{d}: {len(changed)} {what} id(s) with spaces written with _ (Kaldi's ids take none): {changed[0]!r}"
        )
    return ids


def write_data_dir(recs: RecordingSet, sups: SupervisionSet, d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    sups = list(sups)
    ids = kaldi_utt_ids(sups)
    if any(k != v for k, v in ids.items()):
        logging.info(f"{d}: utterance ids are <speaker>-<id> (Kaldi's sort order needs the speaker first)")
    ids = kaldi_ids(ids, "utterance", d)
    rid = kaldi_ids({r.id: r.id for r in recs}, "recording", d)
    spk_id = kaldi_ids({s.speaker: s.speaker for s in sups if s.speaker}, "speaker", d)
    sups = sorted(sups, key=lambda s: ids[s.id])
    spk = {s.id: spk_id[s.speaker] if s.speaker else ids[s.id] for s in sups}
    spk2utt = defaultdict(list)
    for s in sups:
        spk2utt[spk[s.id]].append(ids[s.id])
    rec_list = sorted(recs, key=lambda r: rid[r.id])
    have_flac = shutil.which("flac") is not None
    flac = have_flac or "flac" not in sox_formats()
    # each file's container read once: for its entry, and for the formats the sox pipes need
    kinds = {
        r.id: container(r.sources[0].source) for r in rec_list if len(r.sources) == 1 and r.sources[0].type == "file"
    }
    entries = {r.id: _wav_entry(r, flac, kinds.get(r.id)) for r in rec_list}
    if not have_flac and any(e.startswith("flac ") for e in entries.values()):
        logging.warning(
            f"{d / 'wav.scp'}: FLAC is read through 'flac -c -d -s' pipes, and neither flac nor sox here reads FLAC. "
            "Fix, where Kaldi runs: apt-get install flac"
        )
    warn_sox_formats({kinds[r.id] for r in rec_list if r.id in kinds and entries[r.id].startswith("sox ")}, d)
    files = {
        "wav.scp": [f"{rid[r.id]} {entries[r.id]}" for r in rec_list],
        "segments": [f"{ids[s.id]} {rid[s.recording_id]} {s.start:.3f} {s.end:.3f}" for s in sups],
        "text": [f"{ids[s.id]} {s.text or ''}".rstrip() for s in sups],
        "utt2spk": [f"{ids[s.id]} {spk[s.id]}" for s in sups],
        "spk2utt": [f"{k} {' '.join(v)}" for k, v in sorted(spk2utt.items())],
        "reco2dur": [f"{rid[r.id]} {r.duration:.3f}" for r in rec_list],
    }
    genders = {spk_id[s.speaker]: s.gender for s in sups if s.speaker and s.gender}
    if genders:
        files["spk2gender"] = [f"{k} {v}" for k, v in sorted(genders.items())]
    for name, lines in files.items():
        with atomic_open(d / name) as f:
            f.write("".join(line + "\n" for line in lines))
    return d
