"""analysis.calibration against R glm (committed reference) and scikit-learn."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from analysis.calibration import (brier_score, calibration_ovr, calibration_slope_intercept,
                                  reliability_curve)
from analysis.errors import CohortError, UndefinedMetricWarning

REF = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference"
DATA = pd.read_csv(REF / "calibration_data.csv")
RESULTS = pd.read_csv(REF / "calibration_results.csv")


@pytest.mark.parametrize("name", RESULTS["dataset"].tolist())
def test_slope_intercept_and_brier_match_R_glm_against_R(name):
    d = DATA[DATA.dataset == name]
    r = RESULTS[RESULTS.dataset == name].iloc[0]
    res = calibration_slope_intercept(d.y, d.p)
    assert res.slope == pytest.approx(r.slope, rel=1e-6)
    assert res.slope_se == pytest.approx(r.slope_se, rel=1e-6)
    assert res.intercept == pytest.approx(r.intercept, rel=1e-6)
    assert res.intercept_se == pytest.approx(r.intercept_se, rel=1e-6)
    assert res.slope_ci_low == pytest.approx(r.slope - 1.959963984540054 * r.slope_se, rel=1e-6)
    assert brier_score(d.y, d.p) == pytest.approx(r.brier, rel=1e-12)
    assert brier_score(d.y, d.p) == pytest.approx(brier_score_loss(d.y, d.p), rel=1e-12)


def test_overconfident_model_has_slope_below_one_and_underconfident_above():
    r = RESULTS.set_index("dataset")
    assert r.loc["overconfident_250", "slope"] < 1 < r.loc["underconfident_250", "slope"]


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_curve_matches_sklearn_on_nonempty_bins(strategy):
    rng = np.random.default_rng(0)
    p = rng.beta(2, 3, 500)
    y = rng.random(500) < p
    out = reliability_curve(y, p, n_bins=8, strategy=strategy)
    assert list(out.columns) == ["bin", "bin_low", "bin_high", "n", "mean_predicted", "observed_fraction"]
    assert out.n.sum() == 500 and len(out) == 8
    prob_true, prob_pred = calibration_curve(y, p, n_bins=8, strategy=strategy)
    kept = out[out.n > 0]
    np.testing.assert_allclose(kept.observed_fraction, prob_true, rtol=1e-12)
    np.testing.assert_allclose(kept.mean_predicted, prob_pred, rtol=1e-12)


def test_empty_bins_are_kept_with_nan():
    out = reliability_curve([0, 1, 1], [0.05, 0.92, 0.95], n_bins=10)
    assert len(out) == 10 and out.n.tolist()[0] == 1 and out.n.tolist()[9] == 2
    assert math.isnan(out.observed_fraction.iloc[5])


def test_one_class_gives_nan_and_warning():
    with pytest.warns(UndefinedMetricWarning):
        r = calibration_slope_intercept([1, 1, 1, 1], [0.2, 0.5, 0.7, 0.9])
    assert math.isnan(r.slope) and math.isnan(r.intercept)


def test_probabilities_outside_unit_interval_raise():
    with pytest.raises(CohortError, match=r"\[0, 1\]"):
        brier_score([0, 1], [0.2, 1.3])


def test_ovr_has_one_row_per_class():
    rng = np.random.default_rng(1)
    classes = ["metastatic", "lymphoma", "benign"]
    y = rng.integers(0, 3, 300)
    lg = rng.normal(size=(300, 3)) + np.eye(3)[y]
    p = np.exp(lg) / np.exp(lg).sum(1, keepdims=True)
    out = calibration_ovr(np.array(classes)[y], p, classes)
    assert out["class"].tolist() == classes
    assert out.brier.iloc[1] == pytest.approx(brier_score_loss(y == 1, p[:, 1]))


# ---------------------------------------------------------------- ECE and the calibration rows of metrics
def _multiclass(n=300, seed=0, signal=1.2, k=3):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + signal * np.eye(k)[codes]
    return codes, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_ece_equals_a_loop_over_sklearn_calibration_curve_bins(seed):
    from sklearn.calibration import calibration_curve

    from analysis.calibration import expected_calibration_error

    codes, p = _multiclass(seed=seed)
    y, q = codes == 0, p[:, 0]
    obs, pred = calibration_curve(y, q, n_bins=10, strategy="uniform")
    ids = np.searchsorted(np.linspace(0, 1, 11)[1:-1], q)            # sklearn's own binning rule
    counts = np.bincount(ids, minlength=10)
    counts = counts[counts > 0]
    assert expected_calibration_error(y, q) == pytest.approx(float(np.sum(counts / q.size * np.abs(obs - pred))),
                                                             abs=1e-12)


def test_weighted_newton_matches_statsmodels_glm_and_r_reference():
    from analysis.calibration import _weighted_recalibration

    data = pd.read_csv(REF / "calibration_data.csv")
    ref = pd.read_csv(REF / "calibration_results.csv")
    for dataset, g in data.groupby("dataset"):
        a, b = _weighted_recalibration(g["y"].to_numpy(float), g["p"].to_numpy(), np.ones((1, len(g))))
        r = ref[ref["dataset"] == dataset].iloc[0]
        assert a[0] == pytest.approx(r["intercept"], rel=1e-6, abs=1e-9)
        assert b[0] == pytest.approx(r["slope"], rel=1e-6, abs=1e-9)


def test_weighted_fits_equal_fits_on_the_resampled_rows():
    """bootstrap_weights + weighted statistics == the statistic on cluster_bootstrap's resampled rows."""
    from analysis.bootstrap import bootstrap_weights, cluster_bootstrap
    from analysis.calibration import calibration_matrix

    codes, p = _multiclass(n=90, seed=4)
    pid = np.repeat(np.arange(45), 2)
    codes = codes[pid // 1]
    direct = cluster_bootstrap(lambda c, q: calibration_matrix(c, q, np.ones((1, c.size)))[0], (codes, p),
                               cluster=pid, n_boot=25, seed=9)
    weighted = np.vstack([calibration_matrix(codes, p, w) for w in bootstrap_weights(pid, 25, 9, chunk=7)])
    np.testing.assert_allclose(weighted, direct.replicates, rtol=1e-8, atol=1e-10)
    # stratified by a patient-level variable: still the same resamples
    strata = (np.arange(90) // 2) % 3
    direct = cluster_bootstrap(lambda c, q: calibration_matrix(c, q, np.ones((1, c.size)))[0], (codes, p),
                               cluster=pid, n_boot=15, seed=2, strata=strata)
    weighted = np.vstack([calibration_matrix(codes, p, w) for w in bootstrap_weights(pid, 15, 2, strata=strata)])
    np.testing.assert_allclose(weighted, direct.replicates, rtol=1e-8, atol=1e-10)


def test_metrics_calibration_rows_equal_the_calibration_module():
    from sklearn.metrics import brier_score_loss

    from analysis.calibration import expected_calibration_error
    from analysis.metrics import classification_metrics

    codes, p = _multiclass(n=400, seed=2)
    classes = ["a", "b", "c"]
    out = classification_metrics(np.array(classes)[codes], p, classes, n_boot=50)
    get = lambda m, c="": out[(out.metric == m) & (out["class"] == c)].iloc[0]  # noqa: E731
    for j, c in enumerate(classes):
        ref = calibration_slope_intercept(codes == j, p[:, j])
        assert get("calibration_slope", c).estimate == pytest.approx(ref.slope, rel=1e-7)
        assert get("calibration_intercept", c).estimate == pytest.approx(ref.intercept, rel=1e-7, abs=1e-10)
        assert get("brier", c).estimate == pytest.approx(brier_score_loss(codes == j, p[:, j]), rel=1e-12)
        assert get("ece", c).estimate == pytest.approx(expected_calibration_error(codes == j, p[:, j]), rel=1e-12)
    assert get("brier").estimate == pytest.approx(np.mean(np.sum((p - np.eye(3)[codes]) ** 2, axis=1)), rel=1e-12)
    conf, right = p.max(1), p.argmax(1) == codes
    assert get("ece").estimate == pytest.approx(expected_calibration_error(right, conf), rel=1e-12)
    cal = out[out.metric.isin(["brier", "calibration_slope", "calibration_intercept", "ece"])]
    assert (cal.ci_low < cal.ci_high).all() and (cal.n_boot_valid == 50).all()


def test_overconfident_model_has_slope_below_one_and_its_ci_excludes_one():
    from analysis.metrics import classification_metrics

    rng = np.random.default_rng(1)
    n = 600
    true_p = rng.uniform(0.05, 0.95, n)
    y = rng.uniform(size=n) < true_p
    lp = np.log(true_p / (1 - true_p)) * 2.5                          # over-confident
    q = 1 / (1 + np.exp(-lp))
    out = classification_metrics(np.where(y, "pos", "neg"), np.column_stack([1 - q, q]), ["neg", "pos"],
                                 n_boot=200)
    s = out[(out.metric == "calibration_slope") & (out["class"] == "pos")].iloc[0]
    assert 0.3 < s.estimate < 0.5 and s.ci_high < 1


def test_scores_outside_unit_interval_give_nan_calibration_with_reason():
    from analysis.metrics import classification_metrics

    out = classification_metrics(["a", "b", "a", "b"], [[2, -1], [0, 1], [1, 0], [-3, 4]], ["a", "b"], n_boot=5)
    cal = out[out.metric == "brier"]
    assert cal.estimate.isna().all() and cal.method.str.contains("not probabilities").all()
