"""What the importers of users' corpora (folder, kaldi, commonvoice) share.

Each importer only reads its format into :class:`Utterance` records, noting
format-level problems (a bad line, a missing file, a non-UTF-8 line) in a
:class:`~speechtl.data.validate.Report`. :func:`build_corpus` then does the
rest the same way for all of them: probe every recording, check every
utterance (:mod:`speechtl.data.validate`), stop or skip, make dev/test splits
when the corpus has none (:func:`assign_splits`), normalize the text and write
the character inventory, and write ``<name>_{recordings,supervisions}_<split>``
through :func:`speechtl.data.layout.write_split`. Everything is written to a
temporary directory first and moved into place at the end, so a failed import
never leaves the manifests of an earlier one half overwritten.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource

from speechtl.data.downmix import DOWNMIX
from speechtl.data.layout import write_split
from speechtl.data.normalize import (
    CEDILLA_COMMA,
    NormalizeConfig,
    char_inventory,
    char_map,
    is_vowel_mark,
    join_zwnj_words,
    mixed_script_letters,
    normalize,
    write_char_inventory,
    zwnj_words,
)
from speechtl.data.textfile import code_page_readings
from speechtl.data.validate import AudioInfo, Report, ValidateConfig, check_duration, find_duplicates, probe_many
from speechtl.errors import SpeechtlError

Pathlike = str | Path
Manifests = dict[str, dict[str, RecordingSet | SupervisionSet]]

#: Seconds a segment may end past its recording and be cut at its end (Kaldi's extract-segments default).
MAX_OVERSHOOT = 0.5

#: Folder names taken as splits, and the split each names.
SPLIT_NAMES = {"train": "train", "dev": "dev", "valid": "dev", "val": "dev", "validation": "dev", "test": "test"}


@dataclass
class Utterance:
    id: str
    audio: str  # a file path, or a Kaldi ``cmd args |`` pipe
    text: str | None  # None: no transcript was found
    where: str  # where its transcript is (file:line), else its audio file
    speaker: str | None = None
    split: str | None = None  # None: decided by assign_splits
    recording_id: str | None = None  # None: the utterance is the whole recording, named by its id
    start: float = 0.0
    end: float | None = None  # None: to the end of the recording
    gender: str | None = None
    language: str | None = None

    @property
    def rec_id(self) -> str:
        return self.recording_id or self.id


@dataclass(frozen=True)
class SplitConfig:
    """The seeded dev/test rule for a corpus without split folders."""

    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    min_speakers: int = 3  # fewer known speakers: split by utterance
    #: auto: speaker-disjoint when the speakers allow it (below), else by utterance; speaker: always
    #: speaker-disjoint (an error when speakers are unknown or too few); utterance: never.
    by: str = "auto"


@dataclass(frozen=True)
class ImportOptions:
    skip_bad_audio: bool = False
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    normalize: bool = True
    text: NormalizeConfig = field(default_factory=NormalizeConfig)
    language: str | None = None
    #: Turkish casing (I -> ı): None: when the corpus writes ı or İ, or its language is Turkic.
    turkic_case: bool | None = None


def import_options(
    skip_bad_audio: bool = False,
    sampling_rate: int | None = None,
    min_duration: float | None = None,
    max_duration: float | None = None,
    subsampling: int | None = None,
    nj: int | None = None,
    dev_fraction: float | None = None,
    test_fraction: float | None = None,
    seed: int | None = None,
    split_by: str | None = None,
    normalize_text: bool | None = None,
    keep_chars: str | None = None,
    drop_chars: str | None = None,
    map_chars: str | None = None,
    join_zwnj: bool | None = None,
    turkic_case: bool | None = None,
    language: str | None = None,
) -> ImportOptions:
    """ImportOptions from the flat keyword options of ``prepare_<kind>`` (None: the default)."""

    def given(**kw):
        return {k: v for k, v in kw.items() if v is not None}

    return ImportOptions(
        skip_bad_audio=bool(skip_bad_audio),
        validate=ValidateConfig(
            **given(
                sampling_rate=sampling_rate,
                min_duration=min_duration,
                max_duration=max_duration,
                subsampling=subsampling,
                nj=nj,
            )
        ),
        split=SplitConfig(**given(dev_fraction=dev_fraction, test_fraction=test_fraction, seed=seed, by=split_by)),
        normalize=True if normalize_text is None else normalize_text,
        text=NormalizeConfig(**given(keep=keep_chars, drop=drop_chars, map=map_chars, join_zwnj=join_zwnj)),
        language=language,
        turkic_case=turkic_case,
    )


def read_lines(path: Path, report: Report) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a text file, each line decoded alone: a non-UTF-8 line is a
    ``bad-encoding`` problem naming its line, the others still read. A BOM is dropped. A file with a
    UTF-16 byte-order mark (Excel's "Unicode text", Notepad's "Unicode") is read as UTF-16: line by line
    its bytes named no audio file, and every recording was "no-transcript"."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
            report.add("bad-encoding", f"{path}:1", "UTF-32 (its byte-order mark); convert: iconv -f UTF-32 -t UTF-8")
            yield 1, None
            return
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            try:
                text = path.read_bytes().decode("utf-16")
            except UnicodeDecodeError as e:
                report.add("bad-encoding", f"{path}:1", f"a UTF-16 byte-order mark, but not UTF-16 ({e.reason})")
                yield 1, None
                return
            lines = text.lstrip("\ufeff").split("\n")
            for n, line in enumerate(lines[:-1] if lines[-1] == "" else lines, 1):
                yield n, line.rstrip("\r")
            return
        f.seek(0)
        first = True
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                readings = code_page_readings(raw, e.start) if first else ""
                report.add(
                    "bad-encoding",
                    f"{path}:{n}",
                    f"byte {raw[e.start]:#04x} at column {e.start + 1} is not UTF-8"
                    + (f" (its word in each code page: {readings})" if readings else ""),
                )
                report.note_unread(f"{path}:{n}", raw.decode("latin-1"))
                first = False
                yield n, None
                continue
            if n == 1:
                line = line.lstrip("\ufeff")
            yield n, line.rstrip("\r\n")


#: Transcripts' tokens that are not words: Kaldi's <UNK>, <NOISE>, <sil>, [noise], [laughter]; the
#: same marks in annotations (<laugh>, [cough]).
TAG = re.compile(r"<[^<>\s]+>|\[[^\[\]\s]+\]")


def drop_tags(text: str, seen: Counter[str]) -> str:
    """``text`` without its whole-word tags (:data:`TAG`), each counted in ``seen``. Left in,
    normalization took their brackets away and ``<UNK>``, ``[noise]`` became the words unk, noise,
    trained on and scored."""
    kept = []
    for w in text.split():
        if TAG.fullmatch(w):
            seen[w] += 1
        else:
            kept.append(w)
    return " ".join(kept)


def say_dropped_tags(where: str, tags: Counter[str]) -> None:
    if tags:
        logging.warning(
            f"{where}: {sum(tags.values())} non-speech and unknown-word token(s) left out of the transcripts, "
            f"as Kaldi's lexicons map them to silence or <unk>: {', '.join(f'{t} {n}' for t, n in tags.most_common(8))}"
            " (an utterance of nothing else is then empty-text)"
        )


def safe_id(text: str) -> str:
    """An id usable in Kaldi files and file names: whitespace and slashes become ``_``."""
    return re.sub(r"[\s/\\]+", "_", text.strip())


def split_of_split_dir(name: str) -> str | None:
    return SPLIT_NAMES.get(name.lower())


def _name_tokens(name: str) -> list[str]:
    return re.split(r"[-_.]", name.lower())


def part_splits(names: Sequence[str]) -> dict[str, str | None]:
    """``{part name: split}`` for a corpus's parts (LibriSpeech's ``train-clean-100``, Kaldi's
    ``train_clean_5``, ``dev_clean_2``): a name that is a split name, or starts with one, is that
    split; None: a part of its own, kept under its name. Every train part is train (they are pooled);
    of several dev (test) parts one is dev (test), the one named exactly so, else the one called
    clean, else the first by name; the others (``dev-other``) stay parts of their own, decoded as
    further test sets. A recipe adapts on train and chooses on dev, so these names must be found."""
    kind = {n: split_of_split_dir(n) or SPLIT_NAMES.get(_name_tokens(n)[0]) for n in names}
    out: dict[str, str | None] = {n: ("train" if kind[n] == "train" else None) for n in names}
    for split in ("dev", "test"):
        cands = sorted(n for n in names if kind[n] == split)
        exact = [n for n in cands if split_of_split_dir(n) == split]
        if cands:
            out[(exact or sorted(cands, key=lambda n: "clean" not in _name_tokens(n)))[0]] = split
    return out


def is_derived_copy(name: str) -> bool:
    """Kaldi's derived copies of a data dir: speed-perturbed (``train_sp``), high-resolution
    features (``train_hires``, ``train_clean_5_sp_hires``)."""
    return any(t in ("sp", "hires") or re.fullmatch(r"sp\d.*", t) for t in _name_tokens(name)[1:])


def draw_missing_splits(utts: Sequence[Utterance], opts: ImportOptions) -> ImportOptions:
    """A corpus with train but without dev and/or test: the missing ones are drawn from train by the
    seeded rule (:func:`assign_splits`), and a split the corpus has stays as it is."""
    splits = {u.split for u in utts}
    if "train" not in splits or {"dev", "test"} <= splits:
        return opts
    missing = {"dev", "test"} - splits
    for u in utts:
        if u.split == "train":
            u.split = None
    return replace(
        opts,
        split=replace(
            opts.split,
            dev_fraction=opts.split.dev_fraction if "dev" in missing else 0.0,
            test_fraction=opts.split.test_fraction if "test" in missing else 0.0,
        ),
    )


def _frac_rank(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, key): the same split for the same corpus on every machine."""
    h = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _deal(groups: dict[str, list[Utterance]], cfg: SplitConfig) -> dict[str, str]:
    """``{group: split}``: groups in an order fixed by the seed dealt to test, then dev, until each
    holds its fraction of the utterances (at least one group each, when asked for), the rest train."""
    order = sorted(groups, key=lambda k: _frac_rank(k, cfg.seed))
    total = sum(len(g) for g in groups.values())
    out, i = {}, 0
    for split, frac in (("test", cfg.test_fraction), ("dev", cfg.dev_fraction)):
        want, got = frac * total, 0
        while i < len(order) - 1 and frac > 0 and (got == 0 or got + len(groups[order[i]]) / 2 <= want):
            out[order[i]] = split
            got += len(groups[order[i]])
            i += 1
    out.update(dict.fromkeys(order[i:], "train"))
    return out


