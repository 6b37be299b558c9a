"""Effect sizes with confidence intervals: Cramér's V (bias-corrected), epsilon² for
Kruskal–Wallis, eta² for one-way ANOVA (and, documented, for Welch's ANOVA).

Input conventions: :func:`cramers_v` takes a contingency table (levels x groups counts,
2-D array-like or DataFrame); :func:`epsilon_squared` and :func:`eta_squared` take
``samples``, a sequence of 1-D arrays, one per group (missing values dropped), as in
:mod:`analysis.location`.  Every bootstrap is seeded (``seed=0`` by default), so results
are deterministic.  Nothing is rounded.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ._groups import clean_samples
from ._results import EffectSize
from .errors import CohortError
from .location import anova_oneway, kruskal_wallis

__all__ = ["cramers_v", "epsilon_squared", "eta_squared"]


def _check_ci(ci):
    if ci is not None and not (0 < ci < 1):
        raise ValueError(f"ci must be in (0, 1) or None, got {ci!r}")


def _as_table(table) -> np.ndarray:
    arr = np.array(table.to_numpy() if isinstance(table, pd.DataFrame) else table, dtype=float)
    if arr.ndim != 2:
        raise CohortError(f"expected a 2-D contingency table, got {arr.ndim} dimension(s)")
    if np.isnan(arr).any() or (arr < 0).any() or not np.allclose(arr, np.round(arr)):
        raise CohortError("contingency table must hold non-negative whole counts")
    return arr[arr.sum(axis=1) > 0][:, arr.sum(axis=0) > 0]


def _ncp_limit(stat_cdf, target, upper_start):
    """Noncentrality ``lam >= 0`` with ``stat_cdf(lam) == target`` (cdf decreasing in lam)."""
    if stat_cdf(0.0) <= target:
        return 0.0
    hi = max(10.0, upper_start)
    while stat_cdf(hi) > target:
        hi *= 2.0
        if hi > 1e9:
            return math.inf
    return float(optimize.brentq(lambda lam: stat_cdf(lam) - target, 0.0, hi, xtol=1e-12, rtol=1e-14))


def cramers_v(table, bias_corrected: bool = True, ci: float | None = 0.95) -> EffectSize:
    """Cramér's V of a contingency table, Bergsma-corrected by default, with a CI.

    Parameters
    ----------
    table : 2-D array-like or pandas.DataFrame
        Counts (levels x groups).  Empty rows and columns are dropped.
    bias_corrected : bool, default True
        Use the Bergsma (2013) bias-corrected estimator.
    ci : float or None, default 0.95
        Confidence level; ``None`` for no interval.

    Returns
    -------
    EffectSize
        ``name='cramers_v'`` (or ``'cramers_v_corrected'``), ``estimate``, ``ci_low``,
        ``ci_high`` (NaN when the table has fewer than 2 non-empty rows or columns).

    Notes
    -----
    Pearson ``X²`` without continuity correction; ``V = sqrt(X² / (n (min(r, c) - 1)))``.
    Bias correction (Bergsma 2013): ``phi²~ = max(0, X²/n - (r-1)(c-1)/(n-1))``,
    ``r~ = r - (r-1)²/(n-1)``, ``c~ = c - (c-1)²/(n-1)``,
    ``V~ = sqrt(phi²~ / min(r~ - 1, c~ - 1))``.

    CI: the noncentral chi-square interval for the noncentrality ``lambda`` (the values
    of ``lambda`` for which the observed ``X²`` is the 1 - alpha/2 and alpha/2 quantile of
    chi²(df, lambda), lower limit 0 when ``X²`` is below the central 1 - alpha/2 quantile),
    converted to the population V as ``sqrt(lambda / (n (min(r, c) - 1)))``, capped at 1
    (Smithson 2003).  The same interval is reported for the corrected and uncorrected
    estimate: both estimate the same population V; the corrected one has less bias, so for
    small, null-like tables it may sit at 0 while the interval is [0, upper].
    Matches R 4.x ``chisq.test(correct = FALSE)`` with the formulas above and
    ``uniroot`` on ``pchisq(ncp = )`` (``tests/fixtures/r_reference/effect_sizes.R``);
    the uncorrected V matches ``scipy.stats.contingency.association``.

    References
    ----------
    Bergsma W. A bias-correction for Cramér's V and Tschuprow's T. J Korean Stat Soc.
    2013;42(3):323-328. https://doi.org/10.1016/j.jkss.2012.10.002
    Smithson M. Confidence Intervals. Sage; 2003. https://doi.org/10.4135/9781412983761

    Examples
    --------
    >>> es = cramers_v([[60, 8, 4], [10, 55, 9], [5, 12, 70]])
    >>> round(es.estimate, 4), round(es.ci_low, 4), round(es.ci_high, 4)
    (0.6903, 0.5977, 0.7799)
    """
    _check_ci(ci)
    name = "cramers_v_corrected" if bias_corrected else "cramers_v"
    obs = _as_table(table)
    r, k = obs.shape
    n = obs.sum()
    level = ci if ci is not None else math.nan
    if min(r, k) < 2 or n < 2:
        return EffectSize(name, math.nan, math.nan, math.nan, level,
                          "not computed: fewer than 2 non-empty rows or columns")
    expected = np.outer(obs.sum(axis=1), obs.sum(axis=0)) / n
    x2 = float(((obs - expected) ** 2 / expected).sum())
    df = (r - 1) * (k - 1)
    m = min(r, k) - 1
    if bias_corrected:
        phi2 = max(0.0, x2 / n - (k - 1) * (r - 1) / (n - 1))
        rt = r - (r - 1) ** 2 / (n - 1)
        kt = k - (k - 1) ** 2 / (n - 1)
        denom = min(rt - 1, kt - 1)
        estimate = math.sqrt(phi2 / denom) if denom > 0 else math.nan
        method = "Bergsma (2013) bias-corrected Cramér's V"
    else:
        estimate = math.sqrt(x2 / (n * m))
        method = "Cramér's V"
    if ci is None:
        return EffectSize(name, estimate, math.nan, math.nan, level, method)
    alpha = 1 - ci
    cdf = lambda lam: stats.ncx2.cdf(x2, df, lam) if lam > 0 else stats.chi2.cdf(x2, df)  # noqa: E731
    lam_lo = _ncp_limit(cdf, 1 - alpha / 2, 2 * x2)
    lam_hi = _ncp_limit(cdf, alpha / 2, 2 * x2)
    lo = min(1.0, math.sqrt(lam_lo / (n * m)))
    hi = min(1.0, math.sqrt(lam_hi / (n * m)))
    return EffectSize(name, estimate, lo, hi, ci,
                      f"{method}; CI by inverting the noncentral chi-square distribution")


def _bootstrap_matrix(groups, n_boot, seed):
    """(n_boot, N) resampled values, drawn within each group (sizes fixed), plus group sizes."""
    rng = np.random.default_rng(seed)
    blocks = [g[rng.integers(0, g.size, (n_boot, g.size))] for g in groups]
    return np.concatenate(blocks, axis=1), np.array([g.size for g in groups])


def _group_sums(mat, sizes):
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return np.stack([mat[:, a:b].sum(axis=1) for a, b in zip(bounds[:-1], bounds[1:])], axis=1)


def _epsilon_rows(mat, sizes):
    """Tie-corrected Kruskal–Wallis H / (N - 1) for every row of ``mat`` (vectorized)."""
    n = mat.shape[1]
    ranks = stats.rankdata(mat, axis=1)
    # tie term sum(t^3 - t) = sum over elements of (t_e^2 - 1), t_e = size of the element's tie
    t_e = stats.rankdata(mat, method="max", axis=1) - stats.rankdata(mat, method="min", axis=1) + 1
    tie = 1.0 - (t_e ** 2 - 1).sum(axis=1) / (n ** 3 - n)
    rsum = _group_sums(ranks, sizes)
    h = (12.0 / (n * (n + 1)) * (rsum ** 2 / sizes).sum(axis=1) - 3 * (n + 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tie > 0, h / tie, np.nan) / (n - 1)


def _eta_rows(mat, sizes):
    """SS_between / SS_total for every row of ``mat`` (vectorized)."""
    grand = mat.mean(axis=1)
    means = _group_sums(mat, sizes) / sizes
    ss_between = ((means - grand[:, None]) ** 2 * sizes).sum(axis=1)
    ss_total = ((mat - grand[:, None]) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_total > 0, ss_between / ss_total, np.nan)


#: Largest ``n_boot * N`` for which the resamples are drawn as an (n_boot, N) matrix of
#: values (80 MB of float64); beyond it they are drawn as counts of the distinct values.
_MATRIX_MAX_CELLS = 10_000_000
#: Cells of one (replicates, groups, distinct values) block of counts (about 160 MB).
_COUNT_BLOCK_CELLS = 20_000_000


def _bootstrap_count_blocks(groups, n_boot, seed):
    """Yield ``(counts, values, sizes)``: within-group bootstrap resamples as counts.

    ``counts[b, g, u]`` is how often the ``u``-th distinct pooled value (``values``,
    sorted) appears in resample ``b`` of group ``g``.  Resampling ``n_g`` patients with
    replacement from a group gives counts ~ Multinomial(n_g, f_g / n_g) over the group's
    distinct values (``f_g`` their frequencies): the same bootstrap distribution as
    :func:`_bootstrap_matrix`, in O(distinct values) per resample instead of O(N log N).
    Each group's counts come from ``Generator.multinomial`` when the group has at most a
    quarter as many distinct values as patients (rounded clinical measurements, ordinal
    scores), else from ``Generator.integers`` indices tallied with ``bincount``; blocks
    of replicates keep the memory bounded.  Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    values, codes = np.unique(np.concatenate(groups), return_inverse=True)
    codes = codes.reshape(-1)
    sizes = np.array([g.size for g in groups])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    per_group = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        ucodes, freq = np.unique(codes[a:b], return_counts=True)
        per_group.append((codes[a:b], ucodes, freq))
    k, n_values = len(groups), values.size
    block = max(1, min(n_boot, _COUNT_BLOCK_CELLS // max(1, k * n_values)))
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        counts = np.zeros((m, k, n_values))
        for g, (gcodes, ucodes, freq) in enumerate(per_group):
            n_g = gcodes.size
            if 4 * ucodes.size <= n_g:
                counts[:, g, ucodes] = rng.multinomial(n_g, freq / n_g, size=m)
            else:
                for r in range(m):
                    counts[r, g] = np.bincount(gcodes[rng.integers(0, n_g, n_g)], minlength=n_values)
        yield counts, values, sizes


def _epsilon_counts(counts, values, sizes):
    """Tie-corrected Kruskal–Wallis H / (N - 1) of every count resample (mid-ranks)."""
    n = float(sizes.sum())
    total = counts.sum(axis=1)                              # (m, U) pooled tie sizes
    midrank = np.cumsum(total, axis=1) - (total - 1) / 2.0  # mid-rank of each distinct value
    rsum = np.einsum("mgu,mu->mg", counts, midrank)
    h = 12.0 / (n * (n + 1)) * (rsum ** 2 / sizes).sum(axis=1) - 3 * (n + 1)
    tie = 1.0 - (total ** 3 - total).sum(axis=1) / (n ** 3 - n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tie > 0, h / tie, np.nan) / (n - 1)


def _eta_counts(counts, values, sizes):
    """SS_between / SS_total of every count resample (values centred for accuracy)."""
    n = float(sizes.sum())
    v = values - values.mean()
    s1 = counts @ v                                         # (m, k) group sums
    s2 = (counts @ (v * v)).sum(axis=1)
    grand = s1.sum(axis=1) / n
    ss_total = s2 - n * grand ** 2
    ss_between = ((s1 / sizes - grand[:, None]) ** 2 * sizes).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_total > 1e-12 * np.abs(s2), ss_between / ss_total, np.nan)


_COUNT_KERNELS = {}  # matrix kernel -> count kernel, filled below


def _stratified_bootstrap(groups, row_statistic, n_boot, seed, ci):
    """Percentile CI of a statistic, resampling patients with replacement within each group.

    Up to ``n_boot * N = _MATRIX_MAX_CELLS`` the resamples are an (n_boot, N) matrix of
    values (:func:`_bootstrap_matrix`); larger problems draw the same bootstrap
    distribution as counts of the distinct values (:func:`_bootstrap_count_blocks`), which
    needs no sorting and bounded memory.  The two paths use the seed differently, so for
    the same seed they give different (equally valid) Monte Carlo draws.
    """
    n_total = sum(g.size for g in groups)
    if n_boot * n_total <= _MATRIX_MAX_CELLS:
        mat, sizes = _bootstrap_matrix(groups, n_boot, seed)
        values = row_statistic(mat, sizes)
    else:
        kernel = _COUNT_KERNELS[row_statistic]
        values = np.concatenate([kernel(c, v, s) for c, v, s in
                                 _bootstrap_count_blocks(groups, n_boot, seed)])
    values = values[~np.isnan(values)]
    if values.size < 0.9 * n_boot:
        return math.nan, math.nan
    alpha = 1 - ci
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


_COUNT_KERNELS.update({_epsilon_rows: _epsilon_counts, _eta_rows: _eta_counts})


def epsilon_squared(samples, ci: float | None = 0.95, n_boot: int = 2000, seed: int = 0) -> EffectSize:
    """Epsilon² effect size for the Kruskal–Wallis test, with a seeded bootstrap CI.

    Parameters
    ----------
    samples : sequence of array-like
        One 1-D array per group; missing values dropped.
    ci : float or None, default 0.95
        Confidence level; ``None`` for no interval.
    n_boot : int, default 2000
        Bootstrap resamples.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    EffectSize
        ``name='epsilon_squared'``; NaN with the reason in ``method`` when H is undefined.

    Notes
    -----
    ``epsilon² = H / ((N² - 1) / (N + 1)) = H / (N - 1)`` with the tie-corrected H of
    :func:`analysis.location.kruskal_wallis` (Tomczak & Tomczak 2014); it lies in [0, 1].
    CI: percentile bootstrap, resampling patients with replacement within each group
    (group sizes fixed), ``n_boot`` resamples, seed ``seed``.  When ``n_boot * N`` exceeds
    ``_MATRIX_MAX_CELLS`` (1e7, e.g. N > 5000 with 2000 resamples) each resample is drawn
    as counts of the distinct values (multinomial within each group, the same bootstrap
    distribution) and H is computed from those counts with mid-ranks, so large cohorts
    need no sorting and bounded memory; the seed then yields a different, equally valid
    Monte Carlo draw than the matrix path would.  The point estimate uses
    R's ``kruskal.test`` statistic, checked in ``tests/analysis/test_effect_sizes.py``
    against ``tests/fixtures/r_reference/location.R``.

    References
    ----------
    Tomczak M, Tomczak E. The need to report effect size estimates revisited. An overview of
    some recommended measures of effect size. Trends Sport Sci. 2014;1(21):19-25.
    Kelley TL. An unbiased correlation ratio measure. PNAS. 1935;21(9):554-559.
    https://doi.org/10.1073/pnas.21.9.554
    Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall; 1993.
    https://doi.org/10.1201/9780429246593

    Examples
    --------
    >>> es = epsilon_squared([[1, 2, 3, 4], [3, 4, 5, 6], [6, 7, 8, 9]], n_boot=200)
    >>> round(es.estimate, 4)
    0.7747
    """
    _check_ci(ci)
    clean = clean_samples(samples)
    groups = clean.nonempty
    level = ci if ci is not None else math.nan
    res = kruskal_wallis(groups)
    if np.isnan(res.statistic):
        return EffectSize("epsilon_squared", math.nan, math.nan, math.nan, level,
                          f"not computed: {res.details.get('reason', 'H undefined')}")
    estimate = res.statistic / (res.n_used - 1)
    if ci is None:
        return EffectSize("epsilon_squared", estimate, math.nan, math.nan, level, "epsilon² = H/(N-1)")
    lo, hi = _stratified_bootstrap(groups, _epsilon_rows, n_boot, seed, ci)
    return EffectSize("epsilon_squared", estimate, lo, hi, ci,
                      f"epsilon² = H/(N-1); percentile bootstrap within groups, {n_boot} resamples, "
                      f"seed {seed}")


def eta_squared(samples, ci: float | None = 0.95, ci_method: str = "noncentral_f",
                n_boot: int = 2000, seed: int = 0) -> EffectSize:
    """Eta² (between-group share of the total sum of squares) with a CI.

    Parameters
    ----------
    samples : sequence of array-like
        One 1-D array per group; missing values dropped.
    ci : float or None, default 0.95
        Confidence level; ``None`` for no interval.
    ci_method : {'noncentral_f', 'bootstrap'}, default 'noncentral_f'
        ``'noncentral_f'`` inverts the noncentral F distribution (assumes equal
        variances: use it with the classical ANOVA); ``'bootstrap'`` is a seeded
        percentile bootstrap within groups (use it with Welch's ANOVA).
    n_boot, seed : int
        Bootstrap settings (``ci_method='bootstrap'`` only).

    Returns
    -------
    EffectSize
        ``name='eta_squared'``.

    Notes
    -----
    ``eta² = SS_between / SS_total``.  Noncentral-F CI (Steiger 2004; Smithson 2003): the
    noncentralities ``lambda`` for which the observed F is the 1 - alpha/2 and alpha/2
    quantile of F(k-1, N-k, lambda) are converted with ``eta² = lambda / (lambda + N)``
    (lower limit 0 when F is below the central 1 - alpha/2 quantile), as MBESS
    ``conf.limits.ncf`` with ``ci.pvaf``; matches R 4.x ``uniroot`` on ``pf(ncp = )``
    (``tests/fixtures/r_reference/location.R``, columns ``eta2*``).
    For Welch's ANOVA no standard variance-heterogeneity-robust eta² exists; we report the
    same eta² (a descriptive share of variance) with the bootstrap CI, which does not
    assume equal variances.  Large bootstraps (``n_boot * N`` > 1e7) draw the resamples
    as counts of the distinct values, as described for :func:`epsilon_squared`.

    References
    ----------
    Steiger JH. Beyond the F test: effect size confidence intervals and tests of close fit
    in the analysis of variance and contrast analysis. Psychol Methods. 2004;9(2):164-182.
    https://doi.org/10.1037/1082-989X.9.2.164
    Smithson M. Confidence Intervals. Sage; 2003. https://doi.org/10.4135/9781412983761

    Examples
    --------
    >>> es = eta_squared([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [5.0, 6.0, 7.5]])
    >>> round(es.estimate, 4)
    0.7984
    """
    _check_ci(ci)
    if ci_method not in ("noncentral_f", "bootstrap"):
        raise ValueError(f"ci_method must be 'noncentral_f' or 'bootstrap', got {ci_method!r}")

    clean = clean_samples(samples)
    groups = clean.nonempty
    level = ci if ci is not None else math.nan
    res = anova_oneway(groups)
    if np.isnan(res.statistic):
        return EffectSize("eta_squared", math.nan, math.nan, math.nan, level,
                          f"not computed: {res.details.get('reason', 'F undefined')}")
    estimate = res.details["ss_between"] / (res.details["ss_between"] + res.details["ss_within"])
    if ci is None:
        return EffectSize("eta_squared", estimate, math.nan, math.nan, level, "eta² = SS_between/SS_total")
    if ci_method == "bootstrap":
        lo, hi = _stratified_bootstrap(groups, _eta_rows, n_boot, seed, ci)
        return EffectSize("eta_squared", estimate, lo, hi, ci,
                          f"eta²; percentile bootstrap within groups, {n_boot} resamples, seed {seed}")
    f, df1, df2, n = res.statistic, res.df, res.df2, res.n_used
    alpha = 1 - ci
    cdf = lambda lam: stats.ncf.cdf(f, df1, df2, lam) if lam > 0 else stats.f.cdf(f, df1, df2)  # noqa: E731
    lam_lo = _ncp_limit(cdf, 1 - alpha / 2, 2 * f * df1)
    lam_hi = _ncp_limit(cdf, alpha / 2, 2 * f * df1)
    conv = lambda lam: 1.0 if math.isinf(lam) else lam / (lam + n)  # noqa: E731
    return EffectSize("eta_squared", estimate, conv(lam_lo), conv(lam_hi), ci,
                      "eta²; CI by inverting the noncentral F distribution")
