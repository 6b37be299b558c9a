"""Classification metrics with patient-level bootstrap confidence intervals.

:func:`classification_metrics` is the one metrics function of the toolkit: ``fusion``
(cross-validated and external predictions) and any user script go through it, so every
table reports the same metrics, defined the same way, with the same kind of interval.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .bootstrap import _intervals, bootstrap_weights, cluster_bootstrap
from .calibration import calibration_matrix, recalibration_start
from .errors import CohortError, UndefinedMetricWarning, check_ci_level
from .roc import _class_codes_and_proba

__all__ = ["METRIC_COLUMNS", "classification_metrics"]

METRIC_COLUMNS = ["metric", "class", "estimate", "ci_low", "ci_high", "ci_level", "n", "n_boot_valid", "method"]


def _layout(classes):
    """(metric, class) of each entry of the vector returned by :func:`_metric_vector`."""
    rows = [("auc", "")] + [("auc", c) for c in classes]
    rows += [("accuracy", ""), ("balanced_accuracy", ""), ("f1", "")]
    rows += [("sensitivity", c) for c in classes] + [("specificity", c) for c in classes]
    return rows


def _calibration_layout(classes):
    """(metric, class) of each column of :func:`analysis.calibration.calibration_matrix`."""
    rows = [("brier", "")] + [("brier", c) for c in classes]
    rows += [("calibration_intercept", c) for c in classes] + [("calibration_slope", c) for c in classes]
    return rows + [("ece", "")] + [("ece", c) for c in classes]


def _metric_vector(codes: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """All metrics of :func:`_layout` for integer labels ``codes`` and scores ``proba`` (n, k).

    Undefined entries are NaN (no warning: this runs inside the bootstrap loop).
    """
    n, k = proba.shape
    support = np.bincount(codes, minlength=k).astype(float)        # true rows per class
    negatives = n - support
    # one-vs-rest AUC of every class from one midrank pass (ties count 1/2)
    ranks = stats.rankdata(proba, axis=0)
    rank_sum = np.array([ranks[codes == j, j].sum() for j in range(k)])
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - support * (support + 1) / 2.0) / (support * negatives)
        auc[(support == 0) | (negatives == 0)] = np.nan
        pred = np.argmax(proba, axis=1)                            # ties -> first class
        cm = np.bincount(codes * k + pred, minlength=k * k).reshape(k, k)
        tp = np.diag(cm).astype(float)
        predicted = cm.sum(axis=0).astype(float)
        sens = tp / support                                          # NaN when class absent
        fp = predicted - tp
        spec = (negatives - fp) / negatives                         # NaN when all rows are that class
        f1 = 2 * tp / (support + predicted)
    all_present = bool(np.all(support > 0))
    macro_auc = auc.mean() if np.all(np.isfinite(auc)) else math.nan
    accuracy = tp.sum() / n
    balanced = sens.mean() if all_present else math.nan
    macro_f1 = f1.mean() if all_present else math.nan
    return np.concatenate([[macro_auc], auc, [accuracy, balanced, macro_f1], sens, spec])


def classification_metrics(y_true, proba, classes, patient_ids=None, n_boot: int = 2000, ci: float = 0.95,
                           seed: int = 0, stratify: bool = False, *, file=None, y_column: str = "y_true",
                           proba_columns=None, calibration: bool = True) -> pd.DataFrame:
    """Discrimination and classification metrics with (patient-level) bootstrap CIs.

    Parameters
    ----------
    y_true : array-like of str, shape (n,)
        True class of each prediction; every value one of ``classes``.
    proba : array-like of float, shape (n, k)
        Predicted probabilities (any scores), column ``j`` for ``classes[j]``.
    classes : sequence of str, length k >= 2
        Class names in column order (this is also the row order of the output).
    patient_ids : array-like, shape (n,), optional
        Patient of each prediction.  Several predictions (images) of one patient are then
        resampled together; ``None`` treats every prediction as its own patient.
    n_boot : int, default 2000
        Bootstrap resamples (0: point estimates only, NaN CIs).
    ci : float, default 0.95
        Confidence level.
    seed : int, default 0
        Bootstrap seed; the same seed gives the same intervals.
    stratify : bool, default False
        Resample patients within each true class (class sizes fixed), as pROC's
        ``boot.stratified = TRUE``.  Requires one class per patient.
    file, y_column, proba_columns : optional
        Only used to word error messages (e.g. by :func:`fusion.evaluate.evaluate_predictions`):
        the file name (rows are then reported as CSV rows, header = row 1) and column names.
    calibration : bool, default True
        Also the calibration rows (Brier, calibration intercept and slope, ECE), with CIs from
        the same patient resamples.  Needs probabilities in [0, 1]; with other scores these
        rows are NaN and ``method`` says why.

    Returns
    -------
    pandas.DataFrame
        One row per metric, columns ``metric, class, estimate, ci_low, ci_high, ci_level, n,
        n_boot_valid, method``, in this order: ``auc`` macro (``class == ''``) and per class,
        ``accuracy``, ``balanced_accuracy``, ``f1`` (macro), ``sensitivity`` per class,
        ``specificity`` per class; then (``calibration=True``) ``brier`` (multiclass, then per
        class one vs rest), ``calibration_intercept`` and ``calibration_slope`` per class,
        ``ece`` (top-label, then per class one vs rest).  ``n`` = predictions used; ``n_boot_valid`` = resamples
        on which the metric was defined; ``method`` describes the interval.

    Raises
    ------
    CohortError
        Unknown class label (with did-you-mean), wrong ``proba`` shape, missing score,
        ``patient_ids`` of the wrong length or missing.

    Warns
    -----
    UndefinedMetricWarning
        A metric is undefined on the full data (e.g. a class has no true rows); it is NaN.

    Notes
    -----
    ``y_pred = argmax_j proba[:, j]`` (ties: first class).  Per class ``j`` (one vs rest):
    ``sensitivity = TP / (TP + FN)``, ``specificity = TN / (TN + FP)``,
    ``F1 = 2 TP / (2 TP + FP + FN)``; ``auc`` = Mann–Whitney AUC of ``proba[:, j]`` for
    ``y == j`` (ties 1/2, :func:`analysis.roc.roc_auc`).  Macro AUC, balanced accuracy
    (mean sensitivity) and macro F1 are unweighted means over all ``k`` classes and are NaN
    when a class has no true rows; ``accuracy`` = fraction correct.  Point estimates match
    scikit-learn ``roc_auc_score(multi_class='ovr')``, ``accuracy_score``,
    ``balanced_accuracy_score``, ``recall_score`` and ``f1_score(average='macro')``
    (tests/analysis/test_metrics.py).  CIs: percentile bootstrap over patients
    (:func:`analysis.bootstrap.cluster_bootstrap`); resamples where a metric is undefined are
    dropped and counted in ``n_boot_valid``.

    Calibration (:mod:`analysis.calibration`): ``brier`` (class '') = ``mean_i sum_j (p_ij -
    y_ij)^2`` (Brier 1950; 0-2), per class the one-vs-rest ``mean (p_j - y_j)^2`` (matches
    scikit-learn ``brier_score_loss``); ``calibration_intercept`` (calibration in the large,
    slope fixed at 1, 0 = ideal) and ``calibration_slope`` (1 = ideal) of the one-vs-rest
    logistic recalibration, equal to :func:`analysis.calibration.calibration_slope_intercept`
    (checked against R ``glm``) and NaN when the fit separates (slope beyond ±50); ``ece`` =
    expected calibration error over 10 equal-width bins, class '' the top-label ECE (Guo et
    al. 2017: confidence ``max_j p_j`` vs "arg-max is right"), per class one vs rest
    (:func:`analysis.calibration.expected_calibration_error`).  Their CIs come from the same
    patient resamples as the other rows (:func:`analysis.bootstrap.bootstrap_weights`, the
    statistics refitted on each resample as weighted fits).  ECE is biased upward in small
    samples, so its bootstrap distribution can sit above the estimate.

    References
    ----------
    Field CA, Welsh AH. Bootstrapping clustered data. J R Stat Soc B. 2007;69(3):369-390.
    doi:10.1111/j.1467-9868.2007.00593.x
    Hand DJ, Till RJ. A simple generalisation of the area under the ROC curve for multiple
    class classification problems. Mach Learn. 2001;45:171-186. doi:10.1023/A:1010920819831
    (for the one-vs-rest alternative, which is *not* used here).

    Examples
    --------
    >>> out = classification_metrics(['a', 'b', 'b', 'a'], [[.9, .1], [.3, .7], [.6, .4], [.2, .8]],
    ...                              ['a', 'b'], n_boot=0)
    >>> out.loc[out.metric == 'accuracy', 'estimate'].item()
    0.5
    """
    check_ci_level(ci)
    classes = [str(c) for c in classes]
    codes, p = _class_codes_and_proba(y_true, proba, classes, file=file, y_column=y_column,
                                      proba_columns=proba_columns)
    n = codes.size
    if n == 0:
        raise CohortError("no predictions to evaluate", file=file)
    if patient_ids is not None:
        pid = pd.Series(np.asarray(patient_ids, dtype=object))
        if len(pid) != n:
            raise CohortError(f"patient_ids has {len(pid)} values but there are {n} predictions",
                              file=file, column="patient_id")
        if pid.isna().any():
            i = int(np.flatnonzero(pid.isna().to_numpy())[0])
            raise CohortError("missing patient id", file=file, row=i + 2 if file is not None else None,
                              column="patient_id")
        cluster = pid.to_numpy()
        n_patients = int(pid.nunique())
    else:
        cluster, n_patients = None, n
    layout = _layout(classes)
    res = cluster_bootstrap(_metric_vector, (codes, p), cluster=cluster, n_boot=n_boot, ci=ci, seed=seed,
                            strata=codes if stratify else None,
                            names=[f"{m}:{c}" for m, c in layout])
    undefined = [f"{m} ({c})" if c else m for (m, c), e in zip(layout, res.estimate) if not np.isfinite(e)]
    if undefined:
        warnings.warn(f"undefined on these {n} predictions (a class has no true rows?), NaN reported: "
                      f"{', '.join(undefined)}", UndefinedMetricWarning, stacklevel=2)
    unit = "patients" if patient_ids is not None else "predictions"
    if n_boot > 0:
        method = (f"percentile bootstrap over {n_patients} {unit}{', stratified by class' if stratify else ''} "
                  f"({n_boot} resamples, seed {seed})")
    else:
        method = "point estimate only (no bootstrap)"
    out = pd.DataFrame({
        "metric": [m for m, _ in layout],
        "class": [c for _, c in layout],
        "estimate": np.asarray(res.estimate, float),
        "ci_low": np.asarray(res.ci_low, float),
        "ci_high": np.asarray(res.ci_high, float),
        "ci_level": float(ci),
        "n": n,
        "n_boot_valid": np.asarray(res.n_boot_valid, int),
        "method": method,
    })
    if calibration:
        out = pd.concat([out, _calibration_rows(codes, p, classes, cluster, n_boot, ci, seed, stratify, method)],
                        ignore_index=True)
    return out[METRIC_COLUMNS]


def _calibration_rows(codes, p, classes, cluster, n_boot, ci, seed, stratify, method) -> pd.DataFrame:
    """Calibration rows of :func:`classification_metrics`, CIs over the same patient resamples."""
    layout = _calibration_layout(classes)
    n = codes.size
    k = len(layout)
    low = high = np.full(k, np.nan)
    n_valid = np.zeros(k, int)
    if np.any((p < 0) | (p > 1)):
        est = np.full(k, np.nan)
        method = "not computed: scores outside [0, 1] are not probabilities"
    else:
        est = calibration_matrix(codes, p, np.ones((1, n)))[0]
        if n_boot > 0:
            start = recalibration_start(codes, p)
            reps = np.vstack([calibration_matrix(codes, p, w, start=start) for w in
                              bootstrap_weights(np.arange(n) if cluster is None else cluster, n_boot, seed,
                                                strata=codes if stratify else None)])
            low, high, n_valid = _intervals(est, reps, ci)
        undefined = [f"{m} ({c})" if c else m for (m, c), e in zip(layout, est) if not np.isfinite(e)]
        if undefined:
            warnings.warn(f"calibration undefined on these {n} predictions (one class only, or separation), "
                          f"NaN reported: {', '.join(undefined)}", UndefinedMetricWarning, stacklevel=3)
    return pd.DataFrame({"metric": [m for m, _ in layout], "class": [c for _, c in layout], "estimate": est,
                         "ci_low": low, "ci_high": high, "ci_level": float(ci), "n": n,
                         "n_boot_valid": np.asarray(n_valid, int), "method": method})
