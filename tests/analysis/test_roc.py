"""analysis.roc against R pROC (committed reference values) and scikit-learn, plus invariants."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from analysis.errors import CohortError, UndefinedMetricWarning
from analysis.roc import delong_ci, delong_test, roc_auc, roc_auc_ovr

REF = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference"
DATA = pd.read_csv(REF / "roc_data.csv")
RESULTS = pd.read_csv(REF / "roc_results.csv")
DATASETS = RESULTS["dataset"].tolist()


def _dataset(name):
    d = DATA[DATA["dataset"] == name]
    r = RESULTS[RESULTS["dataset"] == name].iloc[0]
    return d["y"].to_numpy(), d["score_a"].to_numpy(), d["score_b"].to_numpy(), r


def test_reference_has_at_least_ten_datasets_with_ties_small_and_unbalanced():
    assert len(DATASETS) >= 10
    assert (RESULTS["n_cases"] + RESULTS["n_controls"]).min() <= 10
    assert (RESULTS["n_cases"] / (RESULTS["n_cases"] + RESULTS["n_controls"])).min() <= 0.1


@pytest.mark.parametrize("name", DATASETS)
def test_auc_variance_and_ci_match_pROC_against_R(name):
    y, a, b, r = _dataset(name)
    for score, suffix in ((a, "a"), (b, "b")):
        res = delong_ci(y, score, ci=r["ci_level"])
        assert res.estimate == pytest.approx(r[f"auc_{suffix}"], rel=1e-6)
        assert res.variance == pytest.approx(r[f"var_{suffix}"], rel=1e-6)
        assert res.ci_low == pytest.approx(r[f"ci_low_{suffix}"], rel=1e-6, abs=1e-12)
        assert res.ci_high == pytest.approx(r[f"ci_high_{suffix}"], rel=1e-6)
        assert roc_auc(y, score) == pytest.approx(r[f"auc_{suffix}"], rel=1e-6)


@pytest.mark.parametrize("name", DATASETS)
def test_paired_delong_test_matches_pROC_roc_test_against_R(name):
    y, a, b, r = _dataset(name)
    res = delong_test(y, a, b, ci=r["ci_level"])
    assert res.test == "delong"
    assert res.statistic == pytest.approx(r["z"], rel=1e-6, abs=1e-12)
    assert res.p_value == pytest.approx(r["p_value"], rel=1e-6)
    assert res.details["diff_ci_low"] == pytest.approx(r["diff_ci_low"], rel=1e-6, abs=1e-12)
    assert res.details["diff_ci_high"] == pytest.approx(r["diff_ci_high"], rel=1e-6, abs=1e-12)
    assert res.n_used == len(y)


@pytest.mark.parametrize("name", DATASETS)
def test_roc_auc_matches_sklearn(name):
    y, a, b, _ = _dataset(name)
    assert roc_auc(y, a) == pytest.approx(roc_auc_score(y, a), rel=1e-12)
    assert roc_auc(y, b) == pytest.approx(roc_auc_score(y, b), rel=1e-12)


def test_perfect_reversed_and_random_classifiers():
    y = np.array([0] * 50 + [1] * 50)
    s = np.arange(100, dtype=float)
    assert roc_auc(y, s) == 1.0
    assert roc_auc(y, -s) == 0.0          # never flipped
    rng = np.random.default_rng(1)
    big_y = rng.integers(0, 2, 20000)
    assert abs(roc_auc(big_y, rng.random(20000)) - 0.5) < 0.02
    assert roc_auc(y, np.zeros(100)) == 0.5   # all ties count 1/2


def test_auc_is_invariant_to_monotone_transforms_and_label_order():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    perm = rng.permutation(200)
    assert roc_auc(y, s) == pytest.approx(roc_auc(y, np.exp(3 * s)))
    assert roc_auc(y, s) == pytest.approx(roc_auc(y[perm], s[perm]))
    assert roc_auc(y.astype(bool), s) == pytest.approx(roc_auc(y, s))


def test_ovr_matches_sklearn_macro_and_per_class():
    rng = np.random.default_rng(3)
    classes = ["metastatic", "lymphoma", "benign"]
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + np.eye(3)[y] * 1.2
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array(classes)[y]
    out = roc_auc_ovr(labels, proba, classes)
    assert list(out.columns) == ["class", "estimate", "n_positive", "n_negative"]
    assert out["class"].tolist() == ["", *classes]
    assert out["estimate"].iloc[0] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro"), rel=1e-12)
    for j, c in enumerate(classes):
        assert out["estimate"].iloc[j + 1] == pytest.approx(roc_auc_score(y == j, proba[:, j]), rel=1e-12)
        assert out["n_positive"].iloc[j + 1] == (y == j).sum()


def test_one_class_only_gives_nan_and_warning():
    with pytest.warns(UndefinedMetricWarning, match="undefined"):
        assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.3, 0.4]))
    with pytest.warns(UndefinedMetricWarning):
        r = delong_ci([0, 0, 0], [0.2, 0.3, 0.4])
    assert math.isnan(r.estimate) and math.isnan(r.ci_low)
    with pytest.warns(UndefinedMetricWarning):
        t = delong_test([1, 1, 1], [0.2, 0.3, 0.4], [0.1, 0.5, 0.2])
    assert math.isnan(t.p_value)
    with pytest.warns(UndefinedMetricWarning, match="class 'c'"):
        out = roc_auc_ovr(["a", "b", "a"], [[.5, .3, .2], [.1, .8, .1], [.6, .2, .2]], ["a", "b", "c"])
    assert math.isnan(out["estimate"].iloc[0]) and math.isnan(out["estimate"].iloc[3])
    assert out["estimate"].iloc[1] == 1.0


def test_single_case_gives_auc_but_nan_variance():
    with pytest.warns(UndefinedMetricWarning, match="variance"):
        r = delong_ci([0, 0, 1], [0.1, 0.3, 0.2])
    assert r.estimate == 0.5 and math.isnan(r.variance)


@pytest.mark.parametrize("y, score, match", [
    ([0, 1, 2], [0.1, 0.2, 0.3], "0/1"),
    (["no", "yes"], [0.1, 0.2], "0/1"),
    ([0, 1, 1], [0.1, 0.2], "has 2 values"),
    ([0, 1, 1], [0.1, np.nan, 0.3], "missing"),
])
def test_bad_input_raises_one_clear_cohort_error(y, score, match):
    with pytest.raises(CohortError, match=match):
        roc_auc(y, score)


def test_ovr_unknown_class_names_column_and_suggests():
    with pytest.raises(CohortError, match=r"unknown class 'benin'.*did you mean 'benign'"):
        roc_auc_ovr(["benin", "lymphoma"], [[.5, .5], [.2, .8]], ["benign", "lymphoma"])


def test_inputs_are_not_modified():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.3, 0.2, 0.1, 0.9])
    y0, s0 = y.copy(), s.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        delong_test(y, s, s[::-1].copy())
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(s, s0)
