"""A folder of recordings with transcripts, as users have them: ``speechtl prepare folder``.

Audio: every ``.wav``, ``.flac``, ``.mp3``, ``.ogg``/``.opus`` under the folder,
at any rate, mono or stereo (other audio extensions are found and named with
the conversion to run). Transcripts, any mix of:

- transcript files: ``id<sep>text`` lines, the separator sniffed among tab,
  ``|``, ``;``, ``,`` and space (the one whose first fields name the most audio
  files) and reported; or CSV/TSV with a header naming the audio and text
  columns (``path``/``file``/``audio``..., ``text``/``transcript``/``sentence``...;
  or ``--audio-column``/``--text-column``). An id is an audio file's stem, name,
  or path relative to the folder (with or without extension). Text files whose
  lines name no audio (a README) are ignored, with a log line. ``--transcripts``
  names the files instead of searching.
- a ``.txt`` or ``.lab`` file beside an audio file, with the same stem.

Splits: audio under a folder named train, dev/valid/val/validation or test is in
that split, and so is audio whose transcript is in a file of that name
(SpeechBrain's ``train.csv``/``dev.csv``/``test.csv``, whose ``$data_root/`` path prefix is
the folder itself). Without either, dev and test are made by a seeded rule
(:func:`~speechtl.data.corpora.imported.assign_splits`), speaker-disjoint when
speakers are known: a speaker column, an ``utt2spk`` file, ``--speaker-pattern``
(a regex over the relative path whose ``speaker`` group or first group is the
speaker), or else one sub-folder per speaker. What was done is logged and
written to ``folder_import_report.txt``.
"""

import csv
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from speechtl.data.corpora.imported import (
    Manifests,
    Pathlike,
    Utterance,
    build_corpus,
    draw_missing_splits,
    import_options,
    read_lines,
    safe_id,
    split_of_split_dir,
)
from speechtl.data.validate import AUDIO_EXTENSIONS, UNSUPPORTED_EXTENSIONS, Report
from speechtl.errors import SpeechtlError

SEPARATORS = {"\t": "tab", "|": "'|'", ";": "';'", ",": "','", " ": "space"}
TEXT_EXTENSIONS = {".txt", ".tsv", ".csv", ".trans", ".list", ".lst", ".text", ".lab", ""}
SIDECAR_EXTENSIONS = (".txt", ".lab")
AUDIO_COLUMNS = (
    "path",
    "file",
    "filename",
    "file_name",
    "audio",
    "audio_path",
    "audio_file",
    "audio_filename",
    "wav",
    "wav_path",
    "wav_filename",
    "clip",
    "utt_id",
    "utterance_id",
    "id",
    "key",
)
# "wrd": SpeechBrain's CSVs (ID,duration,wav,spk_id,wrd)
TEXT_COLUMNS = (
    "text",
    "transcript",
    "transcription",
    "sentence",
    "normalized_text",
    "utterance",
    "words",
    "wrd",
    "label",
)
SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk", "spk_id", "client_id", "speaker_name")


@dataclass
class Entry:
    """One transcript for one key, and where it was written."""

    key: str
    text: str
    where: str
    speaker: str | None = None
    base: Path | None = None  # the transcript file's folder: a key naming several files means the one below it
    split: str | None = None  # named by the transcript file (SpeechBrain's train.csv, dev.csv, test.csv)