def _deal_counting_train(groups: dict[str, list[Utterance]], cfg: SplitConfig) -> tuple[dict[str, str], int]:
    """:func:`_deal` of whole groups, and how many utterances train keeps."""
    dealt = _deal(groups, cfg)
    return dealt, sum(len(groups[k]) for k, v in dealt.items() if v == "train")


def _train_keeps_enough(train: int, total: int, cfg: SplitConfig) -> bool:
    """Whole groups (speakers, recordings) are dealt only while train keeps at least
    ``1 - 2 * (dev + test fraction)`` of the utterances."""
    return train >= (1 - 2 * (cfg.dev_fraction + cfg.test_fraction)) * total


def _deal_by_recording(todo: Sequence[Utterance], cfg: SplitConfig) -> tuple[str, dict[str, str]]:
    """Without speakers to keep apart: segments of one recording (one session, one voice) stay in one
    split, so test never hears a voice train heard in the same session, unless whole recordings would
    leave train less than ``1 - 2 * (dev + test fraction)`` of the utterances (three long recordings);
    then utterance by utterance. ``(unit, {recording or utterance id: split})``."""
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for u in todo:
        groups[u.rec_id].append(u)
    if len(groups) < len(todo) and cfg.by != "utterance":
        dealt, train = _deal_counting_train(groups, cfg)
        if _train_keeps_enough(train, len(todo), cfg):
            return "recording", dealt
        logging.warning(
            f"segments of {len(groups)} recordings: whole recordings would leave train {train} of {len(todo)} "
            "segments, so dev and test hold segments of recordings train also holds (a voice and a session "
            "train has heard). Fix, for a fairer test: more recordings, or name the speakers"
        )
    return "utterance", _deal({u.id: [u] for u in todo}, cfg)


