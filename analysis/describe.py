"""Descriptive summaries per group and overall: counts and column percentages for
categorical / binary / ordinal variables, mean, SD, median, quartiles and range for
continuous ones.  Tidy, unrounded (rounding lives in :mod:`analysis.formatting`).

Input convention: a DataFrame, the name of its group column, and the variables either as
``analysis.schema.Variable`` objects (anything with ``name``, ``type`` and ``levels``
attributes) or as plain column names with ``types={'age': 'continuous', ...}`` and
optional ``levels={'shape': ['oval', 'round', 'irregular']}``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ._groups import default_levels
from .errors import CohortError, did_you_mean

__all__ = ["describe", "summarize_categorical", "summarize_continuous", "standardized_mean_difference",
           "OVERALL", "VARIABLE_TYPES"]

OVERALL = "overall"
VARIABLE_TYPES = ("continuous", "categorical", "ordinal", "binary")
COLUMNS = ["variable", "type", "group", "level", "count", "percent", "n_used", "n_missing",
           "mean", "sd", "median", "q1", "q3", "min", "max"]


def _resolve_levels(series: pd.Series, levels, variable):
    """Levels in schema order; a value outside them is a CohortError with did-you-mean."""
    observed = pd.unique(series.dropna())
    if levels is None:
        return default_levels(series.dropna(), series)
    levels = list(levels)
    as_text = {str(lv) for lv in levels}
    for value in observed:
        if value not in levels and str(value) not in as_text:
            raise CohortError(f"value {value!r} is not a declared level (expected: "
                              f"{', '.join(map(str, levels))}{did_you_mean(value, map(str, levels))})",
                              column=variable)
    return levels


def _group_levels(data, group, group_levels):
    if group not in data.columns:
        raise CohortError(f"group column '{group}' not found{did_you_mean(group, data.columns)}",
                          column=group)
    if group_levels is not None:
        return list(group_levels)
    return default_levels(data[group].dropna(), data[group])


def _subsets(data, group, group_levels):
    """(label, sub-frame) for 'overall' then each group; rows with a missing group are left out."""
    keep = data[group].notna()
    yield OVERALL, data.loc[keep]
    for lev in group_levels:
        yield str(lev), data.loc[data[group].astype(object) == lev]


def summarize_categorical(data: pd.DataFrame, variable: str, group: str, levels=None,
                          group_levels=None, var_type: str = "categorical") -> pd.DataFrame:
    """Counts and column percentages of every level, per group and overall.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient; not modified.
    variable, group : str
        Column names.
    levels : sequence, optional
        Levels in schema order (default: categorical order, else sorted observed values).
        Every level is reported, also those with count 0.
    group_levels : sequence, optional
        Group order (default: categorical order, else sorted).
    var_type : str
        Written to the ``type`` column (``categorical``, ``binary`` or ``ordinal``).

    Returns
    -------
    pandas.DataFrame
        ``variable, type, group, level, count, percent, n_used, n_missing`` (plus the
        continuous columns as NaN); ``group`` is ``'overall'`` then each group level;
        ``percent`` = 100 * count / n_used (column percent among non-missing), NaN when a
        group has no non-missing value.

    Raises
    ------
    CohortError
        Unknown column, or a value not among ``levels`` (with did-you-mean).
    """
    if variable not in data.columns:
        raise CohortError(f"variable '{variable}' not found{did_you_mean(variable, data.columns)}",
                          column=variable)
    glevels = _group_levels(data, group, group_levels)
    levels = _resolve_levels(data[variable], levels, variable)
    rows = []
    for label, sub in _subsets(data[[variable, group]], group, glevels):
        col = sub[variable]
        n_missing = int(col.isna().sum())
        n_used = int(col.notna().sum())
        # match the few distinct values to the levels (a value equal to a level or with
        # the same text counts for it), then add up their frequencies
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
        codes = np.asarray(codes)
        uniques = list(np.asarray(uniques, dtype=object))
        freq = np.bincount(codes[codes >= 0], minlength=len(uniques))
        for lev in levels:
            match = np.array([bool(u == lev) or str(u) == str(lev) for u in uniques], dtype=bool)
            count = int(freq[match].sum())
            rows.append({"variable": variable, "type": var_type, "group": label, "level": lev,
                         "count": count, "percent": 100.0 * count / n_used if n_used else math.nan,
                         "n_used": n_used, "n_missing": n_missing})
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def summarize_continuous(data: pd.DataFrame, variable: str, group: str,
                         group_levels=None) -> pd.DataFrame:
    """n, mean, SD, median, quartiles, min and max per group and overall.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient; not modified.
    variable, group : str
        Column names; ``variable`` must be numeric (missing allowed).
    group_levels : sequence, optional
        Group order.

    Returns
    -------
    pandas.DataFrame
        ``variable, type, group, n_used, n_missing, mean, sd, median, q1, q3, min, max``
        (``level``, ``count``, ``percent`` NaN).  SD uses ddof=1 (NaN for n < 2);
        quartiles use linear interpolation between order statistics (R ``quantile`` type 7,
        numpy's default).

    Raises
    ------
    CohortError
        Unknown column or non-numeric values.
    """
    if variable not in data.columns:
        raise CohortError(f"variable '{variable}' not found{did_you_mean(variable, data.columns)}",
                          column=variable)
    glevels = _group_levels(data, group, group_levels)
    raw = data[variable]
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & raw.notna()
    if bad.any():
        raise CohortError(f"non-numeric value {raw[bad].iloc[0]!r} in a continuous variable "
                          "(expected numbers)", column=variable)
    num = num.astype(float)
    rows = []
    for label, sub in _subsets(pd.DataFrame({group: data[group], "__value__": num}), group, glevels):
        x = sub["__value__"].to_numpy()
        n_missing = int(np.isnan(x).sum())
        x = x[~np.isnan(x)]
        row = {"variable": variable, "type": "continuous", "group": label,
               "n_used": int(x.size), "n_missing": n_missing}
        if x.size:
            q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
            row.update(mean=float(x.mean()), sd=float(x.std(ddof=1)) if x.size > 1 else math.nan,
                       median=float(med), q1=float(q1), q3=float(q3), min=float(x.min()),
                       max=float(x.max()))
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def standardized_mean_difference(values, groups, var_type: str, *, levels=None,
                                 group_levels=None) -> dict:
    """Standardized mean difference (SMD) between groups, as R ``tableone`` reports it.

    Parameters
    ----------
    values, groups : array-like
        Aligned 1-D arrays, one entry per patient; pairs with a missing value are left out.
    var_type : {'continuous', 'categorical', 'ordinal', 'binary'}
        Continuous: mean and SD; the others: level proportions.
    levels, group_levels : sequence, optional
        Level and group order (default: sorted observed values).

    Returns
    -------
    dict
        ``smd``: the SMD for two groups, else the mean of the pairwise SMDs (what R
        ``tableone``'s ``print(..., smd = TRUE)`` shows); ``smd_max``: the largest pairwise
        SMD; ``pairs``: ``{(g1, g2): smd}``.  NaN where undefined (a group without values,
        or a variable constant in both groups of a pair).

    Notes
    -----
    Continuous: ``|m1 - m2| / sqrt((s1² + s2²) / 2)`` (SD with ``n - 1``).  Categorical,
    ordinal and binary (Yang & Dalton 2012): with ``p1, p2`` the proportions of the levels
    except the first, ``S_k = diag(p_k) - p_k p_k'`` and ``S = (S1 + S2) / 2``,
    ``SMD = sqrt((p1 - p2)' S^+ (p1 - p2))`` (``S^+``: Moore–Penrose inverse, as R
    ``tableone`` uses ``MASS::ginv``, so a level absent from both groups does not make it
    undefined); for a binary variable this is ``|p1 - p2| / sqrt((p1 q1 + p2 q2) / 2)``.
    Matches the Python package ``tableone`` 0.9 (``_cont_smd``/``_cat_smd``, the same
    formulas; tests/analysis/test_describe.py).  Not a test: an SMD above 0.1 is commonly
    read as a meaningful imbalance (Austin 2009).

    References
    ----------
    Yang D, Dalton JE. A unified approach to measuring the effect size between two groups
    using SAS. SAS Global Forum 2012, paper 335-2012.
    Austin PC. Balance diagnostics for comparing the distribution of baseline covariates
    between treatment groups in propensity-score matched samples. Stat Med.
    2009;28(25):3083-3107. https://doi.org/10.1002/sim.3697

    Examples
    --------
    >>> round(standardized_mean_difference([1, 2, 3, 4, 5, 6], list("aaabbb"), "continuous")["smd"], 4)
    3.0
    """
    v = pd.Series(np.asarray(values, dtype=object).reshape(-1))
    g = pd.Series(np.asarray(groups, dtype=object).reshape(-1))
    keep = v.notna() & g.notna()
    v, g = v[keep].reset_index(drop=True), g[keep].reset_index(drop=True)
    glev = list(group_levels) if group_levels is not None else default_levels(g, g)
    if var_type == "continuous":
        x = pd.to_numeric(v, errors="coerce").astype(float)
        per = [x[(g.astype(str) == str(lev)).to_numpy()].to_numpy() for lev in glev]
    else:
        lev = list(levels) if levels is not None else default_levels(v, v)
        text = v.astype(str)
        per = []
        for grp in glev:
            sub = text[(g.astype(str) == str(grp)).to_numpy()]
            per.append(np.array([(sub == str(lv)).mean() if len(sub) else math.nan for lv in lev]))
    pairs = {}
    for i in range(len(glev)):
        for j in range(i + 1, len(glev)):
            a, b = per[i], per[j]
            if var_type == "continuous":
                if len(a) < 2 or len(b) < 2:
                    d = math.nan
                else:
                    pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2.0)
                    diff = abs(float(np.mean(a) - np.mean(b)))
                    d = diff / pooled if pooled > 0 else (0.0 if diff == 0 else math.inf)
            elif np.isnan(a).any() or np.isnan(b).any():
                d = math.nan
            else:
                pa, pb = a[1:], b[1:]
                cov = [np.diag(p) - np.outer(p, p) for p in (pa, pb)]
                diff = pa - pb
                d = float(np.sqrt(max(float(diff @ np.linalg.pinv((cov[0] + cov[1]) / 2.0) @ diff), 0.0)))
            pairs[(str(glev[i]), str(glev[j]))] = d
    vals = np.array(list(pairs.values()), dtype=float)
    defined = len(vals) > 0 and not np.isnan(vals).any()
    return {"smd": float(np.mean(vals)) if defined else math.nan,
            "smd_max": float(np.max(vals)) if defined else math.nan, "pairs": pairs}


def _as_specs(variables, types, levels):
    specs = []
    types = dict(types or {})
    levels = dict(levels or {})
    for v in variables:
        if hasattr(v, "name") and hasattr(v, "type"):
            specs.append((v.name, str(v.type), getattr(v, "levels", None) or None))
            continue
        name = str(v)
        if name not in types:
            raise CohortError(f"no type given for variable '{name}' (expected one of "
                              f"{', '.join(VARIABLE_TYPES)} in types)", column=name)
        specs.append((name, str(types[name]), levels.get(name)))
    for name, vtype, _ in specs:
        if vtype not in VARIABLE_TYPES:
            raise CohortError(f"unknown variable type '{vtype}' (expected: {', '.join(VARIABLE_TYPES)}"
                              f"{did_you_mean(vtype, VARIABLE_TYPES)})", column=name)
    return specs


def describe(data: pd.DataFrame, group: str, variables: Sequence, types: Mapping[str, str] | None = None,
             levels: Mapping[str, Sequence] | None = None, group_levels=None) -> pd.DataFrame:
    """Summaries of several variables per group and overall, in the order given.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per patient; never modified.  Rows with a missing group are left out.
    group : str
        Group column.
    variables : sequence of str or analysis.schema.Variable
        Variables to summarize, in display (schema) order.
    types : mapping str -> str, optional
        Type per variable name (``continuous | categorical | ordinal | binary``); needed
        when ``variables`` are plain names.
    levels : mapping str -> sequence, optional
        Levels in schema order for categorical/ordinal/binary names.
    group_levels : sequence, optional
        Group order (default: categorical order of the group column, else sorted).

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, type, group, level, count, percent, n_used, n_missing, mean,
        sd, median, q1, q3, min, max``; categorical-type variables give one row per
        (group, level), continuous ones one row per group; ``group='overall'`` first.

    Examples
    --------
    >>> df = pd.DataFrame({"group": ["a", "a", "b"], "age": [50.0, 60.0, None],
    ...                    "sex": ["female", "male", "male"]})
    >>> out = describe(df, "group", ["age", "sex"], types={"age": "continuous", "sex": "binary"},
    ...                levels={"sex": ["female", "male"]})
    >>> out.loc[out["variable"] == "sex", ["group", "level", "count", "percent", "n_used"]]  # doctest: +NORMALIZE_WHITESPACE
         group   level  count  percent  n_used
    3  overall  female      1   33.333333       3
    4  overall    male      2   66.666667       3
    5        a  female      1   50.000000       2
    6        a    male      1   50.000000       2
    7        b  female      0    0.000000       1
    8        b    male      1  100.000000       1
    """
    frames = []
    for name, vtype, lv in _as_specs(variables, types, levels):
        if vtype == "continuous":
            frames.append(summarize_continuous(data, name, group, group_levels))
        else:
            frames.append(summarize_categorical(data, name, group, lv, group_levels, vtype))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out["count"] = out["count"].astype("Int64")
    return out
