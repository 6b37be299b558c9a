"""analysis.metrics.classification_metrics: sklearn agreement, tidy shape, patient-level CIs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score, recall_score,
                             roc_auc_score)

from analysis.errors import CohortError, UndefinedMetricWarning
from analysis.metrics import METRIC_COLUMNS, classification_metrics
from analysis.roc import roc_auc

CLASSES = ["metastatic", "lymphoma", "benign"]


def _predictions(n_patients=150, per_patient=1, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n_patients)
    pid = np.repeat(np.arange(n_patients), per_patient)
    yy = y[pid]
    logits = rng.normal(size=(yy.size, 3)) + signal * np.eye(3)[yy]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return np.array(CLASSES)[yy], proba, pid, yy


def _get(out, metric, cls=""):
    return out[(out.metric == metric) & (out["class"] == cls)].iloc[0]


def test_tidy_columns_and_rows_exactly_as_specified():
    y, p, pid, _ = _predictions()
    out = classification_metrics(y, p, CLASSES, pid, n_boot=50)
    assert list(out.columns) == METRIC_COLUMNS == ["metric", "class", "estimate", "ci_low", "ci_high",
                                                   "ci_level", "n", "n_boot_valid", "method"]
    assert isinstance(out.index, pd.RangeIndex)
    expected = ([("auc", "")] + [("auc", c) for c in CLASSES]
                + [("accuracy", ""), ("balanced_accuracy", ""), ("f1", "")]
                + [("sensitivity", c) for c in CLASSES] + [("specificity", c) for c in CLASSES]
                + [("brier", "")] + [("brier", c) for c in CLASSES]
                + [("calibration_intercept", c) for c in CLASSES] + [("calibration_slope", c) for c in CLASSES]
                + [("ece", "")] + [("ece", c) for c in CLASSES])
    assert list(zip(out.metric, out["class"])) == expected
    assert (out.n == len(y)).all() and (out.ci_level == 0.95).all()
    assert (out.ci_low < out.ci_high).all()
    centred = out[out.metric != "ece"]  # ECE is biased upward: its resamples can all lie above it
    assert ((centred.ci_low <= centred.estimate) & (centred.estimate <= centred.ci_high)).all()
    assert "150 patients" in out.method.iloc[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_estimates_match_sklearn_and_roc_module(seed):
    y, p, _, codes = _predictions(seed=seed, signal=0.7)
    out = classification_metrics(y, p, CLASSES, n_boot=0)
    pred = p.argmax(1)
    assert _get(out, "auc").estimate == pytest.approx(roc_auc_score(codes, p, multi_class="ovr"), rel=1e-12)
    for j, c in enumerate(CLASSES):
        assert _get(out, "auc", c).estimate == pytest.approx(roc_auc(codes == j, p[:, j]), rel=1e-12)
        assert _get(out, "sensitivity", c).estimate == pytest.approx(
            recall_score(codes == j, pred == j), rel=1e-12)
        assert _get(out, "specificity", c).estimate == pytest.approx(
            recall_score(codes != j, pred != j), rel=1e-12)
    assert _get(out, "accuracy").estimate == pytest.approx(accuracy_score(codes, pred), rel=1e-12)
    assert _get(out, "balanced_accuracy").estimate == pytest.approx(balanced_accuracy_score(codes, pred))
    assert _get(out, "f1").estimate == pytest.approx(f1_score(codes, pred, average="macro"), rel=1e-12)
    assert out.ci_low.isna().all() and (out.n_boot_valid == 0).all()


def test_perfect_classifier():
    y, p, _, codes = _predictions(n_patients=60)
    perfect = np.eye(3)[codes] * 0.8 + 0.1
    out = classification_metrics(y, perfect, CLASSES, n_boot=100, calibration=False)
    assert (out.estimate == 1.0).all()
    assert (out.ci_low == 1.0).all()


def test_duplicated_images_do_not_shrink_the_patient_level_ci():
    y, p, pid, _ = _predictions(n_patients=120)
    one = classification_metrics(y, p, CLASSES, pid, n_boot=300, seed=4)
    two = classification_metrics(np.repeat(y, 2), np.repeat(p, 2, axis=0), CLASSES, np.repeat(pid, 2),
                                 n_boot=300, seed=4)
    np.testing.assert_allclose(two.estimate, one.estimate, rtol=1e-12)
    np.testing.assert_allclose(two.ci_high - two.ci_low, one.ci_high - one.ci_low, rtol=1e-12)
    rows = classification_metrics(np.repeat(y, 2), np.repeat(p, 2, axis=0), CLASSES, n_boot=300, seed=4)
    assert ((rows.ci_high - rows.ci_low) < (one.ci_high - one.ci_low)).mean() > 0.8


def test_same_seed_same_intervals():
    y, p, pid, _ = _predictions(per_patient=3)
    a = classification_metrics(y, p, CLASSES, pid, n_boot=100, seed=11)
    b = classification_metrics(y, p, CLASSES, pid, n_boot=100, seed=11)
    pd.testing.assert_frame_equal(a, b)


def test_stratified_bootstrap_never_loses_a_class():
    y, p, pid, _ = _predictions(n_patients=20, per_patient=2, seed=3)
    out = classification_metrics(y, p, CLASSES, pid, n_boot=300, stratify=True)
    # every class in every resample; calibration fits may still separate on 20 patients
    discrimination = ~out.metric.isin(["calibration_slope", "calibration_intercept"])
    assert (out.n_boot_valid[discrimination] == 300).all()
    assert "stratified by class" in out.method.iloc[0]


def test_rare_class_resamples_are_dropped_and_counted():
    y, p, pid, codes = _predictions(n_patients=40, seed=5)
    y = y.copy()
    y[:] = np.where(codes == 2, "lymphoma", y)
    y[0] = "benign"                          # a single benign patient
    out = classification_metrics(y, p, CLASSES, pid, n_boot=300)
    n_valid = _get(out, "auc").n_boot_valid
    assert 0 < n_valid < 300                 # resamples without the benign patient dropped
    assert _get(out, "accuracy").n_boot_valid == 300


def test_missing_class_gives_nan_and_warning():
    y = ["metastatic", "lymphoma", "lymphoma", "metastatic"]
    p = [[.6, .3, .1], [.2, .7, .1], [.5, .3, .2], [.3, .3, .4]]
    with pytest.warns(UndefinedMetricWarning, match="benign"):
        out = classification_metrics(y, p, CLASSES, n_boot=20)
    assert math.isnan(_get(out, "auc").estimate)
    assert math.isnan(_get(out, "sensitivity", "benign").estimate)
    assert _get(out, "specificity", "benign").estimate == 0.75
    assert _get(out, "auc", "metastatic").estimate == 0.75   # 3 of 4 case-control pairs


def test_bad_labels_and_shapes_raise_one_clear_error():
    with pytest.raises(CohortError, match=r"unknown class 'benin'.*did you mean 'benign'"):
        classification_metrics(["benin", "lymphoma"], [[.2, .3, .5], [.1, .8, .1]], CLASSES)
    with pytest.raises(CohortError, match=r"shape \(n, 3\)"):
        classification_metrics(["benign"], [[.2, .8]], CLASSES)
    with pytest.raises(CohortError, match="patient_ids has 1 values"):
        classification_metrics(["benign", "lymphoma"], [[.2, .3, .5], [.1, .8, .1]], CLASSES, [1])
    with pytest.raises(CohortError, match="non-finite"):
        classification_metrics(["benign", "lymphoma"], [[.2, np.nan, .5], [.1, .8, .1]], CLASSES)


def test_inputs_not_modified():
    y, p, pid, _ = _predictions()
    p0, y0 = p.copy(), y.copy()
    classification_metrics(y, p, CLASSES, pid, n_boot=10)
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(y, y0)
