"""Which test for which variable, and why — the decision shown in Table-1 footnotes.

``choose_test(values, groups, var_type)`` looks at the data of one variable and returns a
frozen :class:`TestChoice` (``test``, human-readable ``reason``, ``summary`` style).

Input convention: ``values`` and ``groups`` are two aligned 1-D array-likes (one entry per
patient); rows with a missing value or a missing group are not used.

Rules (``override='auto'``)
---------------------------
categorical, binary
    Pearson chi-square test of independence if every expected count of the
    levels x groups table is >= 5, otherwise the Fisher–Freeman–Halton exact test; the
    reason names the smallest expected count.  2 x 2 tables also use the Pearson
    chi-square *without* Yates' continuity correction (the correction is conservative;
    Fisher takes over whenever an expected count is < 5).  Summary ``'n_percent'``.
continuous
    Shapiro–Wilk in every group at ``alpha`` (default 0.05).  If every group is
    compatible with normality, the Brown–Forsythe test (``alpha``) picks the classical
    one-way ANOVA (equal variances) or Welch's ANOVA; summary ``'mean_sd'``.  Otherwise
    (a group non-normal, or too small for Shapiro–Wilk: n < 3) Kruskal–Wallis and
    summary ``'median_iqr'``.  No "n >= 30, central limit theorem" exemption is made:
    the summary shown in Table 1 (mean ± SD versus median [IQR]) must describe the
    distribution, and for skewed data the median is the honest summary whatever n is.
    Groups larger than 5000 are tested on 5000 evenly spaced order statistics (see
    :func:`analysis.location.normality_check`).
ordinal
    Kruskal–Wallis on the level scores (levels are ordered, groups are not); summary
    ``'n_percent'``.  ``trend=True`` (schema ``test: trend``) gives the linear-by-linear
    association test instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import CohortError, did_you_mean
from .location import normality_check, variance_check

__all__ = ["TestChoice", "choose_test", "TESTS", "OVERRIDE_ALIASES", "expected_counts"]

#: Test names a :class:`TestChoice` can hold.
TESTS = ("chi_square", "fisher", "anova", "welch_anova", "kruskal_wallis", "linear_by_linear")
#: Schema spellings (``analysis.schema.TESTS``) mapped to the names above.
OVERRIDE_ALIASES = {"welch": "welch_anova", "kruskal": "kruskal_wallis", "trend": "linear_by_linear",
                    "anova": "anova", "chi_square": "chi_square", "fisher": "fisher",
                    "fisher_exact": "fisher", "welch_anova": "welch_anova",
                    "kruskal_wallis": "kruskal_wallis", "linear_by_linear": "linear_by_linear"}
_ALLOWED = {
    "continuous": {"anova", "welch_anova", "kruskal_wallis"},
    "ordinal": {"kruskal_wallis", "chi_square", "fisher", "linear_by_linear"},
    "categorical": {"chi_square", "fisher"},
    "binary": {"chi_square", "fisher"},
}
_SUMMARY = {"anova": "mean_sd", "welch_anova": "mean_sd", "kruskal_wallis": "median_iqr"}
SUMMARIES = ("mean_sd", "median_iqr", "n_percent")


@dataclass(frozen=True)
class TestChoice:
    """The chosen test, why, and how the variable is summarised.

    Attributes
    ----------
    test : str
        One of :data:`TESTS`.
    reason : str
        One human-readable sentence for the Table-1 footnotes.
    summary : str
        ``'mean_sd'``, ``'median_iqr'`` or ``'n_percent'``.
    details : Mapping
        Facts behind the decision (e.g. ``min_expected``, ``shapiro_p_min``,
        ``variance_p``, ``overridden``).
    """

    __test__ = False

    test: str
    reason: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        row = asdict(self)
        row.update(row.pop("details"))
        return pd.DataFrame([row])


def _complete(values, groups, variable):
    v = pd.Series(np.asarray(values, dtype=object).reshape(-1))
    g = pd.Series(np.asarray(groups, dtype=object).reshape(-1))
    if len(v) != len(g):
        raise CohortError(f"values ({len(v)}) and groups ({len(g)}) differ in length", column=variable)
    keep = v.notna() & g.notna()
    return v[keep].reset_index(drop=True), g[keep].reset_index(drop=True)


def _levels(series, given):
    if given is not None:
        return list(given)
    try:
        return sorted(pd.unique(series))
    except TypeError:
        return list(pd.unique(series))


def expected_counts(values, groups, levels=None, group_levels=None) -> np.ndarray:
    """Expected counts ``E_ij = row_i * col_j / N`` of the levels x groups table.

    Levels or groups with no observation are left out (they have no expected count).
    """
    v, g = _complete(values, groups, None)
    table = pd.crosstab(pd.Categorical(v, categories=_levels(v, levels)),
                        pd.Categorical(g, categories=_levels(g, group_levels)), dropna=False)
    obs = table.to_numpy(dtype=float)
    obs = obs[obs.sum(axis=1) > 0][:, obs.sum(axis=0) > 0]
    n = obs.sum()
    if n == 0:
        return obs
    return np.outer(obs.sum(axis=1), obs.sum(axis=0)) / n


def _categorical(v, g, levels, group_levels, min_expected_rule):
    exp = expected_counts(v, g, levels, group_levels)
    if exp.size == 0:
        return "chi_square", "no complete observations", {"min_expected": float("nan")}
    shape = f"{exp.shape[0]} x {exp.shape[1]}"
    smallest = float(exp.min())
    n_small = int((exp < min_expected_rule).sum())
    details = {"min_expected": smallest, "n_cells_expected_lt_5": n_small, "table_shape": shape}
    if n_small == 0:
        extra = " (2 x 2: Pearson, no continuity correction)" if exp.shape == (2, 2) else ""
        return ("chi_square",
                f"Pearson chi-square: all expected counts >= {min_expected_rule:g} "
                f"(smallest {smallest:.2f}){extra}", details)
    return ("fisher",
            f"Fisher's exact test: {n_small} of {exp.size} expected counts < {min_expected_rule:g} "
            f"(smallest {smallest:.2f})", details)


def _continuous(v, g, group_levels, alpha):
    x = pd.to_numeric(v, errors="coerce")
    if x.isna().any():
        raise CohortError(f"non-numeric value {v[x.isna()].iloc[0]!r} in a continuous variable")
    glev = [lev for lev in _levels(g, group_levels) if (g == lev).any()]
    samples = [x[(g == lev).to_numpy()].to_numpy(dtype=float) for lev in glev]
    normal = normality_check(samples, names=[str(lev) for lev in glev], alpha=alpha)
    details = {"shapiro_p_min": float(normal["p_value"].min()) if normal["p_value"].notna().any()
               else float("nan")}
    too_small = normal[normal["n_used"] < 3]
    failed = normal[normal["normal"].eq(False).fillna(False).astype(bool)]
    if len(too_small):
        names = ", ".join(too_small["group"])
        return ("kruskal_wallis", f"Kruskal–Wallis: group(s) {names} too small (n < 3) to assess "
                f"normality", details)
    constant = normal[normal["reason"].str.contains("identical")]
    if len(constant):
        return ("kruskal_wallis", f"Kruskal–Wallis: all values identical in group(s) "
                f"{', '.join(constant['group'])}", details)
    if len(failed):
        worst = failed.sort_values("p_value").iloc[0]
        return ("kruskal_wallis",
                f"Kruskal–Wallis: Shapiro–Wilk rejects normality in {len(failed)} of {len(normal)} "
                f"groups (smallest p = {worst['p_value']:.3g} in '{worst['group']}', alpha {alpha:g})",
                details)
    var = variance_check(samples)
    details["variance_p"] = float(var.p_value)
    if np.isnan(var.p_value) or var.p_value >= alpha:
        return ("anova", f"one-way ANOVA: Shapiro–Wilk p >= {alpha:g} in every group and "
                f"Brown–Forsythe p = {var.p_value:.3g} (equal variances)", details)
    return ("welch_anova", f"Welch's ANOVA: Shapiro–Wilk p >= {alpha:g} in every group but "
            f"Brown–Forsythe p = {var.p_value:.3g} < {alpha:g} (unequal variances)", details)


def choose_test(values, groups, var_type: str, override: str = "auto", *, levels=None,
                group_levels=None, trend: bool = False, summary: str = "auto",
                alpha: float = 0.05, variable: str | None = None) -> TestChoice:
    """Choose the omnibus test for one variable across the groups.

    Parameters
    ----------
    values, groups : array-like
        Aligned 1-D arrays, one entry per patient; incomplete rows are not used.
    var_type : {'continuous', 'categorical', 'ordinal', 'binary'}
        Variable type (plain string; an ``analysis.schema.Variable.type`` fits).
    override : str, default 'auto'
        ``'auto'`` or a test from the schema (``anova, welch, kruskal, chi_square, fisher,
        trend`` or the names in :data:`TESTS`); must fit ``var_type``.
    levels, group_levels : sequence, optional
        Level and group order (used for the contingency table).
    trend : bool, default False
        Ordinal only: use the linear-by-linear association test.
    summary : str, default 'auto'
        ``'mean_sd'`` / ``'median_iqr'`` to force the summary style.
    alpha : float, default 0.05
        Level of the Shapiro–Wilk and Brown–Forsythe checks.
    variable : str, optional
        Variable name, used in error messages.

    Returns
    -------
    TestChoice
        See the module docstring for the rules.

    Raises
    ------
    CohortError
        Unknown type or override, an override that does not fit the type, or
        non-numeric values for a continuous variable.

    Examples
    --------
    >>> choose_test(["a", "b", "a", "b"] * 10, ["x", "y"] * 20, "binary").test
    'chi_square'
    >>> choose_test(["a", "b", "a", "b"] * 2, ["x", "y"] * 4, "binary").reason
    "Fisher's exact test: 4 of 4 expected counts < 5 (smallest 2.00)"
    """
    if var_type not in _ALLOWED:
        raise CohortError(f"unknown variable type '{var_type}' (expected: "
                          f"{', '.join(_ALLOWED)}{did_you_mean(var_type, _ALLOWED)})", column=variable)
    if summary != "auto" and summary not in SUMMARIES:
        raise CohortError(f"unknown summary '{summary}' (expected: auto, {', '.join(SUMMARIES)}"
                          f"{did_you_mean(summary, SUMMARIES)})", column=variable)
    v, g = _complete(values, groups, variable)
    details: dict = {"n_used": int(len(v))}
    if override not in ("auto", None):
        if override not in OVERRIDE_ALIASES:
            raise CohortError(f"unknown test '{override}' (expected: auto, "
                              f"{', '.join(sorted(set(OVERRIDE_ALIASES)))}"
                              f"{did_you_mean(override, OVERRIDE_ALIASES)})", column=variable)
        test = OVERRIDE_ALIASES[override]
        if test not in _ALLOWED[var_type]:
            raise CohortError(f"test '{override}' does not apply to a {var_type} variable "
                              f"(allowed: {', '.join(sorted(_ALLOWED[var_type]))})", column=variable)
        details["overridden"] = True
        if test in ("chi_square", "fisher"):
            details["min_expected"] = float(expected_counts(v, g, levels, group_levels).min()) \
                if len(v) else float("nan")
        reason = f"{test.replace('_', ' ')} set in the schema (test: {override})"
    elif var_type in ("categorical", "binary"):
        test, reason, more = _categorical(v, g, levels, group_levels, 5.0)
        details.update(more)
    elif var_type == "ordinal":
        if trend:
            test, reason = ("linear_by_linear", "linear-by-linear association test: ordered levels, "
                            "trend requested in the schema")
        else:
            test, reason = ("kruskal_wallis", "Kruskal–Wallis on level scores: ordered levels, "
                            "unordered groups")
    else:
        test, reason, more = _continuous(v, g, group_levels, alpha)
        details.update(more)
    if summary == "auto":
        summary = _SUMMARY[test] if var_type == "continuous" else "n_percent"
    return TestChoice(test=test, reason=reason, summary=summary, details=details)
