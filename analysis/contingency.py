"""Tests of association in contingency tables.

* :func:`chi_square` — Pearson chi-square without continuity correction;
* :func:`fisher_exact_rxc` — exact Fisher–Freeman–Halton test (network algorithm in
  :mod:`analysis._fexact`) with a seeded Monte Carlo fallback;
* :func:`linear_by_linear` — Mantel's linear-by-linear association (trend) test, df = 1;
* :func:`cmh_ordinal` — generalized Cochran–Mantel–Haenszel "row mean scores differ"
  statistic (nominal groups x ordered response), df = r - 1;
* :func:`crosstab` — table of two 1-D arrays, dropping pairs with a missing value.

Tables are 2-D arrays of non-negative integer counts (or a pandas crosstab).  Chi-square and
Fisher are symmetric: the groups may be in the rows or in the columns.  For the trend tests the
orientation matters only through the scores (``row_scores``/``col_scores``) and, for
:func:`cmh_ordinal`, the ``groups`` argument.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from analysis._fexact import TOL, BudgetExceeded, fexact_pvalue
from analysis._results import TestResult
from analysis.errors import CohortError, ExactTestFallbackWarning

__all__ = ["crosstab", "chi_square", "fisher_exact_rxc", "fallback_reason", "linear_by_linear", "cmh_ordinal"]

_NAN = math.nan


def crosstab(x, y) -> pd.DataFrame:
    """Contingency table of two 1-D arrays; pairs with a missing value are dropped.

    Parameters
    ----------
    x, y : array-like or pandas Series of equal length
        Row and column variables.  Categorical values keep all their categories in order
        (an unobserved level gives an empty row/column); other values are sorted.

    Returns
    -------
    pandas.DataFrame
        Counts (``int64``), rows = levels of ``x``, columns = levels of ``y``;
        ``attrs['n_used']`` pairs entered the table, ``attrs['n_missing']`` were dropped.

    Raises
    ------
    CohortError
        If ``x`` and ``y`` differ in length.
    """
    xs = pd.Series(x).reset_index(drop=True)
    ys = pd.Series(y).reset_index(drop=True)
    if len(xs) != len(ys):
        raise CohortError(f"crosstab: x has {len(xs)} values but y has {len(ys)}; expected equal lengths")
    ok = xs.notna() & ys.notna()
    xu, yu = xs[ok], ys[ok]

    def levels(s, full):
        if isinstance(full.dtype, pd.CategoricalDtype):
            return list(full.cat.categories)
        return sorted(pd.unique(s))

    rl, cl = levels(xu, xs), levels(yu, ys)
    ri = pd.Index(rl).get_indexer(xu)
    ci = pd.Index(cl).get_indexer(yu)
    counts = np.zeros((len(rl), len(cl)), dtype=np.int64)
    np.add.at(counts, (ri, ci), 1)
    out = pd.DataFrame(counts, index=pd.Index(rl, name=xs.name), columns=pd.Index(cl, name=ys.name))
    out.attrs["n_used"] = int(ok.sum())
    out.attrs["n_missing"] = int((~ok).sum())
    return out


def _as_table(table) -> np.ndarray:
    """Validate a table of counts -> 2-D int64 array (one-line CohortError otherwise)."""
    arr = np.asarray(table.to_numpy() if isinstance(table, pd.DataFrame) else table, dtype=object)
    if arr.ndim != 2:
        raise CohortError(f"contingency table: got a {arr.ndim}-D array; expected a 2-D table of counts")
    out = np.zeros(arr.shape, dtype=np.int64)
    for (i, j), val in np.ndenumerate(arr):
        try:
            f = float(val)
        except (TypeError, ValueError):
            f = _NAN
        if not math.isfinite(f) or f < 0 or f != round(f):
            raise CohortError(
                f"contingency table: cell (row {i + 1}, column {j + 1}) is {val!r}; "
                "expected a non-negative integer count"
            )
        out[i, j] = int(round(f))
    return out


def _drop_empty(t: np.ndarray):
    """Drop all-zero rows/columns; return (table, details dict, reason or None)."""
    details = {}
    rz = np.flatnonzero(t.sum(axis=1) == 0)
    cz = np.flatnonzero(t.sum(axis=0) == 0)
    if len(rz) or len(cz):
        details["dropped_empty_rows"] = [int(i) + 1 for i in rz]
        details["dropped_empty_columns"] = [int(j) + 1 for j in cz]
        t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    reason = None
    if t.shape[0] < 2 or t.shape[1] < 2:
        reason = (f"fewer than 2 non-empty rows or columns ({t.shape[0]} x {t.shape[1]} after "
                  "dropping empty ones); no test of association possible")
        details["reason"] = reason
    return t, details, reason


def chi_square(table) -> TestResult:
    """Pearson chi-square test of independence, without continuity correction.

    Parameters
    ----------
    table : array-like or pandas.DataFrame
        r x c non-negative integer counts; groups in rows or columns (symmetric).

    Returns
    -------
    TestResult
        ``test='chi_square'``, ``statistic`` X², ``df = (r-1)(c-1)``, ``p_value``;
        ``details``: ``min_expected``, ``n_cells_expected_lt5``, ``prop_cells_expected_lt5``,
        ``expected`` (list of lists), and ``dropped_empty_rows/columns`` (1-based) when any
        row or column sum was zero.  With fewer than 2 non-empty rows or columns the
        statistic and p-value are NaN and ``details['reason']`` says why.

    Raises
    ------
    CohortError
        Negative, non-integer or missing counts, or a non 2-D input.

    Notes
    -----
    ``X² = sum (O - E)² / E`` with ``E_ij = R_i C_j / N``; p from the chi-square distribution
    with ``(r-1)(c-1)`` df.  Empty rows/columns are dropped first (R returns NaN there).
    Matches R 4.2 ``chisq.test(x, correct = FALSE)`` (tests/fixtures/r_reference/contingency.R).

    References
    ----------
    Pearson K. (1900). On the criterion that a given system of deviations ... Philosophical
    Magazine 50(302):157-175. doi:10.1080/14786440009463897

    Examples
    --------
    >>> round(chi_square([[10, 20], [20, 10]]).statistic, 4)
    6.6667
    """
    t0 = _as_table(table)
    n = int(t0.sum())
    t, details, reason = _drop_empty(t0)
    if reason:
        return TestResult("chi_square", _NAN, _NAN, _NAN, n, method="Pearson chi-square test", details=details)
    N = t.sum()
    E = np.outer(t.sum(axis=1), t.sum(axis=0)) / N
    stat = float(((t - E) ** 2 / E).sum())
    df = (t.shape[0] - 1) * (t.shape[1] - 1)
    details.update(
        min_expected=float(E.min()),
        n_cells_expected_lt5=int((E < 5).sum()),
        prop_cells_expected_lt5=float((E < 5).mean()),
        expected=E.tolist(),
    )
    return TestResult("chi_square", stat, float(df), float(stats.chi2.sf(stat, df)), n,
                      method="Pearson chi-square test", details=details)


def _log_prob_kernel(tables: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln
    return -gammaln(tables + 1.0).sum(axis=(-2, -1))


#: Default deterministic work budget of the exact test (network rows + binary-search queries).
#: About 4-10 s on the 2-core development machine; see bench/README-fisher.md.
DEFAULT_WORK_BUDGET = 100_000_000


def fallback_reason(kind: str, limit) -> str:
    """The one sentence that says why the exact test gave way to Monte Carlo.

    The same text goes into ``details['fallback_reason']``, the Table 1 footnote, the
    methods paragraph and ``table1_stats.csv`` (``kind``: ``'work'``, ``'memory'``,
    ``'time'`` or ``'forced'``).
    """
    if kind == "work":
        return (f"the exact network algorithm would need more than its deterministic work budget of "
                f"{int(limit):,} network rows")
    if kind == "memory":
        return (f"one stage of the exact network algorithm would hold more than {int(limit):,} rows "
                "(its memory cap)")
    if kind == "time":
        return f"the exact computation ran past the time limit of {limit:g} s set by the caller"
    return "Monte Carlo requested (time_budget=0)"


def fisher_exact_rxc(table, *, time_budget: float | None = None, work_budget: int | None = DEFAULT_WORK_BUDGET,
                     mc_draws: int = 100_000, seed: int = 0) -> TestResult:
    """Fisher–Freeman–Halton exact test for an r x c table, with a seeded Monte Carlo fallback.

    Parameters
    ----------
    table : array-like or pandas.DataFrame
        r x c non-negative integer counts; groups in rows or columns (symmetric).
    time_budget : float or None, default None
        Optional wall-clock limit in seconds (``0`` forces Monte Carlo).  Off by default,
        and not used by Table 1: a clock makes the exact-or-Monte-Carlo decision depend on
        the machine and its load.
    work_budget : int or None, default ``DEFAULT_WORK_BUDGET`` (1e8)
        Units of work (network rows materialised and binary-search queries) allowed for the
        exact computation.  Unlike seconds, this count is the same on every machine and run,
        so whether a table gets an exact or a Monte Carlo p-value is reproducible (as is the
        memory cap of one stage, ``analysis._fexact._MAX_ROWS`` rows).  ``None``: no work
        limit.
    mc_draws : int, default 100_000
        Tables drawn for the Monte Carlo estimate.
    seed : int, default 0
        Seed of ``numpy.random.Generator`` for the Monte Carlo estimate.

    Returns
    -------
    TestResult
        Exact: ``test='fisher_exact'``, ``statistic`` and ``df`` NaN.  Fallback:
        ``test='fisher_monte_carlo'`` with ``details`` ``mc_draws``, ``mc_seed``, ``mc_se``,
        ``mc_hits`` (simulated tables at least as extreme), ``p_upper_bound`` (True when
        ``mc_hits == 0``: then ``p_value = 1/(B+1)`` is only an upper bound, to be reported
        as ``p < 1/(B+1)``) and ``fallback_reason`` (:func:`fallback_reason`).
        Empty rows/columns are dropped (listed in ``details``); fewer than 2 non-empty rows
        or columns gives p NaN with ``details['reason']``.

    Warns
    -----
    ExactTestFallbackWarning
        When the work budget or the memory cap (or a caller's time budget) is exceeded and
        Monte Carlo is used; the message and ``details['fallback_reason']`` say which.

    Raises
    ------
    CohortError
        Negative, non-integer or missing counts, or a non 2-D input.

    Notes
    -----
    p = sum of the hypergeometric probabilities ``P(x) = prod R_i! prod C_j! / (N! prod x_ij!)``
    of all tables with the observed margins and ``P(x) <= P_obs (1 + 1e-7)`` (R's 2 x 2
    ``fisher.test`` uses this relative tolerance; R's r x c FEXACT uses about 3.45e-7, see
    :mod:`analysis._fexact` for why we keep 1e-7).  Computed by a network algorithm (Mehta &
    Patel 1983) described in :mod:`analysis._fexact`; deterministic.  Matches R 4.2
    ``fisher.test(x, workspace = 2e8)`` and, for 2 x 2, ``scipy.stats.fisher_exact``
    (two-sided).  The Monte Carlo p-value is ``(1 + #{P(x*) <= P_obs}) / (B + 1)`` over ``B``
    tables drawn with fixed margins (``scipy.stats.random_table``), as R's
    ``simulate.p.value``; ``mc_se = sqrt(p (1 - p) / B)``.

    References
    ----------
    Freeman G.H., Halton J.H. (1951). Note on an exact treatment of contingency, goodness of
    fit and other problems of significance. Biometrika 38:141-149. doi:10.1093/biomet/38.1-2.141
    Mehta C.R., Patel N.R. (1983). A network algorithm for performing Fisher's exact test in
    r x c contingency tables. JASA 78(382):427-434. doi:10.1080/01621459.1983.10477989

    Examples
    --------
    >>> round(fisher_exact_rxc([[3, 1], [1, 3]]).p_value, 6)
    0.485714
    """
    t0 = _as_table(table)
    n = int(t0.sum())
    t, details, reason = _drop_empty(t0)
    method = "Fisher-Freeman-Halton exact test"
    if reason:
        return TestResult("fisher_exact", _NAN, _NAN, _NAN, n, method=method, details=details)
    try:
        if time_budget is not None and time_budget <= 0:
            raise BudgetExceeded("forced")
        p = fexact_pvalue(t, time_budget=time_budget, max_work=work_budget)
        return TestResult("fisher_exact", _NAN, _NAN, p, n, method=method, details=details)
    except BudgetExceeded as exc:
        kind = getattr(exc, "kind", "time") if str(exc) != "forced" else "forced"
        why = fallback_reason(kind, time_budget if kind == "time" else exc.limit)
    rng = np.random.default_rng(seed)
    obs = float(_log_prob_kernel(t.astype(float)))
    dist = stats.random_table(t.sum(axis=1), t.sum(axis=0), seed=rng)
    hits = 0
    left = int(mc_draws)
    while left > 0:
        b = min(left, 20_000)
        sims = dist.rvs(size=b).astype(float)
        hits += int((_log_prob_kernel(sims) <= obs + TOL).sum())
        left -= b
    p = (1 + hits) / (mc_draws + 1)
    warnings.warn(
        f"exact Fisher test not completed for a {t.shape[0]} x {t.shape[1]} table (n = {n}): {why}; "
        f"Monte Carlo estimate from {mc_draws} tables (seed {seed}) used instead",
        ExactTestFallbackWarning, stacklevel=2,
    )
    details.update(mc_draws=int(mc_draws), mc_seed=seed, mc_se=float(math.sqrt(p * (1 - p) / mc_draws)),
                   mc_hits=int(hits), p_upper_bound=bool(hits == 0), fallback_reason=why)
    return TestResult("fisher_monte_carlo", _NAN, _NAN, float(p), n,
                      method="Fisher-Freeman-Halton test, Monte Carlo p-value", details=details)


def _scores(scores, k, what):
    if scores is None:
        return np.arange(1, k + 1, dtype=float)
    s = np.asarray(scores, dtype=float).reshape(-1)
    if len(s) != k or not np.isfinite(s).all():
        raise CohortError(f"linear_by_linear: {what} has {len(s)} finite values; expected {k} (one per level)")
    return s


def linear_by_linear(table, row_scores=None, col_scores=None) -> TestResult:
    """Mantel's linear-by-linear association (trend) test for two ordered variables.

    Parameters
    ----------
    table : array-like or pandas.DataFrame
        r x c non-negative integer counts; both rows and columns in their natural order.
    row_scores, col_scores : array-like, optional
        Scores of the row / column levels (default ``1..r`` / ``1..c``, equally spaced).

    Returns
    -------
    TestResult
        ``test='linear_by_linear'``, ``statistic`` M² (chi-square form), ``df = 1``,
        asymptotic two-sided ``p_value``; ``details['z']`` is the signed standardized
        statistic and ``details['r']`` the Pearson correlation of the scores.

    Raises
    ------
    CohortError
        Bad counts, or scores of the wrong length.

    Notes
    -----
    ``M² = (N - 1) r²`` with ``r`` the Pearson correlation of row and column scores over the
    N observations; equivalently ``(T - E T)² / Var T`` with ``T = sum u_i v_j x_ij`` and the
    permutation (conditional) variance, whose ``N - 1`` denominator gives ``N - 1`` here.
    Matches R coin 1.4 ``lbl_test(y ~ x, distribution = 'asymptotic')`` with ordered factors:
    coin reports ``Z`` with ``Z² = M²`` (``N - 1``, not ``N``).  Appropriate only when BOTH
    variables are ordinal: metastatic / lymphoma / benign is not an ordering, so for an ordinal
    response across those groups use :func:`cmh_ordinal` (or Kruskal–Wallis on the scores).
    Rows or columns with zero total do not affect the statistic.

    References
    ----------
    Mantel N. (1963). Chi-square tests with one degree of freedom; extensions of the
    Mantel-Haenszel procedure. JASA 58(303):690-700. doi:10.1080/01621459.1963.10500879
    Agresti A. (2002). Categorical Data Analysis, 2nd ed., section 3.4. doi:10.1002/0471249688

    Examples
    --------
    >>> res = linear_by_linear([[10, 5, 2], [4, 8, 9]])
    >>> res.df
    1.0
    """
    t = _as_table(table)
    n = int(t.sum())
    u = _scores(row_scores, t.shape[0], "row_scores")
    v = _scores(col_scores, t.shape[1], "col_scores")
    ri, ci = t.sum(axis=1), t.sum(axis=0)
    details = {}
    if n < 2:
        details["reason"] = "fewer than 2 observations"
        return TestResult("linear_by_linear", _NAN, 1.0, _NAN, n, method="linear-by-linear association test",
                          details=details)
    mu, mv = (ri @ u) / n, (ci @ v) / n
    suu = ri @ (u - mu) ** 2
    svv = ci @ (v - mv) ** 2
    if suu <= 0 or svv <= 0:
        details["reason"] = "row or column scores are constant over the observations; correlation undefined"
        return TestResult("linear_by_linear", _NAN, 1.0, _NAN, n, method="linear-by-linear association test",
                          details=details)
    suv = (u - mu) @ t @ (v - mv)
    r = float(suv / math.sqrt(suu * svv))
    m2 = (n - 1) * r * r
    details.update(z=math.copysign(math.sqrt(m2), r), r=r)
    return TestResult("linear_by_linear", float(m2), 1.0, float(stats.chi2.sf(m2, 1)), n,
                      method="linear-by-linear association test", details=details)


def cmh_ordinal(table, col_scores=None, *, groups: str = "rows") -> TestResult:
    """Generalized Cochran–Mantel–Haenszel "row mean scores differ" test.

    For nominal groups x an ordered response: do the mean response scores differ between
    the groups?  (No ordering of the groups is assumed.)

    Parameters
    ----------
    table : array-like or pandas.DataFrame
        Counts, groups x ordered response levels (``groups='rows'``) or transposed
        (``groups='columns'``).
    col_scores : array-like, optional
        Scores of the response levels (default ``1..k``).
    groups : {'rows', 'columns'}, default 'rows'
        Where the groups are.

    Returns
    -------
    TestResult
        ``test='cmh_ordinal'``, ``statistic`` Q, ``df = g - 1`` (non-empty groups), p from
        the chi-square distribution.

    Raises
    ------
    CohortError
        Bad counts, bad ``groups`` value, or scores of the wrong length.

    Notes
    -----
    With ``T_i = sum_j v_j x_ij`` (score sum of group i), ``E T_i = n_i vbar`` and the
    permutation covariance ``V = N/(N-1) S_v (diag(n) - n n^T / N)`` with
    ``S_v = sum_j c_j (v_j - vbar)² / N``, ``Q = (T - E T)^T V^+ (T - E T)`` (Strasser & Weber
    1999 linear statistic).  Matches R coin 1.4 ``cmh_test(y ~ x)`` with ``x`` a factor and
    ``y`` an ordered factor (asymptotic).  Note coin's ``lbl_test`` silently treats an
    unordered ``x`` as ordered and gives the 1-df trend statistic instead.

    References
    ----------
    Landis J.R., Heyman E.R., Koch G.G. (1978). Average partial association in three-way
    contingency tables. Int Stat Rev 46(3):237-254. doi:10.2307/1402373
    Strasser H., Weber C. (1999). On the asymptotic theory of permutation statistics.
    Math Methods Stat 8:220-250.

    Examples
    --------
    >>> cmh_ordinal([[10, 5, 2], [4, 8, 9], [6, 6, 6]]).df
    2.0
    """
    if groups not in ("rows", "columns"):
        raise CohortError(f"cmh_ordinal: groups={groups!r}; expected 'rows' or 'columns'")
    t = _as_table(table)
    if groups == "columns":
        t = t.T
    n = int(t.sum())
    v = _scores(col_scores, t.shape[1], "col_scores")
    t = t[t.sum(axis=1) > 0]
    ng = t.sum(axis=1).astype(float)
    ci = t.sum(axis=0)
    method = "generalized Cochran-Mantel-Haenszel test (row mean scores)"
    if len(ng) < 2 or n < 2:
        return TestResult("cmh_ordinal", _NAN, _NAN, _NAN, n, method=method,
                          details={"reason": "fewer than 2 non-empty groups"})
    vbar = (ci @ v) / n
    sv = (ci @ (v - vbar) ** 2) / n
    if sv <= 0:
        return TestResult("cmh_ordinal", _NAN, _NAN, _NAN, n, method=method,
                          details={"reason": "response scores are constant over the observations"})
    T = t @ v
    d = T - ng * vbar
    V = n / (n - 1) * sv * (np.diag(ng) - np.outer(ng, ng) / n)
    q = float(d @ np.linalg.pinv(V) @ d)
    df = len(ng) - 1
    return TestResult("cmh_ordinal", q, float(df), float(stats.chi2.sf(q, df)), n, method=method)
