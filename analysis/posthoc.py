"""Pairwise post hoc comparisons between groups, Holm-adjusted within a variable.

* :func:`pairwise_tests` — continuous or ordinal values: Dunn's (1964) z test on the
  pooled Kruskal–Wallis ranks (the standard follow-up of Kruskal–Wallis), Welch's t test
  per pair (follow-up of ANOVA / Welch's ANOVA), or Mann–Whitney U per pair.
* :func:`pairwise_contingency` — categorical / binary / ordinal counts: Pearson
  chi-square (no continuity correction) or Fisher's exact test on the levels x 2 subtable
  of every pair of groups, using :mod:`analysis.contingency`.

Input convention: ``values`` and ``groups`` are aligned 1-D array-likes (one entry per
patient); rows with a missing value or group are left out.  Output is one tidy row per
pair of groups: ``variable, group_a, group_b, test, statistic, p_value, p_adjusted,
adjust_method, n_a, n_b, reason``; a pair that cannot be tested has NaN and a reason
and is not counted in the Holm family.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from ._groups import default_levels
from .errors import CohortError, did_you_mean
from .multiplicity import benjamini_hochberg, holm

__all__ = ["pairwise_tests", "pairwise_contingency", "POSTHOC_COLUMNS"]

POSTHOC_COLUMNS = ["variable", "group_a", "group_b", "test", "statistic", "p_value", "p_adjusted",
                   "adjust_method", "n_a", "n_b", "reason"]
_KINDS = {"dunn": "dunn", "kruskal_wallis": "dunn", "welch_t": "welch_t", "anova": "welch_t",
          "welch_anova": "welch_t", "mann_whitney": "mann_whitney"}
_ADJUST = {"holm": holm, "fdr_bh": benjamini_hochberg, "none": lambda p: np.asarray(p, float)}


def _split(values, groups, group_levels, variable, numeric):
    v = pd.Series(np.asarray(values, dtype=object).reshape(-1))
    g = pd.Series(np.asarray(groups, dtype=object).reshape(-1))
    if len(v) != len(g):
        raise CohortError(f"values ({len(v)}) and groups ({len(g)}) differ in length", column=variable)
    keep = v.notna() & g.notna()
    v, g = v[keep].reset_index(drop=True), g[keep].reset_index(drop=True)
    if numeric:
        num = pd.to_numeric(v, errors="coerce")
        if num.isna().any():
            raise CohortError(f"non-numeric value {v[num.isna()].iloc[0]!r} (expected numbers)",
                              column=variable)
        v = num.astype(float)
    if group_levels is None:
        group_levels = default_levels(g, groups)
    return v, g, list(group_levels)


def _adjust(frame, adjust):
    if adjust not in _ADJUST:
        raise ValueError(f"adjust must be one of {', '.join(_ADJUST)}, got {adjust!r}")
    frame["p_adjusted"] = _ADJUST[adjust](frame["p_value"].to_numpy(dtype=float)) if len(frame) else []
    frame["adjust_method"] = adjust
    return frame.reindex(columns=POSTHOC_COLUMNS)


def pairwise_tests(values, groups, kind: str = "dunn", *, group_levels=None, variable=None,
                   adjust: str = "holm") -> pd.DataFrame:
    """All pairwise comparisons of a continuous (or ordinal score) variable.

    Parameters
    ----------
    values, groups : array-like
        Aligned 1-D arrays; incomplete rows are left out.
    kind : str, default 'dunn'
        ``'dunn'`` (or ``'kruskal_wallis'``), ``'welch_t'`` (or ``'anova'``,
        ``'welch_anova'``), ``'mann_whitney'``.  Passing the omnibus test name picks its
        standard follow-up.
    group_levels : sequence, optional
        Group order (pairs are formed in this order); default categorical order, else sorted.
    variable : str, optional
        Written to the ``variable`` column.
    adjust : {'holm', 'fdr_bh', 'none'}, default 'holm'
        Adjustment over the pairs of this variable.

    Returns
    -------
    pandas.DataFrame
        :data:`POSTHOC_COLUMNS`.  ``statistic`` is Dunn's z, Welch's t or the
        Mann–Whitney U of ``group_a`` (ties: mid-ranks).

    Notes
    -----
    Dunn: with pooled mid-ranks, ``z = (Rbar_a - Rbar_b) / sqrt((N(N+1)/12 -
    sum(t³ - t)/(12(N-1))) (1/n_a + 1/n_b))``, two-sided normal p.  Matches a base-R
    computation from ranks (``tests/fixtures/r_reference/location.R``;
    PMCMRplus/dunn.test are not used).  Welch t matches R ``t.test(var.equal = FALSE)``;
    Mann–Whitney matches R ``wilcox.test(exact = FALSE, correct = TRUE)`` (normal
    approximation with tie and continuity correction) —
    ``tests/fixtures/r_reference/posthoc.R``.  Holm matches R ``p.adjust``.

    References
    ----------
    Dunn OJ. Multiple comparisons using rank sums. Technometrics. 1964;6(3):241-252.
    https://doi.org/10.1080/00401706.1964.10490181
    Welch BL. The generalization of "Student's" problem when several different population
    variances are involved. Biometrika. 1947;34(1-2):28-35. https://doi.org/10.1093/biomet/34.1-2.28
    Mann HB, Whitney DR. On a test of whether one of two random variables is stochastically
    larger than the other. Ann Math Stat. 1947;18(1):50-60. https://doi.org/10.1214/aoms/1177730491
    Holm S. Scand J Stat. 1979;6(2):65-70.

    Examples
    --------
    >>> out = pairwise_tests([1, 2, 3, 4, 5, 6, 7, 8, 9], ["a"] * 3 + ["b"] * 3 + ["c"] * 3)
    >>> out[["group_a", "group_b", "test"]].values.tolist()
    [['a', 'b', 'dunn'], ['a', 'c', 'dunn'], ['b', 'c', 'dunn']]
    """
    if kind not in _KINDS:
        raise CohortError(f"unknown post hoc kind '{kind}' (expected: {', '.join(_KINDS)}"
                          f"{did_you_mean(kind, _KINDS)})", column=variable)
    test = _KINDS[kind]
    v, g, levels = _split(values, groups, group_levels, variable, numeric=True)
    x = v.to_numpy()
    ranks = stats.rankdata(x)
    n_total = x.size
    _, counts = np.unique(x, return_counts=True)
    tie = (counts ** 3 - counts).sum() / (12.0 * (n_total - 1)) if n_total > 1 else 0.0
    var = n_total * (n_total + 1) / 12.0 - tie  # Dunn's rank variance (the same for every pair)
    rows = []
    for a, b in itertools.combinations(levels, 2):
        ia, ib = (g == a).to_numpy(), (g == b).to_numpy()
        xa, xb = x[ia], x[ib]
        row = {"variable": variable, "group_a": str(a), "group_b": str(b), "test": test,
               "statistic": math.nan, "p_value": math.nan, "n_a": int(xa.size), "n_b": int(xb.size),
               "reason": ""}
        if test == "dunn":
            if xa.size == 0 or xb.size == 0 or var <= 0:
                row["reason"] = "empty group or no variation in ranks"
            else:
                z = (ranks[ia].mean() - ranks[ib].mean()) / math.sqrt(var * (1 / xa.size + 1 / xb.size))
                row.update(statistic=float(z), p_value=float(2 * stats.norm.sf(abs(z))))
        elif test == "welch_t":
            if xa.size < 2 or xb.size < 2 or (np.var(xa) == 0 and np.var(xb) == 0):
                row["reason"] = "a group has fewer than 2 observations or no variance"
            else:
                res = stats.ttest_ind(xa, xb, equal_var=False)
                row.update(statistic=float(res.statistic), p_value=float(res.pvalue))
        else:
            if xa.size == 0 or xb.size == 0 or np.ptp(np.concatenate([xa, xb])) == 0:
                row["reason"] = "empty group or all values identical"
            else:
                res = stats.mannwhitneyu(xa, xb, use_continuity=True, alternative="two-sided",
                                         method="asymptotic")
                row.update(statistic=float(res.statistic), p_value=float(res.pvalue))
        rows.append(row)
    return _adjust(pd.DataFrame(rows, columns=[c for c in POSTHOC_COLUMNS
                                               if c not in ("p_adjusted", "adjust_method")]), adjust)


def _table_from_input(table_or_xy, group_levels, levels, variable):
    """Levels x groups count table (DataFrame, columns = groups) from a table or (x, groups)."""
    if isinstance(table_or_xy, tuple) and len(table_or_xy) == 2:
        x, g = table_or_xy
        xs, gs, glev = _split(x, g, group_levels, variable, numeric=False)
        if levels is None:
            levels = default_levels(xs, x if isinstance(x, pd.Series) else None)
        return pd.crosstab(pd.Categorical(xs, categories=levels),
                           pd.Categorical(gs, categories=glev), dropna=False)
    if isinstance(table_or_xy, pd.DataFrame):
        tab = table_or_xy.copy()
    else:
        arr = np.asarray(table_or_xy)
        if arr.ndim != 2:
            raise CohortError("expected a levels x groups table or a (values, groups) tuple",
                              column=variable)
        tab = pd.DataFrame(arr, columns=group_levels if group_levels is not None else None)
    tab.columns = [str(c) for c in tab.columns]
    if group_levels is not None:
        tab = tab[[str(c) for c in group_levels]]
    return tab


def pairwise_contingency(table_or_xy, kind: str = "auto", *, group_levels=None, levels=None,
                         variable=None, adjust: str = "holm") -> pd.DataFrame:
    """Pairwise tests of a categorical variable between every two groups.

    Parameters
    ----------
    table_or_xy : DataFrame, 2-D array-like or tuple (values, groups)
        Counts with levels as rows and groups as columns (a DataFrame's column names are
        the group names), or the raw aligned arrays.
    kind : {'auto', 'chi_square', 'fisher'}, default 'auto'
        ``'auto'``: chi-square when every expected count of the pair's subtable is >= 5,
        otherwise Fisher (the rule of :func:`analysis.selection.choose_test`).
    group_levels, levels : sequence, optional
        Group and level order.
    variable : str, optional
        Written to the ``variable`` column.
    adjust : {'holm', 'fdr_bh', 'none'}, default 'holm'

    Returns
    -------
    pandas.DataFrame
        :data:`POSTHOC_COLUMNS`; ``statistic`` is Pearson's X² (NaN for Fisher);
        ``n_a``/``n_b`` are the group totals.  Levels empty in both groups are dropped from
        the pair's subtable; fewer than 2 levels left gives NaN with a reason.

    Notes
    -----
    Uses :func:`analysis.contingency.chi_square` (Pearson, no continuity correction) and
    :func:`analysis.contingency.fisher_exact_rxc`.  Matches R 4.x ``chisq.test(correct =
    FALSE)`` / ``fisher.test`` on the subtables and ``p.adjust(method = 'holm')``
    (``tests/fixtures/r_reference/posthoc.R``).

    References
    ----------
    Holm S. Scand J Stat. 1979;6(2):65-70.
    Freeman GH, Halton JH. Note on an exact treatment of contingency, goodness of fit and
    other problems of significance. Biometrika. 1951;38(1/2):141-149.
    https://doi.org/10.1093/biomet/38.1-2.141
    """
    from . import contingency  # written in parallel; imported lazily

    if kind not in ("auto", "chi_square", "fisher", "fisher_exact"):
        raise CohortError(f"unknown kind '{kind}' (expected: auto, chi_square, fisher"
                          f"{did_you_mean(kind, ['auto', 'chi_square', 'fisher'])})", column=variable)
    tab = _table_from_input(table_or_xy, group_levels, levels, variable)
    rows = []
    for a, b in itertools.combinations(list(tab.columns), 2):
        sub = tab[[a, b]].to_numpy(dtype=float)
        sub = sub[sub.sum(axis=1) > 0]
        row = {"variable": variable, "group_a": str(a), "group_b": str(b), "test": "",
               "statistic": math.nan, "p_value": math.nan, "n_a": int(tab[a].sum()),
               "n_b": int(tab[b].sum()), "reason": ""}
        if sub.shape[0] < 2 or (sub.sum(axis=0) == 0).any():
            row["test"] = "chi_square" if kind == "chi_square" else "fisher_exact"
            row["reason"] = "fewer than 2 observed levels or an empty group in this pair"
            rows.append(row)
            continue
        test = kind
        if kind == "auto":
            expected = np.outer(sub.sum(axis=1), sub.sum(axis=0)) / sub.sum()
            test = "chi_square" if expected.min() >= 5 else "fisher"
        result = (contingency.chi_square(sub.astype(int)) if test == "chi_square"
                  else contingency.fisher_exact_rxc(sub.astype(int)))
        row.update(test=result.test, statistic=float(result.statistic), p_value=float(result.p_value))
        rows.append(row)
    return _adjust(pd.DataFrame(rows, columns=[c for c in POSTHOC_COLUMNS
                                               if c not in ("p_adjusted", "adjust_method")]), adjust)
