"""A Common Voice release, any language: ``speechtl prepare commonvoice --language CODE``.

``--corpus-dir`` is the release folder (``cv-corpus-<version>/``, holding one
folder per language code) or a language's folder itself (``clips/*.mp3``,
``train.tsv``, ``dev.tsv``, ``test.tsv``, ``validated.tsv``, ...). The
language is the code given (any code: new languages arrive with every
release), or the only language folder there is.

The tsv files are read here, as a stream, rather than by lhotse's
``prepare_commonvoice``: that one knows a fixed list of languages for its
automatic mode, needs the ``variant`` column of recent releases (older ones
lack it), silently drops clips that are missing and holds a whole language in
memory. Parts read: ``--parts`` (default ``train dev test``); a release without
train/dev/test tsv files (some new languages ship only ``validated.tsv``) gets
dev and test from ``validated`` by the seeded, speaker-disjoint rule
(``client_id`` is the speaker). mp3 clips are decoded by soundfile (libsndfile
>= 1.1 has mp3; ``utils/install.sh`` checks it).
"""

import csv
import logging
import re
from pathlib import Path

from speechtl.data.corpora.imported import Manifests, Pathlike, Utterance, build_corpus, import_options, read_lines
from speechtl.data.validate import Report
from speechtl.errors import SpeechtlError

DEFAULT_PARTS = ("train", "dev", "test")
_GENDERS = {"male": "m", "female": "f", "male_masculine": "m", "female_feminine": "f"}


def language_dir(corpus_dir: Path, language: str | None) -> tuple[Path, str]:
    """The folder of one language, and its code."""
    if (corpus_dir / "clips").is_dir():
        code_like = re.fullmatch(r"[a-z]{2,3}(-[A-Za-z]{2,4})?", corpus_dir.name) is not None  # ro, zh-CN, ckb
        if language is None and not code_like:
            logging.warning(
                f"{corpus_dir.name!r} (the folder's name) is taken as the language code of its supervisions. "
                "Fix, if it is not one: --language CODE (ro, sw, zh-CN)"
            )
        if language is not None and language != corpus_dir.name and code_like:
            logging.warning(
                f"{corpus_dir} is Common Voice's folder of {corpus_dir.name!r}, and --language says {language!r}: "
                f"the supervisions are marked {language!r}. Fix, if that is a slip: --language {corpus_dir.name}"
            )
        return corpus_dir, language or corpus_dir.name
    langs = sorted(d.name for d in corpus_dir.iterdir() if (d / "clips").is_dir())
    if language is not None:
        if language not in langs:
            raise SpeechtlError(
                f"{corpus_dir} has no Common Voice folder {language}/ with clips/ (it has: {langs or 'none'}). "
                "Fix: check --language, or point --corpus-dir at the release folder."
            )
        return corpus_dir / language, language
    if len(langs) != 1:
        raise SpeechtlError(
            f"{corpus_dir} holds {len(langs)} Common Voice languages ({', '.join(langs) or 'none'}). "
            "Fix: pass --language CODE, or point --corpus-dir at <release>/<code>/ (the folder with clips/)."
        )
    return corpus_dir / langs[0], langs[0]


def read_part(lang_dir: Path, part: str, split: str | None, language: str, report: Report) -> list[Utterance]:
    """The utterances of ``<part>.tsv`` (CV's columns: client_id, path, sentence, ..., gender, ...)."""
    tsv = lang_dir / f"{part}.tsv"
    numbered = [(n, line) for n, line in read_lines(tsv, report) if line is None or line.strip()]
    if not numbered or numbered[0][1] is None:
        raise SpeechtlError(f"{tsv} has no header line. Fix: use the tsv files of the release as they are.")
    header = next(csv.reader([numbered[0][1]], delimiter="\t", quoting=csv.QUOTE_NONE))
    missing = {"path", "sentence"} - set(header)
    if missing:
        raise SpeechtlError(f"{tsv}: no {sorted(missing)} column(s) in its header {header}. Fix: use CV's tsv files.")
    utts = []
    for n, line in numbered[1:]:
        if line is None:
            continue
        row = dict(zip(header, line.split("\t"), strict=False))
        where = f"{tsv}:{n}"
        if not row.get("path"):
            report.add("bad-line", where, f"{len(row)} tab-separated field(s), the header names {len(header)}")
            continue
        clip = row["path"] if row["path"].endswith(".mp3") else row["path"] + ".mp3"
        utts.append(
            Utterance(
                id=Path(clip).stem,
                audio=str(lang_dir / "clips" / clip),
                text=row.get("sentence"),
                where=where,
                speaker=row.get("client_id") or None,
                split=split,
                gender=_GENDERS.get(row.get("gender", "")),
                language=language,
            )
        )
    logging.info(f"{tsv}: {len(utts)} clips")
    return utts


def prepare_commonvoice(
    corpus_dir: Pathlike,
    output_dir: Pathlike | None = None,
    language: str | None = None,
    parts: list[str] | None = None,
    prefix: str = "commonvoice",
    **options,
) -> Manifests:
    """Manifests of one Common Voice language (see the module doc); ``options`` as
    :func:`~speechtl.data.corpora.imported.import_options`."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise SpeechtlError(f"Common Voice dir {corpus_dir} does not exist. Fix: check --corpus-dir.")
    lang_dir, code = language_dir(corpus_dir, language)
    opts = import_options(language=code, **options)
    report = Report()
    wanted = list(parts or DEFAULT_PARTS)
    have = [p for p in wanted if (lang_dir / f"{p}.tsv").is_file()]
    utts: list[Utterance] = []
    if not have and parts is None and (lang_dir / "validated.tsv").is_file():
        logging.info(f"{lang_dir} has no train/dev/test tsv: dev and test are made from validated.tsv")
        utts = read_part(lang_dir, "validated", None, code, report)
    else:
        absent = sorted(set(wanted) - set(have))
        if absent:
            raise SpeechtlError(
                f"{lang_dir} has no {', '.join(p + '.tsv' for p in absent)}. Fix: check --parts "
                f"(found: {', '.join(sorted(p.stem for p in lang_dir.glob('*.tsv')))})."
            )
        for p in have:
            # validated.tsv is every reviewed clip, not a split: dev and test are drawn from it
            utts += read_part(lang_dir, p, None if p == "validated" else p, code, report)
    return build_corpus(prefix, utts, output_dir, opts, report, lang_dir)
