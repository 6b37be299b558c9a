"""Patient-level (cluster) bootstrap confidence intervals.

Several rows (images, lesions, repeated predictions) of one patient are not independent.
:func:`cluster_bootstrap` resamples *patients* with replacement and keeps every row of a
drawn patient together, so the interval reflects the number of patients, not of rows.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .errors import CohortError, UndefinedMetricWarning, check_ci_level

__all__ = ["BootstrapResult", "cluster_bootstrap", "bootstrap_weights"]

_METHODS = ("percentile", "basic")


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate(s) with bootstrap confidence intervals.

    Scalars when the statistic returns one number; 1-D arrays (one entry per statistic, in
    ``names`` order) when it returns several.

    Attributes
    ----------
    estimate, ci_low, ci_high : float or numpy.ndarray
        Statistic on the full data and the CI bounds (NaN where undefined).
    n_boot_valid : int or numpy.ndarray
        Resamples on which the statistic was defined (finite); the others are dropped.
    n_boot : int
        Resamples drawn.
    ci_level : float
    method : str
        e.g. ``'percentile bootstrap over 586 clusters (2000 resamples, seed 0)'``.
    names : tuple of str
        Statistic names (``('statistic',)`` for a scalar statistic without names).
    replicates : numpy.ndarray
        ``(n_boot, n_statistics)`` bootstrap values (NaN = undefined).
    """

    estimate: object
    ci_low: object
    ci_high: object
    n_boot_valid: object
    n_boot: int
    ci_level: float
    method: str
    names: tuple = ("statistic",)
    replicates: np.ndarray = field(default=None, repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per statistic: ``statistic, estimate, ci_low, ci_high, ci_level, n_boot_valid, n_boot, method``."""
        k = len(self.names)
        return pd.DataFrame({
            "statistic": list(self.names),
            "estimate": np.broadcast_to(np.asarray(self.estimate, float), (k,)),
            "ci_low": np.broadcast_to(np.asarray(self.ci_low, float), (k,)),
            "ci_high": np.broadcast_to(np.asarray(self.ci_high, float), (k,)),
            "ci_level": self.ci_level,
            "n_boot_valid": np.broadcast_to(np.asarray(self.n_boot_valid, int), (k,)),
            "n_boot": self.n_boot,
            "method": self.method,
        })


class _ClusterIndex:
    """Rows grouped by cluster, so a resample of clusters turns into row indices fast."""

    def __init__(self, codes: np.ndarray):
        self.order = np.argsort(codes, kind="stable")        # rows sorted by cluster
        self.counts = np.bincount(codes)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

    def rows(self, clusters: np.ndarray) -> np.ndarray:
        lengths = self.counts[clusters]
        total = int(lengths.sum())
        # position of each output row within its cluster's block, then shift to the block start
        offsets = np.repeat(self.starts[clusters] - np.cumsum(lengths) + lengths, lengths)
        return self.order[offsets + np.arange(total)]


def _n_rows(data) -> int:
    if isinstance(data, (pd.DataFrame, pd.Series, np.ndarray)):
        return len(data)
    if isinstance(data, (tuple, list)):
        lengths = {len(a) for a in data}
        if len(lengths) != 1:
            raise CohortError(f"all arrays in data must have the same length, got lengths {sorted(lengths)}")
        return lengths.pop()
    raise CohortError(f"data must be a DataFrame, an array or a tuple of arrays, got {type(data).__name__}")


def _taker(data) -> Callable[[np.ndarray | None], tuple]:
    """Return ``take(idx) -> args`` for the statistic (``idx=None`` = the full data)."""
    if isinstance(data, (pd.DataFrame, pd.Series)):
        return lambda idx: (data if idx is None else data.iloc[idx],)
    if isinstance(data, np.ndarray):
        return lambda idx: (data if idx is None else data[idx],)
    arrays = [a if isinstance(a, (pd.Series, pd.DataFrame)) else np.asarray(a) for a in data]

    def take(idx):
        if idx is None:
            return tuple(arrays)
        return tuple(a.iloc[idx] if isinstance(a, (pd.Series, pd.DataFrame)) else a[idx] for a in arrays)
    return take


def _codes(values, n: int, name: str, data) -> np.ndarray:
    if isinstance(values, str) and isinstance(data, pd.DataFrame):
        if values not in data.columns:
            from .errors import did_you_mean
            raise CohortError(f"no such column{did_you_mean(values, data.columns)}", column=values)
        values = data[values]
    arr = pd.Series(np.asarray(values, dtype=object))
    if len(arr) != n:
        raise CohortError(f"{name} has {len(arr)} values but data has {n} rows", column=name)
    if arr.isna().any():
        i = int(np.flatnonzero(arr.isna().to_numpy())[0])
        raise CohortError(f"missing {name} at position {i}; every row needs one", column=name)
    codes, _ = pd.factorize(arr, sort=False)
    return codes.astype(np.intp)


def _as_vector(value) -> tuple[np.ndarray, tuple | None]:
    if isinstance(value, pd.Series):
        return value.to_numpy(dtype=float), tuple(str(i) for i in value.index)
    if isinstance(value, dict):
        return np.array(list(value.values()), dtype=float), tuple(str(k) for k in value)
    return np.atleast_1d(np.asarray(value, dtype=float)).ravel(), None



def _strata_groups(codes: np.ndarray, n_clusters: int, strata, n: int, data=None) -> list:
    """Cluster indices of each stratum (strata must be constant within a cluster)."""
    if strata is None:
        return [np.arange(n_clusters)]
    s_codes = _codes(strata, n, "strata", data)
    per_cluster = np.full(n_clusters, -1)
    per_cluster[codes] = s_codes
    if np.any(per_cluster[codes] != s_codes):
        i = int(np.flatnonzero(per_cluster[codes] != s_codes)[0])
        raise CohortError(f"stratum varies within one cluster (first at position {i}); "
                          f"stratify by a patient-level variable", column="strata")
    return [np.flatnonzero(per_cluster == s) for s in range(s_codes.max() + 1)]


def _draw_clusters(groups: list, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_clusters)`` drawn cluster indices: the one random stream of every patient bootstrap."""
    rng = np.random.default_rng(seed)
    return np.concatenate([g[rng.integers(0, g.size, size=(n_boot, g.size))] for g in groups], axis=1)


def _intervals(est: np.ndarray, reps: np.ndarray, ci: float, method: str = "percentile"):
    """Percentile (or basic) bounds and valid-replicate counts of each column of ``reps``."""
    k = est.size
    valid = np.isfinite(reps)
    n_valid = valid.sum(axis=0)
    alpha = 1.0 - ci
    low = np.full(k, np.nan)
    high = np.full(k, np.nan)
    for j in range(k):
        if n_valid[j] == 0 or not np.isfinite(est[j]):
            continue
        q_lo, q_hi = np.quantile(reps[valid[:, j], j], [alpha / 2, 1 - alpha / 2])
        low[j], high[j] = (q_lo, q_hi) if method == "percentile" else (2 * est[j] - q_hi, 2 * est[j] - q_lo)
    return low, high, n_valid


def bootstrap_weights(cluster, n_boot: int = 2000, seed: int = 0, strata=None, chunk: int = 256):
    """Row multiplicities of the resamples :func:`cluster_bootstrap` draws, in chunks.

    For statistics that are cheaper to compute for many resamples at once as weighted
    statistics (e.g. a logistic recalibration fitted to every resample by one vectorised
    Newton iteration): a row drawn twice has weight 2.

    Parameters
    ----------
    cluster : array-like, shape (n,)
        Cluster (patient) of each row.
    n_boot, seed, strata
        As for :func:`cluster_bootstrap`; the same values give the same resamples.
    chunk : int, default 256
        Resamples per yielded block.

    Yields
    ------
    numpy.ndarray
        ``(m, n)`` float weights of ``m <= chunk`` consecutive resamples.

    Notes
    -----
    ``statistic(rows of resample b)`` equals the weighted statistic with weights
    ``W[b]`` for any statistic that is a function of the empirical distribution (tested in
    ``tests/analysis/test_bootstrap.py`` against :func:`cluster_bootstrap`).
    """
    arr = pd.Series(np.asarray(cluster, dtype=object))
    n = len(arr)
    codes = _codes(arr, n, "cluster", None)
    n_clusters = int(codes.max()) + 1 if n else 0
    draws = _draw_clusters(_strata_groups(codes, n_clusters, strata, n), int(n_boot), seed)
    for start in range(0, int(n_boot), chunk):
        block = draws[start:start + chunk]
        counts = np.stack([np.bincount(b, minlength=n_clusters) for b in block]) if len(block) else \
            np.zeros((0, n_clusters))
        yield counts[:, codes].astype(float)


def cluster_bootstrap(statistic_fn: Callable, data, cluster=None, n_boot: int = 2000, ci: float = 0.95,
                      seed: int = 0, method: str = "percentile", strata=None,
                      names: Sequence[str] | None = None) -> BootstrapResult:
    """Bootstrap CI of a statistic, resampling clusters (patients) with all their rows.

    Parameters
    ----------
    statistic_fn : callable
        Called as ``statistic_fn(df)`` for a DataFrame/array ``data`` or
        ``statistic_fn(*arrays)`` for a tuple of arrays, on the full data and on each
        resample.  Returns a float, a 1-D array, a dict or a Series (several statistics at
        once).  Return NaN where the statistic is undefined (e.g. a class is missing); such
        resamples are dropped and counted, and :class:`~analysis.errors.UndefinedMetricWarning`
        raised inside the resamples is silenced.
    data : DataFrame, ndarray, or tuple/list of array-likes
        Rows to resample (all arrays the same length).
    cluster : array-like or str, optional
        Cluster (patient) id of each row, or a column name of ``data``.  ``None`` = every row
        its own cluster (ordinary bootstrap).
    n_boot : int, default 2000
        Resamples.  0 gives the point estimate with NaN CIs.
    ci : float, default 0.95
        Confidence level.
    seed : int, default 0
        Seed of :func:`numpy.random.default_rng`; same seed, same result.
    method : {'percentile', 'basic'}, default 'percentile'
        Percentile interval ``[q_{α/2}, q_{1-α/2}]`` of the valid replicates, or the basic
        (reverse percentile) interval ``[2θ - q_{1-α/2}, 2θ - q_{α/2}]``.
    strata : array-like or str, optional
        Stratum of each row (e.g. the patient's class), constant within a cluster.  Clusters
        are then resampled within each stratum, keeping the number of clusters per stratum.
    names : sequence of str, optional
        Names of the statistics (default: dict/Series keys, else ``statistic``, ``statistic_1`` …).

    Returns
    -------
    BootstrapResult
        ``estimate, ci_low, ci_high, n_boot_valid, n_boot, ci_level, method, names, replicates``.

    Raises
    ------
    CohortError
        Lengths differ, a cluster id is missing, a stratum varies within a cluster, or an
        unknown ``method``.

    Notes
    -----
    Each resample draws as many clusters as the data have (within each stratum when
    ``strata`` is given), with replacement, and concatenates all rows of the drawn clusters;
    a cluster drawn twice contributes its rows twice.  Replicates where the statistic is
    not finite are excluded from the quantiles (``n_boot_valid`` reports how many were
    kept); quantiles use :func:`numpy.quantile` (linear interpolation, R's type 7).
    When the estimate itself is undefined the CI is NaN.

    References
    ----------
    Field CA, Welsh AH. Bootstrapping clustered data. J R Stat Soc B. 2007;69(3):369-390.
    doi:10.1111/j.1467-9868.2007.00593.x
    Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall; 1993.
    doi:10.1201/9780429246593

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1.0, 1.2, 3.0, 3.1, 5.0, 5.2])
    >>> r = cluster_bootstrap(np.mean, x, cluster=[1, 1, 2, 2, 3, 3], n_boot=500, seed=0)
    >>> float(r.estimate), bool(r.ci_low < r.estimate < r.ci_high), int(r.n_boot_valid)
    (3.0833333333333335, True, 500)
    """
    if method not in _METHODS:
        raise CohortError(f"unknown bootstrap method {method!r} (expected one of: {', '.join(_METHODS)})")
    check_ci_level(ci)
    if int(n_boot) != n_boot or n_boot < 0:
        raise CohortError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    n_boot = int(n_boot)
    n = _n_rows(data)
    if n == 0:
        raise CohortError("data has no rows")
    take = _taker(data)
    codes = np.arange(n, dtype=np.intp) if cluster is None else _codes(cluster, n, "cluster", data)
    index = _ClusterIndex(codes)
    n_clusters = index.counts.size
    groups = _strata_groups(codes, n_clusters, strata, n, data)

    raw = statistic_fn(*take(None))
    scalar = not isinstance(raw, (dict, pd.Series)) and np.ndim(raw) == 0
    est, est_names = _as_vector(raw)
    k = est.size
    if names is None:
        names = est_names or (("statistic",) if k == 1 else tuple(f"statistic_{i}" for i in range(k)))
    names = tuple(names)
    if len(names) != k:
        raise CohortError(f"{len(names)} names given but the statistic returns {k} values")

    draws = _draw_clusters(groups, n_boot, seed)
    reps = np.full((n_boot, k), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for b in range(n_boot):
            value, _ = _as_vector(statistic_fn(*take(index.rows(draws[b]))))
            if value.size != k:
                raise CohortError(f"statistic returned {value.size} values on a resample but {k} on the data")
            reps[b] = value
    low, high, n_valid = _intervals(est, reps, ci, method)
    missing = [names[j] for j in range(k) if np.isfinite(est[j]) and n_valid[j] == 0 and n_boot > 0]
    if missing:
        warnings.warn(f"statistic undefined on every resample, CI is NaN: {', '.join(missing)}",
                      UndefinedMetricWarning, stacklevel=2)
    unit = "clusters" if cluster is not None else "observations"
    desc = (f"{method} bootstrap over {n_clusters} {unit}"
            f"{' stratified' if strata is not None else ''} ({n_boot} resamples, seed {seed})")
    if scalar:
        return BootstrapResult(float(est[0]), float(low[0]), float(high[0]), int(n_valid[0]), n_boot, ci,
                               desc, names, reps)
    return BootstrapResult(est, low, high, n_valid.astype(int), n_boot, ci, desc, names, reps)
