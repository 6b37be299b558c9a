"""Effect sizes against R (effect_sizes.R, location.R) and scipy, plus bootstrap properties."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats.contingency import association

from analysis.effect_sizes import cramers_v, epsilon_squared, eta_squared
from analysis.errors import CohortError

REF_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference"
CV = pd.read_csv(REF_DIR / "cramers_v.csv")
LOC_DATA = pd.read_csv(REF_DIR / "location_data.csv")
LOC = pd.read_csv(REF_DIR / "location_results.csv").set_index("dataset")


def table_of(row):
    return np.array([int(c) for c in row["cells"].split()]).reshape(row["nrow"], row["ncol"])


def samples(name):
    sub = LOC_DATA[LOC_DATA["dataset"] == name]
    return [sub.loc[sub["group"] == g, "value"].to_numpy() for g in ("a", "b", "c")]


def close(got, want, rel=1e-6, abs_=1e-9):
    return got == pytest.approx(want, rel=rel, abs=abs_)


@pytest.mark.parametrize("i", range(len(CV)))
def test_cramers_v_matches_r(i):
    row = CV.iloc[i]
    tab = table_of(row)
    corrected = cramers_v(tab)
    plain = cramers_v(tab, bias_corrected=False)
    assert close(corrected.estimate, row["v_corrected"])
    assert close(plain.estimate, row["v"])
    for es in (corrected, plain):
        assert close(es.ci_low, row["ci_low"]) and close(es.ci_high, row["ci_high"])
        assert es.ci_level == 0.95


@pytest.mark.parametrize("i", range(len(CV)))
def test_uncorrected_v_matches_scipy(i):
    tab = table_of(CV.iloc[i])
    assert close(cramers_v(tab, bias_corrected=False, ci=None).estimate,
                 association(tab, method="cramer"))


def test_cramers_v_drops_empty_rows_and_handles_degenerate_tables():
    tab = np.array([[10, 20, 5], [0, 0, 0], [15, 5, 9]])
    assert cramers_v(tab).estimate == pytest.approx(cramers_v(tab[[0, 2]]).estimate)
    es = cramers_v([[5, 7, 9]])
    assert np.isnan(es.estimate) and "not computed" in es.method
    with pytest.raises(CohortError, match="non-negative whole counts"):
        cramers_v([[1, -2], [3, 4]])


def test_cramers_v_accepts_dataframe_and_does_not_modify_it():
    df = pd.DataFrame([[20, 30, 25], [15, 10, 12]], columns=["m", "l", "b"])
    before = df.copy()
    assert close(cramers_v(df).estimate, CV.iloc[0]["v_corrected"])
    pd.testing.assert_frame_equal(df, before)


@pytest.mark.parametrize("name", list(LOC.index))
def test_eta_squared_and_noncentral_f_ci_match_r(name):
    es = eta_squared(samples(name))
    ref = LOC.loc[name]
    assert close(es.estimate, ref["eta2"])
    # R's uniroot tolerance 1e-13 on the noncentrality; limits agree far below 1e-6
    assert close(es.ci_low, ref["eta2_ci_low"]) and close(es.ci_high, ref["eta2_ci_high"])


@pytest.mark.parametrize("name", list(LOC.index))
def test_epsilon_squared_is_r_kruskal_h_over_n_minus_1(name):
    es = epsilon_squared(samples(name), ci=None)
    ref = LOC.loc[name]
    assert close(es.estimate, ref["kw_h"] / (ref["n"] - 1))
    # Tomczak & Tomczak's form H / ((n^2 - 1)/(n + 1)) is the same number
    n = ref["n"]
    assert close(es.estimate, ref["kw_h"] / ((n ** 2 - 1) / (n + 1)))


def test_bootstrap_cis_are_seeded_and_bracket_the_estimate():
    s = samples("ls_ratio_like")
    a = epsilon_squared(s, n_boot=300)
    b = epsilon_squared(s, n_boot=300)
    c = epsilon_squared(s, n_boot=300, seed=1)
    assert a == b and a.ci_low != c.ci_low
    assert a.ci_low < a.estimate < a.ci_high and "seed 0" in a.method
    e = eta_squared(s, ci_method="bootstrap", n_boot=300)
    assert e.ci_low < e.estimate < e.ci_high and "bootstrap" in e.method


def test_bootstrap_ci_is_near_noncentral_ci_for_normal_equal_variance_data():
    s = samples("large_600")
    nc = eta_squared(s)
    bs = eta_squared(s, ci_method="bootstrap", n_boot=500)
    assert abs(nc.ci_low - bs.ci_low) < 0.02 and abs(nc.ci_high - bs.ci_high) < 0.02


def test_missing_values_dropped_and_degenerate_input_gives_nan():
    s = samples("small_all_n8")
    with_nan = [np.append(s[0], np.nan), s[1], s[2]]
    assert eta_squared(with_nan, ci=None).estimate == pytest.approx(eta_squared(s, ci=None).estimate)
    es = epsilon_squared([[1, 1], [1, 1], [1]])
    assert np.isnan(es.estimate) and "identical" in es.method


def test_bad_ci_level_is_rejected():
    with pytest.raises(ValueError, match="ci must be"):
        cramers_v([[1, 2], [3, 4]], ci=95)


@pytest.mark.parametrize("name", ["ties_rounded", "ordinal_scores_heavy_ties", "small_group_n5"])
def test_vectorized_bootstrap_kernels_equal_the_scalar_statistics(name):
    """Each bootstrap resample's epsilon²/eta² equals the R-checked scalar functions."""
    from analysis.effect_sizes import _bootstrap_matrix, _epsilon_rows, _eta_rows
    from analysis.location import anova_oneway, kruskal_wallis

    groups = samples(name)
    mat, sizes = _bootstrap_matrix(groups, 5, seed=0)
    eps, eta = _epsilon_rows(mat, sizes), _eta_rows(mat, sizes)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for b in range(5):
        res = [mat[b, lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
        kw = kruskal_wallis(res)
        assert eps[b] == pytest.approx(kw.statistic / (kw.n_used - 1), rel=1e-10)
        av = anova_oneway(res).details
        assert eta[b] == pytest.approx(av["ss_between"] / (av["ss_between"] + av["ss_within"]), rel=1e-10)
