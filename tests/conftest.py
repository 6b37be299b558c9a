"""Shared fixtures: the schema path and a small deterministic demo cohort."""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def schema_path() -> Path:
    """The repository's ``cohort_schema.yaml`` (the demo cohort's schema)."""
    return REPO_ROOT / "cohort_schema.yaml"
