"""Tests of analysis.schema: strict YAML loading, inference and the YAML round trip."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import SchemaError
from analysis.schema import (Schema, Variable, default_schema_path, infer_schema, load_schema,
                             normalize_value)

DEMO_VARIABLES = ["age", "sex", "side", "location", "long_axis_mm", "short_axis_mm", "ls_ratio",
                  "shape", "margin", "hilum", "internal_echo", "calcification", "necrosis",
                  "cdfi_pattern", "adler_grade", "elasticity_score"]


def test_packaged_schema_matches_the_demo_contract(schema_path):
    schema = load_schema()
    assert schema == load_schema(schema_path)
    assert default_schema_path().read_text() == Path(schema_path).read_text()
    assert schema.id_column == "patient_id"
    assert schema.group_column == "group"
    assert schema.group_levels == ("metastatic", "lymphoma", "benign")
    assert schema.reference_group == "benign"
    assert schema.hospital_column == "hospital"
    assert schema.image_columns == {"2d": "image_2d", "cdfi": "image_cdfi",
                                    "elastography": "image_elastography"}
    assert list(schema.variable_names) == DEMO_VARIABLES
    assert schema.variable("adler_grade").levels == (0, 1, 2, 3)
    assert schema.variable("location").levels == ("I", "II", "III", "IV", "V", "VI")
    assert schema.variable("sex").type == "binary"
    assert (schema.variable("age").min, schema.variable("age").max) == (1.0, 100.0)


def test_variable_lookup_suggests_close_name():
    with pytest.raises(SchemaError, match="did you mean 'margin'"):
        load_schema().variable("margn")


def test_to_yaml_round_trips(tmp_path):
    schema = load_schema()
    again = load_schema(schema.to_yaml(tmp_path / "s.yaml"))
    assert again == schema


def _write(tmp_path, text, name="cohort_schema.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """\
id_column: pid
group:
  column: dx
  levels: [a, b]
variables:
  - name: x
    type: continuous
  - name: margin
    type: categorical
    levels: [smooth, rough]
