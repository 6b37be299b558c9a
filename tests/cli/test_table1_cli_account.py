"""python -m analysis.table1 --group: the column account and the notes reach the terminal and
the written outputs (table1.xlsx 'Variables' sheet, methods.md, --write-schema)."""
from pathlib import Path

import openpyxl

from analysis.table1 import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bad_inputs" / "inferred"
MESSY = FIXTURES / "messy_hospital_workbook.xlsx"


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_every_column_and_the_notes(tmp_path, capsys):
    out_dir = tmp_path / "o"
    code, out, err = _run([MESSY, "--group", "Final diagnosis", "--out", out_dir, "--no-regression",
                           "--n-boot", "50"], capsys)
    assert code == 0, err
    assert ("columns: 15 read; 9 analysed (4 continuous, 4 binary, 1 categorical); id 'Study No.'; "
            "group 'Final diagnosis'; 4 left out:") in out
    assert "  left out 'Date of US': date" in out
    assert "  left out 'Histology': free text: 170 distinct values in 256 recorded rows" in out
    assert "note: 'site' is analysed as a variable, not as the hospital column" in out
    assert ("note: cells read as missing by a missing code: 'not available' (27 cells), "
            "'not applicable' (24 cells)") in out
    assert "note: 'LVI': other spellings read as a level: 'N' -> 'no' (51); 'Y' -> 'yes' (25)" in out
    # written outputs
    wb = openpyxl.load_workbook(out_dir / "table1.xlsx")
    ws = wb["Variables"]
    rows = [[c.value for c in r] for r in ws.iter_rows()]
    assert rows[0] == ["column", "role", "type", "test", "n_missing", "reason"]
    by_col = {r[0]: r for r in rows[1:16]}
    assert len(by_col) == 15 and by_col["Histology"][1] == "excluded"
    assert by_col["LVI"][1:5] == ["variable", "binary", "chi_square", 20]
    assert any(r[0] == "Notes" for r in rows)
    md = (out_dir / "table1.md").read_text(encoding="utf-8")
    assert "### Columns of the table" in md
    assert "| Histology | excluded |  |  | free text: 170 distinct values in 256 recorded rows |" in md
    assert "- cells read as missing by a missing code: 'not available' (27 cells)" in md
    methods = (out_dir / "methods.md").read_text(encoding="utf-8")
    assert "Of the 15 columns of the table, 9 were analysed; Study No. identified the patients; " \
           "4 were left out: Hospital number (identifier-like), Date of US (date), " \
           "Histology (free text) and Comments (free text)." in methods
    assert "Cells coded as missing ('not available' (27 cells), 'not applicable' (24 cells))" in methods


def test_write_schema_records_the_decisions(tmp_path, capsys):
    target = tmp_path / "schema.yaml"
    code, out, err = _run([MESSY, "--group", "Final diagnosis", "--write-schema", target], capsys)
    assert code == 0, err
    assert "  left out 'Comments': free text" in out
    assert "note: 'LVI': other spellings read as a level (recode)" in out
    text = target.read_text(encoding="utf-8")
    assert "excluded:\n- column: Hospital number\n  reason: identifier-like (by its name)" in text
    assert "recode:" in text
    # and the edited schema runs
    code, out, err = _run([MESSY, "--schema", target, "--out", tmp_path / "o", "--no-regression",
                           "--n-boot", "50"], capsys)
    assert code == 0, err
    assert "  left out 'Date of US': date" in out
