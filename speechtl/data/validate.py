"""Validation of a user's corpus before any work: every problem named, with its file and the fix.

Real recordings are messy: a file cut short by an interrupted copy, an ``.m4a``
renamed ``.wav``, a transcript line for a file that was deleted, a transcript
saved as Latin-1, a 40-minute session among 5-second prompts. Found while
computing features or training, each surfaces as a traceback from deep inside a
library, hours in. Here every check runs up front, and each problem is a
:class:`Problem` with a named kind (``truncated``, ``wrong-format``, ...), the
file (and line) at fault and the fix. :meth:`Report.resolve` then stops with all
of them, or (``--skip-bad``) leaves those utterances out and lists them in
``bad_audio.txt``.

Two things are not problems but are said once, with counts: recordings at
another sampling rate (resampled when features are computed) and multi-channel
recordings (down-mixed, see :mod:`speechtl.data.downmix`).

Used by every importer (:mod:`speechtl.data.corpora.imported`) and by
``speechtl validate --manifest-dir`` on manifests already written
(:func:`validate_manifest_dir`).
"""

import io
import logging
import re
import struct
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath

import numpy as np
import soundfile as sf

from speechtl.atomic import atomic_open, atomic_path
from speechtl.data.textfile import CODE_PAGES
from speechtl.errors import SpeechtlError

#: Extensions read as audio, and the container their content must be.
AUDIO_EXTENSIONS = {
    ".wav": "wav",
    ".flac": "flac",
    ".mp3": "mp3",
    ".ogg": "ogg",
    ".opus": "ogg",
    ".oga": "ogg",
    ".sph": "sphere",
    ".aiff": "aiff",
    ".aif": "aiff",
}
#: Audio that users have but that soundfile cannot read: found, and named with the conversion to run.
UNSUPPORTED_EXTENSIONS = {".m4a", ".mp4", ".aac", ".webm", ".wma", ".amr", ".3gp", ".mkv"}

#: Every problem kind and its fix; a problem's message always ends with its kind's fix.
FIXES = {
    "missing-audio": "add the audio file, or delete the transcript line (or the annotation file)",
    "no-transcript": "add its transcript (a line in a transcript file, or a .txt/.lab file beside it), "
    "or delete the audio file",
    "unreadable": "replace it with a good copy, or convert it: ffmpeg -i FILE -ac 1 -ar 16000 FILE.wav",
    "empty-audio": "replace it with a good copy, or delete it",
    "truncated": "the file was cut short (an interrupted copy or download); copy it again",
    "non-finite": "re-export it from its source; float samples must be finite numbers in [-1, 1]",
    "wrong-format": "convert it to what its name says (ffmpeg -i FILE -ac 1 -ar 16000 OUT.wav), "
    "or rename it to its real extension",
    "unsupported-format": "convert it to wav, flac, mp3 or ogg: ffmpeg -i FILE -ac 1 -ar 16000 FILE.wav",
    "duplicate-id": "give every utterance its own id (rename one file, or fix the transcript line)",
    "empty-text": "write its transcript, or delete the utterance",
    "bad-encoding": "save the file as UTF-8 from its own code page, iconv -f CODEPAGE -t UTF-8 FILE > FILE.utf8 "
    f"({CODE_PAGES})",
    "bad-line": "write the line as 'id<separator>text' like the others",
    "bad-segment": "fix the segment's start and end times: 0 <= start < end <= the recording's duration",
    "kaldi-archive": "put Kaldi's wav-copy on PATH (its src/featbin), which reads it through a "
    "'wav-copy FILE.ark:OFFSET - |' pipe, or give wav.scp one audio file or 'cmd |' pipe per recording",
    "too-short": "delete the utterance, or merge it with a neighbour; it is shorter than the model can align",
    "too-long": "split it into shorter utterances (Kaldi segments, or shorter intervals in its TextGrid or "
    ".eaf), or raise --max-duration",
    "missing-tool": "install it (Debian: apt-get install flac, sox, or the package that has it), or write "
    "wav.scp with a tool this machine has (sox FILE -t wav - |)",
    "bad-annotation": "open it in Praat and Save as text file (UTF-8 or UTF-16), or in ELAN and save it, again",
}


