"""Odd but ordinary cohort files read with ``--group`` (schema inferred): every column is
accounted for, and each file ends in a correct table with a note or in one clear error line.

The files are made by ``tests/fixtures/bad_inputs/make_inferred_inputs.py``.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import ACCOUNT_COLUMNS, load_cohort
from analysis.errors import CohortError
from analysis.readers import read_table
from analysis.schema import infer_schema, load_schema
from analysis.table1 import build_table1

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "bad_inputs" / "inferred"
FAST = dict(regression=False, n_boot=50)


def _load(name, group="group"):
    return load_cohort(HERE / name, group=group)


def _account(cohort) -> dict:
    acc = cohort.column_account
    return {r.column: (r.role, r.type, r.reason) for r in acc.itertuples(index=False)}


def _every_column_once(cohort, name):
    columns = list(read_table(HERE / name).columns)
    acc = cohort.column_account
    assert list(acc.columns) == ACCOUNT_COLUMNS
    assert acc["column"].tolist() == columns  # every input column, once, in file order
    assert set(acc["role"]) <= {"id", "group", "hospital", "image", "variable", "excluded"}
    left = acc[acc["role"] == "excluded"]
    assert (left["reason"].str.len() > 0).all()


def test_fixture_folder_has_enough_cases():
    assert len([p for p in HERE.iterdir() if p.suffix in (".xlsx", ".csv")]) >= 25


# ------------------------------------------------------------------ one clear error line

@pytest.mark.parametrize("name, row, column, text", [
    ("duplicate_id.xlsx", 9, "patient_id", "duplicate patient id 'P003' (also on row 4)"),
    ("duplicate_id_spaced_header.xlsx", 32, "Patient ID", "duplicate patient id 'P013' (also on row 14)"),
    ("one_decimal_comma_cell.csv", 12, "age", "use a decimal point"),
    ("excel_error_cell.xlsx", 17, "short_axis_mm", "expected a number, got '#DIV/0!'"),
])
def test_error_is_one_line_naming_the_cell(name, row, column, text):
    with pytest.raises(CohortError) as info:
        _load(name)
    line = str(info.value).splitlines()[-1] if "\n" in str(info.value) else str(info.value)
    assert "\n" not in str(info.value)
    assert text in line and f"row {row}" in line and f"column '{column}'" in line


def test_only_one_testable_group_is_one_line():
    cohort = _load("only_one_testable_group.xlsx")
    with pytest.raises(CohortError) as info:
        build_table1(cohort, **FAST)
    message = str(info.value)
    assert "\n" not in message
    assert "only 1 group(s) have at least 3 patients (benign 59, malignant 1)" in message


# ------------------------------------------------------------------ identifiers, hospital, site

@pytest.mark.parametrize("name, column, reason", [
    ("study_number_named.xlsx", "Study No.", "identifier-like"),
    ("running_number_unnamed.xlsx", "register", "identifier-like: 60 unique whole numbers 2001..2119"),
    ("second_identifier_mrn.xlsx", "MRN", "identifier-like"),
    ("image_id_column.xlsx", "image_id", "identifier-like"),
    ("date_cells.xlsx", "ultrasound_date", "date"),
    ("date_text.csv", "surgery_date", "date"),
    ("free_text_comments.xlsx", "comment", "free text: 60 distinct values in 60 recorded rows"),
    ("histology_text.xlsx", "histology", "free text"),
    ("multi_select.xlsx", "symptoms", "multi-select answers"),
    ("all_missing_column.xlsx", "elastography", "all missing"),
    ("constant_columns.xlsx", "protocol", "one level ('standard' in all 60 recorded rows)"),
    ("constant_columns.xlsx", "scanner", "one level ('1' in all 60 recorded rows)"),
    ("decimal_comma_in_comma_csv.csv", "long_axis_mm",
     "unparseable: 60 of 60 values are not plain numbers, first on row 2 ('18,2': a number with a decimal comma"),
    ("censored_lab_values.xlsx", "crp", "first on row 2 ('<5': not a number)"),
    ("percent_strings.csv", "ki67", "unparseable"),
])
def test_column_left_out_with_its_reason(name, column, reason):
    cohort = _load(name)
    _every_column_once(cohort, name)
    role, _, why = _account(cohort)[column]
    assert role == "excluded" and reason in why
    assert column not in cohort.schema.variable_names
    assert any(column in n and reason in n for n in cohort.notes)  # the note says it too
    result = build_table1(cohort, **FAST)
    assert column not in result.stats["variable"].tolist()
    acc = result.variables.set_index("column")
    assert acc.loc[column, "role"] == "excluded"
    assert (acc.loc[acc["role"] == "variable", "test"] != "").all()  # every analysed column has its test


def test_hospital_column_is_named_in_the_account():
    cohort = _load("centre_column.xlsx")
    assert cohort.schema.hospital_column == "Centre"
    assert _account(cohort)["Centre"][0] == "hospital"


@pytest.mark.parametrize("name", ["site_anatomical.xlsx", "site_is_hospital.xlsx"])
def test_site_is_not_silently_the_hospital(name):
    cohort = _load(name)
    assert cohort.schema.hospital_column is None
    assert _account(cohort)["site"][0] == "variable"
    assert any("'site' is analysed as a variable, not as the hospital column" in n for n in cohort.notes)


# ------------------------------------------------------------------ missing codes and levels

def test_none_is_a_level_not_a_missing_code():
    cohort = _load("none_is_a_level.xlsx")
    var = cohort.schema.variable("effusion")
    assert var.type == "ordinal" and var.levels == ("none", "mild", "severe")
    raw = read_table(HERE / "none_is_a_level.xlsx")["effusion"]
    assert cohort.data["effusion"].isna().sum() == 0
    assert (cohort.data["effusion"] == "none").sum() == (raw == "none").sum() > 0


def test_not_available_codes_are_counted_missing_and_listed():
    cohort = _load("not_available_codes.xlsx")
    assert cohort.schema.variable("age").type == "continuous"
    assert cohort.schema.variable("margin").levels == ("irregular", "smooth")
    assert cohort.data["age"].isna().sum() == 4 and cohort.data["margin"].isna().sum() == 3
    assert "'age': 4 missing value(s) (missing codes: 'not applicable' 3, 'unknown' 1)" in cohort.notes
    assert "'margin': 3 missing value(s) (missing codes: 'not available' 2, 'n/a' 1)" in cohort.notes
    assert cohort.missing_codes_used == {"'not applicable'": 3, "'unknown'": 1, "'not available'": 2, "'n/a'": 1}
    result = build_table1(cohort, **FAST)
    row = result.display[result.display["Variable"].str.startswith("age")].iloc[0]
    assert row["Missing"].startswith("4 ")
    assert "'not available'" in result.methods_text and "counted as missing" in result.methods_text


def test_local_numeric_missing_code():
    cohort = _load("local_code_999.xlsx")
    assert cohort.schema.variable("crp").missing_codes == (999,)
    assert cohort.data["crp"].isna().sum() == 3 and cohort.data["crp"].max() < 100
    assert any("'crp': 999 (3 cells) read as a local missing code" in n for n in cohort.notes)


def test_local_code_in_a_score_leaves_an_ordinal():
    cohort = _load("score_with_code_99.xlsx")
    var = cohort.schema.variable("adler_grade")
    assert var.type == "ordinal" and var.levels == (0, 1, 2, 3) and var.missing_codes == (99,)
    assert cohort.data["adler_grade"].isna().sum() == 2


def test_yes_no_spellings_are_one_level_each():
    cohort = _load("yes_no_spellings.xlsx")
    var = cohort.schema.variable("lymphovascular_invasion")
    assert var.type == "binary" and var.levels == ("no", "yes")
    raw = read_table(HERE / "yes_no_spellings.xlsx")["lymphovascular_invasion"]
    yes = raw.map(lambda v: str(v).strip().casefold() in ("yes", "y", "1")).sum()
    assert (cohort.data["lymphovascular_invasion"] == "yes").sum() == yes
    assert cohort.data["lymphovascular_invasion"].notna().all()
    note = next(n for n in cohort.notes if n.startswith("'lymphovascular_invasion': other spellings"))
    assert "'Y' -> 'yes'" in note and "'1' -> 'yes'" in note and "'0' -> 'no'" in note


def test_level_typos_are_named_in_a_note():
    cohort = _load("level_typos.xlsx")
    assert cohort.schema.variable("margin").levels == ("irreg.", "irregular", "smooth", "smoth")
    note = next(n for n in cohort.notes if n.startswith("'margin': levels that may be spellings of one level"))
    assert "'irreg.' / 'irregular'" in note and "'smoth' / 'smooth'" in note and "recode" in note


def test_sex_spellings_are_merged():
    cohort = _load("sex_spellings.xlsx")
    assert cohort.schema.variable("sex").levels == ("female", "male")
    raw = read_table(HERE / "sex_spellings.xlsx")["sex"].str.casefold().str[0]
    assert (cohort.data["sex"].astype(str).str[0] == raw.to_numpy()).all()


def test_plus_minus_keeps_minus_as_a_level():
    cohort = _load("plus_minus_levels.xlsx")
    var = cohort.schema.variable("doppler")
    assert set(var.levels) == {"+", "-"}
    assert cohort.data["doppler"].notna().all()


def test_word_scale_is_ordinal_in_its_order():
    var = _load("word_scale_ordinal.xlsx").schema.variable("risk")
    assert var.type == "ordinal" and var.levels == ("low", "intermediate", "high")


def test_birads_levels_sort_naturally():
    var = _load("birads_codes.xlsx").schema.variable("birads")
    assert var.type == "ordinal"
    assert [str(lv) for lv in var.levels] == ["1", "2", "3", "4a", "4b", "4c", "5"]


def test_her2_scores_are_ordinal_in_order():
    cohort = _load("her2_scores.xlsx")
    var = cohort.schema.variable("her2")
    assert var.type == "ordinal" and [str(lv) for lv in var.levels] == ["0", "1+", "2+", "3+"]
    assert cohort.data["her2"].notna().all()


# ------------------------------------------------------------------ groups too small to test

def test_one_patient_group_is_shown_but_not_tested():
    cohort = _load("one_patient_group.xlsx")
    result = build_table1(cohort, regression=True, n_boot=50)
    assert "tuberculosis (n=1)" in result.display.columns
    assert result.settings["groups_not_tested"] == {"tuberculosis": 1}
    assert any("'tuberculosis' (n=1) has fewer than 3 patients" in t for _, t in result.footnotes)
    assert len(result.posthoc)
    assert not result.posthoc["group_a"].astype(str).eq("tuberculosis").any()
    assert not result.posthoc["group_b"].astype(str).eq("tuberculosis").any()
    assert "tuberculosis" not in set(result.regression["outcome_level"].astype(str))
    # the tests are those of the table without the small group (scipy as the independent check)
    without = cohort.data[cohort.data["group"].astype(str) != "tuberculosis"]
    from scipy import stats as sps
    got = result.stats.set_index("variable").loc["margin"]
    table = pd.crosstab(without["margin"].astype(str), without["group"].astype(str))
    chi2, p, _, _ = sps.chi2_contingency(table.to_numpy(), correction=False)
    assert got["test"] == "chi_square" and got["p_value"] == pytest.approx(p, rel=1e-10)
    assert "tuberculosis (n=1) had fewer than 3 patients" in result.methods_text


# ------------------------------------------------------------------ the messy workbook

def test_messy_hospital_workbook_every_column_accounted_for():
    name = "messy_hospital_workbook.xlsx"
    cohort = _load(name, group="Final diagnosis")
    _every_column_once(cohort, name)
    acc = _account(cohort)
    assert acc["Study No."][0] == "id"
    assert acc["Hospital number"][0] == "excluded" and "identifier-like" in acc["Hospital number"][2]
    assert acc["Date of US"][:3:2] == ("excluded", "date")
    assert acc["Histology"][0] == "excluded" and "free text" in acc["Histology"][2]
    assert acc["Comments"][0] == "excluded"
    assert acc["LVI"][:2] == ("variable", "binary") and acc["Sex"][:2] == ("variable", "binary")
    assert cohort.missing_codes_used == {"'not available'": 27, "'not applicable'": 24}
    result = build_table1(cohort, **FAST)
    assert set(result.stats["variable"]) == {k for k, v in acc.items() if v[0] == "variable"}
    assert result.variables["column"].tolist() == list(read_table(HERE / name).columns)


def test_write_schema_records_what_was_left_out(tmp_path):
    df = read_table(HERE / "messy_hospital_workbook.xlsx")
    schema = infer_schema(df, "Final diagnosis")
    path = schema.to_yaml(tmp_path / "schema.yaml")
    text = path.read_text(encoding="utf-8")
    assert "excluded:" in text and "column: Histology" in text and "# check: 'site' is analysed" in text
    again = load_schema(path)
    assert again == schema and dict(again.excluded)["Date of US"] == "date"
    assert dict(again.variable("LVI").recode) == dict(schema.variable("LVI").recode)
    # the loaded schema gives the same account and data
    a = load_cohort(HERE / "messy_hospital_workbook.xlsx", schema=again)
    b = load_cohort(HERE / "messy_hospital_workbook.xlsx", group="Final diagnosis")
    pd.testing.assert_frame_equal(a.column_account, b.column_account)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert not np.any(a.data["LVI"].isna().to_numpy() != b.data["LVI"].isna().to_numpy())


def test_one_patient_group_cannot_be_the_reference():
    cohort = _load("one_patient_group.xlsx")
    with pytest.raises(CohortError) as info:
        build_table1(cohort, reference="tuberculosis", **FAST)
    assert "\n" not in str(info.value)
    assert "reference group (--reference) 'tuberculosis' has 1 patient(s), fewer than 3" in str(info.value)


# ------------------------------------------------------------------ file-level oddities

def test_total_row_is_excluded_and_named():
    cohort = _load("total_row_at_the_bottom.xlsx")
    assert cohort.n_analysed == 60
    assert cohort.exclusions.to_dict("list") == {"row": [62], "patient_id": ["Total"], "column": ["group"],
                                                 "reason": ["missing group"]}
    assert "excluded: 1 x missing group: row 62 (Total)" in cohort.summary()


def test_numbers_stored_as_text_are_numbers():
    cohort = _load("numbers_stored_as_text.xlsx")
    assert cohort.schema.variable("short_axis_mm").type == "continuous"
    clean = _load("constant_columns.xlsx").data  # same base cohort
    np.testing.assert_allclose(cohort.data["short_axis_mm"].to_numpy(), clean["short_axis_mm"].to_numpy())


def test_group_label_case_variants_are_one_group():
    cohort = _load("group_label_case_variants.xlsx")
    assert sorted(str(g).casefold() for g in cohort.schema.group_levels) == ["benign", "lymphoma", "metastatic"]
    counts = {str(g).casefold(): n for g, n in cohort.group_counts().items()}
    assert counts == {"benign": 25, "metastatic": 20, "lymphoma": 15}


def test_semicolon_csv_with_bom_crlf_and_decimal_commas():
    cohort = _load("semicolon_decimal_comma_bom_crlf.csv")
    clean = _load("constant_columns.xlsx").data
    assert list(cohort.column_account["column"]) == ["patient_id", "group", "age", "short_axis_mm", "margin"]
    np.testing.assert_allclose(cohort.data["age"].to_numpy(), clean["age"].to_numpy())


def test_footnote_counts_only_the_groups_tested():
    result = build_table1(_load("one_patient_group.xlsx"), **FAST)
    assert any(t.startswith("p: omnibus test across the 3 groups") for _, t in result.footnotes)


def test_default_reference_in_a_small_group_moves_with_a_note():
    from analysis.table1 import _tested_groups

    tested, note, reference = _tested_groups({"a": 1, "b": 5, "c": 7}, ("a", "b", "c"), "a", False, "g")
    assert tested == ("b", "c") and reference == "c"
    assert note.endswith("(odds ratios against 'c' instead of 'a')")
