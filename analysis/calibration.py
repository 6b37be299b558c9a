"""Calibration of predicted probabilities: reliability curve, Brier score, calibration slope and intercept.

Binary functions take 0/1 labels and the predicted probability of the positive class;
:func:`calibration_ovr` applies them one-vs-rest to each class of a multiclass model.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from .errors import CohortError, UndefinedMetricWarning, check_ci_level
from .roc import _binary_labels, _class_codes_and_proba, _scores

__all__ = ["CalibrationResult", "brier_score", "reliability_curve", "calibration_slope_intercept",
           "calibration_ovr", "fit_temperature", "apply_temperature"]

_EPS = 1e-12


def _probabilities(p, n: int) -> np.ndarray:
    arr = _scores(p, n, "proba")
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CohortError(f"probabilities must lie in [0, 1], got {arr[i]!r} at position {i}", column="proba")
    return arr


def brier_score(y_true, proba) -> float:
    """Brier score of binary predictions: ``mean((p - y)^2)``.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    proba : array-like of float in [0, 1], shape (n,)
        Predicted probability that ``y == 1``.

    Returns
    -------
    float
        0 is perfect; 0.25 is what a constant 0.5 scores.

    Notes
    -----
    Matches scikit-learn ``brier_score_loss`` and R ``mean((p - y)^2)``
    (``tests/fixtures/r_reference/calibration.R``).

    References
    ----------
    Brier GW. Verification of forecasts expressed in terms of probability. Mon Weather Rev.
    1950;78(1):1-3. doi:10.1175/1520-0493(1950)078<0001:VOFEIT>2.0.CO;2

    Examples
    --------
    >>> brier_score([0, 1], [0.0, 0.5])
    0.125
    """
    y = _binary_labels(y_true)
    p = _probabilities(proba, y.size)
    return float(np.mean((p - y) ** 2))


def reliability_curve(y_true, proba, n_bins: int = 10, strategy: str = "uniform") -> pd.DataFrame:
    """Observed event fraction against mean predicted probability, by probability bin.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    proba : array-like of float in [0, 1], shape (n,)
    n_bins : int, default 10
    strategy : {'uniform', 'quantile'}, default 'uniform'
        Equal-width bins on [0, 1], or edges at the quantiles of ``proba``.

    Returns
    -------
    pandas.DataFrame
        One row per bin (empty bins kept with ``n = 0`` and NaN): ``bin, bin_low, bin_high,
        n, mean_predicted, observed_fraction``.

    Notes
    -----
    A probability on an inner edge goes to the lower bin (as scikit-learn).  The non-empty
    bins match scikit-learn ``calibration_curve(y, p, n_bins, strategy)``.
    """
    y = _binary_labels(y_true)
    p = _probabilities(proba, y.size)
    if int(n_bins) != n_bins or n_bins < 1:
        raise CohortError(f"n_bins must be a positive integer, got {n_bins!r}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    elif strategy == "quantile":
        edges = np.quantile(p, np.linspace(0.0, 1.0, int(n_bins) + 1))
    else:
        raise CohortError(f"unknown strategy {strategy!r} (expected one of: uniform, quantile)")
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(ids, weights=p, minlength=n_bins) / count
        obs = np.bincount(ids, weights=y.astype(float), minlength=n_bins) / count
    return pd.DataFrame({"bin": np.arange(n_bins), "bin_low": edges[:-1], "bin_high": edges[1:],
                         "n": count.astype(int), "mean_predicted": mean_p, "observed_fraction": obs})


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration intercept and slope with Wald CIs (see :func:`calibration_slope_intercept`)."""

    intercept: float
    intercept_se: float
    intercept_ci_low: float
    intercept_ci_high: float
    slope: float
    slope_se: float
    slope_ci_low: float
    slope_ci_high: float
    ci_level: float
    n: int
    n_clipped: int
    method: str = "logistic recalibration (Cox 1958)"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(self)])


