"""Table 1 engine: per-group descriptive statistics, tests, effect sizes, post hoc
comparisons, q-values and multinomial odds ratios for a validated cohort.

``build_table1(cohort) -> Table1Result``; :mod:`analysis.export` writes the result as
xlsx / Word / LaTeX / Markdown / csv.  Command line: ``python -m analysis.table1 COHORT``.

This module is also callable, for notebooks: ``analysis.table1(data, group=...)`` is
:func:`table1` (a path, a DataFrame or a validated Cohort in, a :class:`Table1Result` out):

>>> import analysis
>>> res = analysis.table1("cohort.xlsx", group="diagnosis",
...                       group_labels={"1": "metastatic", "2": "lymphoma", "3": "benign"},
...                       reference="Benign")                      # doctest: +SKIP
>>> res.to_docx("table1.docx")                                     # doctest: +SKIP
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["Table1Result", "STATS_COLUMNS", "table1", "build_table1", "as_cohort", "relabel_groups",
           "parse_group_labels", "build_parser", "main"]

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
        categorical and ordinal variables, and binary ones with ``binary_one_row=False``) by
        one row per level.  Columns: ``Variable``, ``Overall (n=N)`` (when requested), one
        ``<group> (n=n)`` per group, ``Missing``, ``p``, ``q``, ``Effect size (95% CI)``,
        ``SMD`` (with ``smd=True``), ``Test``.
    stats : pandas.DataFrame
        Tidy, one row per variable, full precision: :data:`STATS_COLUMNS` first, then
        ``ci_low, ci_high, ci_level, df2, method, reason`` and test details (e.g.
        ``mc_draws, mc_seed, mc_se, mc_hits``, ``p_value_upper_bound`` (True: p < p_value,
        no simulated table as extreme), ``fallback_reason``), ``smd`` and ``smd_max``.
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
        A binary variable shown on one row (the default) is one ``'variable'`` row whose
        ``level`` is the level shown (e.g. ``present``).
    odds_display : pandas.DataFrame
        The human odds-ratio table (strings) built from ``regression``.
    variables : pandas.DataFrame
        Every input column accounted for (``column, role, type, test, n_missing, reason``;
        :attr:`analysis.cohort.Cohort.column_account` with the test of each analysed variable,
        or ``not tested`` and why).
    notes : tuple of str
        What reading and checking the table decided (columns left out, missing codes read,
        spellings merged, inference notes, groups too small to test): :attr:`Cohort.notes`
        plus Table 1's own.
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
    variables: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        """The tidy per-variable statistics (a copy of :attr:`stats`)."""
        return self.stats.copy()

    @property
    def test_markers(self) -> dict:
        """``{marker: footnote text}`` for the test footnotes."""
        return {m: t for m, t in self.footnotes if m}

    def _repr_html_(self) -> str:
        """The formatted Table 1 as HTML (Jupyter shows it): title, bold variable rows,
        indented level rows, test letters on the p-values, footnotes below."""
        from .export import table1_html

        return table1_html(self)

    def to_html(self) -> str:
        """The formatted Table 1 as an HTML fragment (what Jupyter displays)."""
        return self._repr_html_()

    def to_excel(self, path):
        """Write the formatted workbook (:func:`analysis.export.write_xlsx`); returns the path."""
        from .export import write_xlsx

        return write_xlsx(self, path)

    def to_docx(self, path):
        """Write the Word document (:func:`analysis.export.write_docx`); returns the path."""
        from .export import write_docx

        return write_docx(self, path)

    def to_latex(self, path=None, *, standalone: bool = True):
        """LaTeX of the tables (:func:`analysis.export.write_latex`): the text when ``path``
        is None, else the file written."""
        from .export import latex_text, write_latex

        if path is None:
            return latex_text(self, standalone=standalone)
        return write_latex(self, path, standalone=standalone)

    def to_markdown(self, path=None):
        """Markdown of the tables (:func:`analysis.export.write_markdown`): the text when
        ``path`` is None, else the file written."""
        from .export import markdown_text, write_markdown

        if path is None:
            return markdown_text(self)
        return write_markdown(self, path)

    def write_all(self, out) -> list:
        """Every output file of the command line into folder ``out`` (:func:`analysis.export.write_all`)."""
        from .export import write_all

        return write_all(self, out)

    def __repr__(self) -> str:
        return (f"Table1Result(n_total={self.n_total}, n_input={self.n_input}, "
                f"groups={list(self.group_levels)}, variables={len(self.stats)})")



# ============================================================================ engine
#: Short test names for the 'Test' column of the human table.
TEST_LABELS = {
    "chi_square": "Pearson \u03c7\u00b2",
    "fisher_exact": "Fisher exact",
    "fisher_monte_carlo": "Fisher exact (Monte Carlo)",
    "anova": "One-way ANOVA",
    "welch_anova": "Welch ANOVA",
    "kruskal_wallis": "Kruskal\u2013Wallis",
    "linear_by_linear": "Linear-by-linear",
    "t_test": "t-test",
    "welch_t_test": "Welch t-test",
    "mann_whitney": "Mann\u2013Whitney U",
}
#: Full test descriptions for the footnotes.
TEST_DESCRIPTIONS = {
    "chi_square": "Pearson's \u03c7\u00b2 test of independence without continuity correction "
                  "(every expected count \u2265 5)",
    "fisher_exact": "Fisher\u2013Freeman\u2013Halton exact test (an expected count < 5)",
    "fisher_monte_carlo": "Fisher\u2013Freeman\u2013Halton test, seeded Monte Carlo estimate of the "
                          "exact p-value",
    "anova": "one-way ANOVA (normal data, equal variances)",
    "welch_anova": "Welch's ANOVA (normal data, unequal variances)",
    "kruskal_wallis": "Kruskal\u2013Wallis rank-sum test",
    "linear_by_linear": "linear-by-linear association (trend) test on the level scores",
    "t_test": "Student's t-test (normal data, equal variances)",
    "welch_t_test": "Welch's t-test (normal data, unequal variances)",
    "mann_whitney": "Mann\u2013Whitney U test (Wilcoxon rank-sum; normal approximation with tie "
                    "correction, no continuity correction)",
}
#: With two groups the omnibus tests are the two-sample tests readers know (same p-values).
TWO_GROUP_TESTS = {"anova": "t_test", "welch_anova": "welch_t_test", "kruskal_wallis": "mann_whitney"}
_MARKERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class _VariableOutcome:
    var: Any
    choice: Any
    result: Any              # TestResult
    effect: Any              # EffectSize or None
    summary_frame: pd.DataFrame
    n_missing: int
    table: Any = None        # levels x groups counts (categorical)
    samples: Any = None      # list of arrays per group (continuous / ordinal scores)
    posthoc: pd.DataFrame | None = None
    note: str = ""
    smd: Any = None          # {'smd', 'smd_max', 'pairs'} (analysis.describe.standardized_mean_difference)


def _summary_label(var, summary: str) -> str:
    unit = f" ({var.unit})" if getattr(var, "unit", None) else ""
    if var.type == "continuous":
        what = "median [Q1, Q3]" if summary == "median_iqr" else "mean \u00b1 SD"
        return f"{var.label}{unit}, {what}"
    return f"{var.label}{unit}, n (%)"


def _unique_values(series: pd.Series):
    """``(codes, uniques)`` of a column: codes index ``uniques`` (Python objects), -1 = missing.

    Factorising once and matching the few distinct values against the levels is what keeps
    the level matching below O(levels x N) string comparisons on large cohorts.
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return np.asarray(codes), list(np.asarray(uniques, dtype=object))


def _matches_level(value, level) -> bool:
    """A cell belongs to a level when it equals it or has the same text (``1`` and ``'1'``)."""
    return bool(value == level) or str(value) == str(level)


def _contingency(col: pd.Series, groups: pd.Series, levels, group_levels) -> pd.DataFrame:
    """levels x groups counts (all schema levels, in order; zero rows kept)."""
    keep = (col.notna() & groups.notna()).to_numpy()
    vcodes, vuniq = _unique_values(col[keep])
    gcodes, guniq = _unique_values(groups[keep].astype(object))
    cross = np.bincount(vcodes * len(guniq) + gcodes, minlength=len(vuniq) * len(guniq))
    cross = cross.reshape(len(vuniq), len(guniq))
    vmatch = np.array([[_matches_level(u, lev) for u in vuniq] for lev in levels], dtype=np.int64)
    gmatch = np.array([[bool(u == grp) for grp in group_levels] for u in guniq], dtype=np.int64)
    counts = vmatch.reshape(len(levels), len(vuniq)) @ cross @ gmatch.reshape(len(guniq), len(group_levels))
    return pd.DataFrame(counts, index=[str(v) for v in levels], columns=list(group_levels)).astype(int)


