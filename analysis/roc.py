"""Area under the ROC curve: binary and one-vs-rest AUC, DeLong variance, CI and paired test.

All AUCs here are the Mann–Whitney probability that a randomly chosen case (``y == 1``)
scores higher than a randomly chosen control (``y == 0``), ties counted 1/2.  The direction
is never flipped: a classifier worse than chance has an AUC below 0.5.

An AUC that is undefined (no case or no control) is reported as NaN with an
:class:`~analysis.errors.UndefinedMetricWarning`; it never raises.  Bad input (different
lengths, labels that are not 0/1, missing scores) raises :class:`~analysis.errors.CohortError`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._results import TestResult
from .errors import CohortError, UndefinedMetricWarning, check_ci_level, did_you_mean

__all__ = ["AUCResult", "roc_auc", "roc_auc_ovr", "delong_ci", "delong_test"]


@dataclass(frozen=True)
class AUCResult:
    """An AUC with its DeLong variance and confidence interval.

    Attributes
    ----------
    estimate : float
        Mann–Whitney AUC (ties 1/2).
    variance : float
        DeLong variance of the AUC (NaN when fewer than 2 cases or controls).
    ci_low, ci_high : float
        Normal-theory CI ``estimate ± z * sqrt(variance)`` clipped to [0, 1].
    ci_level : float
        Confidence level of the interval.
    n_cases, n_controls : int
        Observations with ``y == 1`` and ``y == 0``.
    method : str
        Human-readable description of the interval.
    """

    estimate: float
    variance: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_cases: int
    n_controls: int
    method: str = "DeLong"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(self)])


# --------------------------------------------------------------------------- validation

def _binary_labels(y, name: str = "y_true") -> np.ndarray:
    """0/1 (or bool) labels -> bool array; anything else is a CohortError."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise CohortError(f"expected a 1-D array of 0/1 labels, got shape {arr.shape}", column=name)
    if arr.dtype == bool:
        return arr.copy()
    try:
        num = arr.astype(float)
    except (TypeError, ValueError):
        bad = next(v for v in arr.tolist() if str(v) not in ("0", "1", "True", "False"))
        raise CohortError(f"labels must be 0/1 or True/False, got {bad!r} "
                          f"(for several classes use roc_auc_ovr)", column=name) from None
    bad = ~np.isin(num, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CohortError(f"labels must be 0/1 or True/False, got {arr[i]!r} at position {i} "
                          f"(for several classes use roc_auc_ovr)", column=name)
    return num == 1.0


def _scores(score, n: int, name: str = "score") -> np.ndarray:
    arr = np.asarray(score, dtype=float)
    if arr.ndim != 1:
        raise CohortError(f"expected a 1-D array of scores, got shape {arr.shape}", column=name)
    if arr.shape[0] != n:
        raise CohortError(f"has {arr.shape[0]} values but the labels have {n}", column=name)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CohortError(f"{int(bad.sum())} missing or non-finite score(s), first at position {i} "
                          f"(drop those observations first)", column=name)
    return arr


# --------------------------------------------------------------------------- core (fast DeLong)

def _midrank_auc(pos: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of each column of ``scores`` (n, k) for boolean labels ``pos``; no checks."""
    m = int(pos.sum())
    n = pos.size - m
    if m == 0 or n == 0:
        return np.full(scores.shape[1], np.nan)
    ranks = stats.rankdata(scores, axis=0)             # midranks: ties count 1/2
    return (ranks[pos].sum(axis=0) - m * (m + 1) / 2.0) / (m * n)


def _delong(pos: np.ndarray, scores: np.ndarray):
    """Fast DeLong (Sun & Xu 2014) for ``k`` correlated scores sharing labels ``pos``.

    Returns ``(auc (k,), covariance (k, k))``.  The covariance is NaN when there are fewer
    than two cases or two controls (the structural-component variances need ``ddof=1``).
    """
    x = scores[pos]                                       # cases, (m, k)
    yc = scores[~pos]                                     # controls, (n, k)
    m, n = x.shape[0], yc.shape[0]
    k = scores.shape[1]
    if m == 0 or n == 0:
        return np.full(k, np.nan), np.full((k, k), np.nan)
    tz = stats.rankdata(np.vstack([x, yc]), axis=0)       # midranks in the pooled sample
    tx = stats.rankdata(x, axis=0)
    ty = stats.rankdata(yc, axis=0)
    auc = (tz[:m].sum(axis=0) - m * (m + 1) / 2.0) / (m * n)
    if m < 2 or n < 2:
        return auc, np.full((k, k), np.nan)
    v10 = (tz[:m] - tx) / n                               # case placements
    v01 = 1.0 - (tz[m:] - ty) / m                         # control placements
    s10 = np.atleast_2d(np.cov(v10, rowvar=False))
    s01 = np.atleast_2d(np.cov(v01, rowvar=False))
    return auc, s10 / m + s01 / n


def _warn_undefined(what: str, m: int, n: int) -> None:
    warnings.warn(f"{what} is undefined with {m} case(s) and {n} control(s); NaN reported",
                  UndefinedMetricWarning, stacklevel=3)


# --------------------------------------------------------------------------- public API

def roc_auc(y_true, score) -> float:
    """Area under the ROC curve of one score for a binary outcome.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
        1 = case (positive class), 0 = control.
    score : array-like of float, shape (n,)
        Higher = more likely a case.  Must be finite.

    Returns
    -------
    float
        ``AUC = (R_cases - m (m + 1) / 2) / (m n)`` where ``R_cases`` is the sum of the
        pooled midranks of the ``m`` cases and ``n`` is the number of controls, i.e. the
        Mann–Whitney estimate of ``P(S_case > S_control) + 0.5 P(S_case = S_control)``.
        NaN (with :class:`~analysis.errors.UndefinedMetricWarning`) when ``m`` or ``n`` is 0.

    Raises
    ------
    CohortError
        Labels not 0/1, lengths differ, or a score is missing.

    See Also
    --------
    delong_ci, roc_auc_ovr

    Notes
    -----
    Matches scikit-learn ``roc_auc_score`` and R pROC 1.18 ``auc(roc(y, s, direction = "<"))``
    (``tests/fixtures/r_reference/roc.R``).  The direction is fixed (never flipped).

    References
    ----------
    Hanley JA, McNeil BJ. The meaning and use of the area under a receiver operating
    characteristic (ROC) curve. Radiology. 1982;143(1):29-36. doi:10.1148/radiology.143.1.7063747

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    pos = _binary_labels(y_true)
    s = _scores(score, pos.size)
    m = int(pos.sum())
    n = pos.size - m
    if m == 0 or n == 0:
        _warn_undefined("AUC", m, n)
        return math.nan
    return float(_midrank_auc(pos, s[:, None])[0])


def roc_auc_ovr(y_true, proba, classes) -> pd.DataFrame:
    """One-vs-rest AUC of each class and their unweighted (macro) mean.

    Parameters
    ----------
    y_true : array-like, shape (n,)
        Class labels; every value must be one of ``classes``.
    proba : array-like of float, shape (n, k)
        Scores (e.g. predicted probabilities), column ``j`` for ``classes[j]``.
    classes : sequence of str, length k >= 2
        Class names in column order.

    Returns
    -------
    pandas.DataFrame
        Columns ``class, estimate, n_positive, n_negative``; first row ``class == ''`` is the
        macro average (mean of the k one-vs-rest AUCs, NaN if any of them is undefined),
        then one row per class in ``classes`` order.

    Notes
    -----
    Class ``j``'s AUC is :func:`roc_auc` of ``y_true == classes[j]`` against ``proba[:, j]``.
    The macro average matches scikit-learn
    ``roc_auc_score(y, proba, multi_class='ovr', average='macro')``.  It is not Hand & Till's
    multiclass AUC (pROC ``multiclass.roc``), which averages pairwise AUCs.

    Examples
    --------
    >>> roc_auc_ovr(['a', 'b', 'c', 'a'], [[.8, .1, .1], [.2, .7, .1], [.3, .3, .4], [.5, .4, .1]],
    ...             ['a', 'b', 'c'])['estimate'].tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    codes, p = _class_codes_and_proba(y_true, proba, classes)
    k = len(classes)
    auc = np.empty(k)
    npos = np.bincount(codes, minlength=k)
    for j in range(k):
        auc[j] = _midrank_auc(codes == j, p[:, [j]])[0]
        if np.isnan(auc[j]):
            _warn_undefined(f"one-vs-rest AUC of class '{classes[j]}'", int(npos[j]), int(codes.size - npos[j]))
    macro = float(auc.mean()) if not np.isnan(auc).any() else math.nan
    return pd.DataFrame({
        "class": [""] + [str(c) for c in classes],
        "estimate": np.concatenate([[macro], auc]),
        "n_positive": np.concatenate([[codes.size], npos]).astype(int),
        "n_negative": np.concatenate([[0], codes.size - npos]).astype(int),
    })


def _class_codes_and_proba(y_true, proba, classes, file=None, y_column="y_true", proba_columns=None):
    """Validate class labels and score matrix; return integer codes and a float (n, k) array."""
    classes = [str(c) for c in classes]
    if len(classes) < 2:
        raise CohortError(f"need at least two classes, got {classes!r}", file=file)
    if len(set(classes)) != len(classes):
        raise CohortError(f"class names must be unique, got {classes!r}", file=file)
    y = pd.Series(np.asarray(y_true, dtype=object)).reset_index(drop=True)
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise CohortError(f"proba must have shape (n, {len(classes)}) (one column per class), "
                          f"got {p.shape}", file=file)
    if p.shape[0] != len(y):
        raise CohortError(f"proba has {p.shape[0]} rows but y_true has {len(y)}", file=file)
    ys = y.astype(str)
    lookup = {c: i for i, c in enumerate(classes)}
    codes = ys.map(lookup)
    bad = codes.isna() | y.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        value = y.iloc[i]
        row = i + 2 if file is not None else None
        where = "" if file is not None else f"position {i}: "
        raise CohortError(f"{where}unknown class {value!r} (expected one of: {', '.join(classes)}"
                          f"{did_you_mean(value, classes) or ''})"
                          f"{'' if bad.sum() == 1 else f'; {int(bad.sum())} such rows'}",
                          file=file, row=row, column=y_column)
    finite = np.isfinite(p)
    if not finite.all():
        i, j = map(int, np.argwhere(~finite)[0])
        col = proba_columns[j] if proba_columns is not None else f"proba[:, {j}] ({classes[j]})"
        row = i + 2 if file is not None else None
        where = "" if file is not None else f"position {i}: "
        raise CohortError(f"{where}missing or non-finite score {p[i, j]!r} (expected a probability); "
                          f"{int((~finite).sum())} such value(s)", file=file, row=row, column=col)
    return codes.to_numpy(dtype=np.intp), p


def delong_ci(y, score, ci: float = 0.95) -> AUCResult:
    """AUC with DeLong's nonparametric variance and a normal-theory confidence interval.

    Parameters
    ----------
    y : array-like of {0, 1} or bool, shape (n,)
        1 = case, 0 = control.
    score : array-like of float, shape (n,)
        Higher = more likely a case.
    ci : float, default 0.95
        Confidence level.

    Returns
    -------
    AUCResult
        ``estimate, variance, ci_low, ci_high, ci_level, n_cases, n_controls, method``.
        Variance and CI are NaN (with :class:`~analysis.errors.UndefinedMetricWarning`) when
        there are fewer than two cases or two controls; all fields NaN with no case or control.

    Notes
    -----
    With case placements ``V10_i`` (fraction of controls below case ``i``, ties 1/2) and
    control placements ``V01_j``, ``Var(AUC) = s²(V10) / m + s²(V01) / n`` (sample
    variances, ``ddof = 1``), computed with Sun & Xu's midrank algorithm in
    ``O(N log N)``.  ``CI = AUC ± z_{(1+ci)/2} sqrt(Var)``, clipped to [0, 1].
    Matches R pROC 1.18 ``ci.auc(roc(y, s, direction = "<"), method = "delong")`` and
    ``var(roc, method = "delong")`` to 1e-6 relative (``tests/fixtures/r_reference/roc.R``).

    References
    ----------
    DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated
    receiver operating characteristic curves: a nonparametric approach. Biometrics.
    1988;44(3):837-845. doi:10.2307/2531595

    Sun X, Xu W. Fast implementation of DeLong's algorithm for comparing the areas under
    correlated receiver operating characteristic curves. IEEE Signal Process Lett.
    2014;21(11):1389-1393. doi:10.1109/LSP.2014.2337313

    Examples
    --------
    >>> r = delong_ci([0, 0, 0, 1, 1, 1], [0.1, 0.5, 0.3, 0.4, 0.8, 0.9])
    >>> round(r.estimate, 4), round(r.ci_low, 4), round(r.ci_high, 4)
    (0.8889, 0.5809, 1.0)
    """
    check_ci_level(ci)
    pos = _binary_labels(y)
    s = _scores(score, pos.size)
    m = int(pos.sum())
    n = pos.size - m
    auc, cov = _delong(pos, s[:, None])
    est, var = float(auc[0]), float(cov[0, 0])
    method = f"DeLong {ci:.0%} CI"
    if np.isnan(var):
        _warn_undefined("AUC" if np.isnan(est) else "DeLong variance of the AUC", m, n)
        return AUCResult(est, math.nan, math.nan, math.nan, ci, m, n, method)
    half = float(stats.norm.ppf(0.5 + ci / 2.0)) * math.sqrt(max(var, 0.0))
    return AUCResult(est, var, float(max(0.0, est - half)), float(min(1.0, est + half)), ci, m, n, method)


def delong_test(y, score_a, score_b, ci: float = 0.95) -> TestResult:
    """DeLong's paired test that two correlated AUCs (same observations) are equal.

    Parameters
    ----------
    y : array-like of {0, 1} or bool, shape (n,)
        1 = case, 0 = control (shared by both scores).
    score_a, score_b : array-like of float, shape (n,)
        The two scores, observation ``i`` of both from the same patient.
    ci : float, default 0.95
        Level of the CI of the difference ``auc_a - auc_b`` stored in ``details``.

    Returns
    -------
    TestResult
        ``test='delong'``, ``statistic`` = z, ``p_value`` two-sided, ``n_used`` = n,
        ``details`` = ``auc_a, auc_b, difference, se_difference, diff_ci_low, diff_ci_high,
        ci_level, n_cases, n_controls``.  All NaN (with
        :class:`~analysis.errors.UndefinedMetricWarning`) with fewer than two cases or controls.

    Notes
    -----
    ``z = (AUC_a - AUC_b) / sqrt(V_a + V_b - 2 C_ab)`` with the DeLong covariance matrix of
    the two AUCs (see :func:`delong_ci`); ``p = 2 Φ(-|z|)``.  When the difference and its
    standard error are both 0 (identical rankings) ``z = 0`` and ``p = 1``, as in pROC.
    Matches R pROC 1.18 ``roc.test(r1, r2, method = "delong", paired = TRUE)`` (statistic,
    p-value and CI of the difference) to 1e-6 relative (``tests/fixtures/r_reference/roc.R``).

    References
    ----------
    DeLong ER, DeLong DM, Clarke-Pearson DL. Biometrics. 1988;44(3):837-845.
    doi:10.2307/2531595
    Sun X, Xu W. IEEE Signal Process Lett. 2014;21(11):1389-1393. doi:10.1109/LSP.2014.2337313

    Examples
    --------
    >>> r = delong_test([0, 0, 0, 1, 1, 1], [.1, .5, .3, .4, .8, .9], [.2, .1, .6, .5, .3, .7])
    >>> round(r.statistic, 4), round(r.p_value, 4)
    (0.3536, 0.7237)
    """
    check_ci_level(ci)
    pos = _binary_labels(y)
    sa = _scores(score_a, pos.size, "score_a")
    sb = _scores(score_b, pos.size, "score_b")
    m = int(pos.sum())
    n = pos.size - m
    auc, cov = _delong(pos, np.column_stack([sa, sb]))
    details = {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "difference": float(auc[0] - auc[1]),
               "se_difference": math.nan, "diff_ci_low": math.nan, "diff_ci_high": math.nan,
               "ci_level": ci, "n_cases": m, "n_controls": n}
    method = "DeLong's test for two correlated ROC curves"
    if np.isnan(cov).any():
        _warn_undefined("DeLong's test", m, n)
        return TestResult("delong", math.nan, math.nan, math.nan, int(pos.size), method=method, details=details)
    d = float(auc[0] - auc[1])
    var_d = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var_d, 0.0))
    if se == 0.0:
        z = 0.0 if d == 0.0 else math.copysign(math.inf, d)
    else:
        z = d / se
    p = float(2 * stats.norm.sf(abs(z)))
    half = float(stats.norm.ppf(0.5 + ci / 2.0)) * se
    details.update(se_difference=se, diff_ci_low=d - half, diff_ci_high=d + half)
    return TestResult("delong", float(z), math.nan, p, int(pos.size), method=method, details=details)


