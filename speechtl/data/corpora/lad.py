"""Sentences of the Living Audio Dataset (Idlak), the recipes' public text source.

Each language's recording script is a ``text.xml`` of ``<fileid id=...>``
elements in the dataset's GitHub repository (Apache-2.0). ``download_lad_text``
turns them into ``{lang}.tsv`` (``id<TAB>sentence``), the format every text
reader in speechtl takes. A copy of those files ships with the package
(``lad_text/``, with its licence), so the default recipe needs no network;
``shipped_lad_text`` writes it out.
"""

import gzip
import logging
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path

from speechtl.atomic import atomic_open
from speechtl.errors import SpeechtlError

Pathlike = str | Path

LAD_URL = "https://raw.githubusercontent.com/Idlak/Living-Audio-Dataset/master/{path}/text.xml"
#: The recording script of one speaker per language (ids as in the dataset).
LAD_SCRIPTS: dict[str, str] = {
    "en": "en/rp/rbu",
    "ga": "ga/ie/cll",
    "nl": "nl/nl/abw",
    "ro": "ro/ro",
    "ru": "ru/ru/abr",
}


def parse_recording_script(xml_text: str, source: str = "text.xml") -> list[tuple[str, str]]:
    """``(id, sentence)`` pairs of a LAD ``<recording_script>``."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise SpeechtlError(f"{source} is not valid XML: {e}") from e
    items = []
    for el in root.iter("fileid"):
        text = " ".join("".join(el.itertext()).split())
        if el.get("id") and text:
            items.append((el.get("id"), text))
    if not items:
        raise SpeechtlError(f"{source} holds no <fileid id=...> sentences")
    return items


def write_tsv(items: Iterable[tuple[str, str]], path: Path) -> Path:
    with atomic_open(path) as f:
        f.write("".join(f"{uid}\t{text}\n" for uid, text in items))
    return path


SHIPPED_DIR = Path(__file__).with_name("lad_text")


def _fill(langs: Iterable[str], target_dir: Pathlike, force: bool, fetch: Callable[[str, Path], None]) -> Path:
    """``fetch(lang, out)`` for each ``target_dir/{lang}.tsv`` not there yet (or every one with ``force``)."""
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        out = target_dir / f"{lang}.tsv"
        if force or not out.is_file():
            fetch(lang, out)
    return target_dir


def _unpack_shipped(lang: str, out: Path) -> None:
    src = SHIPPED_DIR / f"{lang}.tsv.gz"
    if not src.is_file():
        shipped = sorted(p.name.split(".")[0] for p in SHIPPED_DIR.glob("*.tsv.gz"))
        raise SpeechtlError(
            f"no shipped sentences for {lang!r} in {SHIPPED_DIR} (shipped: {', '.join(shipped)}). "
            f"Fix: download them (speechtl download tts_xling --from-web) or pass --text-dir with {lang}.tsv."
        )
    with atomic_open(out, "wb") as f:
        f.write(gzip.decompress(src.read_bytes()))


def _download(lang: str, out: Path) -> None:
    if lang not in LAD_SCRIPTS:
        raise SpeechtlError(
            f"no Living Audio Dataset script for {lang!r} (known: {', '.join(sorted(LAD_SCRIPTS))}). "
            f"Fix: put your own {lang}.tsv (id<TAB>sentence) in a directory and pass --text-dir."
        )
    url = LAD_URL.format(path=LAD_SCRIPTS[lang])
    logging.info(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            xml_text = r.read().decode("utf-8")
    except OSError as e:
        raise SpeechtlError(
            f"cannot download {url}: {e}. Fix: check the network, or pass --text-dir with {lang}.tsv files"
        ) from e
    write_tsv(parse_recording_script(xml_text, url), out)


def shipped_lad_text(langs: Iterable[str], target_dir: Pathlike, force: bool = False) -> Path:
    """``target_dir/{lang}.tsv`` from the copy shipped with speechtl (no network).

    A language that is not shipped is an error naming the fix (``--from-web`` or
    ``--text-dir``); existing files are kept unless ``force``.
    """
    out = _fill(langs, target_dir, force, _unpack_shipped)
    logging.info(f"sentences from the shipped Living Audio Dataset text (Apache-2.0, {SHIPPED_DIR}) in {out}")
    return out


def download_lad_text(langs: Iterable[str], target_dir: Pathlike, force: bool = False) -> Path:
    """``target_dir/{lang}.tsv`` for each language; existing files are kept unless ``force``."""
    return _fill(langs, target_dir, force, _download)
