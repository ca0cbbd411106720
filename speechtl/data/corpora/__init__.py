"""One module per corpus, each with ``download_<name>()`` and ``prepare_<name>()``.

``prepare_<name>`` returns ``{split: {"recordings": RecordingSet,
"supervisions": SupervisionSet}}`` and, given ``output_dir``, writes
``<name>_{recordings,supervisions}_<split>.jsonl.gz`` there (lhotse's layout).
"""

from collections.abc import Callable
from dataclasses import dataclass

from speechtl.data.corpora import commonvoice, folder, fsdd, kaldi, librispeech, tts_digits, tts_xling, yesno
from speechtl.data.corpora.imported import nothing_to_download


@dataclass(frozen=True)
class Corpus:
    name: str
    download: Callable
    prepare: Callable


CORPORA: dict[str, Corpus] = {
    "commonvoice": Corpus("commonvoice", nothing_to_download("commonvoice"), commonvoice.prepare_commonvoice),
    "folder": Corpus("folder", nothing_to_download("folder"), folder.prepare_folder),
    "fsdd": Corpus("fsdd", fsdd.download_fsdd, fsdd.prepare_fsdd),
    "kaldi": Corpus("kaldi", nothing_to_download("kaldi"), kaldi.prepare_kaldi),
    "librispeech": Corpus("librispeech", librispeech.download_librispeech, librispeech.prepare_librispeech),
    "mini_librispeech": Corpus(
        "mini_librispeech", librispeech.download_librispeech, librispeech.prepare_mini_librispeech
    ),
    "tts_digits": Corpus("tts_digits", tts_digits.download_tts_digits, tts_digits.prepare_tts_digits),
    "tts_xling": Corpus("tts_xling", tts_xling.download_tts_xling, tts_xling.prepare_tts_xling),
    "yesno": Corpus("yesno", yesno.download_yesno, yesno.prepare_yesno),
}


def get_corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(sorted(CORPORA))}")
    return CORPORA[name]
