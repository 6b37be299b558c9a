"""Shared fixtures: the schema path and a small deterministic demo cohort."""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def schema_path() -> Path:
    """The repository's ``cohort_schema.yaml`` (the demo cohort's schema)."""
    return REPO_ROOT / "cohort_schema.yaml"


@pytest.fixture(scope="session")
def demo_schema(schema_path):
    """The demo :class:`analysis.schema.Schema` (frozen, safe to share)."""
    from analysis.schema import load_schema

    return load_schema(schema_path)


@pytest.fixture(scope="session")
def _demo_frame_cached():
    from analysis.simulate import simulate_cohort

    return simulate_cohort(n=60, seed=1)


@pytest.fixture
def demo_frame(_demo_frame_cached):
    """A 60-patient demo cohort table (``simulate_cohort(n=60, seed=1)``); a fresh copy per test."""
    return _demo_frame_cached.copy()


@pytest.fixture
def demo_cohort(demo_frame, demo_schema):
    """The 60-patient demo table validated into an :class:`analysis.cohort.Cohort`."""
    from analysis.cohort import validate_cohort

    return validate_cohort(demo_frame, demo_schema, source="demo.xlsx")


@pytest.fixture
def demo_xlsx(tmp_path, _demo_frame_cached) -> Path:
    """The 60-patient demo table written to ``tmp_path/cohort.xlsx`` (schema beside it)."""
    import shutil

    from analysis.schema import default_schema_path
    from analysis.simulate import write_cohort

    path = write_cohort(_demo_frame_cached, tmp_path / "cohort.xlsx")
    shutil.copyfile(default_schema_path(), tmp_path / "cohort_schema.yaml")
    return path
