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
