"""Small frozen result objects returned by the statistical functions.

The data is the truth and text is a view: ``to_frame()`` gives one tidy row, and nothing
here rounds (rounding lives in :mod:`analysis.formatting`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import pandas as pd

__all__ = ["TestResult", "EffectSize"]


@dataclass(frozen=True)
class TestResult:
    """Outcome of one significance test.

    Attributes
    ----------
    test : str
        Machine name: ``'chi_square'``, ``'fisher_exact'``, ``'fisher_monte_carlo'``,
        ``'anova'``, ``'welch_anova'``, ``'kruskal_wallis'``, ``'linear_by_linear'``, ...
    statistic : float
        Test statistic (NaN where the test has none, e.g. Fisher's exact test).
    df : float
        Degrees of freedom (numerator df for F tests); NaN when not applicable.
    p_value : float
        Two-sided p-value, full precision.
    n_used : int
        Observations that entered the test (missing values excluded).
    df2 : float
        Denominator degrees of freedom for F tests (fractional for Welch), else NaN.
    method : str
        Human-readable name used in footnotes and the methods paragraph.
    details : Mapping
        Extra facts, e.g. ``{'mc_draws': 100000, 'mc_seed': 0, 'mc_se': 1.2e-4}``.
    """

    __test__ = False  # keep pytest from collecting this class

    test: str
    statistic: float
    df: float
    p_value: float
    n_used: int
    df2: float = math.nan
    method: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        row = asdict(self)
        details = row.pop("details")
        row.update({k: v for k, v in details.items()})
        return pd.DataFrame([row])


@dataclass(frozen=True)
class EffectSize:
    """An effect size with its confidence interval.

    ``name`` is e.g. ``'cramers_v'``, ``'epsilon_squared'``, ``'eta_squared'``; ``method``
    says how the CI was obtained (e.g. ``'percentile bootstrap, 2000 resamples, seed 0'``).
    """

    name: str
    estimate: float
    ci_low: float
    ci_high: float
    ci_level: float = 0.95
    method: str = ""

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(self)])
