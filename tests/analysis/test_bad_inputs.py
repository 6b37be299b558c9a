"""Every malformed input gives one clear line naming file, row and column (never a traceback).

Files and ``expectations.csv`` are made by ``tests/fixtures/bad_inputs/make_bad_inputs.py``.
"""
import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import load_cohort, validate_cohort
from analysis.errors import CohortError, CohortValidationError
from analysis.readers import read_table
from analysis.schema import load_schema
from analysis.simulate import simulate_cohort

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "bad_inputs"
with open(HERE / "expectations.csv", newline="", encoding="utf-8") as _fh:
    CASES = list(csv.DictReader(_fh))


def test_expectation_table_covers_enough_cases():
    assert len(CASES) >= 25
    assert all((HERE / c["file"]).exists() for c in CASES)


def _first_problem_line(err: CohortError) -> str:
    """The error's one line, or for a multi-problem listing the first problem's line."""
    if isinstance(err, CohortValidationError) and "\n" in str(err):
        return str(err).splitlines()[1].strip()
    return str(err)


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_input_raises_one_located_line(case):
    path = HERE / case["file"]
    with pytest.raises(CohortError) as info:
        if path.suffix == ".yaml":
            load_schema(path)
        else:
            load_cohort(path, schema=load_schema())
    err = info.value
    message = str(err)
    assert "Traceback" not in message
    assert "\n" not in message, message  # each case has exactly one defect
    line = _first_problem_line(err)
    assert str(path) in line
    assert case["expected_text"] in line, line
    if case["expected_row"]:
        assert f"row {case['expected_row']}" in line
        assert str(err.row) == case["expected_row"]
    if case["expected_column"]:
        assert f"column '{case['expected_column']}'" in line
        assert err.column == case["expected_column"]


def test_several_problems_are_all_listed(tmp_path):
    df = simulate_cohort(n=40, seed=0)
    df["age"] = df["age"].astype(object)
    df.loc[3, "age"] = "sixty"
    df["margin"] = df["margin"].astype(object)
    df.loc[1, "margin"] = "irregullar"
    df = df.drop(columns=["necrosis"])
    with pytest.raises(CohortValidationError) as info:
        validate_cohort(df, load_schema(), source="cohort.xlsx")
    err = info.value
    assert len(err.problems) == 3
    lines = str(err).splitlines()
    assert lines[0] == "3 problem(s) in cohort: "
    assert [p.row for p in err.problems] == [1, 3, 5]          # column problem, then row order
    assert [p.column for p in err.problems] == ["necrosis", "margin", "age"]
    assert all("\n" not in str(p) for p in err.problems)


# ----------------------------------------------------------------- accepted inputs

@pytest.fixture(scope="module")
def reference():
    return load_cohort(HERE / "ok_case_levels.xlsx", schema=load_schema()).data


def _load(name):
    return load_cohort(HERE / name, schema=load_schema())


def test_whitespace_padded_levels_are_accepted():
    data = _load("ok_whitespace_levels.xlsx").data
    clean = simulate_cohort(n=40, seed=0)
    assert data["margin"].astype(object).tolist() == clean["margin"].tolist()
    assert data["hospital"].astype(object).tolist() == clean["hospital"].tolist()
    assert list(data["margin"].cat.categories) == ["smooth", "irregular", "ill-defined"]


def test_case_different_levels_are_accepted():
    data = _load("ok_case_levels.xlsx").data
    clean = simulate_cohort(n=40, seed=0)
    assert data["shape"].astype(object).tolist() == clean["shape"].tolist()
    assert data["sex"].astype(object).tolist() == clean["sex"].tolist()
    assert data["group"].astype(object).tolist() == clean["group"].tolist()


def test_numeric_text_ordinal_is_accepted():
    data = _load("ok_numeric_text_ordinal.xlsx").data
    clean = simulate_cohort(n=40, seed=0)
    for col in ("adler_grade", "elasticity_score"):
        got = [None if pd.isna(v) else v for v in data[col]]
        want = [None if pd.isna(v) else int(v) for v in clean[col]]
        assert got == want
        assert data[col].cat.ordered
        assert all(isinstance(c, int) for c in data[col].cat.categories)


def test_missing_group_rows_are_excluded_and_counted():
    cohort = _load("ok_missing_group.xlsx")
    assert cohort.n_input == 40 and cohort.n_analysed == 38
    assert cohort.exclusions.to_dict("list") == {
        "row": [7, 19], "patient_id": ["P0006", "P0018"], "column": ["group", "group"],
        "reason": ["missing group", "missing group"]}
    assert 7 not in cohort.data.index and 19 not in cohort.data.index
    assert "2 excluded" in cohort.summary()


def test_missing_codes_become_nan():
    data = _load("ok_missing_codes.xlsx").data
    assert np.isnan(data.loc[4, "age"])
    assert pd.isna(data.loc[5, "margin"])
    assert pd.isna(data.loc[6, "adler_grade"])
    assert data["age"].notna().sum() == simulate_cohort(n=40, seed=0)["age"].notna().sum() - 1


def test_semicolon_csv_with_decimal_comma_is_accepted():
    data = _load("ok_semicolon_decimal_comma.csv").data
    clean = simulate_cohort(n=40, seed=0)
    np.testing.assert_allclose(data["ls_ratio"].to_numpy(), clean["ls_ratio"].to_numpy())
    np.testing.assert_allclose(data["short_axis_mm"].to_numpy(), clean["short_axis_mm"].to_numpy())


def test_reader_keeps_spreadsheet_rows_for_bad_files():
    df = read_table(HERE / "unknown_level.xlsx")
    assert df.index[0] == 2 and df.loc[6, "margin"] == "irregullar"
