"""Tests of analysis.cohort: typed output, notes, exclusions, inference path."""
import numpy as np
import pandas as pd
import pytest

from analysis.cohort import Cohort, load_cohort, validate_cohort
from analysis.errors import CohortValidationError, SchemaError
from analysis.readers import read_table


def test_typed_output(demo_cohort, demo_schema):
    data = demo_cohort.data
    assert isinstance(demo_cohort, Cohort)
    assert data.index.name == "row" and data.index[0] == 2
    assert list(data.columns[:3]) == ["patient_id", "group", "hospital"]
    assert list(data.columns[3:19]) == list(demo_schema.variable_names)
    assert list(data.columns[19:]) == ["image_2d", "image_cdfi", "image_elastography"]
    assert list(data["group"].cat.categories) == ["metastatic", "lymphoma", "benign"]
    for var in demo_schema.variables:
        col = data[var.name]
        if var.type == "continuous":
            assert col.dtype == np.float64
        else:
            assert col.cat.ordered and tuple(col.cat.categories) == var.levels
    assert demo_cohort.n_input == demo_cohort.n_analysed == 60
    assert demo_cohort.exclusions.columns.tolist() == ["row", "patient_id", "column", "reason"]


def test_caller_frame_not_modified(demo_frame, demo_schema):
    before = demo_frame.copy()
    validate_cohort(demo_frame, demo_schema)
    pd.testing.assert_frame_equal(demo_frame, before)


def test_notes_list_extra_columns_and_missing_counts(demo_frame, demo_schema):
    demo_frame["comment"] = "x"
    cohort = validate_cohort(demo_frame, demo_schema)
    assert any("comment" in n for n in cohort.notes)
    assert (cohort.data["comment"] == "x").all()
    n_missing = int(demo_frame["elasticity_score"].isna().sum())
    assert n_missing > 0
    assert f"'elasticity_score': {n_missing} missing value(s)" in cohort.notes


def test_unobserved_level_is_a_note_not_an_error(demo_frame, demo_schema):
    demo_frame["shape"] = demo_frame["shape"].replace("irregular", "round")
    cohort = validate_cohort(demo_frame, demo_schema)
    assert "'shape': level(s) never observed: irregular" in cohort.notes
    assert list(cohort.data["shape"].cat.categories) == ["oval", "round", "irregular"]


def test_unknown_group_is_a_problem_not_an_exclusion(demo_frame, demo_schema):
    demo_frame.loc[0, "group"] = "lymphomma"
    with pytest.raises(CohortValidationError, match="row 2, column 'group'.*did you mean 'lymphoma'"):
        validate_cohort(demo_frame, demo_schema, source="c.xlsx")


def test_level_equal_to_missing_code_is_kept(demo_frame, demo_schema, tmp_path):
    text = demo_schema.to_yaml(tmp_path / "s.yaml").read_text()
    text = text.replace("levels: [avascular, hilar, central, peripheral, mixed]",
                        "levels: [avascular, hilar, central, peripheral, mixed, unknown]")
    (tmp_path / "s.yaml").write_text(text)
    from analysis.schema import load_schema
    demo_frame.loc[0, "cdfi_pattern"] = "unknown"
    demo_frame.loc[1, "margin"] = "unknown"
    cohort = validate_cohort(demo_frame, load_schema(tmp_path / "s.yaml"))
    assert cohort.data.loc[2, "cdfi_pattern"] == "unknown"
    assert pd.isna(cohort.data.loc[3, "margin"])


def test_load_cohort_finds_schema_beside_file(demo_xlsx, demo_frame):
    cohort = load_cohort(demo_xlsx)
    assert cohort.source == str(demo_xlsx)
    assert cohort.data["patient_id"].tolist() == demo_frame["patient_id"].tolist()
    assert cohort.summary().startswith(f"{demo_xlsx}: 60 rows read, 0 excluded, 60 analysed (metastatic ")


def test_load_cohort_infers_schema_when_group_given(demo_xlsx):
    (demo_xlsx.parent / "cohort_schema.yaml").unlink()
    cohort = load_cohort(demo_xlsx, group="group")
    assert set(cohort.schema.group_levels) == {"metastatic", "lymphoma", "benign"}
    assert cohort.schema.reference_group == "benign"
    assert cohort.schema.variable("adler_grade").type == "ordinal"
    assert cohort.schema.variable("age").type == "continuous"
    with pytest.raises(SchemaError, match="no schema given"):
        load_cohort(demo_xlsx)


def test_plain_rangeindex_frame_gets_spreadsheet_rows(demo_frame, demo_schema):
    demo_frame.loc[3, "age"] = 250
    with pytest.raises(CohortValidationError) as info:
        validate_cohort(demo_frame, demo_schema)
    assert info.value.row == 5 and info.value.column == "age"


def test_read_then_validate_same_as_direct(demo_xlsx, demo_frame, demo_schema):
    a = validate_cohort(read_table(demo_xlsx), demo_schema).data
    b = validate_cohort(demo_frame, demo_schema).data
    pd.testing.assert_frame_equal(a, b)


def test_wrong_sheet_or_separator_is_one_line_naming_the_fix(demo_frame, demo_schema, tmp_path):
    from analysis.errors import CohortError

    path = tmp_path / "two_sheets.xlsx"
    with pd.ExcelWriter(path) as xl:
        pd.DataFrame({"About": ["this workbook holds the cohort on sheet Data"]}).to_excel(xl, sheet_name="README", index=False)
        demo_frame.to_excel(xl, sheet_name="Data", index=False)
    with pytest.raises(CohortError) as info:
        load_cohort(path, schema=demo_schema)
    assert "not found on sheet 'README' (the first sheet) but on sheet 'Data': pass --sheet Data" in str(info.value)
    assert load_cohort(path, schema=demo_schema, sheet="Data").n_analysed == len(demo_frame)
    renamed = tmp_path / "codebook.xlsx"  # data on the first sheet, group column misnamed: no sheet hint
    with pd.ExcelWriter(renamed) as xl:
        demo_frame.rename(columns={"group": "Diagnosis"}).to_excel(xl, sheet_name="data", index=False)
        pd.DataFrame({"code": [1]}).to_excel(xl, sheet_name="codebook", index=False)
    with pytest.raises(CohortError) as info:
        load_cohort(renamed, schema=demo_schema)
    assert "--sheet" not in str(info.value) and "group" in str(info.value)
    txt = tmp_path / "cohort.txt"
    demo_frame.to_csv(txt, index=False)  # comma-separated, but .txt is read as tab-separated
    with pytest.raises(CohortError, match="rename the file to .csv") as info:
        load_cohort(txt, schema=demo_schema)
    assert "\n" not in str(info.value)
