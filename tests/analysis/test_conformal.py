"""analysis.conformal: per-class coverage on known distributions, crepes p-values, patient grouping."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.conformal import (CONFORMAL_SET_COLUMNS, conformal_sets, conformal_summary, mondrian_p_values)
from analysis.errors import CohortError

CLASSES = ["metastatic", "lymphoma", "benign"]
PRIOR = [0.25, 0.1, 0.65]                                   # lymphoma is the rare class
SIGNAL = np.array([1.5, 0.3, 1.5])                          # ... and the hardest to recognise


def _draw(rng, n=300, folds=5, images=1):
    y = rng.choice(3, size=n, p=PRIOR)
    logits = rng.normal(size=(n, 3)) + SIGNAL[y, None] * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    fold = rng.permutation(np.arange(n) % folds)
    pid = np.array([f"P{i}" for i in range(n)])
    if images > 1:                                           # same patient, same fold, noisy copies
        rep = np.repeat(np.arange(n), images)
        q = p[rep] * rng.uniform(0.9, 1.1, size=(rep.size, 3))
        return np.array(CLASSES)[y[rep]], q / q.sum(1, keepdims=True), pid[rep], fold[rep]
    return np.array(CLASSES)[y], p, pid, fold


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_each_class_is_covered_at_least_one_minus_alpha_over_many_draws(alpha):
    rng = np.random.default_rng(7)
    cover = {c: [] for c in CLASSES}
    sizes = []
    for _ in range(150):
        y, p, pid, fold = _draw(rng)
        sets = conformal_sets(y, p, CLASSES, pid, fold, alpha=alpha)
        for c in CLASSES:
            cover[c].extend(sets.loc[sets.y_true == c, "covered"].astype(bool))
        sizes.append(sets.set_size.mean())
    for c in CLASSES:
        rate, n = np.mean(cover[c]), len(cover[c])
        tol = 3 * np.sqrt(alpha * (1 - alpha) / n)            # Monte Carlo error of the average
        assert rate >= 1 - alpha - tol, (c, rate)
        # and not trivially: at most 1 - alpha + 1/(n_class_calibration + 1) (no ties)
        n_cal = min(PRIOR) * 300 * 0.8 if c == "lymphoma" else 0.2 * 300 * 0.8
        assert rate <= 1 - alpha + 1 / (n_cal + 1) + tol, (c, rate)
    assert 1 < np.mean(sizes) < 3                            # informative sets, not all classes


def test_marginal_coverage_would_miss_the_rare_class_without_mondrian_categories():
    """The reason for class-conditional sets: one pooled quantile under-covers the rare class."""
    rng = np.random.default_rng(3)
    rare_hits = []
    for _ in range(60):
        y, p, pid, fold = _draw(rng)
        codes = pd.Series(y).map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
        test = fold == 0
        s = 1 - p[~test, :][np.arange((~test).sum()), codes[~test]]
        pooled = mondrian_p_values(s, np.zeros(s.size, int), 1 - p[test][:, [codes[test][i] for i in
                                                                              range(test.sum())]].diagonal()[:, None])
        rare_hits.extend(pooled[codes[test] == 1, 0] > 0.1)
    assert np.mean(rare_hits) < 0.85                          # well below 0.9


def test_validation_calibration_uses_only_the_same_fold():
    rng = np.random.default_rng(11)
    y, p, pid, fold = _draw(rng, n=200)
    vy, vp, vpid, vfold = _draw(rng, n=200)
    sets = conformal_sets(y, p, CLASSES, pid, fold, alpha=0.1, calibration=(vy, vp, vpid, vfold))
    assert (sets.calibration == "validation").all()
    assert (sets.groupby("fold").n_calibration.first() == pd.Series(vfold).value_counts().sort_index()).all()
    # changing another fold's validation rows leaves fold 0's sets alone
    vp2 = vp.copy()
    vp2[vfold == 1] = vp2[vfold == 1][::-1]
    sets2 = conformal_sets(y, p, CLASSES, pid, fold, alpha=0.1, calibration=(vy, vp2, vpid, vfold))
    f0 = sets.fold == 0
    pd.testing.assert_frame_equal(sets[f0], sets2[f0])
    assert not sets[sets.fold == 1].equals(sets2[sets2.fold == 1])


def test_p_values_match_crepes_mondrian_conformal_classifier():
    crepes = pytest.importorskip("crepes")
    rng = np.random.default_rng(5)
    cal_codes = rng.integers(0, 3, 120)
    cal_scores = np.round(rng.uniform(size=120), 2)           # ties included
    test = np.round(rng.uniform(size=(40, 3)), 2)
    ours = mondrian_p_values(cal_scores, cal_codes, test)
    for j in range(3):
        cc = crepes.ConformalClassifier().fit(cal_scores[cal_codes == j])
        theirs = cc.predict_p(test[:, [j]], smoothing=False)[:, 0]
        np.testing.assert_allclose(ours[:, j], theirs, rtol=0, atol=1e-12)


def test_one_set_per_patient_and_tidy_columns():
    rng = np.random.default_rng(2)
    y, p, pid, fold = _draw(rng, n=100, images=3)
    sets = conformal_sets(y, p, CLASSES, pid, fold, alpha=0.1)
    assert list(sets.columns) == CONFORMAL_SET_COLUMNS + [f"pvalue_{c}" for c in CLASSES]
    assert len(sets) == 100 and sets.patient_id.is_unique
    row = sets.iloc[0]
    members = [c for c in CLASSES if row[f"pvalue_{c}"] > 0.1]
    assert row.prediction_set == "{" + ", ".join(members) + "}" and row.set_size == len(members)
    assert row.covered == (row.y_true in members)
    summary = conformal_summary(sets, CLASSES)
    assert list(summary["class"]) == CLASSES + [""]
    assert summary.loc[3, "n"] == 100
    assert (summary.ci_low <= summary.coverage).all() and (summary.coverage <= summary.ci_high).all()


def test_bad_alpha_and_conflicting_labels_raise():
    rng = np.random.default_rng(0)
    y, p, pid, fold = _draw(rng, n=30)
    with pytest.raises(CohortError, match="alpha"):
        conformal_sets(y, p, CLASSES, pid, fold, alpha=1.5)
    y2 = y.copy()
    pid2 = pid.copy()
    pid2[1] = pid2[0]
    fold2 = fold.copy()
    fold2[1] = fold2[0]
    y2[1] = "benign" if y2[0] != "benign" else "lymphoma"
    with pytest.raises(CohortError, match="different true classes"):
        conformal_sets(y2, p, CLASSES, pid2, fold2)