def _speaker_groups(todo: Sequence[Utterance]) -> dict[str, list[Utterance]]:
    """Utterances by speaker, where speakers heard in one recording (a conversation, an interview: two
    speakers' tiers of one session) are one group, named by its first speaker: dealt together, a
    session is never in two splits. Without such recordings, one group per speaker."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    speakers_of: dict[str, set[str]] = defaultdict(set)
    for u in todo:
        speakers_of[u.rec_id].add(u.speaker)
    for spk in speakers_of.values():
        first = min(spk)
        for other in spk:
            a, b = root(first), root(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for u in todo:
        groups[root(u.speaker)].append(u)
    shared = sum(1 for spk in speakers_of.values() if len(spk) > 1)
    if shared:
        logging.info(
            f"{shared} recording(s) hold several speakers: speakers heard in one recording are dealt together "
            f"({len(groups)} groups of {len({u.speaker for u in todo})} speakers), so no session is in two splits"
        )
    return groups


def assign_splits(utterances: Sequence[Utterance], cfg: SplitConfig) -> str:
    """Give dev/test to utterances whose ``split`` is None; returns a line saying what was done.

    ``cfg.by`` auto: speaker-disjoint when every utterance's speaker is known, there
    are at least ``cfg.min_speakers`` of them, and dealing whole speakers (:func:`_deal`)
    still leaves train at least ``1 - 2 * (dev + test fraction)`` of the utterances;
    otherwise utterances are dealt one by one, and the line says why. speaker: whole
    speakers whatever train keeps (a test of unseen speakers); utterance: one by one."""
    if cfg.by not in ("auto", "speaker", "utterance"):
        raise SpeechtlError(f"--split-by {cfg.by!r}: it is auto, speaker or utterance")
    todo = [u for u in utterances if u.split is None]
    if not todo:
        return "splits given by the corpus"
    spk = [u.speaker for u in todo]
    speakers = sorted({s for s in spk if s})
    if cfg.by == "speaker":
        needed = 1 + (cfg.dev_fraction > 0) + (cfg.test_fraction > 0)
        if not all(spk) or len(speakers) < needed:
            n = sum(1 for s in spk if not s)
            raise SpeechtlError(
                f"--split-by speaker: {n} of {len(todo)} utterances have no speaker, {len(speakers)} speaker(s) "
                f"known, {needed} needed (train, dev, test). Fix: name the speakers (a speaker column, utt2spk, "
                "--speaker-pattern REGEX, or a sub-folder per speaker), or --split-by auto"
            )
    why = ""
    if cfg.by == "utterance":
        why = " (--split-by utterance)"
    elif not all(spk):
        why = " (speakers unknown)"
    elif cfg.by == "auto" and len(speakers) < cfg.min_speakers:
        why = f" (only {len(speakers)} speakers)"
    elif len(groups := _speaker_groups(todo)) < (needed := 1 + (cfg.dev_fraction > 0) + (cfg.test_fraction > 0)):
        # one speaker in every session (the interviewer) joins them all: no speaker-disjoint split exists
        if cfg.by == "speaker":
            raise SpeechtlError(
                f"--split-by speaker: the {len(speakers)} speakers are heard together in recordings so that they "
                f"form {len(groups)} group(s) (a speaker in every session, e.g. the interviewer), {needed} needed: "
                "no split keeps both speakers and sessions apart. Fix: --split-by auto (whole recordings), or "
                "leave the shared speaker's tier out (--tier)"
            )
        why = f" (the {len(speakers)} speakers are heard together in recordings: {len(groups)} group(s))"
    else:
        dealt, train = _deal_counting_train(groups, cfg)
        if cfg.by == "speaker" or _train_keeps_enough(train, len(todo), cfg):
            for k, split in dealt.items():
                for u in groups[k]:
                    u.split = split
        else:
            why = f" (whole speakers would leave train {train} of {len(todo)}; --split-by speaker keeps them whole)"
    unit = "utterance"
    if why:
        unit, dealt = _deal_by_recording(todo, cfg)
        for u in todo:
            u.split = dealt[u.rec_id if unit == "recording" else u.id]
    counts = Counter(u.split for u in todo)
    how = f"by {unit}{why}" if why else f"speaker-disjoint over {len(speakers)} speakers"
    made = [s for s, f in (("dev", cfg.dev_fraction), ("test", cfg.test_fraction)) if f > 0]
    given = "no split folders" if len(made) != 1 else f"no {made[0]} split given"
    return (
        f"{given}: {'/'.join(made) or 'nothing'} made {how}, seed {cfg.seed}, fractions "
        f"dev {cfg.dev_fraction} test {cfg.test_fraction}: "
        + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "dev", "test"))
    )


def _recording(rec_id: str, source: str, info: AudioInfo) -> Recording:
    s = source.strip()
    is_cmd = s.endswith("|")
    src = AudioSource(
        type="command" if is_cmd else "file",
        channels=[0],
        source=s[:-1].strip() if is_cmd else os.path.abspath(s),
    )
    return Recording(
        id=rec_id,
        sources=[src],
        sampling_rate=info.sampling_rate,
        num_samples=info.num_samples,
        duration=info.duration,
        transforms=[DOWNMIX] if info.num_channels > 1 else None,
    )


def check_utterances(utts: Sequence[Utterance], report: Report, cfg: ValidateConfig) -> dict[str, AudioInfo]:
    """Every check of :mod:`speechtl.data.validate` on the utterances; returns each good recording's info."""
    find_duplicates(report, ((u.id, u.where) for u in utts))
    sources: dict[str, str] = {}
    for u in utts:
        if sources.setdefault(u.rec_id, u.audio) != u.audio:
            report.add("duplicate-id", u.where, f"recording {u.rec_id!r} names two sources", u.id)
    probed = probe_many(sources.values(), cfg.nj)
    overshoot: list[str] = []
    infos: dict[str, AudioInfo] = {}
    bad_recs: dict[str, tuple[str, str]] = {}
    for rec_id, src in sources.items():
        info = probed[src]
        if isinstance(info, AudioInfo):
            infos[rec_id] = info
            report.note_audio(info, src)
        else:
            bad_recs[rec_id] = info
    for u in utts:
        if u.rec_id in bad_recs:
            kind, detail = bad_recs[u.rec_id]
            where = u.where if kind == "missing-audio" else u.audio.strip()
            report.add(kind, where, detail if kind != "missing-audio" else f"{u.audio} does not exist", u.id)
            continue
        if u.text is None:
            if not report.claim_unread(u.audio, u.id):
                report.add("no-transcript", u.audio, "no transcript names this audio", u.id)
            continue
        if not u.text.strip():
            report.add("empty-text", u.where, "the transcript is empty", u.id)
            continue
        dur = infos[u.rec_id].duration
        end = dur if u.end is None or u.end < 0 else u.end
        where = u.audio.strip() if u.where == u.audio else f"{u.audio.strip()} ({u.where})"
        if dur < end <= dur + MAX_OVERSHOOT and u.start < dur:
            if end > dur + 0.01:  # past the rounding of times written to 2 decimals: said
                overshoot.append(f"{u.id} ({end - dur:.2f} s)")
            # as Kaldi's extract-segments --max-overshoot does; lhotse's trim of a cut to a supervision
            # ending even 2 ms past its recording failed (stage 1, an AssertionError naming no file)
            u.end = end = dur
        if u.start < 0 or end <= u.start or end > dur:
            report.add(
                "bad-segment",
                where,
                f"{u.start:.2f}-{end:.2f} s is outside the audio's {dur:.2f} s (more than {MAX_OVERSHOOT} s past "
                "its end, or before its start)",
                u.id,
            )
            continue
        check_duration(report, cfg, u.id, where, end - u.start, u.text)
    if overshoot:
        logging.warning(
            f"{len(overshoot)} segment(s) end past their recording by up to {MAX_OVERSHOOT} s, cut at its end as "
            f"Kaldi's extract-segments does: {', '.join(overshoot[:5])}{' ...' if len(overshoot) > 5 else ''}"
        )
    return infos


