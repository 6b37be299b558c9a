"""Multinomial logistic regression odds ratios: univariable and multivariable.

``multinomial_or_table(data, outcome, predictors, reference, types)`` fits one model per
predictor (univariable, rows complete for that predictor) and one model with all
predictors (multivariable, complete cases) with statsmodels ``MNLogit`` and returns one
tidy row per model x outcome level x predictor term.

Coding: the outcome's ``reference`` level is the baseline category; categorical and
binary predictors are dummy-coded against their first level (schema order); ordinal
predictors enter as a score (0, 1, 2, ... = position in the level order, OR per
one-level step) unless ``ordinal_as='categorical'``; continuous predictors enter divided by
an increment chosen by ``or_per`` (OR per SD, per IQR, per unit or per a given amount of
the variable's own unit; the ``per`` and ``increment`` columns say which), so an OR of a
measurement on a small scale (a pixel spacing of 0.007 mm) is not an OR per millimetre.

Separation and other failures (never a crash, never a silent absurd OR): a fit counts
as failed when statsmodels reports non-convergence, perfect separation or a singular
information matrix, or when a slope has ``|coef| > coef_limit`` (default 10, an OR of
e^10 ≈ 22 000) or a standard error ``> se_limit`` (default 10) or non-finite.  These
limits are on a scale that does not depend on the unit of measurement: per one-level step
for dummies and ordinal scores, per standard deviation (in the rows of that model) for
continuous predictors, whatever ``or_per`` is shown.  Then the
model is refitted with Firth's bias reduction (the likelihood penalized by Jeffreys' prior,
``l(B) + 1/2 log det I(B)``; Firth 1993, for the multinomial logit as in R ``brglm2::brmultinom``),
which gives finite estimates under separation; Wald CIs come from the Fisher information at
the Firth estimates (``fit == 'firth'``).  Where Firth's fit is impossible (a rank-deficient
design, e.g. collinear predictors) or does not converge, an L2 (ridge) penalty
``penalty / 2 * sum(slope²)`` is used instead (intercepts unpenalized; ``fit ==
'l2_penalized'``).  Ridge estimates are biased towards OR 1 by construction, so no Wald
CI, standard error or p-value is reported for them (NaN): they are a last-resort point
estimate, and the ``reason`` says so.  When the penalized fit itself did not converge no
estimate is reported at all (``fit == 'not_converged'``, OR NaN, with the reason).  Either
way an :class:`analysis.errors.SeparationWarning` names the variables, and the ``fit`` and
``reason`` columns say what was done.
"""
from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ._groups import default_levels
from .errors import CohortError, SeparationWarning, did_you_mean

__all__ = ["multinomial_or_table", "or_increment", "REGRESSION_COLUMNS", "OR_PER"]

REGRESSION_COLUMNS = ["model", "outcome_level", "reference", "variable", "level", "reference_level",
                      "per", "increment", "odds_ratio", "ci_low", "ci_high", "p_value", "coef",
                      "std_error", "n_used", "fit", "reason"]
_TYPES = ("continuous", "categorical", "ordinal", "binary")
#: Spellings of ``or_per`` (besides a positive number: per that many units).
OR_PER = ("sd", "iqr", "unit")


def _exp(x: float) -> float:
    """``exp(x)`` that gives ``inf`` (or 0) instead of raising ``OverflowError``."""
    if not np.isfinite(x):
        return math.nan if np.isnan(x) else (math.inf if x > 0 else 0.0)
    return math.exp(x) if x < 709.0 else math.inf