@dataclass(frozen=True)
class ValidateConfig:
    """Limits an utterance must meet. ``min_duration`` and the CTC check use the model's frame rate:
    after ``subsampling`` a CTC model emits one frame per ``frame_shift * subsampling`` seconds,
    and it needs at least one frame per character of the transcript."""

    sampling_rate: int = 16000  # the rate features are computed at: others are resampled (said once)
    min_duration: float = 0.1
    max_duration: float = 30.0
    frame_shift: float = 0.01
    subsampling: int = 4
    nj: int = 4  # threads probing audio (soundfile releases the GIL while decoding)


@dataclass(frozen=True)
class Problem:
    kind: str  # a key of FIXES
    where: str  # the file at fault, with ":line" when a line of a text file is
    detail: str
    utt_id: str | None = None  # the utterance to leave out with --skip-bad; None: a whole file

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}. Fix: {FIXES[self.kind]}"


@dataclass(frozen=True)
class AudioInfo:
    sampling_rate: int
    num_samples: int
    num_channels: int
    misnamed: str = ""  # the container when the file's name says another (mp3 saved as .wav by a web app)

    @property
    def duration(self) -> float:
        return self.num_samples / self.sampling_rate


@dataclass
class Report:
    """Problems found, and the notes said once (rates, channels)."""

    problems: list[Problem] = field(default_factory=list)
    rates: Counter = field(default_factory=Counter)
    multichannel: int = 0
    unread: dict[str, str] = field(default_factory=dict)  # a name in a non-UTF-8 line -> that line's file:line
    misnamed: list[str] = field(default_factory=list)  # files read by their content, not their names
    _claimable: dict[str, int] | None = field(default=None, repr=False)  # unclaimed bad-encoding problems by place

    def add(self, kind: str, where: str, detail: str, utt_id: str | None = None) -> None:
        if kind not in FIXES:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.problems.append(Problem(kind, where, detail, utt_id))
        if kind == "bad-encoding":
            self._claimable = None

    def note_unread(self, where: str, line: str) -> None:
        """A transcript line that could not be decoded: the file names in it (its bytes read as Latin-1,
        which any byte is), so that the audio it was for is said to be waiting on that line, not to have
        no transcript at all."""
        for token in re.findall(r"[\w.-]+", line):
            self.unread.setdefault(token, where)
            self.unread.setdefault(PurePath(token).stem, where)

    def claim_unread(self, audio: str, utt_id: str) -> bool:
        """Whether an undecodable line names ``audio`` (by file name or stem): its ``bad-encoding`` problem
        then names the audio and its utterance (which ``--skip-bad`` leaves out), in place of a
        ``no-transcript`` whose fix (write a transcript) would be wrong."""
        name = PurePath(audio.strip())
        where = self.unread.get(str(name.with_suffix(""))) or self.unread.get(name.name) or self.unread.get(name.stem)
        if where is None:
            return False
        if self._claimable is None:  # built once: a 100,000-line CSV in a code page is claimed in linear time
            self._claimable = {
                p.where: i for i, p in enumerate(self.problems) if p.kind == "bad-encoding" and p.utt_id is None
            }
        i = self._claimable.pop(where, None)
        if i is None:
            return False
        p = self.problems[i]
        self.problems[i] = replace(p, detail=f"{p.detail}; the transcript of {name.name}", utt_id=utt_id)
        return True

    def merge(self, other: "Report", kinds: set[str] | None = None) -> None:
        """Take ``other``'s problems (only those of ``kinds`` when given) and undecodable lines."""
        self.problems += [p for p in other.problems if kinds is None or p.kind in kinds]
        self.unread.update({k: v for k, v in other.unread.items() if k not in self.unread})
        self._claimable = None

    def note_audio(self, info: AudioInfo, source: str = "") -> None:
        self.rates[info.sampling_rate] += 1
        self.multichannel += info.num_channels > 1
        if info.misnamed:
            self.misnamed.append(f"{source} ({info.misnamed})")

    def bad_list(self) -> str:
        """The text of ``bad_audio.txt``: ``where<TAB>kind<TAB>detail`` a line."""
        return "".join(f"{p.where}\t{p.kind}\t{p.detail}\n" for p in self.problems)

    def bad_utterances(self) -> set[str]:
        return {p.utt_id for p in self.problems if p.utt_id is not None}

    def log_notes(self, target_rate: int) -> None:
        other = {r: n for r, n in sorted(self.rates.items()) if r != target_rate}
        if other:
            listing = ", ".join(f"{n} at {r} Hz" for r, n in other.items())
            logging.info(
                f"{listing}, not {target_rate} Hz (--sampling-rate): fbank at another rate than a file's "
                "resamples it (a recipe computes features at its source model's rate)"
            )
        if self.multichannel:
            logging.info(f"{self.multichannel} multi-channel recording(s): down-mixed to mono (channels averaged)")
        if self.misnamed:
            logging.warning(
                f"{len(self.misnamed)} audio file(s) hold another format than their names say, e.g. "
                f"{self.misnamed[0]}: read by their content here; a tool that goes by the name (Kaldi, a player) "
                "will not. Fix, to keep them apart: rename each to its real extension"
            )

    def resolve(self, skip_bad: bool, bad_list: Path | None) -> set[str]:
        """Raise naming every problem, or (``skip_bad``) list them in ``bad_list``; returns the ids to leave out.

        ``bad_list`` is written whole to a temporary file and renamed, so an
        earlier list is never half overwritten; what it already lists (e.g. what
        the import left out) is kept, and the new problems are added to it."""
        if not self.problems:
            if skip_bad and bad_list is not None and not bad_list.is_file():
                _atomic_write(bad_list, "")
            return set()
        counts = Counter(p.kind for p in self.problems)
        summary = ", ".join(f"{n} {k}" for k, n in counts.most_common())
        if not skip_bad:
            shown = self.problems[:30]
            more = f"\n  ... and {len(self.problems) - len(shown)} more" if len(self.problems) > len(shown) else ""
            raise SpeechtlError(
                f"{len(self.problems)} problem(s) in the corpus ({summary}):\n"
                + "\n".join(f"  {p}" for p in shown)
                + more
                + "\nFix each as said, or rerun with --skip-bad to leave these utterances out "
                "(a recipe: ./run.sh --skip-bad true; they are then listed in bad_audio.txt next to the manifests)."
            )
        for p in self.problems[:10]:
            logging.warning(f"skipping: {p}")
        if bad_list is not None:
            known = bad_list.read_text(encoding="utf-8").splitlines(keepends=True) if bad_list.is_file() else []
            new = [line for line in self.bad_list().splitlines(keepends=True) if line not in known]
            _atomic_write(bad_list, "".join(known + new))
        where = f"; all listed in {bad_list}" if bad_list is not None else ""
        logging.warning(f"skipping {len(self.problems)} problem(s) ({summary}){where}")
        return self.bad_utterances()


