"""Time-aligned transcripts of long recordings: Praat TextGrid and ELAN ``.eaf`` files.

Recordings of a language with few speakers are mostly field recordings: a session of many
minutes, annotated in ELAN or Praat with one tier of utterance intervals per speaker, and
tiers of translations, glosses or notes beside or under them. Each non-empty interval of the
transcript tier(s) becomes one utterance, a segment of the recording, as a Kaldi ``segments``
line would make it. :func:`read_annotation` reads a file; :func:`choose_tiers` picks the
transcript tiers over all of a corpus's files; ``speechtl prepare folder`` pairs each file with
its recording (same stem, or the ``.eaf``'s media file) and imports the segments.

Praat writes TextGrids in UTF-16 when a label holds a character outside ASCII: both UTF-8 and
UTF-16 (with a byte-order mark) are read, in its long and short text formats.
"""

import bisect
import fnmatch
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.parse import unquote, urlparse

from speechtl.atomic import atomic_open
from speechtl.data.corpora.imported import TAG
from speechtl.data.validate import FIXES
from speechtl.errors import SpeechtlError

ANNOTATION_EXTENSIONS = {".textgrid", ".eaf"}

#: Tier names that say "the transcript": chosen among several tiers without ``--tier``. ELAN's new
#: files start with a tier named "default"; ``tx@SPEAKER`` is the field-linguistics convention.
TRANSCRIPT_TIERS = (
    "transcription",
    "transcript",
    "transcriptions",
    "utterance",
    "utterances",
    "sentence",
    "sentences",
    "text",
    "orthography",
    "ortho",
    "tx",
    "tx@*",
    "trs",
    "trs@*",
    "default",
)

#: Labels of intervals that are pauses, not speech (Praat, MFA and HTK conventions).
PAUSE_LABELS = {"sil", "sp", "spn", "<sil>", "<p:>", "#", "_", "silence", "<silence>", "<pause>"}


@dataclass(frozen=True)
class Interval:
    """One labelled stretch of a tier; ``where`` is its file and line (or ELAN annotation id)."""

    start: float
    end: float
    text: str
    where: str


@dataclass
class Tier:
    name: str
    intervals: list[Interval] = field(default_factory=list)
    speaker: str | None = None  # ELAN's PARTICIPANT
    top_level: bool = True  # ELAN: a tier without a parent (its children are translations, glosses, words)

    @property
    def spoken(self) -> list[Interval]:
        """The intervals with speech: neither empty, nor a pause label, nor only non-speech tags
        (``[noise]``, ``<laugh>``; :data:`~speechtl.data.corpora.imported.TAG`)."""
        return [
            i
            for i in self.intervals
            if i.text.strip().lower() not in PAUSE_LABELS and not all(TAG.fullmatch(w) for w in i.text.split())
        ]


@dataclass
class Annotation:
    path: Path
    tiers: list[Tier]
    media: list[str] = field(default_factory=list)  # the file names an .eaf links, first the relative ones


class AnnotationError(SpeechtlError):
    """A TextGrid or .eaf that cannot be read; ``where`` and ``detail`` go to the import's report,
    which adds the fix, so every bad file of a corpus is named at once."""

    def __init__(self, where: str, detail: str):
        self.where, self.detail = where, detail
        super().__init__(f"{where}: {detail}. Fix: {FIXES['bad-annotation']}")


def decode_text(path: Path) -> str:
    """The text of an annotation file: UTF-16 with a byte-order mark (Praat's choice for any label
    outside ASCII), UTF-8 with or without one; otherwise a clear error."""
    raw = path.read_bytes()
    if raw.startswith(b"ooBinaryFile"):
        raise AnnotationError(str(path), "a binary TextGrid, which speechtl does not read")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    # UTF-16 without a byte-order mark: every other byte of ASCII text is 0, which is valid UTF-8 too
    odd, even = raw[1:200:2].count(0), raw[0:200:2].count(0)
    if max(odd, even) > 25:
        try:
            return raw.decode("utf-16-le" if odd > even else "utf-16-be")
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    raise AnnotationError(
        str(path), "neither UTF-8 nor UTF-16 (or convert it: iconv -f CP1252 -t UTF-8 FILE > FILE.utf8)"
    )


