"""Location tests across k independent groups: one-way ANOVA, Welch ANOVA, Kruskal–Wallis,
plus the assumption checks used to choose between them (Shapiro–Wilk, Brown–Forsythe/Levene).

Input convention (all functions): ``samples`` is a sequence of 1-D array-likes, one per
group, in group order (or a mapping ``{group: values}``).  Missing values (NaN, None,
``pd.NA``) are dropped and counted in ``details['n_missing']``; ``n_used`` counts the
values that entered the test.  Groups left empty after dropping missing values are
ignored (named in ``details['empty_groups']``).  When a test cannot be computed the
result has NaN statistic/p-value and ``details['reason']`` says why; nothing raises for
degenerate data, only for malformed input (:class:`analysis.errors.CohortError`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ._groups import clean_samples
from ._results import TestResult

__all__ = ["anova_oneway", "welch_anova", "kruskal_wallis", "normality_check", "variance_check"]

SHAPIRO_MIN_N = 3
SHAPIRO_MAX_N = 5000


def _not_computed(test, method, clean, reason, **extra) -> TestResult:
    details = {"n_missing": clean.n_missing, "reason": reason, **extra}
    return TestResult(test=test, statistic=math.nan, df=math.nan, p_value=math.nan,
                      n_used=clean.n_used, df2=math.nan, method=method, details=details)


def _empty_groups(clean):
    return [n for n, a in zip(clean.names, clean.arrays) if a.size == 0]


def anova_oneway(samples, names=None) -> TestResult:
    """Classical one-way ANOVA F test (equal variances assumed).

    Parameters
    ----------
    samples : sequence of array-like
        One 1-D array of values per group; missing values are dropped.
    names : sequence of str, optional
        Group names (used only in ``details``).

    Returns
    -------
    TestResult
        ``test='anova'``, ``statistic`` = F, ``df`` = k - 1, ``df2`` = N - k, ``p_value``,
        ``n_used`` = N; ``details`` holds ``n_missing`` (and ``reason`` when not computed).

    Notes
    -----
    ``F = [sum_i n_i (m_i - m)^2 / (k - 1)] / [sum_i sum_j (x_ij - m_i)^2 / (N - k)]``,
    p from the F(k - 1, N - k) upper tail.  Needs at least two non-empty groups and
    N > k; a zero within-group variance gives NaN with a reason.
    Matches R 4.x ``summary(aov(y ~ g))`` and ``oneway.test(y ~ g, var.equal = TRUE)``
    (``tests/fixtures/r_reference/location.R``, 19 datasets, 1e-6 relative).

    References
    ----------
    Fisher RA. Statistical Methods for Research Workers. Oliver & Boyd; 1925.
    Scheffé H. The Analysis of Variance. Wiley; 1959. ISBN 978-0-471-34505-3.

    Examples
    --------
    >>> r = anova_oneway([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [5.0, 6.0, 7.5]])
    >>> round(r.statistic, 4), r.df, r.df2
    (11.8837, 2.0, 6.0)
    """
    method = "One-way ANOVA"
    clean = clean_samples(samples, names)
    groups = clean.nonempty
    empty = _empty_groups(clean)
    extra = {"empty_groups": empty} if empty else {}
    k, n = len(groups), clean.n_used
    if k < 2:
        return _not_computed("anova", method, clean, "fewer than 2 groups with data", **extra)
    if n - k < 1:
        return _not_computed("anova", method, clean, "no within-group degrees of freedom (N <= k)", **extra)
    grand = np.concatenate(groups).mean()
    ss_between = sum(g.size * (g.mean() - grand) ** 2 for g in groups)
    ss_within = sum(((g - g.mean()) ** 2).sum() for g in groups)
    df1, df2 = k - 1, n - k
    if ss_within == 0:
        return _not_computed("anova", method, clean, "zero variance within every group", **extra)
    f = (ss_between / df1) / (ss_within / df2)
    p = float(stats.f.sf(f, df1, df2))
    return TestResult("anova", float(f), float(df1), p, n, float(df2), method,
                      {"n_missing": clean.n_missing, "ss_between": float(ss_between),
                       "ss_within": float(ss_within), **extra})


def welch_anova(samples, names=None) -> TestResult:
    """Welch's heteroscedastic one-way ANOVA (fractional denominator df).

    Parameters
    ----------
    samples : sequence of array-like
        One 1-D array of values per group; missing values are dropped.
    names : sequence of str, optional
        Group names (used only in ``details``).

    Returns
    -------
    TestResult
        ``test='welch_anova'``, ``statistic`` = F*, ``df`` = k - 1, ``df2`` = fractional
        denominator df, ``p_value``, ``n_used``.

    Notes
    -----
    With weights ``w_i = n_i / s_i^2``, ``W = sum w_i``, ``m_w = sum w_i m_i / W`` and
    ``L = sum (1 - w_i/W)^2 / (n_i - 1)``:
    ``F* = [sum w_i (m_i - m_w)^2 / (k - 1)] / [1 + 2 (k - 2) L / (k^2 - 1)]``,
    ``df2 = (k^2 - 1) / (3 L)``.  Every group needs n >= 2 and a non-zero variance,
    otherwise the result is NaN with a reason.
    Computed by ``pingouin.welch_anova``; matches R 4.x ``oneway.test(y ~ g, var.equal = FALSE)``
    (``tests/fixtures/r_reference/location.R``, 1e-6 relative).

    References
    ----------
    Welch BL. On the comparison of several mean values: an alternative approach.
    Biometrika. 1951;38(3/4):330-336. https://doi.org/10.1093/biomet/38.3-4.330

    Examples
    --------
    >>> r = welch_anova([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [5.0, 6.0, 7.5]])
    >>> r.test, r.df
    ('welch_anova', 2.0)
    """
    method = "Welch's ANOVA"
    clean = clean_samples(samples, names)
    groups = clean.nonempty
    empty = _empty_groups(clean)
    extra = {"empty_groups": empty} if empty else {}
    k = len(groups)
    if k < 2:
        return _not_computed("welch_anova", method, clean, "fewer than 2 groups with data", **extra)
    n_i = np.array([g.size for g in groups], dtype=float)
    if np.any(n_i < 2):
        return _not_computed("welch_anova", method, clean, "a group has fewer than 2 observations", **extra)
    if np.any(np.array([g.var(ddof=1) for g in groups]) == 0):
        return _not_computed("welch_anova", method, clean, "a group has zero variance", **extra)
    import pingouin

    long = pd.DataFrame({"y": np.concatenate(groups), "g": np.repeat(np.arange(k), n_i.astype(int))})
    row = pingouin.welch_anova(data=long, dv="y", between="g").iloc[0]
    return TestResult("welch_anova", float(row["F"]), float(row["ddof1"]), float(row["p_unc"]), clean.n_used,
                      float(row["ddof2"]), method, {"n_missing": clean.n_missing, **extra})


def kruskal_wallis(samples, names=None) -> TestResult:
    """Kruskal–Wallis rank-sum test with the tie correction.

    Parameters
    ----------
    samples : sequence of array-like
        One 1-D array of values (or ordinal scores) per group; missing values dropped.
    names : sequence of str, optional
        Group names (used only in ``details``).

    Returns
    -------
    TestResult
        ``test='kruskal_wallis'``, ``statistic`` = H (tie-corrected), ``df`` = k - 1,
        ``p_value`` from the chi-square(k - 1) approximation, ``n_used``.

    Notes
    -----
    ``H = [12 / (N (N + 1)) sum_i R_i^2 / n_i - 3 (N + 1)] / [1 - sum_t (t^3 - t) / (N^3 - N)]``
    with mid-ranks for ties.  All values equal gives NaN with a reason.
    Matches R 4.x ``kruskal.test(y ~ g)`` (``tests/fixtures/r_reference/location.R``).

    References
    ----------
    Kruskal WH, Wallis WA. Use of ranks in one-criterion variance analysis.
    J Am Stat Assoc. 1952;47(260):583-621. https://doi.org/10.1080/01621459.1952.10483441

    Examples
    --------
    >>> r = kruskal_wallis([[1, 2, 3], [2, 3, 4], [5, 6, 7]])
    >>> round(r.statistic, 4), r.df
    (6.0565, 2.0)
    """
    method = "Kruskal–Wallis test"
    clean = clean_samples(samples, names)
    groups = clean.nonempty
    empty = _empty_groups(clean)
    extra = {"empty_groups": empty} if empty else {}
    k, n = len(groups), clean.n_used
    if k < 2:
        return _not_computed("kruskal_wallis", method, clean, "fewer than 2 groups with data", **extra)
    allv = np.concatenate(groups)
    ranks = stats.rankdata(allv)
    _, counts = np.unique(allv, return_counts=True)
    tie = 1.0 - (counts ** 3 - counts).sum() / (n ** 3 - n) if n > 1 else 0.0
    if tie <= 0:
        return _not_computed("kruskal_wallis", method, clean, "all values are identical", **extra)
    bounds = np.cumsum([0] + [g.size for g in groups])
    rsum = np.array([ranks[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])])
    sizes = np.diff(bounds)
    h = (12.0 / (n * (n + 1)) * (rsum ** 2 / sizes).sum() - 3 * (n + 1)) / tie
    p = float(stats.chi2.sf(h, k - 1))
    return TestResult("kruskal_wallis", float(h), float(k - 1), p, n, math.nan, method,
                      {"n_missing": clean.n_missing, "tie_correction": float(tie), **extra})


def normality_check(samples, names=None, alpha: float = 0.05) -> pd.DataFrame:
    """Shapiro–Wilk test of normality in each group.

    Parameters
    ----------
    samples : sequence of array-like
        One 1-D array per group; missing values dropped.
    names : sequence of str, optional
        Group names (default ``'0', '1', ...``, or the keys of a mapping).
    alpha : float, default 0.05
        Level at which ``normal`` is set False.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``group, test, statistic, p_value, n_used, n_missing, normal,
        reason``.  ``normal`` is True/False, or ``pd.NA`` when not computed (n < 3 or a
        constant group), with ``reason``.  Groups with n > 5000 (beyond the algorithm's
        range) are tested on 5000 evenly spaced order statistics of the sorted sample, a
        deterministic thinning that keeps the distribution's shape; ``reason`` says so.

    Notes
    -----
    scipy.stats.shapiro (Royston 1995 algorithm AS R94), which matches R 4.x
    ``shapiro.test``; R also restricts the test to 3 <= n <= 5000.

    References
    ----------
    Shapiro SS, Wilk MB. An analysis of variance test for normality (complete samples).
    Biometrika. 1965;52(3/4):591-611. https://doi.org/10.1093/biomet/52.3-4.591
    Royston P. Remark AS R94. Appl Stat. 1995;44(4):547-551. https://doi.org/10.2307/2986146
    """
    clean = clean_samples(samples, names)
    rows = []
    for name, arr, n_missing in zip(clean.names, clean.arrays, clean.missing):
        row = {"group": name, "test": "shapiro_wilk", "statistic": math.nan, "p_value": math.nan,
               "n_used": int(arr.size), "n_missing": n_missing, "normal": pd.NA, "reason": ""}
        if arr.size < SHAPIRO_MIN_N:
            row["reason"] = f"n = {arr.size} < {SHAPIRO_MIN_N}: Shapiro–Wilk not computed"
        elif np.ptp(arr) == 0:
            row["reason"] = "all values identical: Shapiro–Wilk not computed"
        elif arr.size > SHAPIRO_MAX_N:
            # Beyond the algorithm's range: test 5000 evenly spaced order statistics, a
            # deterministic thinning of the sorted sample that keeps its shape.
            sub = np.sort(arr)[np.linspace(0, arr.size - 1, SHAPIRO_MAX_N).round().astype(int)]
            w, p = stats.shapiro(sub)
            row.update(statistic=float(w), p_value=float(p), normal=bool(p >= alpha),
                       reason=f"n = {arr.size} > {SHAPIRO_MAX_N}: Shapiro–Wilk on "
                              f"{SHAPIRO_MAX_N} evenly spaced order statistics")
        else:
            w, p = stats.shapiro(arr)
            row.update(statistic=float(w), p_value=float(p), normal=bool(p >= alpha))
        rows.append(row)
    return pd.DataFrame(rows, columns=["group", "test", "statistic", "p_value", "n_used",
                                       "n_missing", "normal", "reason"])


def variance_check(samples, names=None, center: str = "median") -> TestResult:
    """Test of equal variances: Brown–Forsythe (``center='median'``) or Levene (``'mean'``).

    Parameters
    ----------
    samples : sequence of array-like
        One 1-D array per group; missing values dropped.
    names : sequence of str, optional
        Group names (used only in ``details``).
    center : {'median', 'mean'}, default 'median'
        ``'median'`` is the Brown–Forsythe variant (robust to non-normality).

    Returns
    -------
    TestResult
        ``test='brown_forsythe'`` or ``'levene'``, ``statistic`` = W (an F statistic),
        ``df`` = k - 1, ``df2`` = N - k, ``p_value``.

    Notes
    -----
    One-way ANOVA on ``|x_ij - c_i|`` with ``c_i`` the group median or mean; computed
    with ``scipy.stats.levene``.  Matches R 4.x ``summary(aov(abs(y - ave(y, g,
    FUN = median)) ~ g))`` (the definition of ``car::leveneTest``), see
    ``tests/fixtures/r_reference/location.R``.

    References
    ----------
    Levene H. Robust tests for equality of variances. In: Olkin I, ed. Contributions to
    Probability and Statistics. Stanford University Press; 1960:278-292.
    Brown MB, Forsythe AB. Robust tests for the equality of variances. J Am Stat Assoc.
    1974;69(346):364-367. https://doi.org/10.1080/01621459.1974.10482955
    """
    if center not in ("median", "mean"):
        raise ValueError(f"center must be 'median' or 'mean', got {center!r}")
    test = "brown_forsythe" if center == "median" else "levene"
    method = "Brown–Forsythe test" if center == "median" else "Levene's test"
    clean = clean_samples(samples, names)
    groups = list(clean.nonempty)
    k, n = len(groups), clean.n_used
    if k < 2 or n - k < 1:
        return _not_computed(test, method, clean, "fewer than 2 groups with data or N <= k")
    dev = [np.abs(g - (np.median(g) if center == "median" else g.mean())) for g in groups]
    if all(np.ptp(d) == 0 for d in dev) and all(d.size for d in dev):
        if sum(((d - d.mean()) ** 2).sum() for d in dev) == 0:
            return _not_computed(test, method, clean, "no spread in absolute deviations")
    w, p = stats.levene(*groups, center=center)
    return TestResult(test, float(w), float(k - 1), float(p), n, float(n - k), method,
                      {"n_missing": clean.n_missing})