def _scores(col: pd.Series, levels) -> pd.Series:
    """Ordinal levels -> scores 1..k in schema order (NaN stays NaN)."""
    mapping = {str(lev): float(i + 1) for i, lev in enumerate(levels)}
    codes, uniques = _unique_values(col)
    mapped = np.array([mapping.get(str(u), math.nan) for u in uniques] + [math.nan], dtype=float)
    return pd.Series(mapped[codes], index=col.index, name=col.name)  # code -1 -> the NaN appended


def _samples(values: pd.Series, groups: pd.Series, group_levels) -> list:
    x = pd.to_numeric(values, errors="coerce").astype(float)
    return [x[(groups == grp).to_numpy()].to_numpy() for grp in group_levels]


def _not_computed(test: str, n_used: int, reason: str, method: str = ""):
    from ._results import TestResult

    return TestResult(test=test, statistic=math.nan, df=math.nan, p_value=math.nan,
                      n_used=int(n_used), method=method or TEST_DESCRIPTIONS.get(test, test),
                      details={"reason": reason})


def _omnibus(test: str, table, samples, group_levels, seed: int, fisher_time_budget):
    """Run the chosen omnibus test; the statistical modules do the work."""
    from . import contingency, location

    if test == "chi_square":
        return contingency.chi_square(table)
    if test == "fisher_exact":
        return contingency.fisher_exact_rxc(table, seed=seed, time_budget=fisher_time_budget)
    if test == "linear_by_linear":
        return contingency.linear_by_linear(table)
    names = [str(g) for g in group_levels]
    if test in TWO_GROUP_TESTS.values():
        return _two_sample(test, samples)
    if test == "anova":
        return location.anova_oneway(samples, names=names)
    if test == "welch_anova":
        return location.welch_anova(samples, names=names)
    if test == "kruskal_wallis":
        return location.kruskal_wallis(samples, names=names)
    raise ValueError(f"unknown test {test!r}")  # pragma: no cover - selection guarantees the set


def _two_sample(test: str, samples) -> Any:
    """The two-group form of ANOVA, Welch's ANOVA and Kruskal–Wallis (same p-values).

    ``t_test``: Student's t (pooled variance), ``t² = F`` of the one-way ANOVA, matches R
    ``t.test(var.equal = TRUE)``.  ``welch_t_test``: Welch's t with Satterthwaite df,
    matches R ``t.test()`` (and ``oneway.test(var.equal = FALSE)``).  ``mann_whitney``: the
    Wilcoxon–Mann–Whitney U of the first group, normal approximation with the tie-corrected
    variance and without continuity correction, so ``z² = H`` of Kruskal–Wallis; matches R
    ``wilcox.test(exact = FALSE, correct = FALSE)`` (R's default ``correct = TRUE`` would
    give a slightly larger p).  Statistic: t (first minus second group) or U; df: n - 2 or
    Welch's df (NaN for U).
    """
    from scipy import stats as sps

    from ._results import TestResult

    a, b = (np.asarray(x, dtype=float) for x in samples)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    n = int(len(a) + len(b))
    if test == "mann_whitney":
        res = sps.mannwhitneyu(a, b, use_continuity=False, alternative="two-sided", method="asymptotic")
        return TestResult(test, float(res.statistic), math.nan, float(res.pvalue), n,
                          method="Mann-Whitney U test (normal approximation, no continuity correction)")
    res = sps.ttest_ind(a, b, equal_var=(test == "t_test"))
    return TestResult(test, float(res.statistic), float(res.df), float(res.pvalue), n,
                      method="Student's t-test" if test == "t_test" else "Welch's t-test")


def _effect(test: str, table, samples, seed: int, n_boot: int):
    """Effect size matching the test (None when it cannot be computed)."""
    from . import effect_sizes

    if test in ("chi_square", "fisher_exact", "fisher_monte_carlo"):
        return effect_sizes.cramers_v(table, bias_corrected=True, ci=0.95)
    if test in ("kruskal_wallis", "linear_by_linear", "mann_whitney"):
        return effect_sizes.epsilon_squared(samples, ci=0.95, n_boot=n_boot, seed=seed)
    if test in ("anova", "t_test"):
        return effect_sizes.eta_squared(samples, ci=0.95, ci_method="noncentral_f", seed=seed)
    if test in ("welch_anova", "welch_t_test"):
        return effect_sizes.eta_squared(samples, ci=0.95, ci_method="bootstrap", n_boot=n_boot,
                                         seed=seed)
    return None


def _analyse_variable(data: pd.DataFrame, var, gcol: str, group_levels, *, alpha: float,
                      posthoc: bool, seed: int, fisher_time_budget,
                      n_boot: int, tested_levels=None) -> _VariableOutcome:
    from .describe import summarize_categorical, summarize_continuous
    from .selection import choose_test

    n_missing = int(data[var.name].isna().sum())
    is_cat = var.type != "continuous"
    if is_cat:
        summary = summarize_categorical(data, var.name, gcol, levels=list(var.levels),
                                        group_levels=list(group_levels), var_type=var.type)
    else:
        summary = summarize_continuous(data, var.name, gcol, group_levels=list(group_levels))
    if tested_levels is not None and tuple(tested_levels) != tuple(group_levels):
        # groups too small to test are described above but left out of everything below
        data = data.loc[data[gcol].astype(object).isin(list(tested_levels)).to_numpy()]
        group_levels = tuple(tested_levels)
    col = data[var.name]
    groups = data[gcol].astype(object)
    summary_override = var.summary if (var.type == "continuous" and var.summary != "auto") else "auto"
    choice = choose_test(col.astype(object), groups, var.type, override=var.test, levels=var.levels,
                         group_levels=group_levels, trend=(var.test == "trend"),
                         summary=summary_override, variable=var.name)
    test = {"fisher": "fisher_exact"}.get(choice.test, choice.test)
    if len(group_levels) == 2:
        test = TWO_GROUP_TESTS.get(test, test)
    table = _contingency(col, groups, var.levels, group_levels) if is_cat else None
    if is_cat:
        samples = _samples(_scores(col, var.levels), groups, group_levels) if var.type == "ordinal" else None
    else:
        samples = _samples(col, groups, group_levels)
    n_used = int((col.notna() & groups.notna()).sum())
    nonempty = [g for g in group_levels if ((groups == g) & col.notna()).any()]
    if len(nonempty) < 2:
        result = _not_computed(test, n_used, "fewer than two groups with observed values")
    elif is_cat and int((table.sum(axis=1) > 0).sum()) < 2:
        result = _not_computed(test, n_used, "a single observed level")
    else:
        result = _omnibus(test, table, samples, group_levels, seed, fisher_time_budget)
    effect, notes = None, []
    # Effect sizes and post hoc comparisons are optional: whatever goes wrong in them costs only
    # that cell or table, named in a footnote, never the run (issue 9).
    if not math.isnan(result.p_value):
        try:
            effect = _effect(result.test, table, samples, seed, n_boot)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"effect size not computed ({type(exc).__name__}: {exc})")
    ph = None  # with two groups the test itself is the pairwise comparison: nothing post hoc
    if posthoc and len(group_levels) > 2 and not math.isnan(result.p_value) and result.p_value < alpha:
        try:
            ph = _pairwise(result.test, var, col, groups, group_levels, table)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"post hoc comparisons not computed ({type(exc).__name__}: {exc})")
    from .describe import standardized_mean_difference

    smd = standardized_mean_difference(col, groups, var.type, levels=var.levels,
                                       group_levels=list(group_levels))
    return _VariableOutcome(var=var, choice=choice, result=result, effect=effect,
                            summary_frame=summary, n_missing=n_missing, table=table,
                            samples=samples, posthoc=ph, smd=smd, note="; ".join(notes))


def _pairwise(test: str, var, col, groups, group_levels, table):
    """Pairwise comparisons between the groups (Holm-adjusted), via :mod:`analysis.posthoc`.

    Categorical / binary: :func:`~analysis.posthoc.pairwise_contingency` (chi-square or
    Fisher by the expected counts of each pair).  Continuous: the standard follow-up of the
    omnibus test (Dunn after Kruskal–Wallis, Welch t after ANOVA / Welch ANOVA).  Ordinal:
    Dunn's test on the level scores.
    """
    from . import posthoc as ph

    names = [str(g) for g in group_levels]
    if var.type in ("categorical", "binary") or test in ("chi_square", "fisher_exact",
                                                         "fisher_monte_carlo"):
        return ph.pairwise_contingency(table, kind="auto", group_levels=names, variable=var.name,
                                       adjust="holm")
    if var.type == "ordinal":
        return ph.pairwise_tests(_scores(col, var.levels), groups, kind="dunn", group_levels=names,
                                 variable=var.name, adjust="holm")
    return ph.pairwise_tests(col.astype(float), groups, kind=test, group_levels=names,
                             variable=var.name, adjust="holm")


# --------------------------------------------------------------------------- display
def _group_header(name: str, n: int) -> str:
    return f"{name} (n={n})"