# A TextGrid as tokens: quoted strings ("" is a quote inside one), <exists>/<absent>, numbers; the long
# format's keys (xmin =, intervals [3]:) are skipped, so the long and short formats read alike.
_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"'
    r"|(<exists>|<absent>)"
    r"|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w\]])"
    r"|\[\s*\d*\s*\]"
    r'|[^\s"]+'
)


class _Tokens:
    def __init__(self, path: Path, text: str):
        self.path = path
        newlines = [m.start() for m in re.finditer("\n", text)]
        self.items: list[tuple[str, object, int]] = []  # (kind, value, line)
        for m in _TOKEN.finditer(text):
            line = bisect.bisect_left(newlines, m.start()) + 1
            if m.group(1) is not None:
                self.items.append(("str", m.group(1).replace('""', '"'), line))
            elif m.group(2) is not None:
                self.items.append(("flag", m.group(2), line))
            elif m.group(3) is not None:
                self.items.append(("num", float(m.group(3)), line))
        self.i = 0

    def take(self, kind: str, what: str) -> tuple[object, int]:
        if self.i >= len(self.items):
            raise AnnotationError(str(self.path), f"it ends before its {what}: not a whole TextGrid")
        k, value, line = self.items[self.i]
        if k != kind:
            raise AnnotationError(
                f"{self.path}:{line}", f"{what} expected, found {value!r}: not a TextGrid Praat writes"
            )
        self.i += 1
        return value, line


def read_textgrid(path: Path | str) -> Annotation:
    """Every tier of a Praat TextGrid (long or short text format); point tiers have no intervals."""
    path = Path(path)
    tok = _Tokens(path, decode_text(path))
    kind, _ = tok.take("str", "the file type")
    klass, _ = tok.take("str", "the object class")
    if not str(kind).startswith("ooTextFile") or klass != "TextGrid":
        raise AnnotationError(str(path), f"a {klass!r} ({kind!r}), not a TextGrid")
    tok.take("num", "xmin")
    tok.take("num", "xmax")
    exists, _ = tok.take("flag", "<exists>")
    tiers: list[Tier] = []
    if exists != "<exists>":
        return Annotation(path, tiers)
    n_tiers, _ = tok.take("num", "the number of tiers")
    for _ in range(int(n_tiers)):
        tclass, _ = tok.take("str", "a tier's class")
        name, _ = tok.take("str", "a tier's name")
        tok.take("num", "a tier's xmin")
        tok.take("num", "a tier's xmax")
        count, _ = tok.take("num", "a tier's size")
        tier = Tier(str(name))
        for _ in range(int(count)):
            if tclass == "IntervalTier":
                start, _ = tok.take("num", "an interval's xmin")
                end, _ = tok.take("num", "an interval's xmax")
                text, line = tok.take("str", "an interval's text")
                tier.intervals.append(Interval(float(start), float(end), str(text), f"{path}:{line}"))
            else:  # TextTier: points (time, mark), no stretch of audio
                tok.take("num", "a point's time")
                tok.take("str", "a point's mark")
        if tclass == "IntervalTier":
            tiers.append(tier)
    return Annotation(path, tiers)


def _media_names(root: ET.Element, path: Path) -> list[str]:
    """The audio an .eaf links: RELATIVE_MEDIA_URL first (relative to the .eaf), then MEDIA_URL's file name."""
    names: list[str] = []
    for md in root.iter("MEDIA_DESCRIPTOR"):
        rel, url = md.get("RELATIVE_MEDIA_URL"), md.get("MEDIA_URL")
        if rel:
            local = unquote(urlparse(rel).path) if rel.startswith("file:") else unquote(rel)
            names.append(str((path.parent / local).absolute()))
        if url:
            full = unquote(urlparse(url).path) if url.startswith("file:") else unquote(url)
            names.append(PureWindowsPath(full).name if "\\" in full else PurePosixPath(full).name)
    return names