def join_cedilla_commas(utterances: list[Utterance], opts: ImportOptions) -> ImportOptions:
    """A corpus with both ş and ș (or ţ and ț) writes one letter two ways, and would train two units
    on its examples: every ş becomes ș and ţ becomes ț (the import's text_norm.json records the map,
    so hypotheses scored later are treated alike). A corpus with one form keeps it (Turkish ş), and a
    ``--map-chars`` naming either letter (``ş=ş`` keeps both) is the user's choice."""
    if opts.text.turkic_case:  # Turkish, Azeri, Gagauz write the cedilla: a stray ș there is a typo of ş
        return opts
    present = {c for u in utterances if u.text for c in u.text}
    given = set(opts.text.map) if opts.text.map else set()
    pairs = [(a, b) for a, b in CEDILLA_COMMA if a in present and b in present and not {a, b} & given]
    if not pairs:
        return opts
    # The comma forms are the corpus's convention then: a cedilla letter whose comma form it never
    # writes (ţ beside ş and ș) joins too, or its transcripts would mix the two conventions.
    alone = [(a, b) for a, b in CEDILLA_COMMA if a in present and b not in present and not {a, b} & given]
    table = {ord(a): b for a, b in pairs + alone}
    letters = {c for pair in pairs + alone for c in pair}
    counts = Counter(c for u in utterances if u.text for c in u.text if c in letters)
    for u in utterances:
        if u.text:
            u.text = u.text.translate(table)
    spec = ",".join(f"{a}={b}" for a, b in pairs + alone)
    logging.warning(
        "both "
        + " and ".join(f"{a} ({counts[a]}x) and {b} ({counts[b]}x)" for a, b in pairs)
        + f" occur: one letter typed two ways (cedilla for comma below), written {' '.join(b for _, b in pairs)}"
        + (f", and so is {' '.join(f'{a} ({counts[a]}x) as {b}' for a, b in alone)}" if alone else "")
        + f" (--map-chars '{spec}'). To keep them apart: --map-chars '{','.join(f'{a}={a}' for a, _ in pairs + alone)}'"
    )
    return replace(opts, text=replace(opts.text, map=",".join(x for x in (opts.text.map, spec) if x)))


