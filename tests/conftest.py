import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """../shared/data beside the checkout (SPEECHTL_SHARED_DATA overrides)."""
    return Path(os.environ.get("SPEECHTL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def yesno_dir() -> Path:
    d = shared_data() / "yesno" / "waves_yesno"
    if not d.is_dir():
        pytest.skip(f"yesno corpus not found at {d}")
    return d


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    d = shared_data() / "fsdd" / "recordings"
    if not d.is_dir():
        pytest.skip(f"FSDD not found at {d}")
    return d