def _display_rows(out: _VariableOutcome, group_levels, overall: bool, n_total: int,
                  p_text: str, q_text: str, effect_text: str, test_text: str, marker: str,
                  smd_text: str | None = None, binary_one_row: bool = False):
    """(display rows, row_info rows) of one variable.

    ``smd_text``: the SMD cell (None: no SMD column).  ``binary_one_row``: a binary
    variable is one row, ``'<label>, <second level>: n (%)'`` (the level schema lists
    second, e.g. ``present``/``yes``/``1``), as gtsummary's ``dichotomous`` rows and
    tableone's ``'sex = M'`` rows; ``row_info`` then has kind ``'variable'`` and the level.
    """
    from . import formatting as fmt
    from .describe import OVERALL

    var, frame = out.var, out.summary_frame
    cols = ([OVERALL] if overall else []) + [str(g) for g in group_levels]
    label = _summary_label(var, out.choice.summary)
    missing = fmt.format_n_pct(out.n_missing, n_total) if n_total else str(out.n_missing)
    tail = [] if smd_text is None else [smd_text]
    blank_tail = [] if smd_text is None else [""]
    rows, info = [], []
    if var.type == "binary" and binary_one_row and var.levels and len(var.levels) == 2:
        shown = var.levels[1]
        sub = frame[frame["level"].astype(str) == str(shown)].set_index("group")
        cells = [fmt.format_n_pct(sub.loc[c, "count"], pct=sub.loc[c, "percent"]) for c in cols]
        unit = f" ({var.unit})" if getattr(var, "unit", None) else ""
        rows.append([f"{var.label}{unit}, {shown}: n (%)", *cells, missing, p_text, q_text, effect_text,
                     *tail, test_text])
        info.append((var.name, str(shown), "variable", marker))
        return rows, info
    if var.type == "continuous":
        by = frame.set_index("group")
        if out.choice.summary == "median_iqr":
            digits = fmt.choose_digits(by[["median", "q1", "q3"]].to_numpy().ravel())
            cells = [fmt.format_median_iqr(by.loc[c, "median"], by.loc[c, "q1"], by.loc[c, "q3"], digits)
                     for c in cols]
        else:
            digits = fmt.choose_digits(by[["mean", "sd"]].to_numpy().ravel())
            cells = [fmt.format_mean_sd(by.loc[c, "mean"], by.loc[c, "sd"], digits) for c in cols]
        rows.append([label, *cells, missing, p_text, q_text, effect_text, *tail, test_text])
        info.append((var.name, None, "variable", marker))
        return rows, info
    rows.append([label, *([""] * len(cols)), missing, p_text, q_text, effect_text, *tail, test_text])
    info.append((var.name, None, "variable", marker))
    for lev in var.levels:
        sub = frame[frame["level"].astype(str) == str(lev)].set_index("group")
        cells = [fmt.format_n_pct(sub.loc[c, "count"], pct=sub.loc[c, "percent"]) for c in cols]
        rows.append([str(lev), *cells, "", "", "", "", *blank_tail, ""])
        info.append((var.name, str(lev), "level", ""))
    return rows, info


def _stats_row(out: _VariableOutcome, q_value: float) -> dict:
    res, eff, choice = out.result, out.effect, out.choice
    details = dict(res.details or {})
    why_not = details.pop("reason", "")
    reason = choice.reason + (f"; not computed: {why_not}" if math.isnan(res.p_value) and why_not else "")
    row = {
        "variable": out.var.name, "test": res.test, "statistic": float(res.statistic),
        "df": float(res.df), "p_value": float(res.p_value), "q_value": float(q_value),
        "effect_size": float(eff.estimate) if eff is not None else math.nan,
        "effect_size_name": eff.name if eff is not None else "",
        "n_used": int(res.n_used), "n_missing": int(out.n_missing),
        "ci_low": float(eff.ci_low) if eff is not None else math.nan,
        "ci_high": float(eff.ci_high) if eff is not None else math.nan,
        "ci_level": float(eff.ci_level) if eff is not None else math.nan,
        "df2": float(res.df2), "method": res.method, "reason": reason,
        "label": out.var.label, "type": out.var.type, "summary": choice.summary,
        "effect_size_method": eff.method if eff is not None else "",
        "posthoc": out.posthoc is not None,
    }
    # The same columns on every run: NaN where a fact does not apply (e.g. no Monte Carlo).
    for key in ("mc_draws", "mc_seed", "mc_se", "mc_hits"):
        row[key] = details.get(key, math.nan)
    # True: p_value is 1/(B+1) and only an upper bound (no simulated table as extreme): p < p_value
    row["p_value_upper_bound"] = bool(details.get("p_upper_bound", False))
    row["fallback_reason"] = details.get("fallback_reason", "")
    row["smd"] = float(out.smd["smd"]) if out.smd else math.nan
    row["smd_max"] = float(out.smd["smd_max"]) if out.smd else math.nan
    row["min_expected"] = float(choice.details.get("min_expected", math.nan))
    return row


def _footnotes(outcomes, stats: pd.DataFrame, *, group_levels, n_total, n_input, exclusions,
               alpha, posthoc_done, overall) -> tuple:
    """General notes, then one lettered note per test used (naming its variables)."""
    kinds = {o.var.type == "continuous" and o.choice.summary for o in outcomes}
    shown = []
    if any(o.var.type != "continuous" for o in outcomes):
        shown.append("n (%)")
    if "mean_sd" in kinds:
        shown.append("mean \u00b1 SD")
    if "median_iqr" in kinds:
        shown.append("median [Q1, Q3]")
    notes = [("", f"Data are {', '.join(shown[:-1]) + ' or ' + shown[-1] if len(shown) > 1 else shown[0]}; "
                  "percentages are of patients with a recorded value. Missing: patients without a "
                  f"recorded value, n (% of {n_total}); they are left out of that variable's test.")]
    m = int(stats["p_value"].notna().sum())
    notes.append(("", f"p: {'omnibus test across the' if len(group_levels) > 2 else 'test comparing the'} "
                      f"{len(group_levels)} groups (the letter names the "
                      f"test); q: Benjamini\u2013Hochberg false discovery rate adjusted p across the "
                      f"{m} variables tested."))
    names_used = {_effect_family(n) for n in stats["effect_size_name"]}
    used = [n for n in ("cramers_v", "epsilon_squared", "eta_squared") if n in names_used]
    if used:
        parts = {"cramers_v": "bias-corrected Cram\u00e9r's V (categorical variables)",
                 "epsilon_squared": ("\u03b5\u00b2 (Kruskal\u2013Wallis, ordinal and trend tests)"
                                     if len(group_levels) > 2 else "\u03b5\u00b2 (Mann\u2013Whitney and "
                                     "ordinal variables)"),
                 "eta_squared": "\u03b7\u00b2 (ANOVA)" if len(group_levels) > 2 else "\u03b7\u00b2 (t-tests)"}
        notes.append(("", "Effect size with 95% CI: " + "; ".join(parts[n] for n in used) + "."))
    if posthoc_done:
        notes.append(("", f"Pairwise post hoc comparisons (Holm-adjusted) were made for the "
                          f"{posthoc_done} variable(s) with p < {alpha:g}; see the post hoc table."))
    if len(exclusions):
        reasons = "; ".join(f"{n} \u00d7 {r}" for r, n in
                            exclusions["reason"].astype(str).value_counts(sort=False).items())
        notes.append(("", f"{len(exclusions)} of {n_input} rows were excluded ({reasons})."))
    for o in outcomes:
        if o.note:
            notes.append(("", f"{o.var.label}: {o.note}."))
    markers, order = {}, []
    for o in outcomes:
        key = _test_key(o)
        if key not in markers:
            markers[key] = _MARKERS[len(markers) % len(_MARKERS)]
            order.append(key)
    test_notes = []
    for key in order:
        members = [o for o in outcomes if _test_key(o) == key]
        names = ", ".join(o.var.label for o in members)
        if key == "not_tested":
            text = "Not tested: " + "; ".join(f"{o.var.label} ({_reason_not_tested(o)})" for o in members)
        else:
            desc = TEST_DESCRIPTIONS.get(key, key)
            if key == "fisher_exact" and len(group_levels) == 2:  # the name readers know for two groups
                desc = "Fisher's exact test (an expected count < 5)"
            if key == "fisher_monte_carlo":  # names, reason, draws, seed, SE (or the bound) per variable
                text = (f"{desc[:1].upper()}{desc[1:]}: "
                        + monte_carlo_text([(o.var.label, o.result.details) for o in members]))
            else:
                text = f"{desc[:1].upper()}{desc[1:]}: {names}"
        test_notes.append((markers[key], text + "."))
    return tuple(notes + test_notes), markers


