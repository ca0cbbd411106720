import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """../shared/data beside the checkout (SPEECHTL_SHARED_DATA overrides)."""
    return Path(os.environ.get("SPEECHTL_SHARED_DATA", REPO.parent / "shared" / "data"))


def corpus(*parts: str) -> Path:
    d = shared_data().joinpath(*parts)
    if not d.is_dir():
        pytest.skip(f"corpus not found at {d}")
    return d


@pytest.fixture(scope="session")
def yesno_dir() -> Path:
    return corpus("yesno", "waves_yesno")


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    return corpus("fsdd", "recordings")


@pytest.fixture(scope="session")
def small_yesno(yesno_dir, tmp_path_factory):
    """8 yesno training cuts with 23-bin fbank, and a word lang dir: (dir, cuts, Lang)."""
    from lhotse import CutSet

    from speechtl.data.corpora.yesno import LEXICON, prepare_yesno
    from speechtl.features import FbankConfig
    from speechtl.features.compute import compute_fbank
    from speechtl.lang import Lang
    from speechtl.lang.lexicon import lexicon_from_dict
    from speechtl.lang.prepare import prepare_lang

    d = tmp_path_factory.mktemp("yesno")
    m = prepare_yesno(yesno_dir, d / "manifests")
    text = d / "lm.txt"
    text.write_text("".join(s.text + "\n" for s in m["train"]["supervisions"]))
    compute_fbank(d / "manifests", d / "fbank", "yesno", ["train"], FbankConfig(sampling_rate=8000, num_mel_bins=23))
    prepare_lang(lexicon_from_dict(LEXICON), d / "lang", lm_text=text, lm_order=1)
    cuts = CutSet.from_file(d / "fbank" / "yesno_cuts_train.jsonl.gz").subset(first=8)
    return d, cuts, Lang(d / "lang")
