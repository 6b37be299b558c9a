"""Repository-wide pytest hooks.

Tests that read the public image sets in ``../shared/data`` carry the ``shared_data``
mark.  Where that folder is missing they are skipped on a developer's machine, but in CI
(``CI`` set) a missing folder is an error: CI must run them, never skip them silently.
"""
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("LYMPH_SHARED_DATA", Path(__file__).resolve().parent.parent / "shared" / "data"))


def _shared_data_present() -> bool:
    return (SHARED_DATA / "busi").is_dir() and (SHARED_DATA / "bus_bra" / "bus_data.csv").is_file()


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("shared_data")]
    if not marked or _shared_data_present():
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(
            f"CI: {len(marked)} tests need the public data sets but {SHARED_DATA} is missing "
            "(expected busi/ and bus_bra/bus_data.csv); refusing to skip them."
        )
    skip = pytest.mark.skip(reason=f"public data not found at {SHARED_DATA}")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data`` (BUSI, BUS-BRA)."""
    return SHARED_DATA