def write_inventory(by_split: dict[str, list[Utterance]], path: Path, opts: ImportOptions) -> list[str]:
    """The transcripts' character inventory at ``path``, its advice in the log; returns the flagged
    characters. Letters the user mapped to themselves (``--map-chars 'ş=ş'``) are never look-alikes."""
    texts = [u.text for utts in by_split.values() for u in utts]
    table = char_map(opts.text.map) if opts.text.map else {}
    kept_apart = [chr(k) for k, v in table.items() if chr(k) == v]
    mapped = "".join(map(chr, table))
    return write_char_inventory(
        char_inventory(texts), path, opts.text.rare_count, mixed_script_letters(texts), kept_apart, mapped
    )


#: The rules by which an import writes transcripts (normalization, joining, casing). Bumped when they
#: change: a generated recipe's stage 0 keys on it, so an updated speechtl imports the corpus again
#: (and the stages after it rerun) instead of keeping transcripts written by the old rules.
#: 2: lower case by str.lower, Turkish casing, --map-chars on the typed characters too.
#: 3: ids, speaker folders and utt2spk in NFC; ş and ţ join their comma forms as a pair.
IMPORT_RULES = 3

#: Languages written with the dotless ı and the dotted İ, whose capital I is the dotless one's.
TURKIC_LANGUAGES = ("tr", "az", "crh", "gag")
#: Turkic languages with Latin spellings of which some write ı and İ (Kazakh's 2021 alphabet, Tatar's
#: Zamanälif, Karakalpak) and others do not, beside a Cyrillic one: named, they leave it to the text.
TURKIC_BY_TEXT = ("kk", "tt", "kaa", "ba", "uz", "tk", "ky", "ug", "cv", "sah", "krc", "kum", "nog")