"""


def test_minimal_schema_defaults(tmp_path):
    schema = load_schema(_write(tmp_path, MINIMAL))
    assert schema.reference_group == "b"          # default: last group level
    assert schema.group_label == "dx"
    assert schema.variable("x").label == "x"
    assert schema.hospital_column is None and schema.image_columns == {}
    assert "" in schema.missing_codes and -99 in schema.missing_codes


def test_yes_no_levels_stay_text(tmp_path):
    text = MINIMAL.replace("[smooth, rough]", "[no, yes]")
    assert load_schema(_write(tmp_path, text)).variable("margin").levels == ("no", "yes")


@pytest.mark.parametrize("old, new, expected", [
    ("    levels: [smooth, rough]", "    levls: [smooth, rough]",
     "variables[1] 'margin': unknown key 'levls' (line 10); did you mean 'levels'?"),
    ("    levels: [smooth, rough]", "", "variables[1] 'margin': a categorical variable needs 'levels'"),
    ("  - name: x\n    type: continuous", "  - name: x\n    type: continous",
     "'type' must be one of continuous, categorical, ordinal, binary, got str 'continous'"),
    ("  - name: x\n    type: continuous", "  - name: margin\n    type: continuous",
     "variable name 'margin' is used twice"),
    ("    type: continuous", "    type: continuous\n    min: 10\n    max: 2", "min (10) is greater than max (2)"),
    ("    type: continuous", "    type: continuous\n    min: ten", "'min' must be a number, got str 'ten'"),
    ("  levels: [a, b]", "  levels: [a, b]\n  reference: c", "reference 'c' is not one of the levels"),
    ("group:", "groups:", "unknown key 'groups' (line 2); did you mean 'group'?"),
    ("    type: continuous", "    type: continuous\n    test: fisher", "test 'fisher' does not apply"),
    ("  levels: [a, b]", "  levels: [a]", "'levels' must list at least two groups"),
    ("    levels: [smooth, rough]", "    levels: [smooth, rough]\n  - name: grade\n    type: ordinal\n"
     "    levels: [1, 2, 3]\n    test: trend", "test 'trend' (linear-by-linear association) scores the groups "
     "a < b as ordered, and they are not declared ordered"),
    ("  levels: [a, b]", "  levels: [a, b]\n  ordered: yes please", "'ordered' must be true or false"),
])
def test_bad_schema_raises_one_line(tmp_path, old, new, expected):
    text = MINIMAL.replace(old, new)
    assert text != MINIMAL
    with pytest.raises(SchemaError) as info:
        load_schema(_write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "cohort_schema.yaml") + ": ")
    assert expected in message


def test_binary_with_three_levels(tmp_path):
    text = MINIMAL.replace("type: categorical\n    levels: [smooth, rough]",
                           "type: binary\n    levels: [smooth, rough, lumpy]")
    with pytest.raises(SchemaError, match="binary variable needs exactly 2 levels, got 3"):
        load_schema(_write(tmp_path, text))


def test_yaml_syntax_error_names_line(tmp_path):
    text = MINIMAL.replace("  levels: [a, b]", "  levels: [a, b\n")
    with pytest.raises(SchemaError, match=r"YAML syntax error at line \d+") as info:
        load_schema(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_missing_schema_file_suggests_sibling(tmp_path):
    _write(tmp_path, MINIMAL)
    with pytest.raises(SchemaError, match="did you mean 'cohort_schema.yaml'"):
        load_schema(tmp_path / "cohort_shema.yaml")


def test_normalize_value_compares_numbers_and_text():
    assert normalize_value(1) == normalize_value(1.0) == normalize_value(" 1 ") == normalize_value("1.0") == "1"
    assert normalize_value("  Ill-Defined ") == "ill-defined"
    assert normalize_value(np.nan) is None and normalize_value(None) is None
    assert normalize_value(2.5) == normalize_value("2.5")


def test_infer_schema_types_and_levels(tmp_path):
    df = pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(12)],
        "dx": ["benign", "malignant"] * 6,
        "age": [30.5, 41, 52, 63, 24, 35, 46, 57, 68, 79, 20, 31],
        "grade": [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3],
        "sex": ["F", "M", "f ", "M", "F", "M", "F", "M", "F", "M", "F", "M"],
        "level": ["II", "I", "III", "II", "I", "IV", "II", "I", "III", "II", "NA", "V"],
        "hospital": ["A", "B"] * 6,
        "image_2d": [f"images/2d/P{i}.png" for i in range(12)],
    })
    before = df.copy()
    schema = infer_schema(df, "dx")
    pd.testing.assert_frame_equal(df, before)
    assert schema.id_column == "patient_id"
    assert schema.group_levels == ("benign", "malignant") and schema.reference_group == "benign"
    assert schema.hospital_column == "hospital" and schema.image_columns == {"2d": "image_2d"}
    types = {v.name: v.type for v in schema.variables}
    assert types == {"age": "continuous", "grade": "ordinal", "sex": "binary", "level": "categorical"}
    assert schema.variable("grade").levels == (1, 2, 3)
    assert schema.variable("sex").levels == ("F", "M")
    assert schema.variable("level").levels == ("I", "II", "III", "IV", "V")
    assert load_schema(schema.to_yaml(tmp_path / "inferred.yaml")) == schema


def test_infer_schema_unknown_group_column():
    with pytest.raises(SchemaError, match="did you mean 'group'"):
        infer_schema(pd.DataFrame({"group": ["a", "b"], "x": [1, 2]}), "grup")


def test_schema_is_frozen():
    schema = load_schema()
    with pytest.raises(AttributeError):
        schema.group_column = "x"
    with pytest.raises(AttributeError):
        schema.variables[0].type = "binary"
    assert isinstance(schema.variables[0], Variable) and isinstance(schema, Schema)


def test_image_only_schema_may_have_no_variables(tmp_path):
    text = (
        "id_column: image_id\n"
        "group:\n  column: label\n  levels: [normal, benign, malignant]\n"
        "images:\n  2d: image\n"
        "variables: []\n"
    )
    path = tmp_path / "busi.yaml"
    path.write_text(text)
    schema = load_schema(path)
    assert schema.variables == ()
    assert schema.image_columns == {"2d": "image"}
    schema.to_yaml(tmp_path / "again.yaml")
    assert load_schema(tmp_path / "again.yaml") == schema


def test_empty_variables_without_images_is_an_error(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("id_column: id\ngroup:\n  column: g\n  levels: [a, b]\nvariables: []\n")
    with pytest.raises(SchemaError, match="empty list is allowed only when 'images'"):
        load_schema(path)


def test_infer_schema_does_not_compare_identifier_columns():
    df = pd.DataFrame({"ID": [f"img{i}" for i in range(12)], "Case": [i // 2 for i in range(12)],
                       "MRN": range(100, 112), "age": [40.5 + i for i in range(12)],
                       "dx": ["a", "b"] * 6})
    schema = infer_schema(df, group="dx")
    assert schema.id_column == "ID"
    assert [v.name for v in schema.variables] == ["age"]


def test_trend_test_needs_ordered_groups_and_round_trips(tmp_path):
    text = MINIMAL.replace("  levels: [a, b]", "  levels: [a, b]\n  ordered: true") + (
        "  - name: grade\n    type: ordinal\n    levels: [1, 2, 3]\n    test: trend\n")
    schema = load_schema(_write(tmp_path, text))
    assert schema.group_ordered and schema.variable("grade").test == "trend"
    assert load_schema(schema.to_yaml(tmp_path / "again.yaml")) == schema
    assert not load_schema(_write(tmp_path, MINIMAL, "plain.yaml")).group_ordered


def test_multivariable_flag_round_trips_and_is_checked(tmp_path):
    text = MINIMAL.replace("    type: continuous\n", "    type: continuous\n    multivariable: false\n", 1)
    schema = load_schema(_write(tmp_path, text))
    assert not schema.variable("x").multivariable and schema.variable("margin").multivariable
    assert load_schema(schema.to_yaml(tmp_path / "again.yaml")) == schema
    with pytest.raises(SchemaError, match="'multivariable' must be true or false"):
        load_schema(_write(tmp_path, text.replace("multivariable: false", "multivariable: no way"), "b.yaml"))


def test_or_per_of_a_continuous_variable(tmp_path):
    """What a continuous variable's odds ratio is per (issue 9): read, checked, written back."""
    text = MINIMAL.replace("    type: continuous\n", "    type: continuous\n    or_per: 10\n", 1)
    schema = load_schema(_write(tmp_path, text))
    assert schema.variable("x").or_per == 10.0 and schema.variable("margin").or_per is None
    again = load_schema(schema.to_yaml(tmp_path / "again.yaml"))
    assert again.variable("x").or_per == 10.0
    assert load_schema(_write(tmp_path, text.replace("or_per: 10", "or_per: IQR"))).variable("x").or_per == "iqr"
    with pytest.raises(SchemaError, match="'or_per' must be sd, iqr, unit or a positive number"):
        load_schema(_write(tmp_path, text.replace("or_per: 10", "or_per: -1")))
    bad = MINIMAL.replace("    levels: [smooth, rough]\n", "    levels: [smooth, rough]\n    or_per: sd\n")
    with pytest.raises(SchemaError, match="'or_per' applies to continuous variables only"):
        load_schema(_write(tmp_path, bad))
