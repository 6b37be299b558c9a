"""The real-workbook defects of issue 9, on tests/fixtures/clinical_workbook (a 256-row,
two-sheet workbook with free text, 'not available' codes and a 0.007 mm/pixel spacing; see
make_workbook.py there).  Each test failed before its fix."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cohort import load_cohort
from analysis.regression import multinomial_or_table, or_increment
from analysis.schema import load_schema
from analysis.table1 import build_table1

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "clinical_workbook"
WORKBOOK = HERE / "lymph_node_workbook.xlsx"
SCHEMA = HERE / "schema.yaml"


@pytest.fixture(scope="module")
def cohort():
    return load_cohort(WORKBOOK, schema=load_schema(SCHEMA))


def _types(cohort):
    return {v.name: v.type for v in cohort.schema.variables}


def _levels(cohort):
    return {v.name: list(v.levels) for v in cohort.schema.variables if v.levels}


def test_small_scale_predictor_per_unit_does_not_overflow_or_look_separated(cohort):
    """Per unit (mm) the pixel-spacing slope is in the hundreds: before, math.exp(b + z se)
    raised OverflowError and |coef| > 10 called it separation (Firth)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no SeparationWarning either
        out = multinomial_or_table(cohort.data, "diagnosis", ["pixel_spacing_mm"], "benign",
                                   _types(cohort), or_per="unit", models=("univariable",))
    rows = out[out["variable"] == "pixel_spacing_mm"]
    assert (rows["fit"] == "mle").all()
    assert (rows["per"] == "unit").all() and (rows["increment"] == 1.0).all()
    assert rows["coef"].abs().max() > 10  # a large per-mm slope, yet not 'separation'
    assert rows["p_value"].between(0, 1).all()


def test_or_per_sd_is_the_per_unit_or_to_the_power_sd(cohort):
    """Reparametrisation: OR per SD = (OR per unit) ** SD exactly, same p-value."""
    kw = dict(types=_types(cohort), levels=_levels(cohort), models=("univariable",))
    unit = multinomial_or_table(cohort.data, "diagnosis", ["pixel_spacing_mm", "age"], "benign",
                                or_per="unit", **kw)
    sd = multinomial_or_table(cohort.data, "diagnosis", ["pixel_spacing_mm", "age"], "benign",
                              or_per="sd", **kw)
    for var in ("pixel_spacing_mm", "age"):
        inc, how = or_increment(cohort.data.loc[cohort.data["diagnosis"].notna(), var], "sd")
        assert how == "SD"
        u, s = unit[unit["variable"] == var], sd[sd["variable"] == var]
        assert (s["per"] == "SD").all() and np.allclose(s["increment"], inc)
        np.testing.assert_allclose(s["odds_ratio"].to_numpy(), unit["odds_ratio"][u.index].to_numpy() ** inc,
                                   rtol=1e-6)
        np.testing.assert_allclose(s["p_value"].to_numpy(), u["p_value"].to_numpy(), rtol=1e-6)


def test_separation_check_does_not_depend_on_the_unit(cohort):
    """The same predictor in mm and in µm (x 1000): same fit, same OR per SD."""
    df = cohort.data.copy()
    df["spacing_um"] = df["pixel_spacing_mm"] * 1000.0
    types = {"pixel_spacing_mm": "continuous", "spacing_um": "continuous"}
    for per in ("unit", "sd"):
        a = multinomial_or_table(df, "diagnosis", ["pixel_spacing_mm"], "benign", types, or_per=per,
                                 models=("univariable",))
        b = multinomial_or_table(df, "diagnosis", ["spacing_um"], "benign", types, or_per=per,
                                 models=("univariable",))
        assert list(a["fit"]) == list(b["fit"]) == ["mle", "mle"]
        np.testing.assert_allclose(a["p_value"], b["p_value"], rtol=1e-6)
    np.testing.assert_allclose(a["odds_ratio"], b["odds_ratio"], rtol=1e-6)


def test_or_per_from_schema_and_clear_error(cohort):
    var = replace(cohort.schema.variable("age"), or_per=10.0)
    out = multinomial_or_table(cohort.data, "diagnosis", ["age"], "benign", {"age": "continuous"},
                               or_per={"age": var.or_per}, models=("univariable",))
    assert (out["per"] == "given").all() and (out["increment"] == 10.0).all()
    from analysis.errors import CohortError

    with pytest.raises(CohortError, match="or_per must be 'sd', 'iqr', 'unit' or a positive number"):
        multinomial_or_table(cohort.data, "diagnosis", ["age"], "benign", {"age": "continuous"},
                             or_per="per decade")


def test_ridge_that_did_not_converge_reports_no_estimate(monkeypatch):
    """A non-converged penalized optimum is not an estimate: OR NaN, fit 'not_converged'."""
    import analysis.regression as reg

    real = reg._penalized

    def not_converged(y, X, penalty):
        params, bse, _ = real(y, X, penalty)
        return params, bse, False

    monkeypatch.setattr(reg, "_penalized", not_converged)
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 20), "x": rng.normal(size=60)})
    df["x2"] = df["x"] * 2.0  # collinear: rank-deficient design -> ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = reg.multinomial_or_table(df, "g", ["x", "x2"], "a", {"x": "continuous", "x2": "continuous"},
                                       models=("multivariable",))
    assert (out["fit"] == "not_converged").all()
    assert out[["odds_ratio", "ci_low", "ci_high", "p_value"]].isna().all().all()
    assert out["reason"].str.contains("did not converge either: no estimate").all()