def _atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        f.write(text)


def sniff_file(path: Path | str) -> str:
    """What :func:`sniff_format` says of the first bytes of ``path``."""
    with open(path, "rb") as f:
        return sniff_format(f.read(4096))


def sniff_format(head: bytes) -> str:
    """The container of a file from its first bytes: wav, flac, mp3, ogg, or what it really is."""
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9] if len(head) >= 10 else 0
        rest = head[10 + size :]
        return "flac" if rest[:4] == b"fLaC" else "mp3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        return "aac" if (head[1] & 0x06) == 0 else "mp3"  # layer bits 00: ADTS AAC
    if head[4:8] == b"ftyp":
        return "mp4/m4a"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm/mkv"
    if head[:4] == b"FORM":
        return "aiff"
    if head[:7] == b"NIST_1A":
        return "sphere"
    if head[:4] == b"0&\xb2u":
        return "wma/asf"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown"


def _wav_shortfall(path: Path, size: int) -> str | None:
    """For a RIFF wav, say how much of the data its header announces is missing (None: all there)."""
    with open(path, "rb") as f:
        if f.read(4) != b"RIFF":
            return None  # RF64/RIFX: sizes live elsewhere; soundfile's own checks apply
        f.seek(12)
        while True:
            hdr = f.read(8)
            if len(hdr) < 8:  # no data chunk: cut inside its header (by the RIFF size), or corrupt
                f.seek(4)
                declared = struct.unpack("<I", f.read(4))[0] + 8
                return (
                    f"it ends inside its header, at byte {size} of the {declared} announced"
                    if size < declared
                    else None
                )
            chunk, n = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if chunk == b"data":
                if n in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                    return None
                have = size - f.tell()
                return f"its header announces {n} bytes of samples, the file holds {have}" if have < n else None
            f.seek(n + (n & 1), 1)


