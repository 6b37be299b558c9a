"""Schema pieces behind the column account: natural level order, ``recode`` and ``excluded``
in YAML (round trip and one-line errors), and the default missing codes."""
import pandas as pd
import pytest

from analysis.cohort import validate_cohort
from analysis.errors import SchemaError
from analysis.schema import DEFAULT_MISSING_CODES, _natural_key, infer_schema, load_schema, normalize_value

MINIMAL = ("id_column: id\ngroup:\n  column: g\n  levels: [a, b]\nvariables:\n"
           "  - name: lvi\n    type: binary\n    levels: [no, yes]\n")


def _write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_natural_order_puts_letter_suffixes_between_numbers():
    levels = [5, "4b", 1, "4c", 3, "4a", 2, "grade 10", "grade 2"]
    assert sorted(levels, key=_natural_key) == [1, 2, 3, "4a", "4b", "4c", 5, "grade 2", "grade 10"]


def test_none_is_not_a_default_missing_code_but_not_available_is():
    keys = {normalize_value(c) for c in DEFAULT_MISSING_CODES}
    assert "none" not in keys
    assert {"not available", "not applicable", "unknown", "n/a", "na"} <= keys
    assert "none" not in {normalize_value(c) for c in load_schema().missing_codes}


def test_recode_reads_other_spellings_and_round_trips(tmp_path):
    path = _write(tmp_path, MINIMAL + "    recode: {Y: yes, '1': yes, N: no, 0: no}\n")
    schema = load_schema(path)
    assert dict(schema.variable("lvi").recode) == {"Y": "yes", "1": "yes", "N": "no", "0": "no"}
    df = pd.DataFrame({"id": ["p1", "p2", "p3", "p4", "p5"], "g": ["a", "b", "a", "b", "a"],
                       "lvi": ["y", 1, "No", "n", "0"]})
    cohort = validate_cohort(df, schema, source="t.csv")
    assert cohort.data["lvi"].astype(str).tolist() == ["yes", "yes", "no", "no", "no"]
    assert any(n.startswith("'lvi': other spellings read as a level: 'Y' -> 'yes' (1)") for n in cohort.notes)
    assert load_schema(schema.to_yaml(tmp_path / "again.yaml")) == schema


def test_recode_to_an_unknown_level_is_one_line(tmp_path):
    path = _write(tmp_path, MINIMAL + "    recode: {Y: yess}\n")
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert "recode 'Y': 'yess' is not one of the levels (no, yes)" in str(info.value)
    assert "did you mean 'yes'?" in str(info.value) and "\n" not in str(info.value)


def test_excluded_round_trips_and_is_checked(tmp_path):
    path = _write(tmp_path, MINIMAL + "excluded:\n  - column: comment\n    reason: free text\n  - mrn\n")
    schema = load_schema(path)
    assert schema.excluded == (("comment", "free text"), ("mrn", "left out in the schema"))
    assert load_schema(schema.to_yaml(tmp_path / "again.yaml")) == schema
    df = pd.DataFrame({"id": ["p1", "p2"], "g": ["a", "b"], "lvi": ["no", "yes"], "comment": ["x", "y"]})
    cohort = validate_cohort(df, schema, source="t.csv")
    acc = cohort.column_account.set_index("column")
    assert acc.loc["comment", "role"] == "excluded" and acc.loc["comment", "reason"] == "free text"
    bad = _write(tmp_path, MINIMAL + "excluded:\n  - column: lvi\n", "bad.yaml")
    with pytest.raises(SchemaError, match="'lvi' is listed under 'excluded' but is also used as variable"):
        load_schema(bad)


def test_infer_schema_notes_are_yaml_comments(tmp_path):
    df = pd.DataFrame({"id": [f"p{i}" for i in range(12)], "g": ["a", "b"] * 6,
                       "site": ["neck", "axilla", "groin"] * 4})
    schema = infer_schema(df, "g")
    text = schema.to_yaml(tmp_path / "s.yaml").read_text(encoding="utf-8")
    assert "# check: 'site' is analysed as a variable" in text
    assert load_schema(tmp_path / "s.yaml") == schema  # notes are comments, not compared


def test_number_like_labels_are_categories_and_a_repeating_number_column_is_a_count():
    """Real tables (HSAUR3 BtheB 'length' = '<6m' / '>6m'; HSAUR3 polyps 'number' = polyp count):
    before, the first was left out as unparseable numbers and the second as an identifier."""
    df = pd.DataFrame({"g": ["a", "b"] * 6, "length": ["<6m", ">6m", ">6m", "<6m"] * 3,
                       "number": [3, 1, 3, 7, 12, 1, 0, 5, 5, 2, 9, 3],
                       "crp": ["<5", "12.5", "30", "<5", "8", "41", "17", "<5", "9.5", "22", "60", "13"]})
    schema = infer_schema(df, "g")
    length = schema.variable("length")
    assert length.type == "binary" and length.levels == ("<6m", ">6m")
    assert schema.variable("number").type == "continuous"
    assert any("'length'" in n and "categories" in n for n in schema.notes)
    assert any("'number' is named like an identifier but its values repeat" in n for n in schema.notes)
    assert dict(schema.excluded)["crp"].startswith("unparseable")  # numbers with a few '<5': still left out
    unique = infer_schema(df.assign(number=range(12)), "g")
    assert "number" not in [v.name for v in unique.variables]


def test_image_path_columns_are_left_out_as_image_paths_not_free_text():
    import pandas as pd

    from analysis.schema import infer_schema

    n = 30
    df = pd.DataFrame({"id": [f"P{i}" for i in range(n)], "dx": ["a", "b", "c"] * 10,
                       "Bmode": [f"imgs/P{i}_b.PNG" for i in range(n)], "age": [40 + (7 * i) % 23 for i in range(n)]})
    schema = infer_schema(df, "dx")
    reasons = dict(schema.excluded)
    assert reasons["Bmode"].startswith("image file paths (30 of 30 values)")
    assert "age" in [v.name for v in schema.variables]
