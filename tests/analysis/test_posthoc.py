"""Post hoc comparisons against R (location.R -> Dunn from ranks; posthoc.R -> t.test,
wilcox.test, chisq.test, fisher.test, p.adjust)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import CohortError
from analysis.posthoc import POSTHOC_COLUMNS, pairwise_contingency, pairwise_tests

REF_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference"
DATA = pd.read_csv(REF_DIR / "location_data.csv")
DUNN = pd.read_csv(REF_DIR / "dunn_results.csv")
CONT = pd.read_csv(REF_DIR / "posthoc_continuous.csv")
TABLES = pd.read_csv(REF_DIR / "posthoc_contingency.csv")
DATASETS = list(DUNN["dataset"].unique())
RTOL = 1e-6


def long(name):
    sub = DATA[DATA["dataset"] == name]
    return sub["value"].to_numpy(), sub["group"].to_numpy()


@pytest.mark.parametrize("name", DATASETS)
def test_dunn_matches_r_computation_from_ranks(name):
    out = pairwise_tests(*long(name), kind="kruskal_wallis", variable=name)
    ref = DUNN[DUNN["dataset"] == name]
    assert list(out.columns) == POSTHOC_COLUMNS
    assert list(zip(out["group_a"], out["group_b"])) == list(zip(ref["group_a"], ref["group_b"]))
    np.testing.assert_allclose(out["statistic"], ref["z"], rtol=RTOL)
    np.testing.assert_allclose(out["p_value"], ref["p_value"], rtol=RTOL)
    np.testing.assert_allclose(out["p_adjusted"], ref["p_holm"], rtol=RTOL)
    assert (out["test"] == "dunn").all() and (out["adjust_method"] == "holm").all()


@pytest.mark.parametrize("name", DATASETS)
def test_welch_t_and_mann_whitney_match_r(name):
    ref = CONT[CONT["dataset"] == name]
    t = pairwise_tests(*long(name), kind="welch_anova")
    np.testing.assert_allclose(t["statistic"], ref["t"], rtol=RTOL)
    np.testing.assert_allclose(t["p_value"], ref["t_p"], rtol=RTOL)
    np.testing.assert_allclose(t["p_adjusted"], ref["t_holm"], rtol=RTOL)
    w = pairwise_tests(*long(name), kind="mann_whitney")
    np.testing.assert_allclose(w["statistic"], ref["w"], rtol=RTOL)
    np.testing.assert_allclose(w["p_value"], ref["w_p"], rtol=RTOL)
    np.testing.assert_allclose(w["p_adjusted"], ref["w_holm"], rtol=RTOL)


def test_group_order_missing_values_and_untestable_pairs():
    v = np.array([1.0, 2, 3, np.nan, 5, 6, 7, 9])
    g = np.array(["b", "b", "b", "b", "a", "a", "a", None], dtype=object)
    out = pairwise_tests(v, g, kind="welch_t", group_levels=["b", "a", "empty"])
    assert list(zip(out["group_a"], out["group_b"])) == [("b", "a"), ("b", "empty"), ("a", "empty")]
    assert list(out["n_a"]) == [3, 3, 3] and list(out["n_b"]) == [3, 0, 0]
    assert out["p_value"].isna().tolist() == [False, True, True]
    assert out.loc[0, "p_adjusted"] == out.loc[0, "p_value"]   # a family of one
    assert "fewer than 2" in out.loc[1, "reason"]


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(CohortError, match="did you mean 'dunn'"):
        pairwise_tests([1, 2], ["a", "b"], kind="dun")


def contingency_cases():
    for table, sub in TABLES.groupby("table"):
        row = sub.iloc[0]
        cells = np.array([int(c) for c in row["cells"].split()]).reshape(row["nrow"], -1)
        yield pytest.param(cells, sub.reset_index(drop=True), id=f"table{table}")


@pytest.mark.parametrize("cells,ref", list(contingency_cases()))
def test_pairwise_contingency_matches_r(cells, ref):
    table = pd.DataFrame(cells, columns=["a", "b", "c"])
    chi = pairwise_contingency(table, kind="chi_square", variable="v")
    np.testing.assert_allclose(chi["statistic"], ref["chisq"], rtol=RTOL)
    np.testing.assert_allclose(chi["p_value"], ref["chisq_p"], rtol=RTOL)
    np.testing.assert_allclose(chi["p_adjusted"], ref["chisq_holm"], rtol=RTOL)
    fis = pairwise_contingency(table, kind="fisher")
    np.testing.assert_allclose(fis["p_value"], ref["fisher_p"], rtol=RTOL)
    np.testing.assert_allclose(fis["p_adjusted"], ref["fisher_holm"], rtol=RTOL)
    assert fis["statistic"].isna().all()


def test_pairwise_contingency_from_raw_values_equals_from_table():
    rng = np.random.default_rng(3)
    x = rng.choice(["oval", "round", "irregular"], 150)
    g = rng.choice(["metastatic", "lymphoma", "benign"], 150)
    levels, groups = ["oval", "round", "irregular"], ["metastatic", "lymphoma", "benign"]
    raw = pairwise_contingency((x, g), kind="chi_square", levels=levels, group_levels=groups)
    table = pd.crosstab(pd.Categorical(x, levels), pd.Categorical(g, groups))
    tab = pairwise_contingency(table, kind="chi_square")
    pd.testing.assert_frame_equal(raw, tab)
    assert list(raw["group_a"]) == ["metastatic", "metastatic", "lymphoma"]


@pytest.mark.parametrize("cells,ref", list(contingency_cases()))
def test_pairwise_subtables_and_holm_match_r_with_scipy_chi_square(cells, ref, monkeypatch):
    """Checks the pairing, subtable and adjustment logic independently of analysis.contingency:
    a stand-in module computes Pearson chi-square with scipy."""
    import sys
    import types

    from scipy.stats import chi2_contingency

    from analysis._results import TestResult

    def chi_square(table):
        stat, p, dof, _ = chi2_contingency(table, correction=False)
        return TestResult("chi_square", float(stat), float(dof), float(p), int(np.sum(table)))

    fake = types.ModuleType("analysis.contingency")
    fake.chi_square = chi_square
    monkeypatch.setitem(sys.modules, "analysis.contingency", fake)
    import analysis
    monkeypatch.setattr(analysis, "contingency", fake, raising=False)
    out = pairwise_contingency(pd.DataFrame(cells, columns=["a", "b", "c"]), kind="chi_square")
    np.testing.assert_allclose(out["statistic"], ref["chisq"], rtol=RTOL)
    np.testing.assert_allclose(out["p_value"], ref["chisq_p"], rtol=RTOL)
    np.testing.assert_allclose(out["p_adjusted"], ref["chisq_holm"], rtol=RTOL)
    assert list(out["n_a"]) == [cells[:, 0].sum(), cells[:, 0].sum(), cells[:, 1].sum()]