def read_eaf(path: Path | str) -> Annotation:
    """The tiers of an ELAN file, each as intervals. A time-aligned annotation has its slots' times (an
    unaligned slot, inside a time subdivision, the time ELAN shows: :func:`_slot_times`); a symbolic one
    (a transcription under a reference tier, a translation, the words of a symbolic subdivision) takes
    its parent's span, and the annotations sharing a span are joined in order. A tier with a parent is
    not top-level."""
    path = Path(path)
    try:
        root = ET.fromstring(path.read_bytes())  # expat reads the declared encoding and a byte-order mark
    except ET.ParseError as e:
        raise AnnotationError(str(path), f"not well-formed XML ({e})") from e
    if root.tag != "ANNOTATION_DOCUMENT":
        raise AnnotationError(
            str(path), f"XML, but not an ELAN file (its root is {root.tag!r}, not ANNOTATION_DOCUMENT)"
        )
    slots = _slot_times(root, path)
    spans: dict[str, tuple[float, float] | None] = {}  # annotation id -> its span
    parent_of: dict[str, str] = {}  # symbolic annotation id -> the annotation it refers to
    for a in root.iter("ALIGNABLE_ANNOTATION"):
        start, end = slots.get(a.get("TIME_SLOT_REF1", "")), slots.get(a.get("TIME_SLOT_REF2", ""))
        spans[a.get("ANNOTATION_ID", "")] = (start, end) if start is not None and end is not None else None
    for a in root.iter("REF_ANNOTATION"):
        parent_of[a.get("ANNOTATION_ID", "")] = a.get("ANNOTATION_REF", "")

    def span_of(aid: str) -> tuple[float, float] | None:
        seen = set()
        while aid in parent_of and aid not in seen:  # up the chain of symbolic parents to a time-aligned one
            seen.add(aid)
            aid = parent_of[aid]
        return spans.get(aid)

    participant = {t.get("TIER_ID", ""): t.get("PARTICIPANT") for t in root.iter("TIER")}
    parent_tier = {t.get("TIER_ID", ""): t.get("PARENT_REF") for t in root.iter("TIER") if t.get("PARENT_REF")}

    def speaker(tid: str) -> str | None:  # a dependent tier's participant is often only on its top tier
        seen = set()
        while not participant.get(tid) and tid in parent_tier and tid not in seen:
            seen.add(tid)
            tid = parent_tier[tid]
        return participant.get(tid) or None

    tiers = []
    for t in root.iter("TIER"):
        tid = t.get("TIER_ID", "")
        tier = Tier(tid, speaker=speaker(tid), top_level=tid not in parent_tier)
        joined: dict[tuple[float, float], list[tuple[str, str, str | None]]] = {}
        for a in t.iter("ANNOTATION"):
            inner = next(iter(a), None)
            if inner is None:
                continue
            span = span_of(inner.get("ANNOTATION_ID", ""))
            if span is None:
                continue
            value = inner.find("ANNOTATION_VALUE")
            text = value.text.strip() if value is not None and value.text else ""
            aid = inner.get("ANNOTATION_ID", "")
            joined.setdefault(span, []).append((text, aid, inner.get("PREVIOUS_ANNOTATION")))
        for (start, end), parts in joined.items():
            parts = _chain_order(parts)
            text = " ".join(x for x, _, _ in parts if x)
            tier.intervals.append(Interval(start, end, text, f"{path} (tier {tier.name}, {parts[0][1]})"))
        tier.intervals.sort(key=lambda i: (i.start, i.end))
        if tier.intervals:
            tiers.append(tier)
    return Annotation(path, tiers, _media_names(root, path))