def turkic_casing(utterances: list[Utterance], opts: ImportOptions, min_share: float = 0.05) -> ImportOptions:
    """Turkish casing (I -> ı, İ -> i) when ``--turkic-case`` says so, or, left to the corpus, when at
    least ``min_share`` of the transcripts write ı or İ (as typed, after ``--map-chars``) or the language
    is Turkic: lowercased by Python's rules, a new user's IŞIK, Işık and ışık were three words (7 of 10
    HLG test errors) and I a unit of its own. One Turkish name in another language's corpus is not
    enough (its I would all become ı)."""
    table = char_map(opts.text.map) if opts.text.map else {}
    texts = [unicodedata.normalize("NFC", u.text).translate(table) for u in utterances if u.text]
    typed = sum(1 for t in texts if "\u0131" in t or "\u0130" in t)
    language = (opts.language or "").lower().replace("_", "-").split("-")[0]
    turkic_language = language in TURKIC_LANGUAGES
    # a language named and not Turkic (--language en) is not second-guessed from its text
    detected = typed >= max(2, min_share * len(texts)) and (language in (*TURKIC_LANGUAGES, *TURKIC_BY_TEXT, ""))
    on = opts.turkic_case if opts.turkic_case is not None else detected or turkic_language
    if on and opts.turkic_case is None:
        why = f"{typed} of {len(texts)} transcripts write ı or İ" if detected else f"the language is {opts.language}"
        logging.warning(
            f"Turkish casing: {why}, so capital I is lowercased to ı and İ to i (IŞIK, Işık and ışık one word). "
            "To lowercase I to i instead: --turkic-case false"
        )
    elif typed and not on and opts.turkic_case is None:
        logging.info(
            f"{typed} of {len(texts)} transcripts write ı or İ: too few for Turkish casing (--turkic-case true)"
        )
    return replace(opts, text=replace(opts.text, turkic_case=on))


def _marked(word: str) -> bool:
    """Whether ``word`` has a combining mark other than an Arabic or Hebrew vowel mark (most text leaves
    those out: the inventory's advice for them is --drop-chars)."""
    return any(unicodedata.category(c) == "Mn" and not is_vowel_mark(c) for c in unicodedata.normalize("NFD", word))


def _unmarked(word: str) -> str:
    return unicodedata.normalize(
        "NFC", "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
    )


def warn_unmarked_speakers(
    utterances: list[Utterance], min_words: int = 5, consistent: float = 0.9, share: float = 0.5
) -> list[str]:
    """Speakers who leave out the accents, tone marks or vowel signs the others write (Greek typed in
    capitals without accents, a Yoruba transcriber without tone marks): one word then has two
    spellings, two units for the LM and an error when scored. Only words the other speakers write
    with marks at least ``consistent`` of the time count (Spanish el/él, si/sí are two words each);
    a speaker is named who writes at least ``min_words`` of those and ``share`` of them without their
    marks. Warned with examples; returns the speakers. One pass over the words."""
    marked: Counter = Counter()  # unmarked form -> tokens written with marks, by everyone
    plain: Counter = Counter()  # ... written without
    own: dict[str, Counter] = defaultdict(Counter)  # speaker -> (form, with marks?) -> tokens
    forms: dict[str, str] = {}
    seen: dict[str, tuple[str, bool]] = {}  # each word type decomposed once
    for u in utterances:
        if not (u.text and u.speaker):
            continue
        for w in u.text.split():
            if w not in seen:
                seen[w] = (_unmarked(w), _marked(w))
            form, m = seen[w]
            if m:
                marked[form] += 1
                forms.setdefault(form, w)
            else:
                plain[form] += 1
            own[u.speaker][(form, m)] += 1
    found, examples = [], []
    for spk, counts in own.items():
        unmarked_here = []
        n = 0
        for (form, m), k in counts.items():
            if m or form not in marked:
                continue
            mine_marked = counts.get((form, True), 0)
            others_marked, others_plain = marked[form] - mine_marked, plain[form] - k
            if others_marked and others_marked >= consistent * (others_marked + others_plain):
                n += k
                unmarked_here.append((k, form))
        written = n + sum(counts.get((f, True), 0) for _, f in unmarked_here)
        if n >= min_words and n >= share * max(written, 1):
            found.append((spk, n, written))
            examples += [f"{f} for {forms[f]}" for _, f in sorted(unmarked_here, reverse=True)[:2]]
    if not found:
        return []
    names = ", ".join(f"{spk} ({n} of {w} such words)" for spk, n, w in found[:8])
    logging.warning(
        f"speaker(s) {names}{' and more' if len(found) > 8 else ''} write without their accents, tone marks or "
        f"vowel signs words the other transcripts write with them (e.g. {', '.join(examples[:4])}): one word "
        "gets two spellings (two words for the LM, an error when scored). Fix: add the marks to those transcripts "
        "(capitals too: the language writes its accents on them)"
    )
    return [spk for spk, _, _ in found]


