"""Table 1 engine: per-group descriptive statistics, tests, effect sizes, post hoc
comparisons, q-values and multinomial odds ratios for a validated cohort.

``build_table1(cohort) -> Table1Result``; :mod:`analysis.export` writes the result as
xlsx / LaTeX / Markdown / csv.  Command line: ``python -m analysis.table1 COHORT``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

__all__ = ["Table1Result", "STATS_COLUMNS", "build_table1", "build_parser", "main"]

#: The first columns of :attr:`Table1Result.stats` and ``table1_stats.csv``, in this order.
STATS_COLUMNS = ("variable", "test", "statistic", "df", "p_value", "q_value", "effect_size",
                 "effect_size_name", "n_used", "n_missing")


@dataclass(frozen=True)
class Table1Result:
    """Everything a Table 1 shows, as data (the text in ``display`` is a view of ``stats``).

    Attributes
    ----------
    display : pandas.DataFrame
        The human table, all strings: one header row per variable followed (for
        categorical, binary and ordinal variables) by one row per level.  Columns:
        ``Variable``, ``Overall (n=N)`` (when requested), one ``<group> (n=n)`` per group,
        ``Missing``, ``p``, ``q``, ``Effect size (95% CI)``, ``Test``.
    stats : pandas.DataFrame
        Tidy, one row per variable, full precision: :data:`STATS_COLUMNS` first, then
        ``ci_low, ci_high, ci_level, df2, method, reason`` and test details (e.g.
        ``mc_draws, mc_seed, mc_se``).
    decisions : Mapping[str, TestChoice]
        The test chosen for each variable and why (from :func:`analysis.selection.choose_test`).
    posthoc : pandas.DataFrame
        Pairwise comparisons (Holm-adjusted within a variable), only for variables whose
        omnibus p < ``alpha``; empty when none.
    regression : pandas.DataFrame
        Tidy multinomial odds ratios against ``reference_group`` (empty when not
        computed, see ``regression_note``).
    exclusions : pandas.DataFrame
        Rows excluded while validating the cohort: ``row, patient_id, column, reason``.
    methods_text : str
        Generated methods paragraph (:func:`analysis.methods.methods_text`).
    footnotes : tuple of (marker, text)
        Footnotes of the human table; ``marker`` is ``''`` for general notes and a letter
        for the footnote of a test, referenced from the p-value of every variable row.
    row_info : pandas.DataFrame
        Aligned with ``display``: ``variable, level, kind ('variable' | 'level'), marker``.
    odds_display : pandas.DataFrame
        The human odds-ratio table (strings) built from ``regression``.
    """

    display: pd.DataFrame
    stats: pd.DataFrame
    decisions: Mapping[str, Any]
    posthoc: pd.DataFrame
    regression: pd.DataFrame
    exclusions: pd.DataFrame
    methods_text: str
    footnotes: tuple
    row_info: pd.DataFrame
    odds_display: pd.DataFrame = field(default_factory=pd.DataFrame)
    group_column: str = "group"
    group_label: str = "Group"
    group_levels: tuple = ()
    group_counts: Mapping[str, int] = field(default_factory=dict)
    n_total: int = 0
    n_input: int = 0
    reference_group: str | None = None
    regression_note: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    software: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def to_frame(self) -> pd.DataFrame:
        """The tidy per-variable statistics (a copy of :attr:`stats`)."""
        return self.stats.copy()

    @property
    def test_markers(self) -> dict:
        """``{marker: footnote text}`` for the test footnotes."""
        return {m: t for m, t in self.footnotes if m}

    def _repr_html_(self) -> str:  # pragma: no cover - notebook display
        return self.display.to_html(index=False)

    def __repr__(self) -> str:
        return (f"Table1Result(n_total={self.n_total}, n_input={self.n_input}, "
                f"groups={list(self.group_levels)}, variables={len(self.stats)})")