def _slot_times(root: ET.Element, path: Path) -> dict[str, float | None]:
    """Each time slot's time in seconds. A slot without a value (ELAN's time subdivision leaves the
    inner boundaries unaligned) gets the time ELAN shows for it: spread evenly between the aligned
    slots before and after it in the document's time order."""
    order = [(s.get("TIME_SLOT_ID", ""), s.get("TIME_VALUE")) for s in root.iter("TIME_SLOT")]
    times: list[float | None] = []
    for sid, v in order:
        try:
            times.append(int(float(v)) / 1000 if v not in (None, "") else None)
        except ValueError as e:
            raise AnnotationError(str(path), f"time slot {sid} has TIME_VALUE {v!r}, not milliseconds") from e
    i = 0
    while i < len(times):
        if times[i] is not None:
            i += 1
            continue
        j = i
        while j < len(times) and times[j] is None:
            j += 1
        if i > 0 and j < len(times):  # between two aligned slots: evenly spaced
            a, b = times[i - 1], times[j]
            for k in range(i, j):
                times[k] = a + (b - a) * (k - i + 1) / (j - i + 1)
        i = j
    return {sid: t for (sid, _), t in zip(order, times, strict=True)}


def _chain_order(parts: list[tuple[str, str, str | None]]) -> list[tuple[str, str, str | None]]:
    """Symbolic subdivisions in the order of their PREVIOUS_ANNOTATION chain (the words of a
    sentence), the document's order where there is none."""
    ids = {aid for _, aid, _ in parts}
    after = {prev: p for p in parts if (prev := p[2]) in ids}
    first = [p for p in parts if p[2] not in ids]
    if len(first) != 1 or len(after) != len(parts) - 1:
        return parts
    out = first
    while out[-1][1] in after and len(out) <= len(parts):
        out.append(after[out[-1][1]])
    return out if len(out) == len(parts) else parts


def read_annotation(path: Path | str) -> Annotation:
    """A TextGrid or an .eaf, by its extension (any case)."""
    path = Path(path)
    if path.suffix.lower() == ".eaf":
        return read_eaf(path)
    return read_textgrid(path)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), p.lower()) for p in patterns)


def choose_tiers(annotations: list[Annotation], wanted: str | None) -> dict[Path, list[Tier]]:
    """The transcript tiers of each file, file by file: the tiers ``wanted`` names (``--tier``: names or
    shell patterns, comma-separated, any case: ``'A,B'``, ``'tx@*'``) where the file has them; else the
    tiers named like a transcript (:data:`TRANSCRIPT_TIERS`, top-level or not: ELAN's ``tx@A`` under a
    reference tier ``ref@A``); else the file's one top-level tier with speech. So ``--tier 'Ana,Ion'``
    settles the files with those speakers' tiers and leaves the others' choice as it was. Anything
    else is a question only the user can answer: the error lists the tiers found, with the ``--tier``
    that picks them."""
    candidates = {a.path: [t for t in a.tiers if t.spoken] for a in annotations}
    patterns = tuple(p.strip() for p in (wanted or "").split(",") if p.strip())
    if patterns and not any(_matches(t.name, patterns) for ts in candidates.values() for t in ts):
        raise SpeechtlError(
            f"--tier {wanted!r} names no tier with speech in the {len(annotations)} annotation file(s). "
            f"Fix: one of {_listing(candidates)}"
        )
    chosen, unresolved = {}, []
    for p, ts in candidates.items():
        asked = [t for t in ts if _matches(t.name, patterns)] if patterns else []
        named = [t for t in ts if _matches(t.name, TRANSCRIPT_TIERS)]
        top = [t for t in ts if t.top_level]
        chosen[p] = asked or named or (top if len(top) == 1 else [])
        if ts and not chosen[p]:
            unresolved.append(p)
    if not unresolved:
        return chosen
    names = {t.name.lower() for p in unresolved for t in candidates[p]}
    if {"words", "phones"} <= names:
        raise SpeechtlError(
            f"{unresolved[0]} holds word and phone alignments (tiers 'words', 'phones'; a forced aligner's "
            "output), not utterance transcripts. Fix: give the utterance-level annotations, or --tier words to "
            "train on each word as an utterance"
        )
    files = (
        f"{unresolved[0]} and {len(unresolved) - 1} other(s) have" if len(unresolved) > 1 else f"{unresolved[0]} has"
    )
    raise SpeechtlError(
        f"{files} several tiers with speech, and none is named like a transcript "
        f"({', '.join(TRANSCRIPT_TIERS[:6])}, ...){' or by --tier ' + repr(wanted) if patterns else ''}: which "
        f"hold the transcripts? Tiers found there: {_listing({p: candidates[p] for p in unresolved})}. "
        "Fix: --tier NAME, or several: --tier 'A,B' (one speaker's tier each) or a pattern --tier 'tx@*'; files "
        "without them keep their transcript tier "
        '(in a generated recipe: run.sh --prepare-opts "--tier NAME", or prepare_opts= in conf/recipe.conf)'
    )