def monte_carlo_text(items) -> str:
    """Why and how variables got a Monte Carlo Fisher p-value, each reason said once.

    ``items``: ``(label, details)`` pairs (``details`` as in ``TestResult.details`` of
    :func:`analysis.contingency.fisher_exact_rxc`).  The same words go into the footnote and
    the methods; ``details['fallback_reason']`` is also the ``fallback_reason`` csv column.
    E.g. "exact computation not completed because <reason> (A, B); A: 100000 simulated
    tables, seed 0, Monte Carlo SE 0.00021; B: ..., none as extreme as the observed one, so
    p < 1/(100000 + 1) = 1.0e-05".
    """
    from . import formatting as fmt

    items = [(label, dict(details or {})) for label, details in items]
    by_reason: dict = {}
    for label, d in items:
        by_reason.setdefault(str(d.get("fallback_reason") or "of its budget"), []).append(str(label))
    why = "; ".join(f"exact computation not completed because {reason} ({', '.join(labels)})"
                    for reason, labels in by_reason.items())
    parts = []
    for label, d in items:
        try:
            draws = int(d.get("mc_draws"))
        except (TypeError, ValueError):  # not recorded (NaN / None)
            draws = 0
        text = f"{label}: {draws} simulated tables, seed {d.get('mc_seed')}"
        if d.get("p_upper_bound"):
            text += (f", none as extreme as the observed one, so p < 1/({draws} + 1) = "
                     f"{fmt.format_sig(1.0 / (draws + 1), 2)}")
        else:
            text += f", Monte Carlo SE {fmt.format_number(d.get('mc_se', math.nan), 5)}"
        parts.append(text)
    return "; ".join([why] + parts)


def _effect_family(name) -> str:
    """'cramers_v_corrected' -> 'cramers_v' (the family used in notes and methods)."""
    name = str(name or "")
    return "cramers_v" if name.startswith("cramers_v") else name


def _reason_not_tested(o) -> str:
    return str((o.result.details or {}).get("reason", "not computed"))


def _test_key(o) -> str:
    return o.result.test if not math.isnan(o.result.p_value) else "not_tested"


def _regression(cohort, data: pd.DataFrame, reference: str, multivariable=None, or_per="sd",
                group_levels=None):
    """Tidy multinomial OR frame, a note, and the multivariable model's events per parameter.

    Every schema variable gets a univariable model; the multivariable model (complete cases)
    uses ``multivariable`` (default: every schema variable not marked ``multivariable: false``).
    Ordinal variables enter as scores.  When the multivariable model has fewer than 10 patients
    of its smallest outcome group per slope parameter (events per parameter, EPV), the note
    says so (Peduzzi et al. 1996, doi:10.1016/S0895-4356(96)00236-3).  The third value is
    ``{'group', 'n', 'parameters'}`` (smallest outcome group among the complete cases, its
    patients, slope parameters per equation) when EPV < 10, else None.
    """
    import warnings

    from . import regression as reg
    from .errors import SeparationWarning

    schema = cohort.schema
    predictors = [v.name for v in schema.variables]
    types = {v.name: v.type for v in schema.variables}
    levels = {v.name: list(v.levels) for v in schema.variables if v.levels is not None}
    chosen = ([v.name for v in schema.variables if v.multivariable] if multivariable is None
              else list(multivariable))
    per = {v.name: (getattr(v, "or_per", None) or or_per) for v in schema.variables
           if v.type == "continuous"}
    outcome_levels = [str(g) for g in (schema.group_levels if group_levels is None else group_levels)]
    common = dict(levels=levels, outcome_levels=outcome_levels, or_per=per)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SeparationWarning)
        if chosen == predictors:
            frame = reg.multinomial_or_table(data, schema.group_column, predictors, reference, types,
                                             **common)
        else:
            frame = pd.concat([
                reg.multinomial_or_table(data, schema.group_column, predictors, reference, types,
                                         models=("univariable",), **common),
                reg.multinomial_or_table(data, schema.group_column, chosen, reference, types,
                                         models=("multivariable",), **common),
            ], ignore_index=True)
    from .methods import epv_phrase

    notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, SeparationWarning)))
    epv = None
    multi = frame[(frame["model"] == "multivariable") & frame["fit"].astype(str).ne("")]  # estimated terms
    if len(multi):
        n_params = int(multi.groupby("outcome_level").size().max())
        used = data.dropna(subset=[schema.group_column] + chosen)[schema.group_column].astype(str)
        counts = used.value_counts().reindex(outcome_levels).fillna(0)
        if n_params and counts.min() / n_params < 10:
            epv = {"group": str(counts.idxmin()), "n": int(counts.min()), "parameters": n_params}
            notes.append(f"multivariable model: {epv_phrase(epv)}: its estimates may be unstable and "
                         "over-fitted; choose a few predictors a priori with --predictors")
    return frame.reset_index(drop=True), "; ".join(notes), epv


def _per_text(var, sub: pd.DataFrame) -> str:
    """'per SD (12.3 years)', 'per IQR (0.00071 mm)', 'per 10 years', 'per unit', 'per level'."""
    from . import formatting as fmt

    if var.type == "ordinal":
        return "per level"
    how = str(sub["per"].dropna().iloc[0]) if "per" in sub and sub["per"].notna().any() else "unit"
    inc = float(sub["increment"].dropna().iloc[0]) if "increment" in sub and sub["increment"].notna().any() \
        else 1.0
    unit = f" {var.unit}" if getattr(var, "unit", None) else ""
    if how in ("SD", "IQR"):
        return f"per {how} ({fmt.format_sig(inc)}{unit})"
    if how == "given":
        return f"per {fmt.format_sig(inc, trim=True)}{unit or ' units'}"
    return "per unit"


def _odds_display(frame: pd.DataFrame, variables, reference) -> pd.DataFrame:
    """Human OR table: one row per variable (continuous / ordinal score) or per level
    (reference level marked), one 'OR (95% CI)' and one p column per model x group."""
    from . import formatting as fmt

    if frame is None or len(frame) == 0:
        return pd.DataFrame()
    frame = frame.copy()
    frame["level_key"] = frame["level"].map(lambda v: "" if pd.isna(v) else str(v))
    combos = list(dict.fromkeys(zip(frame["model"].astype(str), frame["outcome_level"].astype(str))))
    columns = []
    for model, grp in combos:
        columns += [f"{model.capitalize()} {grp} vs {reference}: OR (95% CI)",
                    f"{model.capitalize()} {grp} vs {reference}: p"]
    rows = []
    by_var = {name: grp for name, grp in frame.groupby("variable", sort=False)}
    for var in variables:
        sub = by_var.get(var.name, frame.iloc[:0])
        if not len(sub):
            continue
        # one lookup per (model, outcome, level) instead of filtering the frame for every cell
        cell = {(str(r["model"]), str(r["outcome_level"]), r["level_key"]): r
                for _, r in sub.drop_duplicates(["model", "outcome_level", "level_key"]).iterrows()}
        keys = list(dict.fromkeys(sub["level_key"]))
        unit = f" ({var.unit})" if getattr(var, "unit", None) else ""
        ref_level = None
        if keys == [""]:
            entries = [(f"{var.label}{unit}, {_per_text(var, sub)}", "")]
        else:
            rows.append({"Variable": f"{var.label}{unit}"})
            order = [str(lv) for lv in (var.levels or ())]
            keys = sorted(keys, key=lambda k: order.index(k) if k in order else len(order))
            ref_level = sub["reference_level"].dropna().astype(str)
            ref_level = ref_level.iloc[0] if len(ref_level) else None
            if ref_level is not None and ref_level not in keys:
                keys = [ref_level] + keys
            entries = [(f"\u2003{k}" + (" (reference)" if k == ref_level else ""), k) for k in keys]
        for label, key in entries:
            row = {"Variable": label}
            for model, grp in combos:
                hit = cell.get((model, grp, key))
                c_or = f"{model.capitalize()} {grp} vs {reference}: OR (95% CI)"
                c_p = f"{model.capitalize()} {grp} vs {reference}: p"
                if key and key == ref_level:
                    row[c_or], row[c_p] = "1 (reference)", ""
                elif hit is not None:
                    r = hit
                    row[c_or] = fmt.format_odds_ratio(r["odds_ratio"], r["ci_low"], r["ci_high"])
                    if str(r.get("fit", "")) == "l2_penalized" and row[c_or] != fmt.MISSING:
                        row[c_or] += " (ridge, no CI)"
                    elif str(r.get("fit", "")) == "not_converged":
                        row[c_or] = f"{fmt.MISSING} (not converged)"
                    row[c_p] = fmt.format_p(r["p_value"])
                else:
                    row[c_or], row[c_p] = fmt.MISSING, ""
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=["Variable"] + columns).fillna("")


def _software_versions() -> dict:
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "pandas", "statsmodels", "pingouin", "openpyxl"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


#: Groups with fewer patients are shown in Table 1 but left out of tests, post hoc and odds ratios.
MIN_TESTED_GROUP_SIZE = 3


