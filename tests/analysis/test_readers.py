"""Tests of analysis.readers.read_table: row numbers, types, header checks, encodings."""
import numpy as np
import openpyxl
import pandas as pd
import pytest

from analysis.errors import CohortError
from analysis.readers import column_letter, read_table


def test_column_letter():
    assert [column_letter(i) for i in (0, 25, 26, 27, 701, 702)] == ["A", "Z", "AA", "AB", "ZZ", "AAA"]


def test_xlsx_index_is_spreadsheet_row_and_blank_rows_keep_numbering(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([" patient_id ", "age\u00a0", "group"])
    ws.append(["P1", 34, "a"])
    ws.append([None, None, None])
    ws.append(["P2", 41.5, "b"])
    ws.append([None, None, None])
    path = tmp_path / "t.xlsx"
    wb.save(path)
    df = read_table(path)
    assert list(df.columns) == ["patient_id", "age", "group"]
    assert df.index.name == "row" and list(df.index) == [2, 4]
    assert df.loc[4, "age"] == 41.5 and df["age"].dtype.kind == "f"
    assert df.attrs["source"] == str(path) and df.attrs["sheet"] == "Sheet"


def test_named_sheet_and_did_you_mean(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(["x"])
    ws = wb.create_sheet("patients")
    ws.append(["id", "v"])
    ws.append(["a", 1])
    path = tmp_path / "t.xlsx"
    wb.save(path)
    assert read_table(path, sheet="patients").loc[2, "v"] == 1
    with pytest.raises(CohortError, match="did you mean 'patients'"):
        read_table(path, sheet="patient")


def test_csv_numeric_columns_and_text_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,age,grade,note\nP1,34,2,\nP2,sixty,3,ok\n", encoding="utf-8-sig")
    df = read_table(path)
    assert list(df.index) == [2, 3]
    assert df["grade"].tolist() == [2, 3]
    assert df["age"].tolist() == ["34", "sixty"]    # a mixed column stays text, as read
    assert np.isnan(df.loc[2, "note"])


def test_csv_quoted_newline_counts_records_not_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,note\nP1,"two\nlines"\nP2,x\n', encoding="utf-8")
    df = read_table(path)
    assert df.loc[3, "id"] == "P2"


def test_tsv(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("id\tv\nP1\t1.5\n", encoding="utf-8")
    assert read_table(path).loc[2, "v"] == 1.5


def test_missing_file_suggests_sibling(tmp_path):
    (tmp_path / "cohort.xlsx").write_bytes(b"x")
    with pytest.raises(CohortError, match="file not found; did you mean 'cohort.xlsx'"):
        read_table(tmp_path / "cohrt.xlsx")


def test_input_frame_row_numbers_with_demo_file(demo_xlsx, demo_frame):
    df = read_table(demo_xlsx)
    assert list(df.index) == list(range(2, len(demo_frame) + 2))
    assert df["patient_id"].tolist() == demo_frame["patient_id"].tolist()
    pd.testing.assert_series_equal(df["long_axis_mm"].reset_index(drop=True), demo_frame["long_axis_mm"],
                                   check_names=True)


def test_repeated_header_row_is_an_error(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,grp\nid,grp\nP1,a\n", encoding="utf-8")
    with pytest.raises(CohortError, match="row 2: row 2 repeats the header"):
        read_table(path)