def _listing(candidates: dict[Path, list[Tier]]) -> str:
    files, intervals = Counter(), Counter()
    for ts in candidates.values():
        for t in ts:
            files[t.name] += 1
            intervals[t.name] += len(t.spoken)
    return ", ".join(f"{n!r} ({files[n]} file(s), {intervals[n]} intervals)" for n, _ in files.most_common(12))


def speaker_of(tier: Tier, chosen: list[Tier], by_tier: bool = False) -> str | None:
    """ELAN's participant; else the name after the '@' of ``tx@SPEAKER``; else, when transcript tiers are
    speakers' (``by_tier``: some file of the corpus has several, one a speaker; or this file), the tier
    name, unless it is named like a transcript ('transcription' names no one); else unknown."""
    if tier.speaker:
        return tier.speaker
    if "@" in tier.name:  # ELAN's tx@SPEAKER convention
        return tier.name.split("@", 1)[1] or None
    if (by_tier or len(chosen) > 1) and not _matches(tier.name, TRANSCRIPT_TIERS):
        return tier.name
    return None


def write_textgrid(path: Path, tiers: dict[str, list[tuple[float, float, str]]], xmax: float) -> Path:
    """A TextGrid (long text format, UTF-8) with one interval tier per ``tiers`` item; the stretches
    between and around the given intervals become empty intervals, as Praat's tiers tile the
    recording. Praat and ELAN (File > Import > Praat TextGrid) open it for correction, and
    :func:`read_textgrid` reads it back."""

    def q(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    def fmt(x: float) -> str:  # microseconds, however long the recording (.6g kept 6 digits: 0.1 s at 3 h)
        return f"{x:.6f}".rstrip("0").rstrip(".")

    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0", f"xmax = {fmt(xmax)}"]
    lines += ["tiers? <exists>", f"size = {len(tiers)}", "item []:"]
    for k, (name, spans) in enumerate(tiers.items(), 1):
        tiled, t = [], 0.0
        for start, end, text in sorted(spans):
            if start > t + 1e-9:
                tiled.append((t, start, ""))
            tiled.append((max(start, t), end, text))
            t = end
        if xmax > t + 1e-9 or not tiled:
            tiled.append((t, xmax, ""))
        lines += [f"    item [{k}]:", '        class = "IntervalTier"', f"        name = {q(name)}"]
        lines += ["        xmin = 0", f"        xmax = {fmt(xmax)}", f"        intervals: size = {len(tiled)}"]
        for j, (a, b, text) in enumerate(tiled, 1):
            lines += [f"        intervals [{j}]:", f"            xmin = {fmt(a)}", f"            xmax = {fmt(b)}"]
            lines.append(f"            text = {q(text)}")
    with atomic_open(path) as f:
        f.write("\n".join(lines) + "\n")
    return path
