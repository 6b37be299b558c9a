"""analysis.methods.methods_text: names what was done, deterministic."""
import pandas as pd
import pytest

from analysis.methods import SOFTWARE_PACKAGES, methods_text
from analysis.table1 import build_table1


@pytest.fixture(scope="module")
def result():
    from analysis.cohort import validate_cohort
    from analysis.schema import load_schema
    from analysis.simulate import simulate_cohort

    cohort = validate_cohort(simulate_cohort(n=200, seed=4), load_schema(), source="demo.xlsx")
    return build_table1(cohort, n_boot=50)


def test_names_every_test_used_and_counts(result):
    text = result.methods_text
    phrases = {"chi_square": "Pearson's \u03c7\u00b2", "fisher_exact": "Fisher\u2013Freeman\u2013Halton",
               "fisher_monte_carlo": "Fisher\u2013Freeman\u2013Halton test (Monte Carlo estimate)",
               "kruskal_wallis": "Kruskal\u2013Wallis", "anova": "one-way ANOVA",
               "welch_anova": "Welch's ANOVA", "linear_by_linear": "linear-by-linear"}
    for test, n in result.stats["test"].value_counts().items():
        assert phrases[test] in text
        assert f"({n} variable" in text


def test_names_multiplicity_effect_sizes_exclusions_and_versions(result):
    text = result.methods_text
    assert "Benjamini\u2013Hochberg" in text and "Holm" in text
    assert "Cram\u00e9r's V" in text and "95% confidence intervals" in text
    assert f"All {result.n_total} patients were analysed" in text
    for pkg in SOFTWARE_PACKAGES:
        version = result.software[pkg]
        assert f"{'Python' if pkg == 'python' else pkg} {version}" in text
    assert "against benign" in text


def test_deterministic(result):
    assert methods_text(result) == methods_text(result) == result.methods_text


def test_exclusions_are_counted(result):
    from dataclasses import replace

    excl = pd.DataFrame({"row": [5, 9], "patient_id": ["P1", "P2"], "column": ["group", "group"],
                         "reason": ["missing group", "missing group"]})
    text = methods_text(replace(result, exclusions=excl, n_input=result.n_total + 2))
    assert f"Of {result.n_total + 2} rows, 2 were excluded (2 for missing group)" in text


def test_monte_carlo_details_are_reported(result):
    from dataclasses import replace

    stats = result.stats.copy()
    stats.loc[0, "test"] = "fisher_monte_carlo"
    stats["mc_draws"] = [100000.0] + [float("nan")] * (len(stats) - 1)
    stats["mc_seed"] = [0.0] + [float("nan")] * (len(stats) - 1)
    stats["mc_se"] = [0.00012] + [float("nan")] * (len(stats) - 1)
    stats["fallback_reason"] = ["its memory cap"] + [""] * (len(stats) - 1)
    text = methods_text(replace(result, stats=stats))
    assert "because its memory cap (" in text
    assert "100000 simulated tables, seed 0, Monte Carlo SE 0.00012" in text


def test_states_complete_cases_posthoc_tests_and_ridge_without_intervals(tmp_path):
    """On a small cohort the multivariable model falls back to ridge: the text must say what was shown."""
    import warnings

    from analysis.cohort import validate_cohort
    from analysis.schema import load_schema
    from analysis.simulate import simulate_cohort

    cohort = validate_cohort(simulate_cohort(n=60, seed=1), load_schema(), source="small.xlsx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = build_table1(cohort, n_boot=50)
    text = res.methods_text
    multi = res.regression[res.regression["model"] == "multivariable"]
    assert f"fitted to the {int(multi['n_used'].max())} of {res.n_total} patients" in text
    assert "complete-case analysis" in text
    assert "Dunn's test on the pooled ranks" in text and "matching two-group test" not in text
    ridge = multi[multi["fit"] == "l2_penalized"]
    assert len(ridge) and ridge[["ci_low", "ci_high", "p_value"]].isna().all().all()
    assert "without confidence intervals or p-values" in text and "Firth's fit did not converge" in text
    assert "pingouin" not in text
    # ls_ratio (= long / short axis) is marked multivariable: false in the schema
    assert "ls_ratio" not in set(multi["variable"]) and "ls_ratio" in set(res.regression["variable"])
    assert "except L/S ratio" in text
    assert "events per parameter, fewer than 10), so its estimates may be unstable" in text
    assert "events per parameter" in res.regression_note
    from analysis.export import write_markdown

    md = write_markdown(res, tmp_path / "t.md").read_text(encoding="utf-8")
    assert f"**Multivariable model (n = {int(multi['n_used'].max())} of 60 patients: complete cases" in md
    assert "(ridge, no CI)" in md