def _tested_groups(counts: dict, group_levels, reference: str, explicit: bool, gcol: str):
    """(groups tested, note or '', reference): groups with fewer than :data:`MIN_TESTED_GROUP_SIZE`
    patients are described but not tested; fewer than two testable groups is an error."""
    from .errors import CohortError

    small = [g for g in group_levels if counts[g] < MIN_TESTED_GROUP_SIZE]
    if not small:
        return tuple(group_levels), "", reference
    tested = tuple(g for g in group_levels if g not in small)
    switched = None
    sizes = ", ".join(f"{g} {counts[g]}" for g in group_levels)
    if len(tested) < 2:
        raise CohortError(f"only {len(tested)} group(s) have at least {MIN_TESTED_GROUP_SIZE} patients "
                          f"({sizes}): groups cannot be compared; merge or remove the small groups",
                          column=gcol)
    if reference in small:
        if explicit:
            raise CohortError(f"reference group (--reference) '{reference}' has {counts[reference]} patient(s), "
                              f"fewer than {MIN_TESTED_GROUP_SIZE}, so no odds ratio can be estimated against "
                              f"it; choose one of {', '.join(tested)}", column=gcol)
        switched, reference = reference, tested[-1]
    shown = ", ".join(f"'{g}' (n={counts[g]})" for g in small)
    note = (f"group {shown} has fewer than {MIN_TESTED_GROUP_SIZE} patients: shown in the table but left out of "
            f"the tests, effect sizes, post hoc comparisons and odds ratios")
    if len(small) > 1:
        note = note.replace("group ", "groups ", 1).replace(" has fewer", " have fewer", 1)
    if reference not in small and switched is not None:
        note += f" (odds ratios against '{reference}' instead of '{switched}')"
    return tested, note, reference


def _variables_account(cohort, stats: pd.DataFrame) -> pd.DataFrame:
    """The cohort's column account with the test of each analysed variable."""
    from .cohort import ACCOUNT_COLUMNS

    account = getattr(cohort, "column_account", None)
    if account is None or not len(account):
        schema = cohort.schema
        account = pd.DataFrame([{"column": v.name, "role": "variable", "type": v.type, "test": "",
                                 "n_missing": int(cohort.data[v.name].isna().sum()), "reason": ""}
                                for v in schema.variables], columns=ACCOUNT_COLUMNS)
    account = account.copy().reset_index(drop=True)
    by_var = stats.set_index("variable") if len(stats) else None
    for i, rec in account.iterrows():
        if rec["role"] != "variable" or by_var is None or rec["column"] not in by_var.index:
            continue
        row = by_var.loc[rec["column"]]
        if pd.isna(row["p_value"]):
            account.loc[i, "test"] = "not tested"
            account.loc[i, "reason"] = str(row.get("reason", "")).split("not computed: ")[-1]
        else:
            account.loc[i, "test"] = str(row["test"])
    return account


def build_table1(cohort, *, overall: bool = True, alpha: float = 0.05, posthoc: bool = True,
                 regression: bool = True, reference: str | None = None, seed: int = 0,
                 fisher_time_budget: float | None = None, n_boot: int = 2000,
                 predictors=None, progress=None, or_per="sd", smd: bool = False,
                 binary_one_row: bool = True,
                 group: str | None = None, schema=None) -> Table1Result:
    """Build Table 1 for a validated cohort: descriptives, tests, effect sizes, q-values,
    post hoc comparisons and multinomial odds ratios.

    Parameters
    ----------
    cohort : analysis.cohort.Cohort, DataFrame or path
        Validated cohort (:func:`analysis.cohort.load_cohort`); ``cohort.data`` is not
        modified.  A DataFrame or a file is validated first, against ``schema`` or a schema
        inferred from ``group`` (see :func:`table1`).
    overall : bool, default True
        Add an 'Overall' column.
    alpha : float, default 0.05
        Significance level that triggers post hoc comparisons (the normality and variance
        checks of :func:`analysis.selection.choose_test` keep their own 0.05).
    posthoc : bool, default True
        Pairwise comparisons (Holm-adjusted) for variables with omnibus p < ``alpha``.
    regression : bool, default True
        Univariable and multivariable multinomial logistic regression odds ratios.
    reference : str, optional
        Reference group for odds ratios (default: the schema's ``reference_group``, else
        the last group level).
    seed : int, default 0
        Seed of every random procedure (Monte Carlo Fisher fallback, bootstrap CIs).
    fisher_time_budget : float or None, default None
        Optional wall-clock limit in seconds for each exact Fisher–Freeman–Halton test; off
        by default, because a clock makes the output depend on the machine and its load.
        The exact-or-Monte-Carlo decision is made by the deterministic work budget and
        memory cap of :func:`analysis.contingency.fisher_exact_rxc` (the same on every
        machine and run); a fallback is reported, with the same reason, in the footnote,
        the methods and ``stats['fallback_reason']``, with draws, seed and SE (or
        ``p < 1/(B+1)`` when no simulated table was as extreme).
    n_boot : int, default 2000
        Bootstrap resamples for the ε² (and Welch η²) confidence intervals.
    predictors : sequence of str, optional
        Variables of the multivariable multinomial model (default: every schema variable not
        marked ``multivariable: false``).
        Univariable models are fitted for every variable either way.  Choose them a priori
        (clinical knowledge, events per variable), not from this table's p-values.
    progress : callable, optional
        Wraps the iterable of variables (e.g. ``tqdm``); the library itself never prints.
    or_per : {'sd', 'iqr', 'unit'} or positive float, default 'sd'
        What the odds ratio of a continuous variable is per (one SD, one IQR, one unit of
        its own, or a given amount; :func:`analysis.regression.or_increment`), unless the
        schema gives the variable its own ``or_per``.  Stated in the odds-ratio table
        (e.g. "per SD (12.3 years)") and in the methods.
    smd : bool, default False
        Add an "SMD" column: the standardized mean difference (the mean of the pairwise
        SMDs with more than two groups, as R ``tableone``;
        :func:`analysis.describe.standardized_mean_difference`).  ``stats`` holds ``smd``
        and ``smd_max`` either way.
    binary_one_row : bool, default True
        Show a binary variable on one row, ``'Calcification, present: n (%)'`` (its second
        level), as gtsummary and tableone do; False: a header row and one row per level.
    group, schema : optional
        Only when ``cohort`` is a DataFrame or a file: the group column (types inferred) or
        the schema (a :class:`~analysis.schema.Schema` or its YAML file).

    Returns
    -------
    Table1Result
        See :class:`Table1Result`; ``result.stats`` is one tidy row per schema variable.

    Raises
    ------
    CohortError
        If ``reference`` is not a group level (with did-you-mean), ``alpha`` is not in
        (0, 1), or a variable cannot be analysed as declared.

    Notes
    -----
    A group with fewer than :data:`MIN_TESTED_GROUP_SIZE` patients is shown in the table but
    left out of the tests, effect sizes, post hoc comparisons and odds ratios, with a footnote
    (``settings['groups_not_tested']``); fewer than two groups of that size is a
    :class:`~analysis.errors.CohortError`, and so is such a group as ``reference``.
    Test choice per variable follows :func:`analysis.selection.choose_test` (reason kept
    in ``decisions`` and ``stats.reason``); missing values are counted and shown but never
    tested; q-values are Benjamini–Hochberg over the variables with a p-value
    (:func:`analysis.multiplicity.benjamini_hochberg`, matches R ``p.adjust(method="BH")``).

    Examples
    --------
    >>> from analysis.simulate import simulate_cohort
    >>> from analysis.schema import load_schema
    >>> from analysis.cohort import validate_cohort
    >>> cohort = validate_cohort(simulate_cohort(), load_schema())
    >>> res = build_table1(cohort, regression=False)        # doctest: +SKIP
    >>> res.stats[["variable", "test"]].head(2)             # doctest: +SKIP
    """
    from .errors import CohortError, did_you_mean
    from .multiplicity import benjamini_hochberg

    if not 0 < float(alpha) < 1:
        raise CohortError(f"alpha (--alpha) must lie strictly between 0 and 1, got {alpha!r}")
    cohort = as_cohort(cohort, group=group, schema=schema)
    schema = cohort.schema
    gcol = schema.group_column
    group_levels = tuple(str(g) for g in schema.group_levels)
    explicit_reference = reference is not None
    if reference is None:
        reference = schema.reference_group or group_levels[-1]
    reference = _match_level(reference, group_levels)
    if str(reference) not in group_levels:
        raise CohortError(f"reference group (--reference) '{reference}' is not a group level (expected: "
                          f"{', '.join(group_levels)}{did_you_mean(reference, group_levels)})",
                          column=gcol)
    if predictors is not None:
        names = [v.name for v in schema.variables]
        unknown = [v for v in predictors if v not in names]
        if unknown or not predictors:
            bad = unknown[0] if unknown else ""
            raise CohortError(f"multivariable predictor '{bad}' is not a schema variable"
                              f"{did_you_mean(bad, names)}", column=bad or None)
    reference = str(reference)
    data = cohort.data
    data = data.loc[data[gcol].notna()]
    groups = data[gcol].astype(object).astype(str)
    counts = {g: int((groups == g).sum()) for g in group_levels}
    n_total = int(len(data))
    tested_levels, small_note, reference = _tested_groups(counts, group_levels, reference, explicit_reference,
                                                          gcol)

    variables = list(schema.variables)
    iterator = progress(variables) if progress is not None else variables
    outcomes = [_analyse_variable(data, var, gcol, group_levels, alpha=alpha, posthoc=posthoc,
                                  seed=seed, fisher_time_budget=fisher_time_budget, n_boot=n_boot,
                                  tested_levels=tested_levels)
                for var in iterator]

    p_values = [o.result.p_value for o in outcomes]
    q_values = benjamini_hochberg(p_values)
    stats = pd.DataFrame([_stats_row(o, q) for o, q in zip(outcomes, q_values)])
    first = [c for c in STATS_COLUMNS]
    stats = stats[first + [c for c in stats.columns if c not in first]].reset_index(drop=True)

    ph_frames = [o.posthoc for o in outcomes if o.posthoc is not None and len(o.posthoc)]
    posthoc_frame = pd.concat(ph_frames, ignore_index=True) if ph_frames else pd.DataFrame()

    exclusions = cohort.exclusions.copy()
    footnotes, markers = _footnotes(outcomes, stats, group_levels=tested_levels, n_total=n_total,
                                    n_input=int(cohort.n_input), exclusions=exclusions, alpha=alpha,
                                    posthoc_done=sum(o.posthoc is not None for o in outcomes),
                                    overall=overall)
    if small_note:  # after the general notes, before the lettered test notes
        k = sum(1 for m, _ in footnotes if not m)
        footnotes = footnotes[:k] + (("", small_note[:1].upper() + small_note[1:] + "."),) + footnotes[k:]

    from . import formatting as fmt

    if smd:  # a general note, before the lettered test notes
        general = [f for f in footnotes if not f[0]]
        general.append(("", "SMD: standardized mean difference" + (
            " between the two groups" if len(tested_levels) == 2 else
            f", the mean of the {len(tested_levels) * (len(tested_levels) - 1) // 2} pairwise SMDs (as R tableone)")
            + " (continuous: difference in means over the pooled SD; categorical: Yang and Dalton's "
              "multivariate form); a description of balance, not a test."))
        footnotes = tuple(general + [f for f in footnotes if f[0]])
    columns = (["Variable"] + ([_group_header("Overall", n_total)] if overall else [])
               + [_group_header(g, counts[g]) for g in group_levels]
               + ["Missing", "p", "q", "Effect size (95% CI)"] + (["SMD"] if smd else []) + ["Test"])
    rows, info = [], []
    for o, q in zip(outcomes, q_values):
        key = _test_key(o)
        eff = o.effect
        rws, inf = _display_rows(
            o, group_levels, overall, n_total,
            p_text=fmt.format_p(o.result.p_value,
                                upper_bound=bool((o.result.details or {}).get("p_upper_bound"))),
            q_text=fmt.format_p(q),
            effect_text=(fmt.format_effect_size(eff.estimate, eff.ci_low, eff.ci_high)
                         if eff is not None else fmt.MISSING),
            test_text=TEST_LABELS.get(key, "Not tested"), marker=markers[key],
            smd_text=fmt.format_number(o.smd["smd"], 2) if smd else None,
            binary_one_row=binary_one_row)
        rows += rws
        info += inf
    display = pd.DataFrame(rows, columns=columns)
    row_info = pd.DataFrame(info, columns=["variable", "level", "kind", "marker"])

    reg_frame, reg_note, epv = pd.DataFrame(), "", None
    if not regression:
        reg_note = "odds-ratio regression not requested (--no-regression)"
    else:
        try:
            reg_data = data.loc[data[gcol].astype(object).isin(list(tested_levels)).to_numpy()]
            reg_frame, reg_note, epv = _regression(cohort, reg_data, reference, predictors, or_per,
                                                   group_levels=tested_levels)
        except Exception as exc:  # noqa: BLE001 - an optional table never costs the others
            # (an OverflowError, a LinAlgError, a CohortError...): every other table is still
            # written, and the note (Table 2, methods, the CLI) says what failed.
            reg_frame = pd.DataFrame()
            reg_note = f"the odds-ratio model could not be fitted ({type(exc).__name__}: {exc})"
    odds_display = _odds_display(reg_frame, variables, reference)

    settings = {"alpha": float(alpha), "seed": int(seed), "posthoc": bool(posthoc),
                "regression": bool(regression), "overall": bool(overall),
                "fisher_time_budget": None if fisher_time_budget is None else float(fisher_time_budget),
                "n_boot": int(n_boot),
                "reference": reference,
                "predictors": None if predictors is None else [str(v) for v in predictors],
                "multivariable_epv": epv, "or_per": or_per, "smd": bool(smd),
                "binary_one_row": bool(binary_one_row),
                "groups_not_tested": {g: counts[g] for g in group_levels if g not in tested_levels},
                "min_group_size": MIN_TESTED_GROUP_SIZE}
    result = Table1Result(
        display=display, stats=stats, decisions={o.var.name: o.choice for o in outcomes},
        posthoc=posthoc_frame, regression=reg_frame, exclusions=exclusions, methods_text="",
        footnotes=footnotes, row_info=row_info, odds_display=odds_display, group_column=gcol,
        group_label=schema.group_label, group_levels=group_levels, group_counts=counts,
        n_total=n_total, n_input=int(cohort.n_input), reference_group=reference,
        regression_note=reg_note, settings=settings, software=_software_versions(),
        source=str(cohort.source or ""), variables=_variables_account(cohort, stats),
        notes=tuple(getattr(cohort, "notes", ())) + ((small_note,) if small_note else ()))
    from .methods import methods_text

    return replace(result, methods_text=methods_text(result))