def or_increment(values, per="sd") -> tuple:
    """The increment of a continuous predictor that its odds ratio is expressed per.

    Parameters
    ----------
    values : array-like
        The predictor's values (NaN ignored).
    per : {'sd', 'iqr', 'unit'} or positive float, default 'sd'
        ``'sd'``: one sample standard deviation (``ddof=1``); ``'iqr'``: the interquartile
        range (Q3 - Q1, linear interpolation as R ``quantile(type = 7)``, as R ``rms``'s
        ``summary()`` reports inter-quartile-range odds ratios), or the SD when the IQR is 0;
        ``'unit'``: 1 (OR per unit, what R ``glm``/``nnet::multinom`` print); a number: per
        that many units (e.g. ``10`` for "per 10 years", or ``0.001`` for a spacing in mm).

    Returns
    -------
    (float, str)
        The increment (in the variable's own unit) and how it was chosen: ``'SD'``,
        ``'IQR'``, ``'unit'`` or ``'given'``.

    Raises
    ------
    ValueError
        If ``per`` is none of the above.

    Examples
    --------
    >>> or_increment([1.0, 2.0, 3.0, 4.0], "iqr")
    (1.5, 'IQR')
    >>> or_increment([1.0, 2.0, 3.0, 4.0], 10)
    (10.0, 'given')
    """
    x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    x = x[np.isfinite(x)]
    if isinstance(per, str) and per.strip().lower() in OR_PER:
        per = per.strip().lower()
        if per == "unit":
            return 1.0, "unit"
        sd = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
        if per == "iqr":
            q1, q3 = np.percentile(x, [25, 75]) if len(x) else (math.nan, math.nan)
            if q3 - q1 > 0:
                return float(q3 - q1), "IQR"
        return (sd, "SD") if sd > 0 else (1.0, "unit")
    try:
        inc = float(per)
    except (TypeError, ValueError):
        inc = math.nan
    if not (math.isfinite(inc) and inc > 0):
        raise ValueError(f"or_per must be 'sd', 'iqr', 'unit' or a positive number, got {per!r}")
    return inc, "given"


def _levels_of(series, given):
    return list(given) if given is not None else default_levels(series.dropna(), series)


def _match(series, level):
    s = series.astype(object)
    return ((s == level) | (s.astype(str) == str(level))) & s.notna()


class _Design:
    """Design matrix for some predictors on the given rows, plus the term bookkeeping."""

    def __init__(self, data, predictors, types, levels, ordinal_as, increments=None):
        increments = increments or {}
        self.columns = {"const": np.ones(len(data))}
        self.terms = []          # (variable, level, reference_level, column name)
        self.notes = []          # rows without a column: reference levels, dropped levels
        self.check_scale = []    # per term: multiplier putting its slope on a unit-free scale
        for var in predictors:
            vtype = types[var]
            col = data[var]
            if vtype == "continuous" or (vtype == "ordinal" and ordinal_as == "score"):
                if vtype == "continuous":
                    x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
                    x = x / increments.get(var, 1.0)
                else:
                    lev = _levels_of(col, levels.get(var))
                    x = np.full(len(col), np.nan)
                    for i, lv in enumerate(lev):
                        x[_match(col, lv).to_numpy()] = i
                if np.nanstd(x) == 0:
                    self.notes.append((var, None, None, "constant in the rows used: not estimable"))
                    continue
                name = f"{var}"
                self.columns[name] = x
                self.terms.append((var, None, None, name))
                # continuous: judge the slope per SD of the rows used (unit-free); scores: per level
                self.check_scale.append(float(np.nanstd(x)) if vtype == "continuous" else 1.0)
                continue
            lev = _levels_of(col, levels.get(var))
            ref = lev[0]
            self.notes.append((var, str(ref), str(ref), "reference level"))
            for lv in lev[1:]:
                x = _match(col, lv).to_numpy(dtype=float)
                if x.sum() == 0:
                    self.notes.append((var, str(lv), str(ref), "level not observed in the rows used"))
                    continue
                if x.sum() == len(x):
                    self.notes.append((var, str(lv), str(ref), "all rows at this level: not estimable"))
                    continue
                name = f"{var}[{lv}]"
                self.columns[name] = x
                self.terms.append((var, str(lv), str(ref), name))
                self.check_scale.append(1.0)

    def matrix(self):
        return np.column_stack(list(self.columns.values()))