def calibration_slope_intercept(y_true, proba, ci: float = 0.95) -> CalibrationResult:
    """Calibration slope and calibration-in-the-large intercept by logistic recalibration.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool, shape (n,)
    proba : array-like of float in [0, 1], shape (n,)
    ci : float, default 0.95
        Level of the Wald intervals.

    Returns
    -------
    CalibrationResult
        ``intercept`` (+ se, CI): ``a`` in ``logit P(y=1) = a + logit(p)`` (slope fixed at 1;
        0 = right on average, < 0 = over-prediction); ``slope`` (+ se, CI): ``b`` in
        ``logit P(y=1) = c + b logit(p)`` (1 = ideal, < 1 = over-confident); ``n``;
        ``n_clipped`` = probabilities of exactly 0 or 1 clipped to ``[1e-12, 1 - 1e-12]``.
        NaN with :class:`~analysis.errors.UndefinedMetricWarning` when ``y`` has one class
        or the fit does not converge.

    Notes
    -----
    Maximum-likelihood binomial GLMs (statsmodels ``GLM``, logit link).  Matches R 4.x
    ``glm(y ~ qlogis(p), binomial)`` (slope) and ``glm(y ~ offset(qlogis(p)), binomial)``
    (intercept), estimates and standard errors to 1e-6 relative, both fitted to convergence
    (IRLS tolerance 1e-13 here, ``glm.control(epsilon = 1e-14)`` in
    ``tests/fixtures/r_reference/calibration.R``).  CIs are Wald: ``estimate ± z se``.

    References
    ----------
    Cox DR. Two further applications of a model for binary regression. Biometrika.
    1958;45(3-4):562-565. doi:10.1093/biomet/45.3-4.562
    Van Calster B, et al. Calibration: the Achilles heel of predictive analytics. BMC Med.
    2019;17:230. doi:10.1186/s12916-019-1466-7
    """
    check_ci_level(ci)
    y = _binary_labels(y_true).astype(float)
    p = _probabilities(proba, y.size)
    clipped = int(np.sum((p < _EPS) | (p > 1 - _EPS)))
    lp = np.log(np.clip(p, _EPS, 1 - _EPS)) - np.log1p(-np.clip(p, _EPS, 1 - _EPS))
    nan = CalibrationResult(*([math.nan] * 8), ci, int(y.size), clipped)
    if y.size < 3 or y.min() == y.max():
        warnings.warn(f"calibration slope/intercept undefined with {int(y.sum())} event(s) among "
                      f"{y.size}; NaN reported", UndefinedMetricWarning, stacklevel=2)
        return nan
    z = float(stats.norm.ppf(0.5 + ci / 2))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", sm.tools.sm_exceptions.ConvergenceWarning)
            # tight IRLS tolerance: the default (1e-8 on deviance) leaves standard errors ~1e-6 off
            fit0 = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(),
                          offset=lp).fit(tol=1e-13, maxiter=100)
            fit1 = sm.GLM(y, sm.add_constant(lp, has_constant="add"),
                          family=sm.families.Binomial()).fit(tol=1e-13, maxiter=100)
    except (sm.tools.sm_exceptions.ConvergenceWarning, sm.tools.sm_exceptions.PerfectSeparationError,
            np.linalg.LinAlgError, ValueError) as err:
        warnings.warn(f"calibration fit failed ({type(err).__name__}: {err}); NaN reported",
                      UndefinedMetricWarning, stacklevel=2)
        return nan
    a, a_se = float(fit0.params[0]), float(fit0.bse[0])
    b, b_se = float(fit1.params[1]), float(fit1.bse[1])
    return CalibrationResult(a, a_se, a - z * a_se, a + z * a_se, b, b_se, b - z * b_se, b + z * b_se,
                             ci, int(y.size), clipped)


def calibration_ovr(y_true, proba, classes, ci: float = 0.95) -> pd.DataFrame:
    """One-vs-rest calibration of each class of a multiclass model.

    Parameters
    ----------
    y_true : array-like of str, shape (n,)
    proba : array-like of float, shape (n, k), column ``j`` for ``classes[j]``
    classes : sequence of str
    ci : float, default 0.95

    Returns
    -------
    pandas.DataFrame
        One row per class: ``class, brier, intercept, intercept_ci_low, intercept_ci_high,
        slope, slope_ci_low, slope_ci_high, ci_level, n``.  See :func:`brier_score` and
        :func:`calibration_slope_intercept`.
    """
    codes, p = _class_codes_and_proba(y_true, proba, classes)
    rows = []
    for j, c in enumerate(classes):
        y = codes == j
        r = calibration_slope_intercept(y, p[:, j], ci=ci)
        rows.append({"class": str(c), "brier": brier_score(y, p[:, j]), "intercept": r.intercept,
                     "intercept_ci_low": r.intercept_ci_low, "intercept_ci_high": r.intercept_ci_high,
                     "slope": r.slope, "slope_ci_low": r.slope_ci_low, "slope_ci_high": r.slope_ci_high,
                     "ci_level": ci, "n": r.n})
    return pd.DataFrame(rows)


def fit_temperature(proba, y_codes, bounds=(0.05, 20.0)) -> float:
    """Temperature ``T`` minimising the multinomial log loss of ``softmax(log(p) / T)``.

    Temperature scaling (Guo C, Pleiss G, Sun Y, Weinberger KQ. On calibration of modern
    neural networks. ICML 2017, PMLR 70:1321-1330) rescales a classifier's log-probabilities
    by one positive number fitted on held-out data; it changes how confident the
    probabilities are, never the arg-max class.  ``T > 1`` softens over-confident outputs.

    Parameters
    ----------
    proba : array-like, (n, k)
        Predicted probabilities of held-out rows (rows sum to 1).
    y_codes : array-like of int, (n,)
        True class index of each row.
    bounds : (float, float)
        Search interval for ``T`` (bounded scalar minimisation over ``log T``).

    Returns
    -------
    float
        The fitted temperature; 1.0 (no change) when there are no rows.

    Notes
    -----
    The objective is convex in ``1/T``; scipy's bounded Brent search over ``log T`` finds
    its minimum.  Checked against a grid search in ``tests/analysis/test_calibration.py``.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    p = np.asarray(proba, dtype=float)
    y = np.asarray(y_codes, dtype=np.int64)
    if p.ndim != 2 or len(p) == 0:
        return 1.0
    logp = np.log(np.clip(p, _EPS, None))

    def nll(log_t):
        z = log_softmax(logp / math.exp(log_t), axis=1)
        return -float(z[np.arange(len(y)), y].mean())

    res = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-6})
    return float(math.exp(res.x))


def apply_temperature(proba, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row-wise (see :func:`fit_temperature`)."""
    from scipy.special import softmax

    p = np.asarray(proba, dtype=float)
    if p.size == 0:
        return p.copy()
    return softmax(np.log(np.clip(p, _EPS, None)) / float(temperature), axis=1)
