import os
import shutil
import subprocess
import sys
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


def copy_recipe(recipe: Path, dst: Path) -> Path:
    """``recipe`` (egs/<corpus>/ASR) in a scratch tree: its own data/ and exp/, the repo's steps/utils/local."""
    d = dst / recipe.relative_to(REPO)
    d.mkdir(parents=True)
    for name in ["run.sh", "cmd.sh", "path.sh"]:
        shutil.copy(recipe / name, d / name)
    shutil.copytree(recipe / "conf", d / "conf")
    for link in ["steps", "utils", "local"]:
        (d / link).symlink_to(REPO / link)
    return d


def venv_env(**extra: str) -> dict[str, str]:
    """The environment with this interpreter's bin first on PATH (speechtl, torchrun), plus ``extra``."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra)


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    """``./run.sh args`` in ``recipe`` with this interpreter's bin first on PATH."""
    return subprocess.run(["./run.sh", *args], cwd=recipe, env=venv_env(), capture_output=True, text=True)