def test_small_values_get_significant_digits_in_table1(cohort):
    """Before: '0.01 ± 0.00' in every group; digits now come from the data."""
    schema = replace(cohort.schema, variables=(cohort.schema.variable("pixel_spacing_mm"),))
    res = build_table1(replace(cohort, schema=schema), regression=False, posthoc=False, n_boot=20)
    row = res.display.iloc[0]
    cells = [row[c] for c in res.display.columns if "(n=" in c]
    assert all(c.startswith("0.00") and len(c.split(" ")[0]) == 7 for c in cells), cells  # 0.00710
    assert not any(c.startswith("0.01") for c in cells)


def test_optional_table_failure_is_a_note_and_every_table_is_written(cohort, tmp_path, monkeypatch):
    """Any exception in the odds-ratio model (here an OverflowError) costs only that table."""
    import analysis.regression as reg

    def boom(*args, **kwargs):
        raise OverflowError("math range error")

    monkeypatch.setattr(reg, "multinomial_or_table", boom)
    schema = replace(cohort.schema, variables=tuple(v for v in cohort.schema.variables
                                                    if v.name in ("age", "sex", "vascularity")))
    res = build_table1(replace(cohort, schema=schema), n_boot=20)
    assert len(res.stats) == 3 and res.stats["p_value"].notna().all()
    assert "OverflowError: math range error" in res.regression_note
    assert "OverflowError" in res.methods_text
    from analysis.export import write_all

    paths = write_all(res, tmp_path)
    assert all(Path(p).exists() for p in paths)


@pytest.mark.slow
def test_workbook_cli_writes_everything(tmp_path):
    """The whole workbook (free-text columns kept as categorical by the schema): exit 0, all
    outputs; before: OverflowError after ~70 s and ~3 GB (the exact Fisher network of the
    16-level multi-select column ran to a 25-million-row memory cap).  Time and memory are
    measured in BENCHMARKS.md (section 13), not asserted here."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "analysis.table1", str(WORKBOOK), "--schema", str(SCHEMA),
                           "--out", str(tmp_path), "--n-boot", "200"], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    for name in ("table1.xlsx", "table1.md", "table1_stats.csv", "odds_ratios.csv", "methods.md"):
        assert (tmp_path / name).exists()
    stats = pd.read_csv(tmp_path / "table1_stats.csv").set_index("variable")
    assert stats.loc["findings", "test"] == "fisher_monte_carlo"
    assert "memory cap" in stats.loc["findings", "fallback_reason"]


def test_monte_carlo_reason_is_the_same_in_footnote_methods_and_csv(cohort, tmp_path):
    """Before: the footnote said 'work budget', the methods 'a 30 s time budget', the csv 'memory cap'.
    The 16 x 3 multi-select column runs into the (deterministic) memory cap of the exact network."""
    from analysis.export import write_stats_csv

    schema = replace(cohort.schema, variables=(cohort.schema.variable("findings"),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = build_table1(replace(cohort, schema=schema), regression=False, posthoc=False, n_boot=20)
    row = res.stats.iloc[0]
    assert row["test"] == "fisher_monte_carlo"
    reason = row["fallback_reason"]
    assert "memory cap" in reason and "time" not in reason
    foot = [text for marker, text in res.footnotes if marker]
    assert sum(reason in text for text in foot) == 1
    assert reason in res.methods_text and "time budget" not in res.methods_text
    write_stats_csv(res, tmp_path / "stats.csv")
    assert pd.read_csv(tmp_path / "stats.csv")["fallback_reason"].iloc[0] == reason
    assert res.settings["fisher_time_budget"] is None


def test_table1_states_what_each_or_is_per(cohort):
    """Default per SD (stated with the SD), a schema's or_per wins for its variable."""
    age = replace(cohort.schema.variable("age"), or_per=10.0, unit="years")
    spacing = replace(cohort.schema.variable("pixel_spacing_mm"), unit="mm")
    schema = replace(cohort.schema, variables=(age, spacing))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = build_table1(replace(cohort, schema=schema), posthoc=False, n_boot=20)
    labels = list(res.odds_display["Variable"])
    assert "age (years), per 10 years" in labels
    sd = float(res.regression.loc[res.regression["variable"] == "pixel_spacing_mm", "increment"].iloc[0])
    from analysis.formatting import format_sig

    assert f"pixel_spacing_mm (mm), per SD ({format_sig(sd)} mm)" in labels
    assert "per one standard deviation and the increment given in the schema" in res.methods_text


def test_failing_post_hoc_or_effect_size_is_a_footnote_not_a_lost_run(cohort, monkeypatch):
    import analysis.table1 as t1

    def boom(*args, **kwargs):
        raise FloatingPointError("overflow encountered")

    monkeypatch.setattr(t1, "_pairwise", boom)
    monkeypatch.setattr(t1, "_effect", boom)
    schema = replace(cohort.schema, variables=(cohort.schema.variable("age"),))
    res = build_table1(replace(cohort, schema=schema), regression=False, n_boot=20)
    assert res.stats["p_value"].iloc[0] < 0.05 and math.isnan(res.stats["effect_size"].iloc[0])
    notes = [text for marker, text in res.footnotes if not marker]
    assert any("post hoc comparisons not computed (FloatingPointError" in t and "effect size not computed" in t
               for t in notes)


def test_monte_carlo_reason_said_once_for_several_variables():
    from analysis.contingency import fallback_reason
    from analysis.table1 import monte_carlo_text

    why = fallback_reason("work", 100_000_000)
    text = monte_carlo_text([("A", {"fallback_reason": why, "mc_draws": 1000, "mc_seed": 0, "mc_se": 0.01}),
                             ("B", {"fallback_reason": why, "mc_draws": 1000, "mc_seed": 0, "mc_se": 0.0,
                                    "p_upper_bound": True})])
    assert text.count(why) == 1 and "(A, B)" in text
    assert "B: 1000 simulated tables, seed 0, none as extreme as the observed one, so p < 1/(1000 + 1)" in text