def join_zwnj(utterances: list[Utterance], opts: ImportOptions) -> ImportOptions:
    """Words the corpus writes with a ZWNJ and, elsewhere, with a space (Persian می‌روید, می روید: a
    new user's test HLG WER was 29.80%, and 2.00% with the two written alike) are written with the
    ZWNJ everywhere, and the log says so; the import's text_norm.json records them, so LM text and
    hypotheses read later are joined alike. ``--join-zwnj false`` keeps them as typed, with a warning."""
    table = zwnj_words(u.text for u in utterances if u.text)
    if not table:
        return opts
    examples = ", ".join(f"{k!r} as {w!r}" for k, w in list(table.items())[:5])
    if not opts.text.join_zwnj:
        logging.warning(
            f"{len(table)} word(s) written with a ZWNJ are elsewhere written with a space ({examples}): two words "
            "for one, an error each when scored. Fix: --join-zwnj true, or type the ZWNJ in those transcripts"
        )
        return opts
    joined = " ".join(sorted(set(table.values())))
    changed = 0
    for u in utterances:
        if u.text:
            new = join_zwnj_words(u.text, joined)
            changed += new != u.text
            u.text = new
    logging.warning(
        f"{len(table)} word(s) written with a ZWNJ were elsewhere written with a space; joined in {changed} "
        f"transcript(s): {examples}. To keep them as typed: --join-zwnj false"
    )
    return replace(opts, text=replace(opts.text, zwnj_words=joined))


def build_corpus(
    name: str,
    utterances: list[Utterance],
    output_dir: Pathlike | None,
    opts: ImportOptions,
    report: Report,
    corpus_dir: Path,
    after_probe: Callable[[dict[str, AudioInfo]], None] | None = None,
) -> Manifests:
    """Validate, split, normalize and write an imported corpus (see the module doc).

    ``after_probe`` gets every good recording's info for a format's own checks
    (Kaldi's reco2dur), which add to ``report`` before it is resolved."""
    if not utterances:
        raise SpeechtlError(f"found no utterances in {corpus_dir}. Fix: check --corpus-dir and the corpus layout.")
    infos = check_utterances(utterances, report, opts.validate)
    if after_probe is not None:
        after_probe(infos)
    # Texts normalized first: an utterance whose text normalizes to nothing is bad too.
    if opts.normalize:
        opts = turkic_casing(utterances, opts)
        for u in utterances:
            if u.text:
                raw = u.text
                u.text = normalize(raw, opts.text)
                if raw.strip() and not u.text:
                    report.add("empty-text", u.where, f"nothing is left of {raw!r} after normalization", u.id)
        opts = join_cedilla_commas(utterances, opts)
        opts = join_zwnj(utterances, opts)
        warn_unmarked_speakers(utterances)
    report.log_notes(opts.validate.sampling_rate)
    out = Path(output_dir) if output_dir is not None else None
    bad = report.resolve(opts.skip_bad_audio, None)  # bad_audio.txt is written with the manifests
    split_line = assign_splits(utterances, opts.split)  # over all, so skipping never moves a good one
    good = [u for u in utterances if u.id not in bad and u.rec_id in infos]
    left_out = len(utterances) - len(good)
    if left_out:  # the split is dealt over all, so that leaving bad ones out never moves a good one
        split_line += f" (counted before {left_out} bad utterance(s) were left out)"
    logging.info(f"{name}: {split_line}")
    by_split: dict[str, list[Utterance]] = defaultdict(list)
    for u in good:
        by_split[u.split].append(u)
    empty = [s for s in ("train", "dev", "test") if s in {u.split for u in utterances} and not by_split.get(s)]
    if empty:
        raise SpeechtlError(f"no usable utterances left for split(s) {empty} of {corpus_dir}; see the problems above")
    for split, utts in sorted(by_split.items()):
        hours = sum(_dur(u, infos) for u in utts) / 3600
        speakers = len({u.speaker for u in utts if u.speaker})
        logging.info(f"{name} {split}: {len(utts)} utterances, {hours:.2f} h, {speakers} speakers")
    overlap = sentence_overlap(by_split)
    if out is None:  # a dry run (speechtl validate): the manifests in memory, the text's advice in the log
        with tempfile.TemporaryDirectory() as tmp:
            write_inventory(by_split, Path(tmp) / f"{name}_char_inventory.tsv", opts)
        return {
            split: {
                "recordings": RecordingSet.from_recordings(_recordings(utts, infos)),
                "supervisions": SupervisionSet.from_segments(_supervisions(utts, infos, opts.language)),
            }
            for split, utts in sorted(by_split.items())
        }
    _write_atomically(out, name, by_split, infos, split_line + "".join("\n" + x for x in overlap), report, opts)
    # read back lazily: a corpus of a million clips is never held as manifest objects
    return {
        split: {
            "recordings": RecordingSet.from_file(out / f"{name}_recordings_{split}.jsonl.gz"),
            "supervisions": SupervisionSet.from_file(out / f"{name}_supervisions_{split}.jsonl.gz"),
        }
        for split in sorted(by_split)
    }