def _match_level(value, levels):
    """``value`` as one of ``levels``: exactly, else the one level equal to it ignoring case and
    spacing (``'Benign'`` -> ``'benign'``), else the same number (``'1'`` -> ``'1.0'``); unmatched:
    ``value`` unchanged (the caller reports it)."""
    if value is None or str(value) in levels:
        return value
    key = " ".join(str(value).split()).casefold()
    hits = [g for g in levels if " ".join(str(g).split()).casefold() == key]
    if len(hits) != 1:
        try:
            number = float(str(value))
            hits = [g for g in levels if _as_float(g) == number]
        except ValueError:
            hits = []
    return hits[0] if len(hits) == 1 else value


def _as_float(text):
    try:
        return float(str(text))
    except ValueError:
        return None


def parse_group_labels(items) -> dict:
    """``['1=metastatic', '2=lymphoma']`` (the ``--group-labels`` words) -> ``{'1': 'metastatic', ...}``.

    A mapping is returned as ``{str(code): str(label)}``.

    Raises
    ------
    ConfigError
        For an item that is not ``CODE=LABEL``, an empty code or label, or a code given twice.
    """
    from .errors import ConfigError

    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = [(str(k), str(v)) for k, v in items.items()]
    else:
        pairs = []
        for item in ([items] if isinstance(items, str) else items):
            code, sep, label = str(item).partition("=")
            if not sep or not code.strip() or not label.strip():
                raise ConfigError(f"--group-labels: '{item}' is not CODE=LABEL (e.g. 1=metastatic)")
            pairs.append((code.strip(), label.strip()))
    out = {}
    for code, label in pairs:
        if not code.strip() or not label.strip():
            raise ConfigError(f"--group-labels: '{code}={label}' has an empty code or label")
        if code in out:
            raise ConfigError(f"--group-labels: code '{code}' is given twice")
        out[code] = label
    return out


def relabel_groups(cohort, labels):
    """A copy of ``cohort`` whose group codes are replaced by labels (``{'1': 'metastatic'}``).

    Codes are matched to the group levels exactly, else ignoring case, else as numbers
    (``'1'`` matches a level ``'1.0'``); levels without a label keep their code.  The
    schema's group levels, their order and its reference group follow the new names.

    Raises
    ------
    ConfigError
        If a code is not a group level (did-you-mean), or two groups would get the same name.
    """
    from dataclasses import replace as _replace

    from .errors import ConfigError, did_you_mean

    labels = parse_group_labels(labels)
    if not labels:
        return cohort
    schema = cohort.schema
    levels = [str(g) for g in schema.group_levels]
    mapping = {}
    for code, label in labels.items():
        level = _match_level(code, levels)
        if level not in levels:
            raise ConfigError(f"--group-labels: '{code}' is not a group of column '{schema.group_column}' "
                              f"(groups: {', '.join(levels)}){did_you_mean(code, levels)}",
                              column=schema.group_column)
        if level in mapping:
            raise ConfigError(f"--group-labels: group '{level}' is labelled twice")
        mapping[level] = label
    new_levels = [mapping.get(g, g) for g in levels]
    seen = {}
    for old, new in zip(levels, new_levels):
        if new.casefold() in seen:
            raise ConfigError(f"--group-labels: groups '{seen[new.casefold()]}' and '{old}' would both be "
                              f"called '{new}'", column=schema.group_column)
        seen[new.casefold()] = old
    gcol = schema.group_column
    data = cohort.data.copy()
    data[gcol] = pd.Categorical(data[gcol].astype(object).map(lambda g: mapping.get(str(g), g)
                                                              if pd.notna(g) else g),
                                categories=new_levels, ordered=getattr(data[gcol].dtype, "ordered", False))
    ref = schema.reference_group
    new_schema = _replace(schema, group_levels=tuple(new_levels),
                          reference_group=None if ref is None else mapping.get(str(ref), ref))
    return _replace(cohort, data=data, schema=new_schema)


