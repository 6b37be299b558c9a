"""Location tests against R 4.x (tests/fixtures/r_reference/location.R): aov, oneway.test,
kruskal.test, Brown–Forsythe/Levene (aov on absolute deviations) and shapiro.test."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import CohortError
from analysis.location import (anova_oneway, kruskal_wallis, normality_check, variance_check,
                               welch_anova)

REF_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference"
DATA = pd.read_csv(REF_DIR / "location_data.csv")
RESULTS = pd.read_csv(REF_DIR / "location_results.csv").set_index("dataset")
DATASETS = list(RESULTS.index)
RTOL = 1e-6


def samples(name):
    sub = DATA[DATA["dataset"] == name]
    return [sub.loc[sub["group"] == g, "value"].to_numpy() for g in ("a", "b", "c")]


def test_fixture_covers_the_required_designs():
    assert len(DATASETS) >= 15
    sizes = DATA.groupby(["dataset", "group"]).size().unstack()
    assert (sizes.min(axis=1) < 10).any()                 # a group with < 10 observations
    assert (sizes.nunique(axis=1) > 1).any()              # unequal sizes
    assert sizes.sum(axis=1).max() >= 586                 # n up to 600
    has_ties = DATA.groupby("dataset")["value"].apply(lambda v: v.duplicated().any())
    assert has_ties.sum() >= 3


@pytest.mark.parametrize("name", DATASETS)
def test_anova_matches_r_aov(name):
    ref = RESULTS.loc[name]
    r = anova_oneway(samples(name))
    assert r.test == "anova"
    assert r.statistic == pytest.approx(ref["aov_f"], rel=RTOL)
    assert r.statistic == pytest.approx(ref["oneway_eq_f"], rel=RTOL)
    assert (r.df, r.df2) == (ref["aov_df1"], ref["aov_df2"])
    assert r.p_value == pytest.approx(ref["aov_p"], rel=RTOL)
    assert r.n_used == ref["n"]


@pytest.mark.parametrize("name", DATASETS)
def test_welch_anova_matches_r_oneway_test(name):
    ref = RESULTS.loc[name]
    r = welch_anova(samples(name))
    assert r.statistic == pytest.approx(ref["welch_f"], rel=RTOL)
    assert r.df == ref["welch_df1"]
    assert r.df2 == pytest.approx(ref["welch_df2"], rel=RTOL)
    assert r.p_value == pytest.approx(ref["welch_p"], rel=RTOL)


@pytest.mark.parametrize("name", DATASETS)
def test_kruskal_wallis_matches_r_kruskal_test(name):
    ref = RESULTS.loc[name]
    r = kruskal_wallis(samples(name))
    assert r.statistic == pytest.approx(ref["kw_h"], rel=RTOL)
    assert r.df == ref["kw_df"]
    assert r.p_value == pytest.approx(ref["kw_p"], rel=RTOL)


@pytest.mark.parametrize("name", DATASETS)
def test_variance_checks_match_r_aov_on_absolute_deviations(name):
    ref = RESULTS.loc[name]
    bf = variance_check(samples(name))
    lv = variance_check(samples(name), center="mean")
    assert bf.test == "brown_forsythe" and lv.test == "levene"
    assert bf.statistic == pytest.approx(ref["bf_f"], rel=RTOL)
    assert bf.p_value == pytest.approx(ref["bf_p"], rel=RTOL)
    assert lv.statistic == pytest.approx(ref["levene_f"], rel=RTOL)
    assert lv.p_value == pytest.approx(ref["levene_p"], rel=RTOL)


@pytest.mark.parametrize("name", DATASETS)
def test_shapiro_per_group_matches_r_shapiro_test(name):
    ref = RESULTS.loc[name]
    frame = normality_check(samples(name), names=["a", "b", "c"])
    assert list(frame["group"]) == ["a", "b", "c"]
    for g, row in frame.set_index("group").iterrows():
        assert row["statistic"] == pytest.approx(ref[f"sw_w_{g}"], rel=RTOL)
        # p-values of the Royston approximation: scipy and R share the AS R94 algorithm
        assert row["p_value"] == pytest.approx(ref[f"sw_p_{g}"], rel=RTOL)


def test_missing_values_are_dropped_and_counted():
    base = samples("normal_unequal_sizes")
    with_nan = [np.append(base[0], [np.nan, np.nan]), list(base[1]) + [None], base[2]]
    r = anova_oneway(with_nan)
    ref = anova_oneway(base)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.n_used == ref.n_used and r.details["n_missing"] == 3
    assert kruskal_wallis(with_nan).details["n_missing"] == 3
    frame = normality_check(with_nan)
    assert list(frame["n_missing"]) == [2, 1, 0]


def test_inputs_are_not_modified():
    a = np.array([1.0, np.nan, 3.0, 4.0])
    before = a.copy()
    welch_anova([a, [2.0, 3.0, 9.0], [5.0, 6.0, 7.0]])
    np.testing.assert_array_equal(a, before)


def test_degenerate_data_gives_nan_with_reason_not_a_crash():
    r = welch_anova([[1.0], [2.0, 3.0], [4.0, 5.0]])
    assert np.isnan(r.p_value) and "fewer than 2" in r.details["reason"]
    r = kruskal_wallis([[1, 1], [1, 1, 1], [1]])
    assert np.isnan(r.statistic) and "identical" in r.details["reason"]
    r = anova_oneway([[1.0, 2.0], [], []])
    assert np.isnan(r.p_value) and r.details["empty_groups"] == ["1", "2"]
    frame = normality_check([[1.0, 2.0], np.arange(6000.0), [3.0, 3.0, 3.0]])
    assert frame.loc[[0, 2], "normal"].isna().all()
    assert "< 3" in frame.loc[0, "reason"] and "identical" in frame.loc[2, "reason"]
    # n > 5000 is tested on evenly spaced order statistics (a uniform sample is not normal)
    assert "> 5000" in frame.loc[1, "reason"] and frame.loc[1, "normal"] == False  # noqa: E712


def test_empty_group_is_ignored_but_named():
    s = samples("normal_equal_20")
    r = kruskal_wallis({"a": s[0], "b": s[1], "empty": [np.nan]})
    ref = kruskal_wallis([s[0], s[1]])
    assert r.statistic == pytest.approx(ref.statistic) and r.df == 1
    assert r.details["empty_groups"] == ["empty"]


def test_non_numeric_value_is_a_clear_error():
    with pytest.raises(CohortError, match="non-numeric value 'abc'"):
        anova_oneway([[1.0, "abc"], [2.0, 3.0]])


def test_normality_check_beyond_5000_uses_order_statistics_and_still_sees_skew():
    rng = np.random.default_rng(0)
    skewed = rng.lognormal(size=20_000)
    normal = rng.normal(size=20_000)
    out = normality_check([skewed, normal], names=["skewed", "normal"])
    assert out["reason"].str.contains("evenly spaced order statistics").all()
    assert out.loc[0, "normal"] is False or out.loc[0, "normal"] == False  # noqa: E712
    assert bool(out.loc[1, "normal"]) is True
    # deterministic: no random subsample
    again = normality_check([skewed, normal], names=["skewed", "normal"])
    pd.testing.assert_frame_equal(out, again)