def _mle(y, X):
    """Unpenalized MNLogit fit; returns (params KxJ-1, bse, problems list)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError

    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.MNLogit(y, X).fit(method="newton", maxiter=100, disp=False)
        except (np.linalg.LinAlgError, PerfectSeparationError, ValueError) as err:
            return None, None, [f"fit failed ({type(err).__name__})"]
    for w in caught:
        name = type(w.message).__name__
        if name in ("ConvergenceWarning", "PerfectSeparationWarning", "HessianInversionWarning"):
            problems.append(name.replace("Warning", "").lower().replace("perfectseparation",
                                                                         "perfect separation"))
    if not res.mle_retvals.get("converged", True):
        problems.append("not converged")
    params = np.asarray(res.params, dtype=float)
    try:
        bse = np.asarray(res.bse, dtype=float)
    except (np.linalg.LinAlgError, ValueError):
        bse = np.full_like(params, np.nan)
        problems.append("singular information matrix")
    return params, bse, sorted(set(problems))


def _penalized(y, X, penalty):
    """L2-penalized multinomial logit (intercepts unpenalized) via statsmodels' likelihood."""
    import statsmodels.api as sm

    model = sm.MNLogit(y, X)
    k, j = X.shape[1], model.J - 1
    mask = np.ones((k, j))
    mask[0, :] = 0.0
    mask = mask.ravel(order="F")

    def fun(b):
        return -model.loglike(b) + 0.5 * penalty * np.sum(mask * b ** 2)

    def jac(b):
        return -model.score(b) + penalty * mask * b

    def hess(b):
        return -model.hessian(b) + penalty * np.diag(mask)

    out = optimize.minimize(fun, np.zeros(k * j), jac=jac, hess=hess, method="trust-exact",
                            options={"gtol": 1e-10, "maxiter": 500})
    info = hess(out.x)
    try:
        cov = np.linalg.inv(info)
        bse = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:
        bse = np.full(k * j, np.nan)
    return out.x.reshape(k, j, order="F"), bse.reshape(k, j, order="F"), bool(out.success)


def _blocks(W, X):
    """``sum_i W[i, j, l] x_i x_i'`` as an ``(m k) x (m k)`` matrix, block (j, l) (class-major).

    The same numbers as ``np.einsum("ijl,ia,ib->jalb", W, X, X)``, by ``m²`` BLAS products
    instead of one loop over ``n m² k²`` terms (which made Firth's fit of a 100-level free-text
    column take ~10 s per model).
    """
    n, m, _ = W.shape
    k = X.shape[1]
    out = np.empty((m, k, m, k))
    for j in range(m):
        for l_ in range(j, m):
            block = X.T @ (W[:, j, l_, None] * X)
            out[j, :, l_, :] = block
            out[l_, :, j, :] = block.T
    return out.reshape(m * k, m * k)


