"""choose_test: the decision rules of analysis.selection, checked on data built to hit each."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.errors import CohortError
from analysis.selection import TestChoice, choose_test, expected_counts

RNG = np.random.default_rng(1)


def long(samples, names=("metastatic", "lymphoma", "benign")):
    values = np.concatenate(samples)
    groups = np.repeat(names[:len(samples)], [len(s) for s in samples])
    return values, groups


def test_expected_counts_match_scipy():
    v = RNG.choice(["oval", "round", "irregular"], 200)
    g = RNG.choice(["m", "l", "b"], 200)
    table = pd.crosstab(v, g).to_numpy()
    exp = stats.contingency.expected_freq(table)
    np.testing.assert_allclose(np.sort(expected_counts(v, g).ravel()), np.sort(exp.ravel()))


def test_large_table_gets_chi_square_and_reason_names_smallest_expected():
    v = RNG.choice(["oval", "round", "irregular"], 300)
    g = RNG.choice(["m", "l", "b"], 300)
    choice = choose_test(v, g, "categorical")
    smallest = expected_counts(v, g).min()
    assert choice.test == "chi_square" and choice.summary == "n_percent"
    assert f"smallest {smallest:.2f}" in choice.reason
    assert choice.details["min_expected"] == pytest.approx(smallest)


def test_sparse_table_gets_fisher():
    v = np.array(["absent"] * 40 + ["present"] * 3)
    g = np.array(["m", "l", "b"] * 14 + ["m"])
    choice = choose_test(v, g, "binary")
    assert choice.test == "fisher"
    assert "smallest" in choice.reason and choice.details["min_expected"] < 5


def test_two_by_two_chi_square_is_uncorrected_and_says_so():
    v = np.array(["absent", "present"] * 50)
    g = np.array(["a"] * 50 + ["b"] * 50)
    choice = choose_test(v, g, "binary")
    assert choice.test == "chi_square" and "no continuity correction" in choice.reason


def test_normal_equal_variance_gives_anova_mean_sd():
    v, g = long([RNG.normal(0, 1, 60), RNG.normal(0.5, 1, 50), RNG.normal(0.2, 1, 70)])
    choice = choose_test(v, g, "continuous")
    assert (choice.test, choice.summary) == ("anova", "mean_sd")
    assert choice.details["variance_p"] >= 0.05


def test_normal_unequal_variance_gives_welch():
    v, g = long([RNG.normal(0, 1, 60), RNG.normal(0, 6, 60), RNG.normal(0, 0.3, 60)])
    choice = choose_test(v, g, "continuous")
    assert (choice.test, choice.summary) == ("welch_anova", "mean_sd")
    assert "Brown–Forsythe" in choice.reason


def test_skewed_group_gives_kruskal_median_iqr():
    v, g = long([RNG.lognormal(0, 1, 80), RNG.normal(5, 1, 40), RNG.normal(5, 1, 40)])
    choice = choose_test(v, g, "continuous")
    assert (choice.test, choice.summary) == ("kruskal_wallis", "median_iqr")
    assert "'metastatic'" in choice.reason


def test_tiny_group_gives_kruskal():
    v, g = long([RNG.normal(0, 1, 30), RNG.normal(0, 1, 2), RNG.normal(0, 1, 30)])
    choice = choose_test(v, g, "continuous")
    assert choice.test == "kruskal_wallis" and "lymphoma" in choice.reason


def test_missing_values_are_ignored():
    v, g = long([RNG.normal(0, 1, 40), RNG.normal(0, 1, 40), RNG.normal(0, 1, 40)])
    v = v.astype(object)
    v[:5] = None
    g = g.astype(object)
    g[10] = None
    assert choose_test(v, g, "continuous").details["n_used"] == 114


def test_ordinal_defaults_to_kruskal_and_trend_on_request():
    v = RNG.integers(0, 4, 90)
    g = np.repeat(["a", "b", "c"], 30)
    assert choose_test(v, g, "ordinal").test == "kruskal_wallis"
    assert "ordered levels" in choose_test(v, g, "ordinal").reason
    assert choose_test(v, g, "ordinal", trend=True).test == "linear_by_linear"


@pytest.mark.parametrize("override,expected", [("welch", "welch_anova"), ("kruskal", "kruskal_wallis"),
                                               ("anova", "anova")])
def test_schema_override_is_followed_and_named(override, expected):
    v, g = long([RNG.normal(0, 1, 20)] * 3)
    choice = choose_test(v, g, "continuous", override=override)
    assert choice.test == expected and "schema" in choice.reason and choice.details["overridden"]


def test_override_that_does_not_fit_the_type_is_an_error():
    with pytest.raises(CohortError, match="does not apply to a binary variable"):
        choose_test(["a", "b"], ["x", "y"], "binary", override="anova", variable="sex")
    with pytest.raises(CohortError, match="did you mean 'fisher'"):
        choose_test(["a", "b"], ["x", "y"], "binary", override="fischer")
    with pytest.raises(CohortError, match="did you mean 'continuous'"):
        choose_test([1.0], ["x"], "continous")


def test_choice_is_frozen_and_has_a_frame():
    choice = choose_test(["a", "b"] * 30, ["x"] * 30 + ["y"] * 30, "binary")
    assert isinstance(choice, TestChoice)
    frame = choice.to_frame()
    assert list(frame.columns[:3]) == ["test", "reason", "summary"] and len(frame) == 1
    with pytest.raises(Exception):
        choice.test = "fisher"
