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
- JSON lines (``.json``/``.jsonl``): NeMo's manifests (``audio_filepath``, ``text``, and ``offset``
  with ``duration`` for a segment of a longer file), Hugging Face's ``metadata.jsonl``
  (``file_name``, ``transcription``). A path written on another machine is matched by its last
  components.
- Praat TextGrids and ELAN ``.eaf`` files of long recordings
  (:mod:`~speechtl.data.corpora.annotations`): each spoken interval of the transcript tier(s) is
  one utterance, a segment of the recording (``--tier`` chooses among several).

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
import json
import logging
import os
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from speechtl.data.corpora.annotations import (
    ANNOTATION_EXTENSIONS,
    AnnotationError,
    choose_tiers,
    read_annotation,
    speaker_of,
)
from speechtl.data.corpora.imported import (
    Manifests,
    Pathlike,
    Utterance,
    build_corpus,
    draw_missing_splits,
    drop_tags,
    import_options,
    read_lines,
    safe_id,
    say_dropped_tags,
    split_of_split_dir,
)
from speechtl.data.validate import AUDIO_EXTENSIONS, UNSUPPORTED_EXTENSIONS, Report
from speechtl.errors import SpeechtlError

SEPARATORS = {"\t": "tab", "|": "'|'", ";": "';'", ",": "','", " ": "space"}
TEXT_EXTENSIONS = {".txt", ".tsv", ".csv", ".trans", ".list", ".lst", ".text", ".lab", ".json", ".jsonl", ""}
SIDECAR_EXTENSIONS = (".txt", ".lab")
AUDIO_COLUMNS = (
    "audio_filepath",  # NeMo's manifests
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
    start: float | None = None  # a segment of the recording (an annotation's interval, a NeMo offset)
    end: float | None = None


def scan(corpus_dir: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Audio files, candidate text files and annotation files (TextGrid, .eaf) under ``corpus_dir``
    (hidden entries skipped), sorted. Symlinked folders are followed (recordings linked in from
    another disk), each real folder once."""
    audio, texts, annotations, seen = [], [], [], set()
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
            elif ext in ANNOTATION_EXTENSIONS:
                annotations.append(p)
    return audio, texts, annotations


def nfc(name):
    """``name`` composed (NFC); what is not a string, as it is."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else name


class NameKeys(defaultdict):
    """Audio files by name, the names in NFC: macOS writes file names decomposed (NFD: 날씨 as its jamo),
    a transcript typed elsewhere has them composed, and the two printed alike while matching nothing."""

    def __init__(self, *args):
        super().__init__(list)
        for k, v in dict(*args[1:]).items() if len(args) > 1 else ():
            self[k] = v

    def __getitem__(self, k):
        return super().__getitem__(nfc(k))

    def __contains__(self, k):
        return super().__contains__(nfc(k))

    def __setitem__(self, k, v):
        super().__setitem__(nfc(k), v)

    def get(self, k, default=None):
        return super().get(nfc(k), default)

    def setdefault(self, k, default=None):
        return super().setdefault(nfc(k), default)

    def pop(self, k, *default):
        return super().pop(nfc(k), *default)


def audio_keys(corpus_dir: Path, audio: list[Path]) -> dict[str, list[Path]]:
    """Every name a transcript may use for an audio file: relative path with and without extension,
    file name, stem, absolute path (in NFC, whatever the file system wrote: :class:`NameKeys`)."""
    keys: dict[str, list[Path]] = NameKeys()
    for p in audio:
        rel = PurePosixPath(p.relative_to(corpus_dir).as_posix())
        full = os.path.normpath(p.absolute())
        for k in dict.fromkeys([str(rel), str(rel.with_suffix("")), rel.name, rel.stem, full]):
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
        # no line decodes: a transcript in another encoding (UTF-32, a code page) is named, not ignored
        report.merge(local, {"bad-encoding"})
        return None
    split = split_of_split_dir(path.stem)  # train.csv, dev.csv, test.csv: SpeechBrain's and many others' splits
    if path.suffix.lower() in (".json", ".jsonl") or _is_json(lines[0]):
        found = read_json_lines(path, numbered, report, columns, explicit, split)
        if found is not None:
            report.merge(local)
        return found
    entries: list[Entry] = []
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
            report.merge(local)
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
    report.merge(local)
    return entries


def _is_json(line: str) -> bool:
    """A first line that is a JSON object (a manifest named .txt); '{noise} ...' is text."""
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _json_rows(path: Path, numbered: list[tuple[int, str | None]], local: Report) -> list[tuple[int, dict]] | None:
    """``(line, object)`` of a JSON-lines file, or of one JSON list of objects; None: neither."""
    rows: list[tuple[int, dict]] = []
    for n, line in numbered:
        if line is None:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if rows:
                local.add("bad-line", f"{path}:{n}", "not a JSON object like the lines before it")
                continue
            try:  # one JSON document over many lines: a list of objects
                whole = json.loads(path.read_text(encoding="utf-8-sig"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return None
            objs = whole if isinstance(whole, list) else []
            return [(i + 1, o) for i, o in enumerate(objs) if isinstance(o, dict)] or None
        if isinstance(obj, dict):
            rows.append((n, obj))
        else:
            local.add("bad-line", f"{path}:{n}", "a JSON line that is not an object")
    return rows


def read_json_lines(
    path: Path,
    numbered: list[tuple[int, str | None]],
    report: Report,
    columns: tuple[str | None, str | None, str | None],
    explicit: bool,
    split: str | None,
) -> list[Entry] | None:
    """Entries of a JSON-lines manifest: NeMo's (``audio_filepath``, ``text``, ``duration``, and ``offset``
    for a segment of a longer file), Hugging Face's ``metadata.jsonl`` (``file_name``, ``transcription``),
    or any with keys :data:`AUDIO_COLUMNS`/:data:`TEXT_COLUMNS` name (``--audio-column``/``--text-column``
    others). None: not such a file."""
    local = Report()
    rows = _json_rows(path, numbered, local)
    if not rows:
        if explicit:
            raise SpeechtlError(f"{path} is not JSON lines (one object a line). Fix: check --transcripts")
        logging.info(f"ignoring {path}: not a JSON-lines manifest")
        return None
    keys = {k.lower(): k for _, obj in rows[:50] for k in obj}

    def pick(given: str | None, choices: tuple[str, ...]) -> str | None:
        if given is not None:
            return keys.get(given.lower())
        return next((keys[c] for c in choices if c in keys), None)

    a, t, s = pick(columns[0], AUDIO_COLUMNS), pick(columns[1], TEXT_COLUMNS), pick(columns[2], SPEAKER_COLUMNS)
    if a is None or t is None:
        if explicit:
            raise SpeechtlError(
                f"{path}: no audio or text key among {sorted(keys.values())}. Fix: --audio-column KEY --text-column KEY"
            )
        logging.info(f"ignoring {path}: its JSON keys {sorted(keys.values())[:8]} name no audio and text")
        return None
    entries, raw_audio = [], []
    offset = keys.get("offset")
    for n, obj in rows:
        audio = obj.get(a)
        audio = audio.get("path") if isinstance(audio, dict) else audio  # Hugging Face's {"path": ..., "bytes": ...}
        if not isinstance(audio, str) or not audio.strip():
            local.add("bad-line", f"{path}:{n}", f"no audio path under {a!r}")
            continue
        text = obj.get(t)
        spk = obj.get(s) if s is not None else None
        start = end = None
        if offset is not None and obj.get(offset) is not None:  # NeMo: a segment of a longer recording
            try:
                start = float(obj[offset])
                end = start + float(obj["duration"]) if obj.get("duration") is not None else None
            except (TypeError, ValueError):
                local.add("bad-line", f"{path}:{n}", f"offset/duration {obj.get(offset)!r}/{obj.get('duration')!r}")
                continue
        raw_audio.append(audio)
        entries.append(
            Entry(
                _key_of(audio),
                str(text).strip() if text is not None else "",
                f"{path}:{n}",
                str(spk).strip() if spk not in (None, "") else None,
                path.parent,
                split,
                start,
                end,
            )
        )
    logging.info(
        f"{path}: JSON lines, {len(entries)} rows: audio under {a!r}, text under {t!r}"
        + (f", speaker under {s!r}" if s is not None else "")
        + (", segments by offset/duration" if any(e.start is not None for e in entries) else "")
    )
    _say_placeholder(path, raw_audio)
    report.merge(local)
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
            out[nfc(parts[0])] = nfc(parts[1])  # as the ids of NFD file names are
    return out


def find_audio(e: Entry, keys: dict[str, list[Path]]) -> list[Path]:
    """The audio files an entry's key names, the first of: files below the transcript file's folder
    (``001`` in both ``train/`` and ``test/``, each with its own transcripts), then anywhere; each
    by the key as written, as a path relative to the transcript file (a manifest in a sub-folder),
    then, for a key naming an audio extension, by the name without it (``x.wav`` for a converted
    ``x.flac``). An absolute path that is not on this machine (a manifest written elsewhere, NeMo's
    ``audio_filepath``) is matched by its last components, the most that name a file here. More than
    one file back means the key is ambiguous."""
    names = [e.key]
    if e.base is not None and not _is_absolute(e.key):
        names.append(os.path.normpath(e.base.absolute() / e.key))
    if PurePosixPath(e.key).suffix.lower() in AUDIO_EXTENSIONS:
        names += [str(PurePosixPath(n).with_suffix("")) for n in list(names)]
    if _is_absolute(e.key):
        parts = PurePosixPath(e.key).parts
        tails = ["/".join(parts[i:]) for i in range(1, len(parts))]
        names += tails + [str(PurePosixPath(t).with_suffix("")) for t in tails if PurePosixPath(t).suffix]
    for below_only in (True, False):
        for name in names:
            found = [p for p in keys.get(name, []) if not below_only or (e.base and p.is_relative_to(e.base))]
            if found:
                return found
    return []


def _is_absolute(key: str) -> bool:
    """``/data/x.wav`` or ``C:/data/x.wav`` (keys are written with forward slashes)."""
    return key.startswith("/") or bool(re.match(r"[A-Za-z]:/", key))


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
    tier: str | None = None,
    prefix: str = "folder",
    **options,
) -> Manifests:
    """Manifests of a folder of recordings (see the module doc); ``options`` as
    :func:`~speechtl.data.corpora.imported.import_options` (``skip_bad_audio``, ``max_duration``, ...)."""
    opts = import_options(**options)
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise SpeechtlError(f"corpus dir {corpus_dir} does not exist. Fix: pass --corpus-dir DIR, your recordings.")
    audio, texts, annotation_files = scan(corpus_dir)
    if not audio:
        raise SpeechtlError(
            f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) under {corpus_dir}. Fix: check --corpus-dir."
        )
    report = Report()
    keys = audio_keys(corpus_dir, audio)
    by_stem: dict[Path, list[Path]] = defaultdict(list)  # x.wav, x.lab, x.TextGrid: one stem
    for p in audio:
        by_stem[p.with_suffix("")].append(p)
    sidecars = [t for t in texts if t.suffix.lower() in SIDECAR_EXTENSIONS and t.with_suffix("") in by_stem]
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
        numbered = list(read_lines(path, report))
        lines = [line for _, line in numbered]
        if None not in lines:
            rel = path.with_suffix("").relative_to(corpus_dir).as_posix()
            entries.append(Entry(rel, " ".join(x.strip() for x in lines if x.strip()), str(path)))
        else:  # its audio is the one beside it: its bad-encoding problem names it (no "no-transcript")
            report.unread[str(path.with_suffix(""))] = f"{path}:{next(n for n, line in numbered if line is None)}"
    if sidecars:
        logging.info(f"{len(sidecars)} transcript(s) in .txt/.lab files beside the audio")
    if annotation_files:
        entries += annotation_entries(annotation_files, by_stem, keys, report, tier)
    elif tier:
        raise SpeechtlError(f"--tier {tier!r}: no TextGrid or .eaf file under {corpus_dir}. Fix: drop --tier")
    tags: Counter[str] = Counter()
    for e in entries:
        e.text = drop_tags(e.text, tags)
    say_dropped_tags(str(corpus_dir), tags)
    utt2spk: dict[str, str] = {}
    for path in utt2spk_files:
        utt2spk.update(read_utt2spk(path, report))
    utts = _utterances(corpus_dir, audio, keys, entries, report, utt2spk, speaker_pattern, speaker_column)
    opts = draw_missing_splits(utts, opts)  # train/ and test/ (or train.csv, test.csv) only: dev drawn from train
    return build_corpus(prefix, utts, output_dir, opts, report, corpus_dir)


def _audio_of_annotation(
    f: Path, media: list[str], by_stem: dict[Path, list[Path]], keys: dict[str, list[Path]]
) -> tuple[list[Path], str]:
    """The recording an annotation file transcribes: the audio beside it with its stem (``x.TextGrid``,
    ``x.wav``), else the media an .eaf links, else the one audio file anywhere with its stem;
    ``(files, how)``: several files mean it is ambiguous."""
    beside = by_stem.get(f.with_suffix(""), [])
    if beside:
        return beside, "beside it"
    for name in media:
        found = keys.get(os.path.normpath(name) if os.path.isabs(name) else name, [])
        if found:
            return found, "by its media link"
    return keys.get(f.stem, []), "by its stem"


def annotation_entries(
    files: list[Path],
    by_stem: dict[Path, list[Path]],
    keys: dict[str, list[Path]],
    report: Report,
    tier: str | None,
) -> list[Entry]:
    """One entry (a segment) per spoken interval of the transcript tiers of every TextGrid and .eaf;
    ``by_stem``: the audio files by path without extension."""
    annotations = []
    for f in files:
        try:
            annotations.append(read_annotation(f))
        except AnnotationError as e:
            report.add("bad-annotation", e.where, e.detail)
    chosen = choose_tiers(annotations, tier)
    entries: list[Entry] = []
    used: Counter[str] = Counter()
    found_how: Counter[str] = Counter()
    annotated: dict[Path, Path] = {}  # recording -> its annotation file
    # Tier names are speakers when any file has several transcript tiers, in every file alike: a
    # monologue's one tier 'nicolas' is the speaker 'nicolas' of the dialogues' tiers too.
    by_tier = any(len(ts) > 1 for ts in chosen.values())
    for ann in annotations:
        tiers = chosen.get(ann.path, [])
        if not tiers:
            if ann.tiers:
                logging.warning(f"{ann.path}: no transcript tier with speech ({', '.join(t.name for t in ann.tiers)})")
            continue
        found, how = _audio_of_annotation(ann.path, ann.media, by_stem, keys)
        if not found:
            report.add(
                "missing-audio", str(ann.path), f"no audio file is named {ann.path.stem!r} (beside it or linked)"
            )
            continue
        if len(found) > 1:
            report.add(
                "duplicate-id",
                str(ann.path),
                f"{len(found)} audio files could be its recording ({', '.join(str(p) for p in found[:3])}); "
                "keep one, or put each with its annotation in a folder of its own",
            )
            continue
        if found[0] in annotated:  # ELAN's import of a TextGrid saved beside it, or a copy elsewhere
            report.add(
                "duplicate-id",
                str(ann.path),
                f"{found[0]} is transcribed by {annotated[found[0]]} already: its intervals would be read twice; "
                "keep one annotation file per recording",
            )
            continue
        annotated[found[0]] = ann.path
        key = os.path.normpath(found[0].absolute())  # the one name audio_keys gives no other file
        for t in tiers:
            used[t.name] += 1
            spk = speaker_of(t, tiers, by_tier)
            entries += [Entry(key, i.text.strip(), i.where, spk, None, None, i.start, i.end) for i in t.spoken]
        found_how[how] += 1
    logging.info(
        f"{len(annotations)} annotation file(s) (TextGrid, .eaf): {len(entries)} segments from tier(s) "
        + ", ".join(f"{n!r} ({c} file(s))" for n, c in sorted(used.items(), key=lambda x: (-x[1], x[0]))[:8])
        + "; recordings found "
        + ", ".join(f"{how} {n}" for how, n in found_how.most_common())
    )
    return entries


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
    # ids, speaker folders and split folders in NFC, whatever the file system wrote (:class:`NameKeys`)
    rels = [PurePosixPath(nfc(p.relative_to(corpus_dir).as_posix())) for p in audio]
    stems_unique = len({r.stem for r in rels}) == len(rels)
    uid_of = {p: r.stem if stems_unique else safe_id(str(r.with_suffix(""))) for p, r in zip(audio, rels, strict=True)}
    text_of: dict[Path, Entry] = {}
    segments_of: dict[Path, list[Entry]] = defaultdict(list)
    foreign = 0  # absolute paths of another machine, found by their last components
    same = 0  # transcripts given again, word for word, by another file
    for e in entries:
        found = find_audio(e, keys)
        foreign += bool(found) and _is_absolute(e.key) and e.key not in keys
        if not found:
            report.add("missing-audio", e.where, f"no audio file is named {e.key!r}")
        elif len(found) == 1 and e.start is not None:
            segments_of[found[0]].append(e)
        elif len(found) > 1:
            report.add(
                "duplicate-id",
                e.where,
                f"{e.key!r} names {len(found)} files ({', '.join(str(p) for p in found[:3])}); "
                "write the path relative to the folder",
            )
        elif found[0] in text_of and text_of[found[0]].text.strip() == e.text.strip():
            same += 1  # one transcript written twice (a NeMo manifest made from the CSV beside it)
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
    has_splits = (
        any(s for s, _ in split_rest)
        or any(e.split for e in text_of.values())
        or any(e.split for es in segments_of.values() for e in es)
    )
    named_by_file = 0
    speaker_level = _speaker_dir_level([rest.parent.parts for _, rest in split_rest])
    utts, outside, how, whole = [], 0, None, 0
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
        named = e.split if e is not None else next((s.split for s in segments_of.get(p, []) if s.split), None)
        if split is None and named:  # NeMo's train.json/test.json with offsets too
            split, named_by_file = named, named_by_file + 1
        if has_splits and split is None:
            split, outside = "train", outside + 1
        if p in segments_of:
            whole += p in text_of
            utts += _segments(uid, p, segments_of[p], speaker, split)
            continue
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
    if same:
        logging.info(f"{same} transcript(s) given again, word for word, by a second file: read once")
    if whole:
        logging.warning(
            f"{whole} recording(s) have both segments (an annotation's intervals, or offsets) and a transcript of "
            "the whole file: the segments are imported, the whole-file transcripts left out"
        )
    if foreign:
        logging.info(f"{foreign} audio path(s) from another machine matched here by their last components")
    if outside:
        logging.warning(
            f"{outside} audio file(s) lie outside the train/dev/test folders and split transcript files: put in train"
        )
    return utts


def _segments(uid: str, audio: Path, entries: list[Entry], speaker: str | None, split: str | None) -> list[Utterance]:
    """The utterances of one recording's segments, in time order, named ``<recording>-<start ms>-<end ms>``
    (Kaldi's custom, so they sort in time) with ``-2``, ``-3`` after a name already taken (two speakers'
    tiers with one interval)."""
    out, taken = [], Counter()
    for e in sorted(entries, key=lambda e: (e.start, e.end if e.end is not None else float("inf"))):
        name = f"{uid}-{round(e.start * 1000):07d}" + (f"-{round(e.end * 1000):07d}" if e.end is not None else "")
        taken[name] += 1
        out.append(
            Utterance(
                id=name if taken[name] == 1 else f"{name}-{taken[name]}",
                audio=str(audio),
                text=e.text,
                where=e.where,
                speaker=e.speaker or speaker,
                split=split,
                recording_id=uid,
                start=e.start,
                end=e.end,
            )
        )
    return out
