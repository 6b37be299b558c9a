"""Number formatting for human-readable tables: the ONLY place in ``analysis`` that rounds.

Every statistical function returns full precision; the Table 1 display, the xlsx / LaTeX /
Markdown exports and the methods paragraph call the functions below to turn numbers into
text.  Missing or undefined values render as :data:`MISSING` (an em dash).

Conventions (AMA Manual of Style, 11th ed., section 19.5 and 21.9; the same rules JAMA and
most clinical journals apply):

* **p-values** (:func:`format_p`): ``'<0.001'`` below 0.001; three decimals below 0.01
  (``'0.004'``); otherwise two decimals (``'0.23'``); ``'>0.99'`` above 0.99.  Values that
  would round to ``0.05`` with two decimals get three (``'0.049'``, ``'0.051'``, and
  ``'0.050'`` only for 0.0495 <= p < 0.0505) so the side of the conventional 0.05
  boundary is never hidden by rounding.
* **n (%)**: whole counts and a percentage with one decimal, ``'12 (34.5)'``.
* **mean ± SD** and **median [Q1, Q3]**: the same number of decimals for every number of
  a row, chosen from the data by significant figures (:func:`choose_digits`: three
  significant figures of the row's typical value and two of its smallest one, at least one
  decimal), so a pixel spacing prints as ``0.00700 ± 0.00052``, not ``0.01 ± 0.00``.
* **effect sizes**: ``'0.32 (0.25–0.39)'`` (two decimals, en dash between CI limits);
  **odds ratios**: ``'2.10 (1.30–3.40)'``.

Rounding is half-up on the decimal value a reader sees (:func:`format_number`): the number
is first written with 12 significant digits, which removes binary noise such as
``6.449999999999999`` for 6.45, and then rounded half away from zero, so ``14.25`` shows as
``'14.3'`` and ``6.45`` as ``'6.5'`` alike.  (Python's ``format`` and R's ``sprintf`` round the
binary value half-to-even instead, so they print 14.25 as 14.2 but 6.45 as 6.5: two medians
of decimal data rounded in opposite directions in the same table.)
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable

import numpy as np

__all__ = [
    "MISSING",
    "EN_DASH",
    "PLUS_MINUS",
    "format_number",
    "format_p",
    "format_n_pct",
    "format_mean_sd",
    "format_median_iqr",
    "format_ci",
    "format_effect_size",
    "format_odds_ratio",
    "format_statistic",
    "choose_digits",
    "format_sig",
]

MISSING = "\u2014"       # em dash: value not computed / undefined
EN_DASH = "\u2013"       # between confidence limits
PLUS_MINUS = "\u00b1"


def _is_missing(x) -> bool:
    if x is None:
        return True
    try:
        return bool(np.isnan(float(x)))
    except (TypeError, ValueError):
        return True


def format_number(x, digits: int = 2) -> str:
    """``x`` with exactly ``digits`` decimals; ``'—'`` for NaN/None, ``'∞'`` for infinity.

    ``-0.00`` is shown as ``0.00``.

    Examples
    --------
    >>> format_number(3.14159, 2)
    '3.14'
    >>> [format_number(x, 1) for x in (14.25, 6.45, 13.95, 17.75, -0.05)]
    ['14.3', '6.5', '14.0', '17.8', '-0.1']
    >>> format_number(float('nan'))
    '—'
    """
    if _is_missing(x):
        return MISSING
    x = float(x)
    if math.isinf(x):
        return "\u221e" if x > 0 else "-\u221e"
    digits = int(digits)
    if abs(x) < 1e15:  # half-up on the 12-significant-digit decimal value (see the module notes)
        sig = 12 if x == 0 else min(17, max(12, int(math.floor(math.log10(abs(x)))) + 2 + digits))
        text = f"{Decimal(f'{x:.{sig}g}').quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP):f}"
    else:
        text = f"{x:.{digits}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


def format_p(p, *, threshold: float = 0.001, upper_bound: bool = False) -> str:
    """Journal-style p-value (AMA): ``'<0.001'``, ``'0.004'``, ``'0.23'``, ``'>0.99'``.

    Parameters
    ----------
    p : float
        A p-value (or q-value) in [0, 1]; NaN/None gives ``'—'``.
    threshold : float, default 0.001
        Smallest value printed; anything below is ``'<threshold'``.
    upper_bound : bool, default False
        ``p`` is only known to lie below the value given (a Monte Carlo p-value where no
        simulated table was as extreme: ``p < 1/(B+1)``): printed as ``'<'`` and the bound,
        rounded up so the printed bound is never below the true one.

    Returns
    -------
    str

    Notes
    -----
    Two decimals from 0.01 upwards, three decimals from ``threshold`` to 0.01; p that
    would print as ``0.05`` with two decimals (0.045 <= p < 0.055) gets three decimals so
    the reader sees which side of 0.05 it lies on.

    Examples
    --------
    >>> [format_p(x) for x in (0.0004, 0.0042, 0.00989, 0.0109, 0.0496, 0.051, 0.2349, 0.999)]
    ['<0.001', '0.004', '0.01', '0.01', '0.050', '0.051', '0.23', '>0.99']
    >>> format_p(1 / 1000, upper_bound=True), format_p(1 / 100_001, upper_bound=True)
    ('<0.001', '<0.001')
    >>> format_p(1 / 200, upper_bound=True)
    '<0.0050'
    """
    if _is_missing(p):
        return MISSING
    p = float(p)
    if p < 0 or p > 1:
        raise ValueError(f"p-value must lie in [0, 1], got {p!r}")
    if upper_bound:
        if p <= threshold:
            return f"<{threshold:g}" if threshold >= 1e-4 else f"<{threshold:.0e}"
        digits = max(2, 1 - math.floor(math.log10(p)))
        step = 10.0 ** -digits
        bound = math.ceil(p / step - 1e-9) * step
        return f"<{format_number(bound, digits)}"
    if p < threshold:
        return f"<{threshold:g}" if threshold >= 1e-4 else f"<{threshold:.0e}"
    if p > 0.99:
        return ">0.99"
    if p < 0.01 or 0.045 <= p < 0.055:
        text = format_number(p, 3)
        return "0.01" if text == "0.010" else text  # 0.0095 <= p < 0.01 rounds up: as 0.0101 prints
    text = format_number(p, 2)
    if text == "1.00":
        return ">0.99"
    return text


def format_n_pct(n, total=None, *, pct=None, digits: int = 1) -> str:
    """``'12 (34.5)'``: a count and its percentage of ``total`` (or a given ``pct``).

    A zero ``total`` gives ``'0 (—)'``.

    Examples
    --------
    >>> format_n_pct(12, 40)
    '12 (30.0)'
    >>> format_n_pct(3, pct=7.1429)
    '3 (7.1)'
    """
    if _is_missing(n):
        return MISSING
    count = int(round(float(n)))
    if pct is None:
        if total is None:
            raise ValueError("format_n_pct needs total or pct")
        pct = 100.0 * count / float(total) if float(total) > 0 else math.nan
    return f"{count} ({format_number(pct, digits)})"


def choose_digits(values: Iterable[float], *, max_digits: int = 12) -> int:
    """Decimals for a continuous row, from significant figures of its own numbers.

    ``values`` are the row's summary numbers (e.g. mean and SD, or median, Q1 and Q3, of
    every group); NaNs, infinities and zeros are ignored.  The decimals are the fewest that
    give the row's typical value (median magnitude) three significant figures and its
    smallest value two, and at least one:
    ``max(1, 2 - floor(log10(typical)), 1 - floor(log10(smallest)))``.

    Like R's ``summary()`` / ``format(x, digits = )``, which choose decimals so that the
    numbers keep a number of significant digits, this never prints small measurements as
    ``0.01 [0.01, 0.01]``; for values from 1 to 1000 with spreads of at least a tenth of
    them it gives the usual 2 decimals below 10 and 1 above.

    Examples
    --------
    >>> choose_digits([2.31, 0.58]), choose_digits([54.2, 12.8])
    (2, 1)
    >>> choose_digits([0.0070, 0.00052])
    5
    >>> choose_digits([0.0102, 0.0094, 0.0111])
    4
    """
    arr = np.asarray([float(v) for v in values if not _is_missing(v)], dtype=float)
    arr = np.abs(arr[np.isfinite(arr)])
    arr = arr[arr > 0]
    if arr.size == 0:
        return 1
    typical = 2 - math.floor(math.log10(float(np.median(arr))))
    smallest = 1 - math.floor(math.log10(float(arr.min())))
    return int(min(max(1, typical, smallest), max_digits))


def format_sig(x, sig: int = 3, *, trim: bool = False) -> str:
    """``x`` with ``sig`` significant figures (at least), never in scientific notation.

    For increments and other single numbers whose size is not known in advance
    (``'12.3'``, ``'0.000523'``, ``'1500'``); ``'—'`` for NaN/None.  ``trim=True`` drops
    trailing zeros (for a number the user typed, e.g. "per 10 years").

    Examples
    --------
    >>> [format_sig(x) for x in (12.3456, 0.00052345, 1523.7, 1.0)]
    ['12.3', '0.000523', '1524', '1.00']
    >>> format_sig(10.0, trim=True), format_sig(0.5, trim=True)
    ('10', '0.5')
    """
    if _is_missing(x):
        return MISSING
    x = float(x)
    if x == 0 or math.isinf(x):
        return format_number(x, 0)
    digits = max(0, sig - 1 - math.floor(math.log10(abs(x))))
    text = format_number(x, digits)
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_mean_sd(mean, sd, digits: int = 1) -> str:
    """``'54.2 ± 12.8'``; SD of a single observation (NaN) shows as ``'54.2 ± —'``.

    Examples
    --------
    >>> format_mean_sd(54.2049, 12.7951)
    '54.2 ± 12.8'
    """
    if _is_missing(mean):
        return MISSING
    return f"{format_number(mean, digits)} {PLUS_MINUS} {format_number(sd, digits)}"


def format_median_iqr(median, q1, q3, digits: int = 1) -> str:
    """``'45.0 [38.0, 52.0]'``: median and interquartile range (Q1, Q3).

    Examples
    --------
    >>> format_median_iqr(45, 38.04, 52)
    '45.0 [38.0, 52.0]'
    """
    if _is_missing(median):
        return MISSING
    return f"{format_number(median, digits)} [{format_number(q1, digits)}, {format_number(q3, digits)}]"


def format_ci(low, high, digits: int = 2) -> str:
    """``'0.25–0.39'`` (en dash); ``'—'`` if either limit is missing.

    Examples
    --------
    >>> format_ci(0.25, 0.391)
    '0.25–0.39'
    """
    if _is_missing(low) or _is_missing(high):
        return MISSING
    return f"{format_number(low, digits)}{EN_DASH}{format_number(high, digits)}"


def format_effect_size(estimate, low=None, high=None, digits: int = 2) -> str:
    """``'0.32 (0.25–0.39)'``; without a CI just ``'0.32'``; NaN estimate ``'—'``.

    Examples
    --------
    >>> format_effect_size(0.3214, 0.2499, 0.3901)
    '0.32 (0.25–0.39)'
    """
    if _is_missing(estimate):
        return MISSING
    est = format_number(estimate, digits)
    if _is_missing(low) or _is_missing(high):
        return est
    return f"{est} ({format_ci(low, high, digits)})"


def format_odds_ratio(estimate, low=None, high=None, digits: int = 2) -> str:
    """``'2.10 (1.30–3.40)'``; estimates or limits above 999 print as ``'>999'``.

    Very large or infinite odds ratios come from (quasi-)separation; they are shown as
    ``'>999'`` rather than as meaningless digits.

    Examples
    --------
    >>> format_odds_ratio(2.1, 1.3, 3.4)
    '2.10 (1.30–3.40)'
    """
    def one(x):
        if _is_missing(x):
            return MISSING
        x = float(x)
        if x > 999:
            return ">999"
        if 0 <= x < 10 ** (-digits):
            return f"<{10 ** (-digits):.{digits}f}"
        return format_number(x, digits)

    if _is_missing(estimate):
        return MISSING
    if _is_missing(low) or _is_missing(high):
        return one(estimate)
    return f"{one(estimate)} ({one(low)}{EN_DASH}{one(high)})"


def format_statistic(x, digits: int = 2) -> str:
    """A test statistic (χ², F, H, Z) with ``digits`` decimals; ``'—'`` when absent."""
    return format_number(x, digits)