def as_cohort(data, *, group: str | None = None, schema=None, sheet=None, source=None):
    """A validated :class:`~analysis.cohort.Cohort` from a Cohort, a DataFrame or a file.

    A DataFrame is validated against ``schema`` (a Schema or its YAML file) or, without one,
    a schema inferred from the ``group`` column (:func:`analysis.schema.infer_schema`); a
    file is read by :func:`analysis.cohort.load_cohort` (same rules as the command line).

    Raises
    ------
    CohortError
        A DataFrame without ``group`` or ``schema`` (one line saying what to pass), a group
        column that differs from the schema's, or any reading / validation problem.
    """
    from pathlib import Path

    from .cohort import Cohort, load_cohort, validate_cohort
    from .errors import ConfigError
    from .schema import Schema, infer_schema, load_schema

    if isinstance(data, Cohort):
        if group is not None and group != data.schema.group_column:
            raise ConfigError(f"group '{group}' differs from the cohort's group column "
                              f"'{data.schema.group_column}'")
        return data
    if schema is not None and not isinstance(schema, Schema):
        schema = load_schema(schema)
    if schema is not None and group is not None and group != schema.group_column:
        raise ConfigError(f"group '{group}' differs from the schema's group column '{schema.group_column}'; "
                          "drop group= or edit the schema")
    if isinstance(data, (str, Path)):
        return load_cohort(data, schema=schema, group=group, sheet=sheet)
    if isinstance(data, pd.DataFrame):
        if schema is None:
            if group is None:
                raise ConfigError("a DataFrame needs the group column (group='diagnosis') or a schema "
                                  "(schema='cohort_schema.yaml') to be analysed")
            schema = infer_schema(data, group)
        return validate_cohort(data, schema, source=source if source is not None
                               else data.attrs.get("source", "DataFrame"))
    raise ConfigError(f"cannot make a Table 1 from a {type(data).__name__}: pass a file path, "
                      "a pandas DataFrame or an analysis.cohort.Cohort")


def table1(data, group: str | None = None, schema=None, *, sheet=None, group_labels=None,
           reference: str | None = None, **options) -> Table1Result:
    """Table 1 in one call, for notebooks: ``analysis.table1(data, group="diagnosis")``.

    Parameters
    ----------
    data : str, Path, DataFrame or Cohort
        A cohort file (``.xlsx``, ``.csv``, ``.tsv``), a table already in memory, or a
        validated cohort.  Not modified.
    group : str, optional
        Group column; without ``schema`` the variable types are inferred from the table
        (:func:`analysis.schema.infer_schema`, as ``--group`` on the command line).
    schema : Schema, str or Path, optional
        Cohort schema (or its YAML file).  A file without either uses the
        ``cohort_schema.yaml`` beside it.
    sheet : str or int, optional
        Excel sheet of a workbook (default: the first).
    group_labels : mapping or list of 'CODE=LABEL', optional
        Names for coded groups, e.g. ``{1: "metastatic", 2: "lymphoma", 3: "benign"}``
        (:func:`relabel_groups`).
    reference : str, optional
        Reference group of the odds ratios, matched ignoring case; a group's code may be
        given when ``group_labels`` names it.
    **options
        Passed to :func:`build_table1` (``overall, alpha, posthoc, regression, seed,
        n_boot, fisher_time_budget, predictors, progress, or_per, smd, binary_one_row``).

    Returns
    -------
    Table1Result
        Shown as a formatted table in Jupyter; ``.to_excel``, ``.to_docx``, ``.to_latex``,
        ``.to_markdown``, ``.write_all`` write it; ``.stats`` holds the tidy statistics.

    Raises
    ------
    CohortError
        With file, row and column, for anything wrong in the input or the arguments.

    Examples
    --------
    >>> import analysis
    >>> from analysis.simulate import simulate_cohort
    >>> res = analysis.table1(simulate_cohort(n=60, seed=1), group="group",
    ...                       regression=False, n_boot=50)
    >>> res.group_levels
    ('benign', 'lymphoma', 'metastatic')
    """
    cohort = as_cohort(data, group=group, schema=schema, sheet=sheet)
    labels = parse_group_labels(group_labels)
    if labels:
        cohort = relabel_groups(cohort, labels)
        if reference is not None and str(reference) not in cohort.schema.group_levels:
            code = _match_level(reference, list(labels))
            reference = labels.get(code, reference)
    return build_table1(cohort, reference=reference, **options)


class _CallableModule(types.ModuleType):
    """The module type of :mod:`analysis.table1`: calling the module calls :func:`table1`, so
    that ``analysis.table1(df, group=...)`` works whether or not the submodule (which is also
    what ``python -m analysis.table1`` runs) has been imported."""

    def __call__(self, *args, **kwargs):
        return table1(*args, **kwargs)


# ============================================================================ CLI
_EPILOG = """\
examples:
  python -m analysis.simulate --out demo_data
  python -m analysis.table1 demo_data/cohort.xlsx --out reports
  python -m analysis.table1 my_cohort.csv --group diagnosis --write-schema my_schema.yaml
  python -m analysis.table1 my_cohort.csv --schema my_schema.yaml --reference control --no-regression
  python -m analysis.table1 coded.xlsx --group diagnosis --group-labels 1=metastatic 2=lymphoma 3=benign --reference Benign

Without --schema and --group the schema is cohort_schema.yaml next to the cohort file,
else the packaged demo schema.  Writes table1.xlsx, table1.docx, table1.tex, table1.md,
table1_stats.csv, odds_ratios.csv, posthoc.csv and methods.md to --out.
"""


