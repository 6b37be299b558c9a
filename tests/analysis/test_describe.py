"""Descriptive summaries: hand-checked values, all levels in schema order, missing counts."""
import numpy as np
import pandas as pd
import pytest

from analysis.describe import OVERALL, describe, summarize_categorical, summarize_continuous
from analysis.errors import CohortError


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({
        "group": rng.choice(["metastatic", "lymphoma", "benign"], n),
        "age": rng.normal(50, 12, n).round(),
        "shape": rng.choice(["oval", "round"], n),      # 'irregular' never observed
        "adler_grade": rng.choice([0, 1, 2, 3], n),
    })
    df.loc[[3, 7, 11], "age"] = np.nan
    df.loc[[5, 9], "shape"] = None
    return df


GROUPS = ["metastatic", "lymphoma", "benign"]


def test_continuous_summary_hand_example():
    df = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 2, "x": [1.0, 2.0, 3.0, 4.0, 10.0, np.nan, 7.0]})
    out = summarize_continuous(df, "x", "g", group_levels=["a", "b"]).set_index("group")
    a = out.loc["a"]
    assert (a["n_used"], a["n_missing"]) == (5, 0)
    assert a["mean"] == pytest.approx(4.0)
    assert a["sd"] == pytest.approx(np.sqrt(((np.array([1, 2, 3, 4, 10]) - 4.0) ** 2).sum() / 4))
    assert (a["median"], a["q1"], a["q3"], a["min"], a["max"]) == (3.0, 2.0, 4.0, 1.0, 10.0)
    b = out.loc["b"]
    assert (b["n_used"], b["n_missing"], b["mean"]) == (1, 1, 7.0) and np.isnan(b["sd"])
    assert out.loc[OVERALL, "n_used"] == 6 and out.loc[OVERALL, "n_missing"] == 1


def test_quartiles_follow_r_type_7():
    # R: quantile(c(1, 2, 4, 8, 16, 32), c(.25, .75)) -> 2.5, 14
    df = pd.DataFrame({"g": ["a"] * 6, "x": [1.0, 2, 4, 8, 16, 32]})
    row = summarize_continuous(df, "x", "g").iloc[1]
    assert (row["q1"], row["q3"]) == (2.5, 14.0)


def test_categorical_reports_all_levels_in_schema_order_with_column_percent(frame):
    out = summarize_categorical(frame, "shape", "group", levels=["oval", "round", "irregular"],
                                group_levels=GROUPS)
    assert list(out["group"].unique()) == [OVERALL] + GROUPS
    for g, sub in out.groupby("group", sort=False):
        assert list(sub["level"]) == ["oval", "round", "irregular"]
        assert sub["percent"].sum() == pytest.approx(100.0)
        assert sub.loc[sub["level"] == "irregular", "count"].item() == 0
    expected = pd.crosstab(frame["shape"], frame["group"])
    for g in GROUPS:
        for lev in ["oval", "round"]:
            got = out[(out["group"] == g) & (out["level"] == lev)]
            assert got["count"].item() == expected.loc[lev, g]
            non_missing = frame.loc[frame["group"] == g, "shape"].notna().sum()
            assert got["percent"].item() == pytest.approx(100 * expected.loc[lev, g] / non_missing)
    assert out.loc[out["group"] == OVERALL, "n_missing"].iloc[0] == 2


def test_describe_mixes_types_in_given_order_and_does_not_mutate(frame):
    before = frame.copy()
    out = describe(frame, "group", ["adler_grade", "age", "shape"],
                   types={"age": "continuous", "shape": "categorical", "adler_grade": "ordinal"},
                   levels={"shape": ["oval", "round", "irregular"], "adler_grade": [0, 1, 2, 3]},
                   group_levels=GROUPS)
    pd.testing.assert_frame_equal(frame, before)
    assert list(out["variable"].unique()) == ["adler_grade", "age", "shape"]
    assert isinstance(out.index, pd.RangeIndex)
    age = out[(out["variable"] == "age") & (out["group"] == OVERALL)]
    assert age["n_missing"].item() == 3 and age["mean"].item() == pytest.approx(frame["age"].mean())


def test_variable_objects_are_accepted():
    class Var:  # duck-typed analysis.schema.Variable
        def __init__(self, name, type, levels=None):
            self.name, self.type, self.levels = name, type, levels
    df = pd.DataFrame({"group": ["a", "b"], "sex": ["male", "male"]})
    out = describe(df, "group", [Var("sex", "binary", ("female", "male"))])
    assert list(out.loc[out["group"] == OVERALL, "count"]) == [0, 2]


def test_unknown_level_is_a_clear_error(frame):
    bad = frame.assign(shape=frame["shape"].replace({"round": "rund"}))
    with pytest.raises(CohortError, match="did you mean 'round'"):
        summarize_categorical(bad, "shape", "group", levels=["oval", "round", "irregular"])


def test_unknown_column_and_type_are_clear_errors(frame):
    with pytest.raises(CohortError, match="did you mean 'age'"):
        describe(frame, "group", ["agee"], types={"agee": "continuous"})
    with pytest.raises(CohortError, match="did you mean 'continuous'"):
        describe(frame, "group", ["age"], types={"age": "continous"})
    with pytest.raises(CohortError, match="non-numeric"):
        summarize_continuous(frame.assign(age="x"), "age", "group")


def test_standardized_mean_difference_matches_python_tableone():
    """Pairwise SMDs equal tableone 0.9's (Yang & Dalton for categorical, pooled SD for continuous);
    the summary with more than two groups is their mean, as R tableone prints."""
    tableone = pytest.importorskip("tableone")
    from analysis.describe import standardized_mean_difference
    from analysis.simulate import simulate_cohort

    df = simulate_cohort(n=300, seed=5)
    group = "diagnosis" if "diagnosis" in df.columns else "group"
    cols = {"age": "continuous", "sex": "binary", "margin": "categorical"}
    cols = {c: t for c, t in cols.items() if c in df.columns}
    assert len(cols) == 3, df.columns
    sub = df[[group, *cols]].dropna()
    t1 = tableone.TableOne(sub, columns=list(cols), categorical=[c for c, t in cols.items() if t != "continuous"],
                           groupby=group, smd=True, pval=False)
    smd = t1.smd_table
    for col, kind in cols.items():
        levels = sorted(sub[col].unique()) if kind != "continuous" else None
        ours = standardized_mean_difference(sub[col], sub[group], kind, levels=levels)
        assert len(ours["pairs"]) == 3
        for (a, b), value in ours["pairs"].items():
            name = next(c for c in smd.columns if set(c[5:-1].split(",")) == {a, b})
            assert value == pytest.approx(abs(float(smd.loc[col, name])), rel=1e-9), (col, a, b)
        assert ours["smd"] == pytest.approx(np.mean(list(ours["pairs"].values())))
