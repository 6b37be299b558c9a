"""analysis.table1.build_table1 on the demo cohort: structure, invariants, decisions."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis.table1 import STATS_COLUMNS, TEST_DESCRIPTIONS, Table1Result, build_table1

N_BOOT = 200  # bootstrap resamples for the ε²/η² CIs: enough for the structure tests, fast


@pytest.fixture(scope="module")
def cohort():
    from analysis.cohort import validate_cohort
    from analysis.schema import load_schema
    from analysis.simulate import simulate_cohort

    return validate_cohort(simulate_cohort(n=240, seed=3), load_schema(), source="demo.xlsx")


@pytest.fixture(scope="module")
def result(cohort) -> Table1Result:
    return build_table1(cohort, n_boot=N_BOOT)


def test_stats_is_tidy_one_row_per_schema_variable(result, cohort):
    stats = result.stats
    assert tuple(stats.columns[:len(STATS_COLUMNS)]) == STATS_COLUMNS
    assert list(stats["variable"]) == [v.name for v in cohort.schema.variables]
    assert isinstance(stats.index, pd.RangeIndex)
    for col in ("ci_low", "ci_high", "reason", "method", "df2"):
        assert col in stats.columns
    pd.testing.assert_frame_equal(result.to_frame(), stats)


def test_q_values_are_bh_of_raw_p_and_never_below_p(result):
    from analysis.multiplicity import benjamini_hochberg

    stats = result.stats
    ok = stats["p_value"].notna()
    assert (stats.loc[ok, "q_value"] >= stats.loc[ok, "p_value"] - 1e-15).all()
    np.testing.assert_allclose(stats["q_value"], benjamini_hochberg(stats["p_value"]), rtol=0, atol=0)


def test_missing_counts_match_the_data_and_are_not_tested(result, cohort):
    for row in result.stats.itertuples():
        col = cohort.data[row.variable]
        assert row.n_missing == int(col.isna().sum())
        assert row.n_used == int(col.notna().sum())
        assert row.n_used + row.n_missing == len(cohort.data)


def test_test_names_follow_the_selection_rules(result, cohort):
    for row in result.stats.itertuples():
        var = cohort.schema.variable(row.variable)
        choice = result.decisions[row.variable]
        assert choice.reason and choice.reason in row.reason
        if var.type == "continuous":
            assert row.test in ("anova", "welch_anova", "kruskal_wallis")
            assert row.effect_size_name == ("epsilon_squared" if row.test == "kruskal_wallis" else "eta_squared")
        elif var.type == "ordinal":
            assert row.test in ("kruskal_wallis", "linear_by_linear", "chi_square", "fisher_exact",
                                "fisher_monte_carlo")
        else:
            assert row.test == ("chi_square" if choice.test == "chi_square" else row.test)
            assert row.test in ("chi_square", "fisher_exact", "fisher_monte_carlo")
            assert row.effect_size_name.startswith("cramers_v")
        if not math.isnan(row.p_value):
            assert row.ci_low <= row.effect_size <= row.ci_high


def test_every_variable_row_has_a_test_footnote(result):
    info = result.row_info
    markers = result.test_markers
    headers = info[info["kind"] == "variable"]
    assert len(headers) == len(result.stats)
    for rec, test in zip(headers.itertuples(), result.stats["test"]):
        assert rec.marker in markers, rec.variable
        # the footnote names the test that was run (its description's first words)
        assert TEST_DESCRIPTIONS[test][:12].lower() in markers[rec.marker].lower()
        label = dict(zip(result.stats["variable"], result.stats["label"]))[rec.variable]
        assert label in markers[rec.marker]
    assert (info.loc[info["kind"] == "level", "marker"] == "").all()


def test_display_layout(result, cohort):
    d = result.display
    counts = cohort.group_counts()
    assert list(d.columns) == (["Variable", f"Overall (n={len(cohort.data)})"]
                               + [f"{g} (n={counts[g]})" for g in cohort.schema.group_levels]
                               + ["Missing", "p", "q", "Effect size (95% CI)", "Test"])
    assert len(d) == len(result.row_info)
    # every categorical level is listed, in schema order, also when empty
    for var in cohort.schema.variables:
        rows = result.row_info[result.row_info["variable"] == var.name]
        if var.type == "continuous":
            assert list(rows["kind"]) == ["variable"]
        elif var.type == "binary":  # one row by default: the second level, as gtsummary / tableone
            assert list(rows["kind"]) == ["variable"] and list(rows["level"]) == [str(var.levels[1])]
        else:
            assert list(rows["level"].iloc[1:]) == [str(lv) for lv in var.levels]
    # p and q use journal formatting; level rows carry no statistics
    assert d["p"].str.match(r"^(<0\.001|>0\.99|0\.\d{2,3}|\u2014|)$").all()
    levels = result.row_info["kind"] == "level"
    assert (d.loc[levels, ["p", "q", "Effect size (95% CI)", "Test", "Missing"]] == "").all().all()


def test_level_counts_add_up_to_group_sizes(result, cohort):
    """Category counts in the display match a direct crosstab of the data."""
    var = cohort.schema.variable("shape")
    rows = result.row_info.index[(result.row_info["variable"] == "shape") & (result.row_info["kind"] == "level")]
    g0 = cohort.schema.group_levels[0]
    col = [c for c in result.display.columns if c.startswith(f"{g0} (n=")][0]
    shown = [int(result.display.loc[i, col].split(" ")[0]) for i in rows]
    data = cohort.data
    expected = [int(((data["shape"] == lv) & (data["group"] == g0)).sum()) for lv in var.levels]
    assert shown == expected


def test_posthoc_only_for_significant_omnibus_rows(result):
    alpha = result.settings["alpha"]
    sig = set(result.stats.loc[result.stats["p_value"] < alpha, "variable"])
    assert set(result.posthoc["variable"]) == sig
    assert (result.posthoc["p_adjusted"] >= result.posthoc["p_value"] - 1e-15).all()
    # three groups -> three pairs per variable
    assert (result.posthoc.groupby("variable").size() == 3).all()


def test_no_posthoc_and_no_regression(cohort):
    res = build_table1(cohort, posthoc=False, regression=False, n_boot=20, overall=False)
    assert res.posthoc.empty
    assert res.regression.empty and "not requested" in res.regression_note
    assert not any(c.startswith("Overall") for c in res.display.columns)


def test_strict_alpha_reduces_posthoc(cohort, result):
    res = build_table1(cohort, alpha=1e-12, regression=False, n_boot=20)
    small = set(res.stats.loc[res.stats["p_value"] < 1e-12, "variable"])
    assert set(res.posthoc["variable"]) == small
    assert len(small) < int((result.stats["p_value"] < 0.05).sum())


def test_regression_against_reference_group(result, cohort):
    reg = result.regression
    assert set(reg["reference"]) == {"benign"}
    assert set(reg["outcome_level"]) == {"metastatic", "lymphoma"}
    assert set(reg["model"]) >= {"univariable"}
    assert len(result.odds_display) > 0
    assert any("vs benign" in c for c in result.odds_display.columns)


def test_other_reference_and_bad_reference(cohort):
    from analysis.errors import CohortError

    res = build_table1(cohort, reference="lymphoma", posthoc=False, n_boot=20)
    assert set(res.regression["reference"]) == {"lymphoma"}
    with pytest.raises(CohortError, match="did you mean 'lymphoma'"):
        build_table1(cohort, reference="lymphomma")
    with pytest.raises(CohortError, match="alpha"):
        build_table1(cohort, alpha=1.5)


def test_input_cohort_not_modified(cohort):
    before = cohort.data.copy()
    build_table1(cohort, regression=False, n_boot=20)
    pd.testing.assert_frame_equal(cohort.data, before)


def test_same_seed_same_stats(cohort, result):
    again = build_table1(cohort, n_boot=N_BOOT)
    pd.testing.assert_frame_equal(again.stats, result.stats)
    assert again.methods_text == result.methods_text


def test_fisher_chosen_for_sparse_table_and_small_group():
    """A small cohort forces Fisher–Freeman–Halton for sparse categorical rows."""
    from analysis.cohort import validate_cohort
    from analysis.schema import load_schema
    from analysis.simulate import simulate_cohort

    small = validate_cohort(simulate_cohort(n=45, seed=5), load_schema(), source="small.xlsx")
    res = build_table1(small, regression=False, n_boot=20)
    tests = dict(zip(res.stats["variable"], res.stats["test"]))
    assert tests["location"] in ("fisher_exact", "fisher_monte_carlo")
    assert "expected counts < 5" in res.decisions["location"].reason
    markers = res.test_markers
    assert any("Fisher" in t for t in markers.values())


def test_variable_without_variation_in_one_group_is_reported_not_dropped():
    """A group with every value missing for a variable leaves the row in place with a reason."""
    from analysis.cohort import validate_cohort
    from analysis.schema import load_schema
    from analysis.simulate import simulate_cohort

    df = simulate_cohort(n=90, seed=2)
    df.loc[df["group"] != "benign", "age"] = np.nan
    cohort = validate_cohort(df, load_schema(), source="x.xlsx")
    res = build_table1(cohort, regression=False, n_boot=20)
    row = res.stats.set_index("variable").loc["age"]
    assert math.isnan(row["p_value"]) and math.isnan(row["q_value"])
    assert "not computed" in row["reason"]
    assert "Not tested" in " ".join(res.test_markers.values())
    assert len(res.stats) == len(cohort.schema.variables)


def test_multivariable_predictors_are_chosen_and_named_in_methods(cohort):
    res = build_table1(cohort, n_boot=N_BOOT, posthoc=False,
                       predictors=["age", "hilum", "elasticity_score"])
    multi = res.regression[res.regression["model"] == "multivariable"]
    uni = res.regression[res.regression["model"] == "univariable"]
    assert set(multi["variable"]) == {"age", "hilum", "elasticity_score"}
    assert set(uni["variable"]) == {v.name for v in cohort.schema.variables}
    assert "The multivariable model included Age" in res.methods_text


def test_unknown_multivariable_predictor_is_one_clear_error(cohort):
    from analysis.errors import CohortError

    with pytest.raises(CohortError, match="did you mean 'hilum'"):
        build_table1(cohort, n_boot=N_BOOT, predictors=["age", "hilun"])


def _two_group_cohort(cohort):
    """The demo cohort restricted to two groups (benign vs metastatic)."""
    from dataclasses import replace

    keep = cohort.data[cohort.schema.group_column].astype(str).isin(["benign", "metastatic"])
    data = cohort.data.loc[keep].copy()
    schema = replace(cohort.schema, group_levels=("benign", "metastatic"), reference_group="benign")
    data[schema.group_column] = pd.Categorical(data[schema.group_column].astype(str),
                                               categories=list(schema.group_levels))
    return replace(cohort, data=data, schema=schema)


def test_two_groups_name_the_two_sample_tests_with_the_same_p_values(cohort):
    """With two groups: t-test / Welch t-test / Mann-Whitney and logistic regression, not ANOVA /
    Kruskal-Wallis / multinomial; p equal to scipy's two-sample tests (= R t.test, wilcox.test
    exact = FALSE, correct = FALSE; tests/analysis/test_real_tables.py checks R itself)."""
    from scipy import stats as sps

    from analysis.export import _odds_title

    two = _two_group_cohort(cohort)
    res = build_table1(two, n_boot=50)
    tests = set(res.stats["test"])
    assert tests & {"t_test", "welch_t_test", "mann_whitney"}
    assert not tests & {"anova", "welch_anova", "kruskal_wallis"}
    g = two.data[two.schema.group_column].astype(str)
    for row in res.stats.itertuples(index=False):
        if row.test in ("t_test", "welch_t_test", "mann_whitney") and row.type == "continuous":
            x = two.data[row.variable].astype(float)
            a, b = x[(g == "benign").to_numpy()].dropna(), x[(g == "metastatic").to_numpy()].dropna()
            want = (sps.mannwhitneyu(a, b, use_continuity=False, method="asymptotic").pvalue
                    if row.test == "mann_whitney" else
                    sps.ttest_ind(a, b, equal_var=(row.test == "t_test")).pvalue)
            assert row.p_value == pytest.approx(want, rel=1e-12)
    shown = set(res.display["Test"])
    assert "Mann\u2013Whitney U" in shown and not any("ANOVA" in t or "Kruskal" in t for t in shown)
    assert "Kruskal" not in res.methods_text.split("Effect sizes")[0]
    assert "binary logistic regression" in res.methods_text and "multinomial" not in res.methods_text
    assert _odds_title(res).startswith("Table 2. Logistic regression")
    assert len(res.posthoc) == 0  # the two-group test is the pairwise comparison


def test_binary_variable_on_one_row_and_both_levels_on_request(cohort, result):
    d = result.display
    row = d[d["Variable"] == "Calcification, present: n (%)"]
    assert len(row) == 1 and row["p"].iloc[0] != ""
    counts = cohort.data["calcification"].astype(str)
    assert row.iloc[0, 1].startswith(f"{int((counts == 'present').sum())} (")
    both = build_table1(cohort, regression=False, posthoc=False, n_boot=20, binary_one_row=False)
    assert "Calcification, present: n (%)" not in set(both.display["Variable"])
    assert {"absent", "present"} <= set(both.row_info.loc[both.row_info["variable"] == "calcification", "level"])


def test_smd_column_on_request(cohort, result):
    from analysis.describe import standardized_mean_difference

    assert "SMD" not in result.display.columns and result.stats["smd"].notna().all()
    res = build_table1(cohort, regression=False, posthoc=False, n_boot=20, smd=True)
    assert list(res.display.columns)[-2:] == ["SMD", "Test"]
    age = res.display.loc[res.row_info["variable"].eq("age") & res.row_info["kind"].eq("variable"), "SMD"]
    want = standardized_mean_difference(cohort.data["age"], cohort.data[cohort.schema.group_column],
                                        "continuous")["smd"]
    from analysis.formatting import format_number

    assert age.iloc[0] == format_number(want, 2)
    assert any("SMD: standardized mean difference" in text for _, text in res.footnotes)
