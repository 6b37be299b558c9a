"""Cohort statistics for clinical imaging research: schema-validated cohort tables,
Table 1 (tests, effect sizes, q-values, post hoc, multinomial odds ratios), exports,
ROC / classification metrics with patient-level bootstrap CIs.

``import analysis`` is cheap: the public names below are loaded from their modules on
first use (PEP 562), and nothing in ``analysis`` ever imports torch.

>>> import analysis
>>> analysis.format_p(0.0004)
'<0.001'

Table 1 in one call (a file, a DataFrame or a Cohort): ``analysis.table1(data, group="diagnosis")``
returns a :class:`~analysis.table1.Table1Result` that Jupyter shows as a formatted table.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> defining submodule.
_EXPORTS = {
    # errors and result objects
    "CohortError": "errors", "SchemaError": "errors", "CohortValidationError": "errors",
    "ImageError": "errors", "ConfigError": "errors", "AnalysisWarning": "errors",
    "ExactTestFallbackWarning": "errors", "SeparationWarning": "errors",
    "UndefinedMetricWarning": "errors",
    "TestResult": "_results", "EffectSize": "_results",
    # schema, reading, validation, demo data
    "Schema": "schema", "Variable": "schema", "load_schema": "schema", "infer_schema": "schema",
    "with_columns": "schema",
    "read_table": "readers",
    "Cohort": "cohort", "validate_cohort": "cohort", "load_cohort": "cohort",
    "simulate_cohort": "simulate",
    # statistics
    "describe": "describe", "standardized_mean_difference": "describe",
    "chi_square": "contingency", "fisher_exact_rxc": "contingency",
    "linear_by_linear": "contingency",
    "anova_oneway": "location", "welch_anova": "location", "kruskal_wallis": "location",
    "cramers_v": "effect_sizes", "epsilon_squared": "effect_sizes", "eta_squared": "effect_sizes",
    "pairwise_tests": "posthoc", "pairwise_contingency": "posthoc",
    "holm": "multiplicity", "benjamini_hochberg": "multiplicity",
    "TestChoice": "selection", "choose_test": "selection",
    "multinomial_or_table": "regression", "or_increment": "regression",
    "roc_auc": "roc", "roc_auc_ovr": "roc", "delong_ci": "roc", "delong_test": "roc",
    "cluster_bootstrap": "bootstrap",
    "classification_metrics": "metrics",
    "expected_calibration_error": "calibration",
    "decision_curve": "decision_curve", "net_benefit": "decision_curve",
    "conformal_sets": "conformal", "conformal_summary": "conformal",
    "random_effects_meta": "meta_analysis", "centre_auc": "meta_analysis",
    "meta_analysis_of_centres": "meta_analysis",
    # Table 1 and its outputs
    "Table1Result": "table1", "build_table1": "table1",
    "methods_text": "methods",
    "format_p": "formatting",
    "write_xlsx": "export", "write_latex": "export", "write_markdown": "export",
    "write_stats_csv": "export", "write_odds_ratios_csv": "export", "write_all": "export",
    "write_docx": "export", "relabel_groups": "table1",
}

__all__ = sorted([*_EXPORTS, "table1"])


def __getattr__(name: str):
    if name == "table1":
        # The submodule, which is callable: analysis.table1(data, group=...) is
        # analysis.table1.table1 (and python -m analysis.table1 runs its command line).
        return importlib.import_module(f"{__name__}.table1")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