def build_parser(add_help: bool = True):
    """Argument parser of ``python -m analysis.table1`` (reusable as a parent parser)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m analysis.table1", add_help=add_help, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a publication-ready Table 1 (xlsx, LaTeX, Markdown, tidy csv) "
                    "comparing the groups of a cohort table.")
    parser.add_argument("cohort", help="cohort table (.xlsx, .csv, .tsv)")
    inp = parser.add_argument_group("input")
    inp.add_argument("--schema", metavar="FILE", default=None,
                     help="cohort schema YAML (default: cohort_schema.yaml next to COHORT, "
                          "else the packaged demo schema)")
    inp.add_argument("--group", metavar="COL", default=None,
                     help="group column; without --schema the variable types are inferred "
                          "(default: from the schema)")
    inp.add_argument("--sheet", metavar="NAME", default=None,
                     help="Excel sheet name (default: the first sheet)")
    inp.add_argument("--write-schema", metavar="FILE", default=None,
                     help="write the schema inferred from COHORT (needs --group) and exit")
    inp.add_argument("--overwrite", action="store_true",
                     help="let --write-schema replace an existing file (default: refuse)")
    ana = parser.add_argument_group("analysis")
    ana.add_argument("--reference", metavar="LEVEL", default=None,
                     help="reference group for odds ratios, any case (default: the schema's, else "
                          "the last group level)")
    ana.add_argument("--group-labels", nargs="+", metavar="CODE=LABEL", default=None,
                     help="names for coded groups, e.g. --group-labels 1=metastatic 2=lymphoma "
                          "3=benign (no schema edit needed)")
    ana.add_argument("--alpha", type=float, default=0.05,
                     help="significance level for post hoc comparisons (default: 0.05)")
    ana.add_argument("--seed", type=int, default=0,
                     help="seed of Monte Carlo and bootstrap procedures (default: 0)")
    ana.add_argument("--n-boot", type=int, default=2000,
                     help="bootstrap resamples for effect-size CIs (default: 2000)")
    ana.add_argument("--fisher-time-budget", type=float, default=None, metavar="SECONDS",
                     help="optional wall-clock limit per exact Fisher test before the seeded Monte "
                          "Carlo fallback; makes the result depend on the machine (default: none; a "
                          "deterministic work budget decides)")
    ana.add_argument("--no-posthoc", action="store_true", help="skip pairwise post hoc tests")
    ana.add_argument("--no-regression", action="store_true",
                     help="skip the multinomial odds-ratio table")
    ana.add_argument("--predictors", nargs="+", metavar="VAR", default=None,
                     help="variables of the multivariable model (default: every schema variable not marked "
                          "'multivariable: false'; "
                          "univariable models are fitted for every variable either way)")
    ana.add_argument("--or-per", default="sd", metavar="{sd,iqr,unit,NUMBER}",
                     help="odds ratios of continuous variables per SD, per IQR, per unit or per NUMBER "
                          "units (a schema's 'or_per' wins for its variable; default: sd)")
    ana.add_argument("--no-overall", action="store_true", help="omit the Overall column")
    ana.add_argument("--smd", action="store_true",
                     help="add a standardized mean difference column (mean of pairwise SMDs with more "
                          "than two groups, as R tableone)")
    ana.add_argument("--binary-levels", action="store_true",
                     help="show both levels of binary variables (default: one row, e.g. 'Calcification, "
                          "present: n (%%)')")
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", default="reports",
                     help="output folder (default: reports)")
    return parser


def _resolve_schema(args):
    """(schema or None to infer it, note): the note says which schema was (not) used and why."""
    from pathlib import Path

    from .errors import ConfigError
    from .schema import load_schema

    if args.schema is not None:
        schema = load_schema(args.schema)
        if args.group is not None and args.group != schema.group_column:
            raise ConfigError(f"--group '{args.group}' differs from the schema's group column "
                              f"'{schema.group_column}'; drop --group or edit the schema",
                              file=args.schema)
        return schema, ""
    beside = Path(args.cohort).with_name("cohort_schema.yaml")
    if args.group is not None:
        if beside.exists():
            return None, (f"note: --group given, so the types are inferred from the table and {beside} is not "
                          "used (nor its ranges and level checks); pass --schema to use it")
        return None, ""  # inferred by load_cohort
    if beside.exists():
        return load_schema(beside), ""
    return load_schema(), (f"no cohort_schema.yaml next to {Path(args.cohort).name}, so it was checked against "
                           "the packaged lymph-node demo schema; for another cohort pass --group COLUMN (types "
                           "inferred) or --schema FILE")


def _regression_summary(result) -> str:
    """One plain sentence for the terminal on how far the odds ratios can be trusted (details: Table 2 note)."""
    fits = result.regression
    said = []
    for model in ("univariable", "multivariable"):
        sub = fits[fits["model"].astype(str) == model] if len(fits) else fits
        firth = sorted(set(sub.loc[sub["fit"].astype(str) == "firth", "variable"].astype(str))) if len(sub) else []
        ridge = (sub["fit"].astype(str) == "l2_penalized").any() if len(sub) else False
        if model == "univariable" and firth:
            said.append(f"Firth's correction for separation in {len(firth)} univariable model(s) "
                        f"({', '.join(firth[:4])}{', ...' if len(firth) > 4 else ''})")
        failed = sorted(set(sub.loc[sub["fit"].astype(str) == "not_converged", "variable"].astype(str))) \
            if len(sub) else []
        if failed:
            said.append(f"no estimate in the {model} model{'s' if model == 'univariable' else ''} of "
                        f"{', '.join(failed[:4])}{', ...' if len(failed) > 4 else ''} (no fit converged)")
        if model == "multivariable" and ridge:
            said.append("the multivariable model could only be fitted with a ridge penalty: point estimates "
                        "without CIs or p-values, not for inference")
        elif model == "multivariable" and firth:
            said.append("Firth's correction in the multivariable model")
    epv = dict(result.settings).get("multivariable_epv")
    if epv:
        said.append(f"{epv['n']} {epv['group']} patients for {epv['parameters']} parameters per equation, "
                    f"EPV {epv['n'] / epv['parameters']:.1f} < 10: choose predictors a priori with --predictors")
    text = "; ".join(said) if said else result.regression_note
    return text + " (details: the note under Table 2 in table1.md)"


def _write_problems(exc, out):
    """Every problem of a failed validation as ``OUT/cohort_problems.csv`` (None if it cannot be written)."""
    rows = [{"file": p.file, "row": p.row, "column": p.column, "problem": getattr(p, "message", str(p))}
            for p in exc.problems]
    path = out / "cohort_problems.csv"
    try:
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["file", "row", "column", "problem"]).to_csv(path, index=False)
    except OSError:
        return None
    return path


def _or_per_arg(text: str):
    """``--or-per``: 'sd' | 'iqr' | 'unit' | a positive number (one-line error otherwise)."""
    from .errors import ConfigError

    low = str(text).strip().lower()
    if low in ("sd", "iqr", "unit"):
        return low
    try:
        value = float(low)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--or-per must be sd, iqr, unit or a positive number, got {text!r}")
    return value


def _run(args) -> list:
    import sys
    from pathlib import Path

    from .cohort import load_cohort
    from .errors import CohortError, CohortValidationError, ConfigError
    from .export import write_all

    if args.write_schema is not None:
        from .readers import read_table
        from .schema import infer_schema

        if args.group is None:
            raise ConfigError("--write-schema needs --group COLUMN (the column holding the groups)")
        if args.group_labels:
            raise ConfigError("--group-labels is not stored by --write-schema (the schema lists the group "
                              "codes found in the table); pass --group-labels when you build the table")
        df = read_table(args.cohort, sheet=args.sheet)
        target = Path(args.write_schema)
        if target.exists() and not args.overwrite:
            raise ConfigError(f"--write-schema: {target} already exists (an edited schema would be lost); "
                              "choose another file name or pass --overwrite")
        try:
            schema = infer_schema(df, args.group, or_per=_or_per_arg(args.or_per))
            path = schema.to_yaml(target)
        except OSError as exc:
            raise ConfigError(f"--write-schema: cannot write '{target}': {exc.strerror or exc}") from None
        print(f"inferred schema of {args.cohort} (group column '{args.group}'); edit it, then run "
              f"with --schema {path}")
        for note in schema.notes:
            print(f"note: {note}")
        for var in schema.variables:
            if var.recode:
                print(f"note: '{var.name}': other spellings read as a level (recode): "
                      + "; ".join(f"{k!r} -> {v!r}" for k, v in var.recode))
        for column, reason in schema.excluded:
            print(f"  left out '{column}': {reason}")
        return [path]
    if args.n_boot < 1:
        raise ConfigError(f"--n-boot must be at least 1, got {args.n_boot}")
    parse_group_labels(args.group_labels)  # a malformed CODE=LABEL stops before the table is read
    schema, note = _resolve_schema(args)
    try:
        cohort = load_cohort(args.cohort, schema=schema, group=args.group, sheet=args.sheet)
    except CohortError as exc:
        if note and schema is not None:  # the packaged schema was a guess: say so in the one line
            raise CohortError(f"{exc}; {note}") from None
        if isinstance(exc, CohortValidationError) and len(exc.problems) > 10:
            listing = _write_problems(exc, Path(args.out))
            if listing is not None:
                raise CohortError(f"{exc}\n  all {len(exc.problems)} problems are listed in {listing}") from None
        raise
    if note and schema is None:
        print(note, file=sys.stderr)
    try:
        from tqdm.auto import tqdm

        def progress(items):
            return tqdm(items, desc="Table 1", unit="variable", file=sys.stderr, delay=1.0,
                        leave=False)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        progress = None
    result = table1(cohort, group_labels=args.group_labels, overall=not args.no_overall, alpha=args.alpha,
                    posthoc=not args.no_posthoc, regression=not args.no_regression,
                    reference=args.reference, seed=args.seed, n_boot=args.n_boot,
                    fisher_time_budget=args.fisher_time_budget, predictors=args.predictors,
                    progress=progress, or_per=_or_per_arg(args.or_per), smd=args.smd,
                    binary_one_row=not args.binary_levels)
    try:
        paths = write_all(result, Path(args.out))
    except OSError as exc:
        raise ConfigError(f"cannot write the outputs to '{args.out}': {exc.strerror or exc}") from None
    stats = result.stats
    tests = ", ".join(f"{n} {t}" for t, n in stats["test"].value_counts(sort=False).items())
    n_sig = int((stats["p_value"] < args.alpha).sum())
    summary = cohort.summary().splitlines()
    print("\n".join([summary[0]] + [ln for ln in summary[1:] if ln.startswith("  excluded")]))
    from .cohort import account_lines, reportable_notes

    for line in account_lines(result.variables):
        print(line)
    for note in reportable_notes(result.notes):
        print(f"note: {note}")
    print(f"{len(stats)} variables ({tests}); {n_sig} with p < {args.alpha:g}; "
          f"{len(result.exclusions)} row(s) excluded")
    if result.regression_note:
        print(f"odds ratios: {_regression_summary(result)}")
    return paths


def main(argv=None) -> int:
    """Command line entry point; returns the exit status (2 on a cohort/schema error)."""
    from .errors import run_cli

    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args))


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    raise SystemExit(main())