def _firth(y, X, maxiter: int = 100, tol: float = 1e-9):
    """Firth's bias-reduced multinomial logit (reference class = code 0).

    Maximises the Jeffreys-penalized log-likelihood ``l(B) + 1/2 log det I(B)`` by
    modified-score Fisher scoring, ``B <- B + I(B)^-1 U*(B)`` with step halving on the
    penalized likelihood, where ``U*_aj = sum_i x_ia (y_ij - p_ij + g_ij / 2)`` and
    ``g_ij = tr(I^-1 dI/d eta_ij)`` restricted to observation ``i``.  For the multinomial logit
    (a canonical exponential family) this is the mean-bias-reducing adjusted score, i.e. R
    ``brglm2::brmultinom(type = "AS_mean")``.  Standard errors: ``sqrt(diag(I(B)^-1))``.

    Returns ``(params k x m, bse k x m, converged)``; raises ``numpy.linalg.LinAlgError``
    when the information matrix is singular (rank-deficient design).

    References
    ----------
    Firth D. Bias reduction of maximum likelihood estimates. Biometrika. 1993;80(1):27-38.
    https://doi.org/10.1093/biomet/80.1.27
    Kosmidis I, Firth D. Multinomial logit bias reduction via the Poisson log-linear model.
    Biometrika. 2011;98(3):755-759. https://doi.org/10.1093/biomet/asr026
    """
    n, k = X.shape
    m = int(y.max())
    Y = (y[:, None] == np.arange(1, m + 1)[None, :]).astype(float)
    eye = np.arange(m)

    def evaluate(B):
        eta = X @ B
        top = np.maximum(eta.max(axis=1, keepdims=True), 0.0)
        e = np.exp(eta - top)
        den = np.exp(-top) + e.sum(axis=1, keepdims=True)
        P = e / den
        loglik = float((Y * eta).sum() - (top[:, 0] + np.log(den[:, 0])).sum())
        W = -P[:, :, None] * P[:, None, :]
        W[:, eye, eye] += P
        info = _blocks(W, X)  # class-major (m k) x (m k): block (j, l) = X' diag(W_jl) X
        sign, logdet = np.linalg.slogdet(info)
        return (loglik + 0.5 * logdet if sign > 0 else -np.inf), P, info

    B = np.zeros((k, m))
    obj, P, info = evaluate(B)
    if not np.isfinite(obj):
        raise np.linalg.LinAlgError("singular information matrix")
    converged = False
    for _ in range(maxiter):
        cov = np.linalg.inv(info)
        C = cov.reshape(m, k, m, k)
        H = np.empty((n, m, m))
        for l_ in range(m):  # x_i' C_lj x_i, one BLAS product per (l, j) block
            for j_ in range(m):
                H[:, l_, j_] = np.einsum("ia,ia->i", X @ C[l_, :, j_, :], X)
        diag_h = np.einsum("ijj->ij", H)
        hp = np.einsum("ijl,il->ij", H, P)
        G = np.empty((n, m))
        for r in range(m):
            d = P * ((eye == r)[None, :] - P[:, [r]])  # d p_ij / d eta_ir
            G[:, r] = (d * diag_h).sum(axis=1) - 2.0 * (d * hp).sum(axis=1)
        U = X.T @ (Y - P + 0.5 * G)
        if np.abs(U).max() < tol:
            converged = True
            break
        step = (cov @ U.T.ravel()).reshape(m, k).T
        t = 1.0
        while True:
            new_obj, new_P, new_info = evaluate(B + t * step)
            if new_obj >= obj - 1e-12 or t < 1e-8:
                break
            t /= 2.0
        B, obj, P, info = B + t * step, new_obj, new_P, new_info
    else:  # no convergence: the information matrix of the last iterate
        cov = np.linalg.inv(info)
    bse = np.sqrt(np.clip(np.diag(cov), 0, None)).reshape(m, k).T
    return B, bse, converged


def _fallback(y, X, penalty):
    """Firth's fit where the design allows it, else (or if it fails) the L2-penalized fit."""
    if np.linalg.matrix_rank(X) == X.shape[1]:
        try:
            params, bse, ok = _firth(y, X)
        except np.linalg.LinAlgError:
            ok = False
        if ok and np.all(np.isfinite(params)) and np.all(np.isfinite(bse)):
            return params, bse, "firth", ("Firth bias-reduced estimates (Jeffreys-penalized likelihood), "
                                          "Wald CIs")
        note = "Firth's fit did not converge: "
    else:
        note = "rank-deficient design (collinear terms), no Firth fit: "
    params, bse, ok = _penalized(y, X, penalty)
    if not ok:  # a non-converged optimum is no estimate at all: report none
        return (np.full_like(params, np.nan), np.full_like(bse, np.nan), "not_converged",
                note + f"the L2-penalized (ridge, penalty {penalty:g}) fit did not converge either: "
                       "no estimate")
    reason = note + f"L2-penalized (ridge) estimates (penalty {penalty:g}), shrunk towards OR 1: no CI or p-value"
    return params, bse, "l2_penalized", reason


