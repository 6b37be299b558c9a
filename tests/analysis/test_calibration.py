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
