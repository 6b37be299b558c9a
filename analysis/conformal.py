"""Class-conditional (Mondrian) conformal prediction sets from out-of-fold predictions.

For each patient a set of classes, e.g. ``{metastatic, lymphoma}``, that contains the true
class with probability at least ``1 - alpha`` *for every class separately* (Mondrian /
label-conditional conformal prediction), so the guarantee also holds for a rare class.

Calibration respects the patient-grouped folds: a fold's test patients are calibrated on the
patients of the *other* folds (their out-of-fold predictions), or, when given, on the fold
model's own inner-validation predictions.  No patient calibrates its own set.

Why not a library: crepes (``ConformalClassifier`` with Mondrian ``bins``) and MAPIE compute
the same p-values, but take one calibration set per fitted object, define Mondrian categories
per test object rather than per candidate label, and know nothing of patients or folds; the
grouping, per-patient averaging and per-fold calibration are most of the work here, the
conformal step itself is the one line of :func:`mondrian_p_values`.  The tests check those
p-values against crepes 0.9 (``ConformalClassifier.predict_p(..., smoothing=False)``).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .errors import CohortError, UndefinedMetricWarning
from .roc import _class_codes_and_proba

__all__ = ["CONFORMAL_SET_COLUMNS", "CONFORMAL_SUMMARY_COLUMNS", "mondrian_p_values", "conformal_sets",
           "conformal_summary"]

#: Leading columns of :func:`conformal_sets` (followed by one ``pvalue_<class>`` per class).
CONFORMAL_SET_COLUMNS = ["patient_id", "fold", "y_true", "prediction_set", "set_size", "covered", "alpha",
                         "calibration", "n_calibration"]
#: Columns of :func:`conformal_summary`.
CONFORMAL_SUMMARY_COLUMNS = ["class", "alpha", "n", "coverage", "ci_low", "ci_high", "ci_level", "mean_set_size",
                             "share_empty", "share_singleton", "n_not_computed", "method"]


def mondrian_p_values(cal_scores, cal_codes, test_scores, n_classes: int | None = None) -> np.ndarray:
    """Class-conditional conformal p-values.

    Parameters
    ----------
    cal_scores : array-like, shape (m,)
        Nonconformity score of each calibration patient at its true class.
    cal_codes : array-like of int, shape (m,)
        True class index of each calibration patient.
    test_scores : array-like, shape (n, k)
        Nonconformity score of each test patient for every candidate class.
    n_classes : int, optional
        ``k`` (default: columns of ``test_scores``).

    Returns
    -------
    numpy.ndarray, shape (n, k)
        ``p_j(x) = (#{i : y_i = j, s_i >= s_j(x)} + 1) / (n_j + 1)``, the non-smoothed
        Mondrian p-value with label categories; NaN for a class without calibration patients.

    Notes
    -----
    Vovk et al. (2005), ch. 4.5 (Mondrian conformal predictors); the prediction set is
    ``{j : p_j(x) > alpha}``, which for exchangeable patients of class ``j`` covers class
    ``j`` with probability ``>= 1 - alpha`` (and ``<= 1 - alpha + 1/(n_j + 1)`` without
    ties).  Matches crepes 0.9 ``ConformalClassifier`` fitted on the class-``j`` scores
    (``predict_p(..., smoothing=False)``).

    References
    ----------
    Vovk V, Gammerman A, Shafer G. Algorithmic Learning in a Random World. Springer; 2005.
    doi:10.1007/b106715
    Angelopoulos AN, Bates S. A gentle introduction to conformal prediction and
    distribution-free uncertainty quantification. arXiv:2107.07511, 2021.
    doi:10.48550/arXiv.2107.07511
    """
    cal_scores = np.asarray(cal_scores, dtype=float)
    cal_codes = np.asarray(cal_codes, dtype=np.intp)
    test = np.atleast_2d(np.asarray(test_scores, dtype=float))
    k = test.shape[1] if n_classes is None else int(n_classes)
    out = np.full(test.shape, np.nan)
    for j in range(k):
        ref = np.sort(cal_scores[cal_codes == j])
        if ref.size == 0:
            continue
        at_least = ref.size - np.searchsorted(ref, test[:, j], side="left")      # s_i >= s_j(x)
        out[:, j] = (at_least + 1.0) / (ref.size + 1.0)
    return out


def _per_patient(pid, fold, codes, p):
    """Mean probabilities per (fold, patient); the patient's true class must be one."""
    key = pd.DataFrame({"fold": fold, "patient_id": pid})
    groups = key.groupby(["fold", "patient_id"], sort=False, dropna=False).ngroup().to_numpy()
    n = int(groups.max()) + 1
    sums = np.zeros((n, p.shape[1]))
    np.add.at(sums, groups, p)
    counts = np.bincount(groups, minlength=n)
    first = np.full(n, -1)
    first[groups[::-1]] = np.arange(groups.size)[::-1]
    code = codes[first]
    if np.any(code[groups] != codes):
        i = int(np.flatnonzero(code[groups] != codes)[0])
        raise CohortError(f"patient {pid[i]!r} has different true classes within fold {fold[i]!r}",
                          column="y_true")
    return pid[first], fold[first], code, sums / counts[:, None]


def conformal_sets(y_true, proba, classes, patient_ids, folds, *, alpha: float = 0.1,
                   calibration=None) -> pd.DataFrame:
    """Class-conditional conformal prediction set of every patient, calibrated across folds.

    Parameters
    ----------
    y_true : array-like of str, shape (n,)
        True class of each prediction (out-of-fold, one model).
    proba : array-like of float, shape (n, k)
        Predicted class probabilities.
    classes : sequence of str
    patient_ids : array-like, shape (n,)
        Several predictions of a patient within a fold are averaged first (one set per patient).
    folds : array-like, shape (n,)
        Test fold of each prediction (patient-grouped: a patient in one fold).
    alpha : float in (0, 1), default 0.1
        Miscoverage: each class is covered with probability ``>= 1 - alpha``.
    calibration : tuple (y_true, proba, patient_ids, folds), optional
        Held-out predictions of each fold's model on patients it was not trained on (e.g. its
        inner validation patients).  When given, fold ``f`` is calibrated on the rows with
        ``folds == f`` (the same model as its test predictions: split conformal); otherwise on
        the test predictions of the other folds (cross-conformal style).

    Returns
    -------
    pandas.DataFrame
        One row per patient and fold: :data:`CONFORMAL_SET_COLUMNS` then ``pvalue_<class>``;
        ``prediction_set`` like ``'{metastatic, lymphoma}'`` (class order; ``'{}'`` = empty),
        ``covered`` (true class in the set), ``calibration`` (``'other_folds'`` or
        ``'validation'``), ``n_calibration`` patients.  A fold without calibration patients of
        every class gets NaN p-values, ``set_size`` NaN and ``covered`` NA.

    Raises
    ------
    CohortError
        ``alpha`` outside (0, 1), unknown labels, a patient with two true classes in a fold.

    Notes
    -----
    Nonconformity score ``s_j(x) = 1 - p_j(x)`` (the "LAC" score of Sadinle et al. 2019,
    doi:10.1080/01621459.2017.1395341); set ``{j : p-value_j > alpha}``
    (:func:`mondrian_p_values`).  With ``calibration`` the guarantee is that of split conformal
    for each fold model (validation patients exchangeable with its test patients; early
    stopping looked at them, a mild optimism).  Calibrating on the other folds assumes the
    fold models' scores are exchangeable across folds; this is the cross-conformal /
    CV+ construction, whose worst-case coverage is ``1 - 2 alpha`` (Barber et al. 2021,
    doi:10.1214/20-AOS1965) though close to ``1 - alpha`` in practice and exact when the fold
    models coincide (``tests/analysis/test_conformal.py``).
    """
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise CohortError(f"alpha must lie in (0, 1), got {alpha!r}")
    classes = [str(c) for c in classes]
    k = len(classes)
    codes, p = _class_codes_and_proba(y_true, proba, classes)
    pid = np.asarray(pd.Series(np.asarray(patient_ids, dtype=object)).astype(str))
    fold = np.asarray(folds, dtype=object)
    if pid.size != codes.size or fold.size != codes.size:
        raise CohortError("patient_ids and folds need one value per prediction")
    upid, ufold, ucode, up = _per_patient(pid, fold, codes, p)
    cal = None
    if calibration is not None:
        cy, cp, cpid, cfold = calibration
        ccodes, cproba = _class_codes_and_proba(cy, cp, classes)
        cpid = np.asarray(pd.Series(np.asarray(cpid, dtype=object)).astype(str))
        cal = _per_patient(cpid, np.asarray(cfold, dtype=object), ccodes, cproba)
    scores = 1.0 - up
    rows = []
    for f in pd.unique(ufold):
        test = ufold == f
        if cal is None:
            src, cs, cc = "other_folds", scores[~test, :], ucode[~test]
        else:
            m = cal[1] == f
            src, cs, cc = "validation", 1.0 - cal[3][m], cal[2][m]
        cal_scores = cs[np.arange(cc.size), cc] if cc.size else np.zeros(0)
        pv = mondrian_p_values(cal_scores, cc, scores[test], k)
        rows.append((np.flatnonzero(test), pv, src, int(cc.size)))
    order = np.concatenate([r[0] for r in rows])
    pv = np.vstack([r[1] for r in rows])
    src = np.concatenate([[r[2]] * r[0].size for r in rows])
    ncal = np.concatenate([[r[3]] * r[0].size for r in rows])
    inside = pv > alpha
    computed = np.isfinite(pv).all(axis=1)
    names = np.array(classes)
    sets = ["{" + ", ".join(names[s]) + "}" if ok else "" for s, ok in zip(inside, computed)]
    covered = pd.array([bool(inside[i, ucode[order][i]]) if computed[i] else pd.NA for i in range(order.size)],
                       dtype="boolean")
    if not computed.all():
        warnings.warn(f"{int((~computed).sum())} patient(s) without a conformal set: their fold has no "
                      f"calibration patient of some class", UndefinedMetricWarning, stacklevel=2)
    out = pd.DataFrame({"patient_id": upid[order], "fold": ufold[order], "y_true": names[ucode[order]],
                        "prediction_set": sets,
                        "set_size": np.where(computed, inside.sum(axis=1), np.nan),
                        "covered": covered, "alpha": float(alpha), "calibration": src, "n_calibration": ncal})
    for j, c in enumerate(classes):
        out[f"pvalue_{c}"] = pv[:, j]
    return out


def conformal_summary(sets: pd.DataFrame, classes, ci: float = 0.95) -> pd.DataFrame:
    """Empirical coverage and set size of :func:`conformal_sets`, per true class and overall.

    Parameters
    ----------
    sets : pandas.DataFrame
        Output of :func:`conformal_sets`.
    classes : sequence of str
    ci : float, default 0.95
        Level of the Clopper-Pearson interval of the coverage.

    Returns
    -------
    pandas.DataFrame
        :data:`CONFORMAL_SUMMARY_COLUMNS`; one row per class (patients of that true class),
        then ``class == ''`` (all patients).  ``coverage`` = share of patients whose set holds
        their true class (target ``>= 1 - alpha``), exact binomial CI
        (statsmodels ``proportion_confint(method='beta')``); ``mean_set_size``; shares of
        empty and single-class sets; ``n_not_computed`` = patients without a set.
    """
    from statsmodels.stats.proportion import proportion_confint

    alpha = float(sets["alpha"].iloc[0]) if len(sets) else math.nan
    method = f"class-conditional split conformal, calibration: {', '.join(pd.unique(sets['calibration']))}" \
        if len(sets) else ""
    rows = []
    for c in [*[str(c) for c in classes], ""]:
        g = sets if c == "" else sets[sets["y_true"] == c]
        ok = g["covered"].notna().to_numpy()
        n = int(ok.sum())
        hits = int(g["covered"][ok].astype(bool).sum())
        size = g["set_size"].to_numpy(dtype=float)[ok]
        lo, hi = proportion_confint(hits, n, alpha=1 - ci, method="beta") if n else (math.nan, math.nan)
        rows.append({"class": c, "alpha": alpha, "n": n, "coverage": hits / n if n else math.nan,
                     "ci_low": float(lo), "ci_high": float(hi), "ci_level": ci,
                     "mean_set_size": float(size.mean()) if n else math.nan,
                     "share_empty": float(np.mean(size == 0)) if n else math.nan,
                     "share_singleton": float(np.mean(size == 1)) if n else math.nan,
                     "n_not_computed": int((~ok).sum()), "method": method})
    return pd.DataFrame(rows, columns=CONFORMAL_SUMMARY_COLUMNS)