def _decode_check(f: sf.SoundFile) -> str | None:
    """Decode the first and the last block: a body cut short fails at its end."""
    frames = f.frames
    first = f.read(frames=min(frames, 1024), dtype="float32")
    if len(first) == 0:
        return "empty"
    tail = min(frames, 1024)
    f.seek(frames - tail)
    last = f.read(frames=tail, dtype="float32")
    if len(last) < tail:
        return f"only {frames - tail + len(last)} of the {frames} samples its header announces can be decoded"
    return None


def probe_file(path: Path) -> AudioInfo | tuple[str, str]:
    """Information about a readable audio file, or ``(kind, detail)`` of its problem."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return "missing-audio", "the file does not exist"
    if size == 0:
        return "empty-audio", "the file is empty (0 bytes)"
    ext = path.suffix.lower()
    real = sniff_file(path)
    if ext in UNSUPPORTED_EXTENSIONS:
        return "unsupported-format", f"{ext} audio cannot be read here"
    expected = AUDIO_EXTENSIONS.get(ext)
    misnamed = real if expected is not None and real != expected else ""
    if misnamed and real not in AUDIO_EXTENSIONS.values():  # mp4 from a phone: nothing here reads it
        return "wrong-format", f"the name says {ext} but the content is {real}"
    if real == "wav":
        short = _wav_shortfall(path, size)
        if short:
            return "truncated", short
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:  # soundfile raises several types for bad files
        why = str(e).strip()
        if "does not exist" in why:  # libsndfile's words for a file it cannot parse (a cut-short mp3)
            why = f"libsndfile finds no audio it can read in it: cut short or corrupt ({why})"
        return "unreadable", f"cannot be decoded ({type(e).__name__}: {why})"
    with f:
        info = AudioInfo(int(f.samplerate), int(f.frames), int(f.channels), misnamed)
        if info.num_samples == 0:
            return "empty-audio", "the file has no audio samples"
        try:
            problem = _decode_check(f)
        except Exception as e:  # the header reads but the body does not: cut short, or corrupt
            return "truncated", f"its header reads but its samples cannot be decoded ({str(e).strip()})"
    if problem == "empty":
        return "empty-audio", "the file has no audio samples"
    if problem:
        return "truncated", problem
    if sf.info(str(path)).subtype in ("FLOAT", "DOUBLE"):  # only float samples can be NaN or Inf
        bad = first_non_finite(path)
        if bad is not None:
            where = f"the first at sample {bad}, {bad / info.sampling_rate:.3f} s"
            return "non-finite", f"has NaN or Inf samples ({where})"
    return info


def first_non_finite(path: Path) -> int | None:
    """Index of the first NaN/Inf sample of a float file, or None (read in blocks)."""
    done = 0
    for block in sf.blocks(str(path), blocksize=1 << 16, dtype="float32", always_2d=True):
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            return done + int(np.argmax(bad))
        done += len(block)
    return None


def probe_command(cmd: str, timeout: float = 120.0) -> AudioInfo | tuple[str, str]:
    """Run a Kaldi ``wav.scp`` pipe (without its ``|``) and probe the audio it writes."""
    try:
        out = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "unreadable", f"the command '{cmd}' ran longer than {timeout:.0f} s"
    stderr = out.stderr.decode("utf-8", "replace")
    missing = re.search(r"([\w.+-]+): command not found", stderr)
    if missing:  # a tool of the pipe is not installed here: its fix is to install it, not a new file
        return "missing-tool", f"the command '{cmd}' runs {missing.group(1)}, which is not installed here"
    if out.returncode != 0:
        err = stderr.strip().splitlines()
        return "unreadable", f"the command '{cmd}' failed ({err[-1] if err else f'exit {out.returncode}'})"
    if not out.stdout:
        return "empty-audio", f"the command '{cmd}' wrote no audio"
    try:
        data, rate = sf.read(io.BytesIO(out.stdout), dtype="float32", always_2d=True)
    except Exception as e:
        return "unreadable", f"the output of '{cmd}' cannot be decoded ({type(e).__name__}: {e})"
    if len(data) == 0:
        return "empty-audio", f"the command '{cmd}' wrote no samples"
    return AudioInfo(int(rate), len(data), data.shape[1])


def probe_audio_source(source: str) -> AudioInfo | tuple[str, str]:
    """A Kaldi-style source: ``cmd args |`` is run, anything else is a file path."""
    s = source.strip()
    return probe_command(s[:-1].strip()) if s.endswith("|") else probe_file(Path(s))


def probe_many(sources: Iterable[str], nj: int) -> dict[str, AudioInfo | tuple[str, str]]:
    """:func:`probe_audio_source` over many sources, ``nj`` at a time, in input order."""
    unique = list(dict.fromkeys(sources))
    if nj <= 1 or len(unique) < 8:
        return {s: probe_audio_source(s) for s in unique}
    with ThreadPoolExecutor(nj) as ex:
        return dict(zip(unique, ex.map(probe_audio_source, unique, chunksize=64), strict=True))


def check_duration(report: Report, cfg: ValidateConfig, utt_id: str, where: str, duration: float, text: str) -> None:
    """Too short for the model (or for CTC over its characters), or longer than ``cfg.max_duration``."""
    frames = int(duration / cfg.frame_shift + 1e-6) // cfg.subsampling
    chars = sum(not c.isspace() for c in text)
    if duration < cfg.min_duration:
        report.add("too-short", where, f"{duration:.3f} s is under --min-duration {cfg.min_duration} s", utt_id)
    elif frames < chars:
        report.add(
            "too-short",
            where,
            f"{duration:.3f} s gives {frames} output frames after x{cfg.subsampling} subsampling, "
            f"fewer than the {chars} characters of its transcript (CTC needs one frame per unit)",
            utt_id,
        )
    elif duration > cfg.max_duration:
        report.add("too-long", where, f"{duration:.1f} s is over --max-duration {cfg.max_duration} s", utt_id)


def find_duplicates(report: Report, ids_with_where: Iterable[tuple[str, str]]) -> set[str]:
    """Report every id seen twice (each place it occurs); returns those ids."""
    seen: dict[str, list[str]] = defaultdict(list)
    for utt_id, where in ids_with_where:
        seen[utt_id].append(where)
    dups = {u for u, w in seen.items() if len(w) > 1}
    for u in sorted(dups):
        for w in seen[u]:
            report.add("duplicate-id", w, f"the id {u!r} is used {len(seen[u])} times ({', '.join(seen[u][:4])})", u)
    return dups


def validate_manifest_dir(
    manifest_dir: Path, prefix: str | None = None, cfg: ValidateConfig = ValidateConfig(), skip_bad: bool = False
) -> Report:
    """Check manifests already written: every recording's audio, every supervision's text and times.

    With ``skip_bad`` the bad utterances (and recordings left without any) are
    removed from the manifests, which are rewritten through temporary files, and
    listed in ``bad_audio.txt``; otherwise the problems are raised."""
    from lhotse import RecordingSet, SupervisionSet

    manifest_dir = Path(manifest_dir)
    pattern = f"{prefix}_recordings_*.jsonl.gz" if prefix else "*_recordings_*.jsonl.gz"
    rec_files = sorted(manifest_dir.glob(pattern))
    if not rec_files:
        raise SpeechtlError(f"no {pattern} in {manifest_dir}. Fix: run `speechtl prepare` first, or fix --prefix.")
    report = Report()
    pairs = []
    for rec_path in rec_files:
        sup_path = rec_path.with_name(rec_path.name.replace("_recordings_", "_supervisions_"))
        if not sup_path.is_file():
            raise SpeechtlError(f"{rec_path} has no {sup_path.name} beside it. Fix: rerun `speechtl prepare`.")
        recs, sups = RecordingSet.from_file(rec_path), SupervisionSet.from_file(sup_path)
        pairs.append((rec_path, sup_path, recs, sups))
        _validate_pair(report, cfg, rec_path, sup_path, recs, sups)
    report.log_notes(cfg.sampling_rate)
    bad = report.resolve(skip_bad, manifest_dir / "bad_audio.txt")
    if bad:
        for rec_path, sup_path, recs, sups in pairs:
            kept = [s for s in sups if s.id not in bad and s.recording_id not in bad]
            used = {s.recording_id for s in kept}
            _atomic_manifest(RecordingSet.from_recordings(r for r in recs if r.id in used), rec_path)
            _atomic_manifest(SupervisionSet.from_segments(kept), sup_path)
    return report


def _validate_pair(report: Report, cfg: ValidateConfig, rec_path: Path, sup_path: Path, recs, sups) -> None:
    find_duplicates(report, ((r.id, f"{rec_path} [{r.id}]") for r in recs))
    find_duplicates(report, ((s.id, f"{sup_path} [{s.id}]") for s in sups))
    sources = {r.id: r.sources[0] for r in recs}
    spec = {rid: (f"{s.source} |" if s.type == "command" else s.source) for rid, s in sources.items()}
    infos = probe_many(spec.values(), cfg.nj)
    durations = {}
    for rid, src in spec.items():
        info = infos[src]
        if isinstance(info, AudioInfo):
            report.note_audio(info, src)
            durations[rid] = info.duration
        else:
            report.add(info[0], src, info[1], rid)
    covered = set()
    for s in sups:
        covered.add(s.recording_id)
        where = f"{sup_path} [{s.id}]"
        if s.recording_id not in sources:
            report.add("missing-audio", where, f"its recording {s.recording_id!r} is not in {rec_path.name}", s.id)
            continue
        if not (s.text or "").strip():
            report.add("empty-text", where, "the supervision has no text", s.id)
            continue
        dur = durations.get(s.recording_id)
        if dur is not None and (s.start < 0 or s.end > dur + 0.01):
            report.add("bad-segment", where, f"{s.start:.2f}-{s.end:.2f} s is outside the audio's {dur:.2f} s", s.id)
            continue
        check_duration(report, cfg, s.id, where, s.duration, s.text)
    for rid in sources.keys() - covered:
        report.add("no-transcript", f"{rec_path} [{rid}]", "the recording has no supervision", rid)


def _atomic_manifest(manifest, path: Path) -> None:
    with atomic_path(path) as tmp:
        manifest.to_file(tmp)