def _fit_rows(model_name, data, outcome, reference, outcome_levels, predictors, types, levels,
              ordinal_as, ci, penalty, coef_limit, se_limit, increments):
    used = data.dropna(subset=[outcome] + list(predictors))
    n_used = int(len(used))
    y_raw = used[outcome]
    observed = [lv for lv in outcome_levels if _match(y_raw, lv).any()]
    base = {"model": model_name, "reference": str(reference), "n_used": n_used}
    design = _Design(used, predictors, types, levels, ordinal_as,
                     {v: inc for v, (inc, _) in increments.items()})
    rows = []

    def per_of(var, level):
        if level is not None or var not in increments:
            return ("level" if types.get(var) == "ordinal" and level is None else ""), math.nan
        inc, how = increments[var]
        return how, inc

    def blank(lv, var, level, ref_level, reason, odds=math.nan):
        per, inc = per_of(var, level)
        return {**base, "outcome_level": str(lv), "variable": var, "level": level,
                "reference_level": ref_level, "per": per, "increment": inc,
                "odds_ratio": odds, "ci_low": math.nan,
                "ci_high": math.nan, "p_value": math.nan, "coef": math.nan, "std_error": math.nan,
                "fit": "", "reason": reason}

    others = [lv for lv in outcome_levels if str(lv) != str(reference)]
    fail = None
    if str(reference) not in map(str, observed):
        fail = f"reference outcome '{reference}' not observed in the {n_used} rows used"
    elif len(observed) < 2:
        fail = f"fewer than 2 outcome levels observed in the {n_used} rows used"
    elif not design.terms:
        fail = "no estimable predictor"
    if fail is not None:
        for lv in others:
            for var, level, ref_level, _ in design.terms:
                rows.append(blank(lv, var, level, ref_level, fail))
            for var, level, ref_level, note in design.notes:
                rows.append(blank(lv, var, level, ref_level, note if note != "reference level" else fail,
                                  1.0 if note == "reference level" else math.nan))
        return rows
    fit_levels = [str(reference)] + [str(lv) for lv in observed if str(lv) != str(reference)]
    y = np.zeros(n_used, dtype=int)
    for code, lv in enumerate(fit_levels):
        y[_match(y_raw, lv).to_numpy()] = code
    X = design.matrix()
    params, bse, problems = _mle(y, X)
    flagged = []
    if params is not None:
        scale = np.asarray(design.check_scale, dtype=float)[:, None]  # unit-free slopes (module notes)
        slopes = ~np.isfinite(params[1:]) | (np.abs(params[1:]) * scale > coef_limit)
        big_se = ~np.isfinite(bse[1:]) | (bse[1:] * scale > se_limit)
        for t, (var, level, _, _) in enumerate(design.terms):
            if slopes[t].any() or big_se[t].any():
                flagged.append(var if level is None else f"{var}={level}")
        if slopes.any():
            problems.append(f"|coef| > {coef_limit:g}")
        if big_se.any():
            problems.append(f"standard error > {se_limit:g} or undefined")
    fit_kind, fit_reason = "mle", ""
    if params is None or problems:
        flagged = list(dict.fromkeys(flagged))
        shown = flagged[:5] + ([f"{len(flagged) - 5} more term(s)"] if len(flagged) > 5 else [])
        what = ", ".join(shown) if flagged else "the model"
        params, bse, fit_kind, how = _fallback(y, X, penalty)
        fit_reason = f"separation or unstable fit ({'; '.join(sorted(set(problems)))}) in {what}: {how}"
        warnings.warn(f"{model_name} model for {', '.join(predictors)}: {fit_reason}",
                      SeparationWarning, stacklevel=4)
    z = stats.norm.ppf(0.5 + ci / 2)
    for lv in others:
        if str(lv) not in fit_levels:
            for var, level, ref_level, _ in design.terms:
                rows.append(blank(lv, var, level, ref_level,
                                  f"outcome level '{lv}' not observed in the rows used"))
            continue
        jcol = fit_levels.index(str(lv)) - 1
        term_rows = {}
        for t, (var, level, ref_level, _) in enumerate(design.terms):
            b, se = float(params[t + 1, jcol]), float(bse[t + 1, jcol])
            if fit_kind in ("l2_penalized", "not_converged"):
                se = math.nan  # a ridge estimate is shrunk towards 0: no valid Wald CI or p-value
            p = float(2 * stats.norm.sf(abs(b / se))) if se > 0 and np.isfinite(se) else math.nan
            ok_se = np.isfinite(se) and np.isfinite(b)
            term_rows[(var, level)] = {**blank(lv, var, level, ref_level, fit_reason),
                                       "odds_ratio": _exp(b),
                                       "ci_low": _exp(b - z * se) if ok_se else math.nan,
                                       "ci_high": _exp(b + z * se) if ok_se else math.nan,
                                       "p_value": p, "coef": b, "std_error": se, "fit": fit_kind}
        for var, level, ref_level, note in design.notes:
            term_rows[(var, level)] = blank(lv, var, level, ref_level, note,
                                            1.0 if note == "reference level" else math.nan)
        # predictors in the order given, reference level first, then levels in schema order
        for var in predictors:
            entries = [r for (v, _), r in term_rows.items() if v == var]
            entries.sort(key=lambda r: (r["reason"] != "reference level",))
            ordered = _order_levels(entries, data[var], levels.get(var))
            rows.extend(ordered)
    return rows


