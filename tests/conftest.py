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


def decode_torch_and_onnx(ckpt: Path, lang_dir: Path, onnx_dir: Path, test_cuts: Path, out: Path) -> list:
    """Greedy and HLG decodes of ``test_cuts`` by the torch checkpoint and by sherpa-onnx from its
    export, asserted equal hypothesis by hypothesis; returns the torch rows."""
    from speechtl.decode.run import decode_test_set
    from speechtl.export.sherpa import decode_onnx_test_set

    torch_rows = decode_test_set(ckpt, lang_dir, test_cuts, "test", out / "torch", decodings=("greedy", "hlg"))
    onnx_rows = decode_onnx_test_set(onnx_dir, test_cuts, "test", out / "onnx", ("onnx-greedy", "onnx-hlg"))
    for t, o in zip(torch_rows, onnx_rows, strict=True):
        ours = (out / "torch" / f"recogs-test-{t.decoding}.txt").read_text().splitlines()
        theirs = (out / "onnx" / f"recogs-test-{o.decoding}.txt").read_text().splitlines()
        assert [ln for ln in ours if "hyp=" in ln] == [ln for ln in theirs if "hyp=" in ln], t.decoding
        assert t.errors == o.errors and t.words == o.words
    return torch_rows