#: From this share of a dev or test split's transcripts also in train, the import warns.
OVERLAP_WARN = 0.1


def sentence_overlap(by_split: dict[str, list[Utterance]]) -> list[str]:
    """A line per split other than train: how many of its transcripts are also train transcripts
    (read prompts: every speaker reads the same sentences). The recipes' word LM is trained on train's
    text, so HLG scores those sentences better than new ones (a new user's Hindi test: 42 of 54 in
    train, HLG 2.70% against greedy 21.96%); from :data:`OVERLAP_WARN` on, a warning says so."""
    train = {u.text for u in by_split.get("train", []) if u.text}
    lines = []
    for split, utts in sorted(by_split.items()):
        if split == "train" or not utts or not train:
            continue
        shared = sum(u.text in train for u in utts)
        lines.append(
            f"{split}: {shared} of {len(utts)} transcripts ({100 * shared / len(utts):.0f}%) are also in train"
        )
        if shared >= OVERLAP_WARN * len(utts):
            logging.warning(
                f"{lines[-1]}: the word LM of HLG is trained on train's text, so HLG's WER on {split} is that of "
                "sentences it has seen, lower than on new ones (greedy's is not). Fix, for a test of new "
                f"sentences: record other sentences for {split} (split folders train/, dev/, test/), or "
                "report it as a test of known sentences"
            )
    return lines


def _dur(u: Utterance, infos: dict[str, AudioInfo]) -> float:
    dur = infos[u.rec_id].duration
    end = dur if u.end is None or u.end < 0 else u.end
    return end - u.start


def _recordings(utts: list[Utterance], infos: dict[str, AudioInfo]) -> Iterator[Recording]:
    """Each recording of ``utts`` once (segments share one), made as it is written."""
    seen: set[str] = set()
    for u in utts:
        if u.rec_id not in seen:
            seen.add(u.rec_id)
            yield _recording(u.rec_id, u.audio, infos[u.rec_id])


def _supervisions(utts: list[Utterance], infos: dict[str, AudioInfo], language: str | None):
    for u in utts:
        yield SupervisionSegment(
            id=u.id,
            recording_id=u.rec_id,
            start=u.start,
            duration=round(_dur(u, infos), 6),
            channel=0,
            text=u.text,
            speaker=u.speaker,
            gender=u.gender,
            language=u.language or language,
        )


def _write_atomically(
    out: Path,
    name: str,
    by_split: dict[str, list[Utterance]],
    infos: dict[str, AudioInfo],
    split_line: str,
    report: Report,
    opts: ImportOptions,
) -> None:
    """Every file into a temporary dir first (manifests streamed: RecordingSet over a generator
    writes as it goes), then moved over the old ones only once all are complete."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}_import.", dir=out))
    try:
        for split, utts in sorted(by_split.items()):
            recs = RecordingSet(_recordings(utts, infos))
            sups = SupervisionSet(_supervisions(utts, infos, opts.language))
            write_split(tmp, name, split, recs, sups)
        inventory = tmp / f"{name}_char_inventory.tsv"
        flagged = write_inventory(by_split, inventory, opts)
        lines = [split_line]
        if flagged:  # what the log said about the text, kept where the user reads the import
            lines.append(
                f"characters to check in {inventory.name} (digit, looks like, vowel mark, rare): {' '.join(flagged)}"
            )
        lines += [f"{s}\t{len(utts)} utterances" for s, utts in sorted(by_split.items())]
        lines += [f"skipped {len(report.problems)} problem(s), listed in bad_audio.txt"] if report.problems else []
        (tmp / "bad_audio.txt").write_text(report.bad_list(), encoding="utf-8")  # empty: nothing skipped
        (tmp / f"{name}_import_report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        # How the transcripts were normalized, so a row scored later (speechtl zero-shot --text-norm
        # import --text-norm-config) treats its hypotheses the same way.
        norm = {"normalize": opts.normalize, **asdict(opts.text)}
        (tmp / f"{name}_text_norm.json").write_text(json.dumps(norm, ensure_ascii=False, indent=1) + "\n", "utf-8")
        for f in tmp.iterdir():
            f.replace(out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    skipped = f", bad_audio.txt ({len(report.problems)} skipped)" if report.problems else ""
    logging.info(f"{name}: manifests, {name}_char_inventory.tsv, {name}_import_report.txt{skipped} written to {out}")


def nothing_to_download(kind: str) -> Callable:
    """The ``download`` of an importer: a user's own corpus is not fetched from anywhere."""

    def download(target_dir: Pathlike = ".", force_download: bool = False) -> Path:
        raise SpeechtlError(
            f"'{kind}' imports a corpus you have; there is nothing to download. Fix: pass --corpus-dir."
        )

    return download
