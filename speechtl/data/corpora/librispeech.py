"""LibriSpeech and Mini LibriSpeech: a high-resource English source, ``speechtl prepare librispeech``.

The corpus as OpenSLR ships it: ``LibriSpeech/<part>/<speaker>/<chapter>/``
holding ``<speaker>-<chapter>-<utt>.flac`` and ``<speaker>-<chapter>.trans.txt``
(``<utt id> <TEXT>`` lines). ``--corpus-dir`` is the ``LibriSpeech`` folder (or
the folder above it). Parts are lhotse's names (``train-clean-100``,
``dev-clean``, ..., ``train-clean-5``, ``dev-clean-2``); ``--parts`` picks some,
default every part found (``mini_librispeech``: its two). The splits a recipe
needs come from them (:func:`~speechtl.data.corpora.imported.part_splits`):
every train part is train, ``dev-clean`` (``dev-clean-2``) dev, ``test-clean``
test, and ``dev-other``/``test-other`` stay sets of their own; a missing dev or
test (Mini LibriSpeech has no test part) is drawn from train, speaker-disjoint.
Before 2026-12-06 the splits were the part names, and a generated recipe found
no train. Download is lhotse's (``download_librispeech``).

The transcripts are read here rather than by lhotse's ``prepare_librispeech``,
which drops an utterance whose flac is missing with only a log line and stops
with a traceback at a corrupt flac; read here, both are named problems
(:mod:`speechtl.data.validate`) like in every other importer. The manifests
are the same as lhotse's (ids, speakers, texts, durations), in speechtl's layout
(``librispeech_recordings_<part>.jsonl.gz``).
"""

import logging
from pathlib import Path

from lhotse.recipes.librispeech import LIBRISPEECH, MINI_LIBRISPEECH

from speechtl.data.corpora.imported import (
    Manifests,
    Pathlike,
    Utterance,
    build_corpus,
    draw_missing_splits,
    import_options,
    part_splits,
    read_lines,
)
from speechtl.data.validate import Report
from speechtl.errors import SpeechtlError


def download_librispeech(target_dir: Pathlike = ".", force_download: bool = False) -> Path:
    """lhotse's download of Mini LibriSpeech (the full corpus: lhotse's ``download_librispeech``)."""
    from lhotse.recipes.librispeech import download_librispeech as _download

    try:
        return Path(_download(target_dir, dataset_parts="mini_librispeech", force_download=force_download))
    except Exception as e:
        raise SpeechtlError(
            f"could not download Mini LibriSpeech into {target_dir}: {e}\n"
            "Fix: check the network, or pass --corpus-dir pointing at a local LibriSpeech folder."
        ) from e


def librispeech_root(corpus_dir: Path) -> Path:
    return corpus_dir / "LibriSpeech" if (corpus_dir / "LibriSpeech").is_dir() else corpus_dir


def read_part(part_dir: Path, split: str, report: Report) -> list[Utterance]:
    utts = []
    for trans in sorted(part_dir.glob("*/*/*.trans.txt")):
        for n, line in read_lines(trans, report):
            if line is None or not line.strip():
                continue
            fields = line.strip().split(maxsplit=1)
            uid = fields[0]
            utts.append(
                Utterance(
                    id=uid,
                    audio=str(trans.parent / f"{uid}.flac"),
                    text=fields[1] if len(fields) > 1 else "",
                    where=f"{trans}:{n}",
                    speaker=uid.split("-")[0],
                    split=split,
                    language="English",
                )
            )
        listed = {u.id for u in utts if Path(u.audio).parent == trans.parent}
        for flac in sorted(trans.parent.glob("*.flac")):
            if flac.stem not in listed:
                utts.append(Utterance(flac.stem, str(flac), None, str(flac), flac.stem.split("-")[0], split))
    return utts


def _prepare(corpus_dir: Pathlike, output_dir, parts, known: tuple[str, ...], prefix: str, options: dict) -> Manifests:
    # LibriSpeech's longest utterances run to 35 s: within its design, not a problem
    opts = import_options(**{"max_duration": 36.0, **options})
    corpus_dir = Path(corpus_dir)
    root = librispeech_root(corpus_dir)
    found = [p for p in known if (root / p).is_dir()]
    if not found and root.name in known:
        raise SpeechtlError(
            f"{root} is the LibriSpeech part {root.name} itself. Fix: --corpus-dir {root.parent} --parts {root.name}"
        )
    chosen = list(parts) if parts else found
    missing = sorted(set(chosen) - set(found))
    if missing or not chosen:
        raise SpeechtlError(
            f"{root} has no LibriSpeech part(s) {missing or list(known)} (found: {found or 'none'}). "
            "Fix: point --corpus-dir at the LibriSpeech folder, or check --parts."
        )
    report = Report()
    utts: list[Utterance] = []
    splits = part_splits(chosen)
    for p in chosen:
        part_utts = read_part(root / p, splits[p] or p, report)
        logging.info(f"{root / p}: {len(part_utts)} utterances, the {splits[p] or p} split")
        utts += part_utts
    opts = draw_missing_splits(utts, opts)  # Mini LibriSpeech has no test part: drawn from train
    return build_corpus(prefix, utts, output_dir, opts, report, root)


def prepare_librispeech(
    corpus_dir: Pathlike,
    output_dir: Pathlike | None = None,
    parts: list[str] | None = None,
    prefix: str = "librispeech",
    **options,
) -> Manifests:
    """Manifests of the LibriSpeech parts found (or ``parts``); ``options`` as
    :func:`~speechtl.data.corpora.imported.import_options` (``normalize_text``: lower case, default on)."""
    return _prepare(corpus_dir, output_dir, parts, (*LIBRISPEECH, *MINI_LIBRISPEECH), prefix, options)


def prepare_mini_librispeech(
    corpus_dir: Pathlike,
    output_dir: Pathlike | None = None,
    parts: list[str] | None = None,
    prefix: str = "mini_librispeech",
    **options,
) -> Manifests:
    """Mini LibriSpeech (``train-clean-5``, ``dev-clean-2``); as :func:`prepare_librispeech`."""
    return _prepare(corpus_dir, output_dir, parts, MINI_LIBRISPEECH, prefix, options)
