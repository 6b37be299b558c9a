"""Multiple-comparison adjustment of p-values: Holm and Benjamini–Hochberg.

Both functions take any 1-D array-like of p-values, keep NaN where the input is NaN
(a test that was not computed is not counted in the family size), and return a new
float array in the input order; the input is never modified.
"""
from __future__ import annotations

import numpy as np

__all__ = ["holm", "benjamini_hochberg"]


def _as_pvalues(p) -> np.ndarray:
    arr = np.array(p, dtype=float, copy=True).reshape(-1)
    finite = arr[~np.isnan(arr)]
    if np.any((finite < 0) | (finite > 1)):
        bad = finite[(finite < 0) | (finite > 1)][0]
        raise ValueError(f"p-values must lie in [0, 1] (or be NaN); got {bad!r}")
    return arr


def holm(p) -> np.ndarray:
    """Holm (1979) step-down family-wise error rate adjustment.

    Parameters
    ----------
    p : array-like of float
        Unadjusted p-values; NaN entries are kept NaN and not counted in ``m``.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input order.

    Notes
    -----
    With the ``m`` non-missing p-values sorted ascending, ``p_(i)``,
    ``p_adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``.
    Matches R 4.x ``p.adjust(p, method = "holm")`` (which also keeps ``NA`` and uses
    ``m = sum(!is.na(p))``); see ``tests/fixtures/r_reference/location.R``.

    References
    ----------
    Holm S. A simple sequentially rejective multiple test procedure.
    Scand J Stat. 1979;6(2):65-70. https://www.jstor.org/stable/4615733

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03, float("nan")]).tolist()
    [0.03, 0.06, 0.06, nan]
    """
    arr = _as_pvalues(p)
    out = np.full(arr.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(arr))
    m = ok.size
    if m == 0:
        return out
    order = np.argsort(arr[ok], kind="mergesort")
    sorted_p = arr[ok][order]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * sorted_p))
    out[ok[order]] = adj
    return out


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg (1995) false discovery rate adjustment (q-values).

    Parameters
    ----------
    p : array-like of float
        Unadjusted p-values; NaN entries are kept NaN and not counted in ``m``.

    Returns
    -------
    numpy.ndarray
        BH-adjusted p-values (``q_value``) in the input order.

    Notes
    -----
    With the ``m`` non-missing p-values sorted ascending,
    ``q_(i) = min(1, min_{j >= i} m p_(j) / j)``.
    Matches R 4.x ``p.adjust(p, method = "BH")``; see
    ``tests/fixtures/r_reference/location.R``.

    References
    ----------
    Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and powerful
    approach to multiple testing. J R Stat Soc B. 1995;57(1):289-300.
    https://doi.org/10.1111/j.2517-6161.1995.tb02031.x

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03]).tolist()
    [0.03, 0.04, 0.04]
    """
    arr = _as_pvalues(p)
    out = np.full(arr.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(arr))
    m = ok.size
    if m == 0:
        return out
    order = np.argsort(arr[ok], kind="mergesort")[::-1]  # descending
    sorted_p = arr[ok][order]
    rank = m - np.arange(m)  # rank of each in ascending order
    adj = np.minimum(1.0, np.minimum.accumulate(m / rank * sorted_p))
    out[ok[order]] = adj
    return out