def _order_levels(entries, series, given):
    if len(entries) <= 1:
        return entries
    order = [str(x) for x in _levels_of(series, given)]
    return sorted(entries, key=lambda r: order.index(r["level"]) if r["level"] in order else len(order))


def multinomial_or_table(data: pd.DataFrame, outcome: str, predictors: Sequence[str], reference,
                         types: Mapping[str, str], *, levels: Mapping[str, Sequence] | None = None,
                         outcome_levels: Sequence | None = None, models=("univariable", "multivariable"),
                         ordinal_as: str = "score", ci: float = 0.95, penalty: float = 1.0,
                         coef_limit: float = 10.0, se_limit: float = 10.0,
                         or_per="unit") -> pd.DataFrame:
    """Univariable and multivariable multinomial logistic regression odds ratios.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient; never modified.
    outcome : str
        Outcome column (e.g. ``'group'``).
    predictors : sequence of str
        Predictor columns, in display order.
    reference : str
        Outcome level used as the baseline (e.g. ``'benign'``).
    types : mapping str -> str
        Type of each predictor: ``continuous | categorical | ordinal | binary``.
    levels : mapping str -> sequence, optional
        Level order of categorical / binary / ordinal predictors (first = reference);
        default: categorical order, else sorted values.
    outcome_levels : sequence, optional
        Outcome level order (default: categorical order, else sorted).
    models : tuple, default ('univariable', 'multivariable')
        Which models to fit.
    ordinal_as : {'score', 'categorical'}, default 'score'
        How ordinal predictors enter.
    ci : float, default 0.95
        Wald confidence level.
    penalty : float, default 1.0
        L2 penalty of the last-resort fallback (rank-deficient design or no Firth convergence).
    coef_limit, se_limit : float, default 10
        A slope or standard error beyond these (log-odds scale; per SD of a continuous
        predictor, per step of a dummy or score, whatever ``or_per`` is) marks the fit as
        failed.
    or_per : {'sd', 'iqr', 'unit'}, positive float, or mapping, default 'unit'
        What the OR of a continuous predictor is per (:func:`or_increment`): one SD, one
        IQR, one unit (as R prints it), or a given amount; a mapping gives it per variable
        (missing variables: ``'unit'``).  The increment is computed once per variable from
        all rows with a recorded outcome, so univariable and multivariable ORs share it.
        :func:`analysis.table1.build_table1` uses ``'sd'``.

    Returns
    -------
    pandas.DataFrame
        :data:`REGRESSION_COLUMNS`: ``model`` (univariable | multivariable),
        ``outcome_level`` (vs ``reference``), ``variable``, ``level`` (dummy level; NaN for
        continuous/score terms), ``reference_level`` of the predictor, ``odds_ratio``,
        ``ci_low``, ``ci_high``, Wald ``p_value``, ``coef`` (log-odds), ``std_error``,
        ``per`` (``SD`` | ``IQR`` | ``unit`` | ``given`` for continuous terms, ``level`` for
        ordinal scores, empty for dummies) and ``increment`` (the step in the variable's own
        unit; ``coef`` and ``std_error`` are per that step), ``n_used`` (rows in that model),
        ``fit`` (``mle`` | ``firth`` | ``l2_penalized`` | ``not_converged`` (no estimate) |
        empty when not fitted), ``reason``.  Reference levels appear as a row with OR 1 and reason
        ``'reference level'``.

    Raises
    ------
    CohortError
        Unknown column, type or reference level (with did-you-mean).

    Warns
    -----
    SeparationWarning
        When a model falls back to Firth's (or the L2-penalized) fit.

    Notes
    -----
    Maximum likelihood by Newton–Raphson (statsmodels ``MNLogit``); Wald
    ``z = b / se``, ``p = 2 (1 - Phi(|z|))``, CI ``exp(b +- z_{1-alpha/2} se)``.
    Matches R 4.x ``nnet::multinom`` (``summary()`` standard errors, reference = first
    factor level) on ``tests/fixtures/r_reference/regression.R`` to 1e-4 relative; the Firth
    fallback matches R ``brglm2::brmultinom`` (``tests/fixtures/r_reference/firth.R``).

    References
    ----------
    Hosmer DW, Lemeshow S, Sturdivant RX. Applied Logistic Regression. 3rd ed. Wiley; 2013.
    https://doi.org/10.1002/9781118548387
    Albert A, Anderson JA. On the existence of maximum likelihood estimates in logistic
    regression models. Biometrika. 1984;71(1):1-10. https://doi.org/10.1093/biomet/71.1.1
    Firth D. Bias reduction of maximum likelihood estimates. Biometrika. 1993;80(1):27-38.
    https://doi.org/10.1093/biomet/80.1.27
    Heinze G, Schemper M. A solution to the problem of separation in logistic regression.
    Stat Med. 2002;21(16):2409-2419. https://doi.org/10.1002/sim.1047
    Le Cessie S, van Houwelingen JC. Ridge estimators in logistic regression. Appl Stat.
    1992;41(1):191-201. https://doi.org/10.2307/2347628
    """
    levels = dict(levels or {})
    predictors = list(predictors)
    for col in [outcome] + predictors:
        if col not in data.columns:
            raise CohortError(f"column '{col}' not found{did_you_mean(col, data.columns)}", column=col)
    for var in predictors:
        if var not in types:
            raise CohortError(f"no type given for predictor '{var}' (expected one of {', '.join(_TYPES)})",
                              column=var)
        if types[var] not in _TYPES:
            raise CohortError(f"unknown type '{types[var]}' (expected: {', '.join(_TYPES)}"
                              f"{did_you_mean(types[var], _TYPES)})", column=var)
        if types[var] == "continuous":
            raw = data[var]
            num = pd.to_numeric(raw, errors="coerce")
            if (num.isna() & raw.notna()).any():
                raise CohortError(f"non-numeric value {raw[num.isna() & raw.notna()].iloc[0]!r} in a "
                                  "continuous predictor", column=var)
    if ordinal_as not in ("score", "categorical"):
        raise ValueError(f"ordinal_as must be 'score' or 'categorical', got {ordinal_as!r}")
    out_levels = _levels_of(data[outcome], outcome_levels)
    if str(reference) not in map(str, out_levels):
        raise CohortError(f"reference level '{reference}' is not an outcome level (expected: "
                          f"{', '.join(map(str, out_levels))}{did_you_mean(reference, map(str, out_levels))})",
                          column=outcome)
    data = data.copy()
    for var in predictors:
        if types[var] == "continuous":
            data[var] = pd.to_numeric(data[var], errors="coerce")
    per_map = dict(or_per) if isinstance(or_per, Mapping) else {}
    increments = {}
    with_outcome = data[data[outcome].notna()]
    for var in predictors:
        if types[var] == "continuous":
            per = per_map.get(var, "unit") if isinstance(or_per, Mapping) else or_per
            try:
                increments[var] = or_increment(with_outcome[var], "unit" if per is None else per)
            except ValueError as err:
                raise CohortError(str(err), column=var) from None
    rows = []
    common = dict(outcome=outcome, reference=reference, outcome_levels=out_levels, types=types,
                  levels=levels, ordinal_as=ordinal_as, ci=ci, penalty=penalty,
                  coef_limit=coef_limit, se_limit=se_limit, increments=increments)
    if "univariable" in models:
        for var in predictors:
            rows += _fit_rows("univariable", data, predictors=[var], **common)
    if "multivariable" in models and predictors:
        rows += _fit_rows("multivariable", data, predictors=predictors, **common)
    return pd.DataFrame(rows).reindex(columns=REGRESSION_COLUMNS)