def scan(corpus_dir: Path) -> tuple[list[Path], list[Path]]:
    """Audio files and candidate text files under ``corpus_dir`` (hidden entries skipped), sorted.
    Symlinked folders are followed (recordings linked in from another disk), each real folder once."""
    audio, texts, seen = [], [], set()
    for root, dirs, files in os.walk(corpus_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree, or two links to one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if f.startswith("."):
                continue
            p = Path(root) / f
            ext = p.suffix.lower()
            if ext in AUDIO_EXTENSIONS or ext in UNSUPPORTED_EXTENSIONS:
                audio.append(p)
            elif ext in TEXT_EXTENSIONS:
                texts.append(p)
    return audio, texts


def audio_keys(corpus_dir: Path, audio: list[Path]) -> dict[str, list[Path]]:
    """Every name a transcript may use for an audio file: relative path with and without extension,
    file name, stem, absolute path."""
    keys: dict[str, list[Path]] = defaultdict(list)
    for p in audio:
        rel = PurePosixPath(p.relative_to(corpus_dir).as_posix())
        for k in dict.fromkeys([str(rel), str(rel.with_suffix("")), rel.name, rel.stem, str(p.absolute())]):
            keys[k].append(p)
    return keys


#: A path's leading placeholder for the data folder: SpeechBrain's ``$data_root/``, ``${data_root}/``, ``{root}/``.
PLACEHOLDER = re.compile(r"^(\$\{?\w+\}?|\{\w+\})/")


def _key_of(field: str) -> str:
    """A transcript's name for an audio file, as :func:`audio_keys` spells them (Windows separators too);
    a leading placeholder such as SpeechBrain's ``$data_root/`` is the corpus folder."""
    return PLACEHOLDER.sub("", field.strip().strip('"').replace("\\", "/").removeprefix("./"))


def _header_columns(fields: list[str], audio_col: str | None, text_col: str | None, spk_col: str | None):
    names = [f.strip().strip('"').lower() for f in fields]

    def pick(given, choices):
        if given is not None:
            return names.index(given.lower()) if given.lower() in names else None
        return next((names.index(c) for c in choices if c in names), None)

    a, t = pick(audio_col, AUDIO_COLUMNS), pick(text_col, TEXT_COLUMNS)
    return (a, t, pick(spk_col, SPEAKER_COLUMNS)) if a is not None and t is not None else None


def _split_line(line: str, sep: str) -> list[str]:
    return line.split(None, 1) if sep == " " else line.split(sep)


def sniff_layout(lines: list[str], keys: dict) -> tuple[str, int, int]:
    """``(separator, key column, lines named)``: the separator and column (one of the first three;
    FLEURS puts the file name second) whose fields name the most audio files, over a sample of lines.
    Ties go to the earlier separator of :data:`SEPARATORS` and the earlier column."""
    best = ("\t", 0, 0)
    sample = lines[:2000]
    for sep in SEPARATORS:
        split = [_split_line(line, sep) for line in sample]
        for col in range(1 if sep == " " else 3):
            n = sum(1 for parts in split if len(parts) > col + 1 and _key_of(parts[col]) in keys)
            if n > best[2]:
                best = (sep, col, n)
    return best


def _drop_unknown_header(
    path: Path, numbered: list[tuple[int, str | None]], lines: list[str], sep: str, col: int, keys: dict
) -> tuple[list[tuple[int, str | None]], list[str]]:
    """Without the first line when it is a header with column names not known here (``fisier,
    transcriere,vorbitor``): its audio field names no file while most other lines' do. Said, so the
    user can name the columns; otherwise it would be reported as a transcript of missing audio."""
    first = next((i for i, (_, line) in enumerate(numbered) if line is not None), None)
    if first is None or len(lines) < 3:
        return numbered, lines
    parts = [_split_line(line, sep) for line in lines]
    names_audio = [len(p) > col + 1 and _key_of(p[col]) in keys for p in parts]
    if names_audio[0] or 2 * sum(names_audio[1:]) < len(lines) - 1 or len(parts[0]) <= col:
        return numbered, lines

    def file_like(field: str) -> bool:  # a path, a name with an extension or a number: not a column name
        return bool(re.search(r"[\d/\\.]", field))

    # A header's fields look unlike the rows': 'fisier' over 'spk1/rec001.wav' rows; a first row whose
    # audio is missing ('a' over 'b', 'c') looks like the rest, and stays a row (reported as missing audio).
    # Column names are single words; a transcript ('yes no') is not one.
    rows_file_like = sum(file_like(p[col]) for p in parts[1:] if len(p) > col)
    one_word = all(len(f.split()) == 1 for f in parts[0])
    if file_like(parts[0][col]) or 2 * rows_file_like < len(parts) - 1 or not one_word:
        return numbered, lines
    logging.warning(
        f"{path}:{numbered[first][0]} read as a header ({lines[0].strip()!r}): its first line names no audio file, "
        f"and its column names are not ones speechtl knows. Fix, if the guess below is wrong: name the columns, "
        f"e.g. --audio-column {parts[0][col].strip()!r} --text-column NAME"
    )
    return numbered[:first] + numbered[first + 1 :], lines[1:]


def _likeliest_text_field(path: Path, rows: list[list[str]]) -> int:
    """Which field of ``file<sep>a<sep>b...`` lines (no header) holds the transcript. The last, as in
    ``id,raw,normalized``, unless it repeats (fewer different values than half the lines: a speaker,
    gender or age column) or is a number (a duration); then the field with the most different values
    among those that are not numbers. A guess, so it is said with the way to override it."""
    width = len(rows[0])

    def numeric(i: int) -> bool:
        return all(re.fullmatch(r"[-+]?\d+([.,]\d+)?", r[i].strip()) for r in rows)

    distinct = {i: len({r[i].strip() for r in rows}) for i in range(1, width)}
    texts = [i for i in distinct if not numeric(i)] or list(distinct)
    last = width - 1
    if last in texts and 2 * distinct[last] >= len(rows):
        best = last
    else:
        best = max(texts, key=lambda i: (distinct[i], i))
    logging.warning(
        f"{path}: {width} fields a line and no column names speechtl knows: field {best + 1} taken as the text "
        f"({rows[0][best].strip()!r} in line 1; different values per field: "
        + ", ".join(f"field {i + 1} {n}" for i, n in distinct.items())
        + "). Fix, if that is wrong: --text-column N, or a first line naming the columns (file,text,speaker)"
    )
    return best


def read_transcript_file(
    path: Path, keys: dict, report: Report, columns: tuple[str | None, str | None, str | None], explicit: bool
) -> list[Entry] | None:
    """Entries of one transcript file, or None when its lines name no audio (not a transcript file)."""
    local = Report()
    numbered = [(n, line) for n, line in read_lines(path, local) if line is None or line.strip()]
    lines = [line for _, line in numbered if line is not None]
    if not lines:
        return None
    entries: list[Entry] = []
    split = split_of_split_dir(path.stem)  # train.csv, dev.csv, test.csv: SpeechBrain's and many others' splits
    raw_audio: list[str] = []
    for sep in ("\t", ",", ";", "|"):
        fields = next(csv.reader([lines[0]], delimiter=sep))
        cols = _header_columns(fields, *columns) if len(fields) > 1 else None
        if cols is not None:
            a, t, s = cols
            rows = csv.reader((line if line is not None else "" for _, line in numbered[1:]), delimiter=sep)
            for (n, line), row in zip(numbered[1:], rows, strict=True):
                if line is None:
                    continue
                if len(row) <= max(a, t):
                    local.add("bad-line", f"{path}:{n}", f"{len(row)} field(s), the header names {len(fields)}")
                    continue
                spk = row[s].strip() if s is not None and len(row) > s and row[s].strip() else None
                raw_audio.append(row[a].strip())
                entries.append(Entry(_key_of(row[a]), row[t].strip(), f"{path}:{n}", spk, path.parent, split))
            logging.info(
                f"{path}: a table with a header ({SEPARATORS[sep]}-separated), {len(entries)} rows: "
                f"audio in column {fields[a].strip()!r}, text in {fields[t].strip()!r}"
                + (f", speaker in {fields[s].strip()!r}" if s is not None else "")
            )
            _say_placeholder(path, raw_audio)
            report.problems += local.problems
            return entries
    sep, col, named = sniff_layout(lines, keys)
    if named == 0 and not explicit:
        logging.info(f"ignoring {path}: its lines name no audio file")
        return None
    audio_col, text_col, _ = columns  # 1-based field numbers for files without a header
    col = int(audio_col) - 1 if audio_col and audio_col.isdigit() else col
    numbered, lines = _drop_unknown_header(path, numbered, lines, sep, col, keys)
    widths = {len(_split_line(line, sep)) for line in lines}
    if text_col and text_col.isdigit():
        text_at, which = int(text_col) - 1, f"field {text_col} as text"
    elif col == 0 and sep == "|" and len(widths) == 1 and min(widths) > 2:
        text_at, which = -1, "the last field as text"  # LJSpeech's id|raw|normalized, VITS' path|speaker|text
    elif col == 0 and sep != " " and len(widths) == 1 and min(widths) > 2:
        text_at = _likeliest_text_field(path, [_split_line(line, sep) for line in lines])
        which = f"field {text_at + 1} as text"
    else:
        text_at, which = (None, "id<sep>text") if col == 0 else (col + 1, f"field {col + 2} as text")
    for n, line in numbered:
        if line is None:
            continue
        parts = _split_line(line, sep)
        if len(parts) < 2 or len(parts) <= col or (text_at is not None and len(parts) <= text_at):
            local.add(
                "bad-line", f"{path}:{n}", f"{len(parts)} {SEPARATORS[sep]}-separated field(s), unlike the others"
            )
            continue
        text = parts[text_at] if text_at is not None else sep.join(parts[1:]) if sep != " " else parts[1]
        raw_audio.append(parts[col].strip())
        entry = Entry(
            _key_of(parts[col]), text.strip().strip('"').strip(), f"{path}:{n}", base=path.parent, split=split
        )
        entries.append(entry)
    logging.info(
        f"{path}: audio in field {col + 1}, {which}; separator sniffed: {SEPARATORS[sep]}, {len(entries)} lines"
    )
    _say_placeholder(path, raw_audio)
    report.problems += local.problems
    return entries


def _say_placeholder(path: Path, raw_audio: list[str]) -> None:
    placeholder = next((m.group(1) for f in raw_audio if (m := PLACEHOLDER.match(f.strip('"')))), None)
    if placeholder:
        logging.info(f"{path}: audio paths start with {placeholder}, read as the corpus folder (--corpus-dir)")


def read_utt2spk(path: Path, report: Report) -> dict[str, str]:
    out = {}
    for n, line in read_lines(path, report):
        if line and line.strip():
            parts = line.split()
            if len(parts) != 2:
                report.add("bad-line", f"{path}:{n}", "utt2spk lines are '<utterance> <speaker>'")
                continue
            out[parts[0]] = parts[1]
    return out


def find_audio(e: Entry, keys: dict[str, list[Path]]) -> list[Path]:
    """The audio files an entry's key names, the first of: files below the transcript file's folder
    (``001`` in both ``train/`` and ``test/``, each with its own transcripts), then anywhere; each
    by the key as written, then, for a key naming an audio extension, by the name without it
    (``x.wav`` for a converted ``x.flac``). More than one file back means the key is ambiguous."""
    names = [e.key]
    if PurePosixPath(e.key).suffix.lower() in AUDIO_EXTENSIONS:
        names.append(str(PurePosixPath(e.key).with_suffix("")))
    for below_only in (True, False):
        for name in names:
            found = [p for p in keys.get(name, []) if not below_only or (e.base and p.is_relative_to(e.base))]
            if found:
                return found
    return []


def _split_and_rest(rel: PurePosixPath) -> tuple[str | None, PurePosixPath]:
    """The split named by a folder on the path, and the path below that folder."""
    parts = rel.parts[:-1]
    for i, p in enumerate(parts):
        split = split_of_split_dir(p)
        if split:
            return split, PurePosixPath(*rel.parts[i + 1 :])
    return None, rel


def _speaker_dir_level(dirs: list[tuple[str, ...]]) -> int | None:
    """Which folder level names the speaker, when the files sit in one sub-folder per speaker:
    the first level below the folders all files share (``audio/<spk>/...``, ``<spk>/<chapter>/...``)
    at which they part, provided no file sits above it. None: no such level."""
    common = 0
    while all(len(d) > common for d in dirs) and len({d[common] for d in dirs}) == 1:
        common += 1
    if all(len(d) > common for d in dirs) and len({d[common] for d in dirs}) >= 2:
        return common
    return None


def prepare_folder(
    corpus_dir: Pathlike,
    output_dir: Pathlike | None = None,
    transcripts: list[str] | None = None,
    audio_column: str | None = None,
    text_column: str | None = None,
    speaker_column: str | None = None,
    speaker_pattern: str | None = None,
    prefix: str = "folder",
    **options,
) -> Manifests:
    """Manifests of a folder of recordings (see the module doc); ``options`` as
    :func:`~speechtl.data.corpora.imported.import_options` (``skip_bad_audio``, ``max_duration``, ...)."""
    opts = import_options(**options)
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise SpeechtlError(f"corpus dir {corpus_dir} does not exist. Fix: pass --corpus-dir DIR, your recordings.")
    audio, texts = scan(corpus_dir)
    if not audio:
        raise SpeechtlError(
            f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {corpus_dir}. Fix: check --corpus-dir."
        )
    report = Report()
    keys = audio_keys(corpus_dir, audio)
    audio_set = {p.with_suffix("") for p in audio}
    sidecars = [t for t in texts if t.suffix.lower() in SIDECAR_EXTENSIONS and t.with_suffix("") in audio_set]
    utt2spk_files = [t for t in texts if t.name == "utt2spk"]
    if transcripts:
        candidates = [Path(t) if Path(t).is_absolute() else corpus_dir / t for t in transcripts]
        missing = [str(c) for c in candidates if not c.is_file()]
        if missing:
            raise SpeechtlError(f"transcript file(s) {missing} do not exist. Fix: check --transcripts.")
    else:
        skip = set(sidecars) | set(utt2spk_files)
        candidates = [t for t in texts if t not in skip]
    entries: list[Entry] = []
    columns = (audio_column, text_column, speaker_column)
    for path in candidates:
        entries += read_transcript_file(path, keys, report, columns, explicit=bool(transcripts)) or []
    for path in sidecars:
        lines = [line for _, line in read_lines(path, report)]
        if None not in lines:
            rel = path.with_suffix("").relative_to(corpus_dir).as_posix()
            entries.append(Entry(rel, " ".join(x.strip() for x in lines if x.strip()), str(path)))
    if sidecars:
        logging.info(f"{len(sidecars)} transcript(s) in .txt/.lab files beside the audio")
    utt2spk: dict[str, str] = {}
    for path in utt2spk_files:
        utt2spk.update(read_utt2spk(path, report))
    utts = _utterances(corpus_dir, audio, keys, entries, report, utt2spk, speaker_pattern, speaker_column)
    opts = draw_missing_splits(utts, opts)  # train/ and test/ (or train.csv, test.csv) only: dev drawn from train
    return build_corpus(prefix, utts, output_dir, opts, report, corpus_dir)


def _utterances(
    corpus_dir: Path,
    audio: list[Path],
    keys: dict[str, list[Path]],
    entries: list[Entry],
    report: Report,
    utt2spk: dict[str, str],
    speaker_pattern: str | None,
    speaker_column: str | None,
) -> list[Utterance]:
    """One utterance per audio file, with its transcript, speaker and split."""
    rels = [PurePosixPath(p.relative_to(corpus_dir).as_posix()) for p in audio]
    stems_unique = len({r.stem for r in rels}) == len(rels)
    uid_of = {p: r.stem if stems_unique else safe_id(str(r.with_suffix(""))) for p, r in zip(audio, rels, strict=True)}
    text_of: dict[Path, Entry] = {}
    for e in entries:
        found = find_audio(e, keys)
        if not found:
            report.add("missing-audio", e.where, f"no audio file is named {e.key!r}")
        elif len(found) > 1:
            report.add(
                "duplicate-id",
                e.where,
                f"{e.key!r} names {len(found)} files ({', '.join(str(p) for p in found[:3])}); "
                "write the path relative to the folder",
            )
        elif found[0] in text_of:
            first = text_of[found[0]]
            for w in (first.where, e.where):
                report.add(
                    "duplicate-id",
                    w,
                    f"{found[0].name} has two transcripts ({first.where}, {e.where})",
                    uid_of[found[0]],
                )
        else:
            text_of[found[0]] = e
    pattern = re.compile(speaker_pattern) if speaker_pattern else None
    split_rest = [_split_and_rest(r) for r in rels]
    has_splits = any(s for s, _ in split_rest) or any(e.split for e in text_of.values())
    named_by_file = 0
    speaker_level = _speaker_dir_level([rest.parent.parts for _, rest in split_rest])
    utts, outside, how = [], 0, None
    for p, rel, (split, rest) in zip(audio, rels, split_rest, strict=True):
        uid = uid_of[p]
        e = text_of.get(p)
        speaker = None
        if e is not None and e.speaker:
            speaker, how = e.speaker, f"the {speaker_column or 'speaker'} column"
        elif utt2spk and (uid in utt2spk or rel.stem in utt2spk):
            speaker, how = utt2spk.get(uid, utt2spk.get(rel.stem)), "utt2spk"
        elif pattern is not None:
            m = pattern.search(str(rel))
            if m:
                speaker = m.groupdict().get("speaker") or (m.group(1) if m.groups() else m.group(0))
                how = f"--speaker-pattern {speaker_pattern}"
        elif speaker_level is not None:
            speaker, how = rest.parts[speaker_level], "one sub-folder per speaker"
        if split is None and e is not None and e.split:
            split, named_by_file = e.split, named_by_file + 1
        if has_splits and split is None:
            split, outside = "train", outside + 1
        utts.append(
            Utterance(
                id=uid,
                audio=str(p),
                text=e.text if e is not None else None,
                where=e.where if e is not None else str(p),
                speaker=speaker,
                split=split,
            )
        )
    if how:
        n = sum(1 for u in utts if u.speaker)
        logging.info(f"speakers from {how}: {len({u.speaker for u in utts if u.speaker})} speakers, {n} utterances")
    if named_by_file:
        files = sorted({Path(e.where.rsplit(":", 1)[0]).name for e in text_of.values() if e.split})
        logging.info(f"splits of {named_by_file} audio file(s) from their transcript files' names ({', '.join(files)})")
    if outside:
        logging.warning(
            f"{outside} audio file(s) lie outside the train/dev/test folders and split transcript files: put in train"
        )
    return utts
