"""The one-call API: analysis.table1(data, group=...) on a path, a DataFrame or a Cohort; group
labels and a case-insensitive reference; build_table1 on a plain DataFrame."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

import analysis
from analysis.errors import CohortError, ConfigError
from analysis.table1 import Table1Result, build_table1, parse_group_labels, relabel_groups

REPO = Path(__file__).resolve().parents[2]
FAST = dict(n_boot=50, regression=False)
CODES = {"metastatic": 1, "lymphoma": 2, "benign": 3}


@pytest.fixture
def coded(demo_frame):
    """The demo table with the groups coded 1/2/3 in a column 'diagnosis'."""
    df = demo_frame.drop(columns=["group"])
    df.insert(1, "diagnosis", demo_frame["group"].map(CODES))
    return df


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_fresh_interpreter_import_analysis_then_call():
    """`import analysis; analysis.table1(df, group=...)` with nothing else imported first."""
    code = ("import analysis, sys\n"
            "from analysis.simulate import simulate_cohort\n"
            "assert 'analysis.table1' not in sys.modules\n"
            "res = analysis.table1(simulate_cohort(n=60, seed=1), group='group', n_boot=20, regression=False)\n"
            "print(type(res).__name__, res.n_total, callable(analysis.table1))\n"
            "from analysis import table1\n"
            "print(table1 is analysis.table1 is sys.modules['analysis.table1'], table1.build_table1.__name__)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["Table1Result", "60", "True", "True", "build_table1"]


def test_module_is_still_the_cli_module():
    import analysis.table1 as mod

    assert mod is analysis.table1 and callable(mod)
    assert mod.main is not None and mod.build_parser().prog == "python -m analysis.table1"
    assert "table1" in analysis.__all__ and "table1" in dir(analysis)


def test_dataframe_path_and_cohort_give_the_same_table(demo_frame, demo_xlsx, demo_schema, demo_cohort):
    a = _quiet(analysis.table1, demo_frame, schema=demo_schema, **FAST)
    b = _quiet(analysis.table1, demo_xlsx, **FAST)  # cohort_schema.yaml beside the file
    c = _quiet(analysis.table1, demo_cohort, **FAST)
    d = _quiet(analysis.table1, str(demo_xlsx), schema=str(demo_xlsx.parent / "cohort_schema.yaml"), **FAST)
    for res in (a, b, c, d):
        assert isinstance(res, Table1Result)
        pd.testing.assert_frame_equal(res.display, c.display)
        pd.testing.assert_series_equal(res.stats["p_value"], c.stats["p_value"])


def test_build_table1_accepts_a_plain_dataframe(demo_frame):
    res = _quiet(build_table1, demo_frame, group="group", **FAST)
    assert res.n_total == 60 and set(res.group_levels) == {"metastatic", "lymphoma", "benign"}
    with pytest.raises(ConfigError, match="group column") as err:
        build_table1(demo_frame)  # was: AttributeError: 'DataFrame' object has no attribute 'schema'
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="differs from the schema's group column"):
        build_table1(demo_frame, group="sex", schema=analysis.load_schema())
    with pytest.raises(ConfigError, match="cannot make a Table 1 from a list"):
        analysis.table1([1, 2, 3], group="x")


def test_group_labels_and_case_insensitive_reference(coded):
    plain = _quiet(analysis.table1, coded, group="diagnosis", **FAST)
    assert plain.group_levels == ("1", "2", "3")
    res = _quiet(analysis.table1, coded, group="diagnosis",
                 group_labels={1: "metastatic", 2: "lymphoma", 3: "benign"}, reference="BENIGN", **FAST)
    assert res.group_levels == ("metastatic", "lymphoma", "benign")
    assert res.reference_group == "benign"
    assert list(res.display.columns[2:5]) == [f"{g} (n={(coded['diagnosis'] == c).sum()})"
                                              for g, c in CODES.items()]
    # only the names change: every statistic is the same
    pd.testing.assert_frame_equal(res.stats.drop(columns=["reason"]), plain.stats.drop(columns=["reason"]))
    # the reference may be given by its code too, and list-style labels work as on the command line
    res2 = _quiet(analysis.table1, coded, group="diagnosis", group_labels=["1=metastatic", "3=benign"],
                  reference="2", **FAST)
    assert res2.group_levels == ("metastatic", "2", "benign") and res2.reference_group == "2"
    res3 = _quiet(analysis.table1, coded, group="diagnosis", group_labels=["1=metastatic", "2=lymphoma",
                                                                           "3=benign"],
                  reference="3", **FAST)
    assert res3.reference_group == "benign"


def test_odds_ratios_follow_the_labels_and_reference(coded):
    res = _quiet(analysis.table1, coded, group="diagnosis", n_boot=20, posthoc=False,
                 group_labels=["1=metastatic", "2=lymphoma", "3=benign"], reference="Lymphoma")
    assert set(res.regression["reference"].astype(str)) == {"lymphoma"}
    assert set(res.regression["outcome_level"].astype(str)) == {"metastatic", "benign"}


@pytest.mark.parametrize("labels, message", [
    (["1metastatic"], "'1metastatic' is not CODE=LABEL"),
    (["1="], "is not CODE=LABEL"),
    (["1=a", "1=b"], "code '1' is given twice"),
    (["4=other"], "'4' is not a group of column 'diagnosis' (groups: 1, 2, 3)"),
    (["1=benign", "3=Benign"], "would both be called"),
    (["1=3"], "would both be called '3'"),
])
def test_bad_group_labels_one_line(coded, labels, message):
    with pytest.raises(ConfigError) as err:
        analysis.table1(coded, group="diagnosis", group_labels=labels, **FAST)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_reference_names_the_levels(coded):
    with pytest.raises(CohortError, match="'malignant' is not a group level") as err:
        analysis.table1(coded, group="diagnosis", group_labels=["1=metastatic", "2=lymphoma", "3=benign"],
                        reference="malignant", **FAST)
    assert "metastatic, lymphoma, benign" in str(err.value)


def test_relabel_keeps_the_cohort_and_matches_float_codes(coded, demo_schema):
    df = coded.copy()
    df["diagnosis"] = df["diagnosis"].astype(float)
    df.loc[df.index[0], "diagnosis"] = float("nan")  # a float column, as pandas reads one with a gap
    cohort = analysis.table1.as_cohort(df, group="diagnosis")
    before = cohort.data.copy()
    new = relabel_groups(cohort, {"1": "metastatic", "2.0": "lymphoma", 3: "benign"})
    assert new.schema.group_levels == ("metastatic", "lymphoma", "benign")
    assert new.data["diagnosis"].value_counts().to_dict() == {
        lab: int((coded["diagnosis"].iloc[1:] == c).sum()) for lab, c in CODES.items()}
    pd.testing.assert_frame_equal(cohort.data, before)  # the input cohort is not modified
    assert relabel_groups(cohort, None) is cohort
    assert parse_group_labels({1: "a"}) == {"1": "a"}
