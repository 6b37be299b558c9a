"""Tests of analysis.contingency against R (chisq.test, fisher.test, coin) and invariants.

Reference values: tests/fixtures/r_reference/contingency_reference.csv, produced by the
committed script tests/fixtures/r_reference/contingency.R (Rscript, fixed seed).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.contingency import chi_square, cmh_ordinal, crosstab, fisher_exact_rxc, linear_by_linear
from analysis.errors import CohortError, ExactTestFallbackWarning

REF = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference" / "contingency_reference.csv"


def _load():
    df = pd.read_csv(REF, keep_default_na=False, dtype=str)
    out = []
    for rec in df.to_dict("records"):
        cells = np.array([int(v) for v in rec["cells"].split()], dtype=np.int64)
        rec["table"] = cells.reshape(int(rec["nrow"]), int(rec["ncol"]))
        out.append(rec)
    return out


REFS = _load()
IDS = [r["id"] for r in REFS]


def _f(s):
    return math.nan if s in ("NA", "NaN", "") else float(s)


def test_reference_file_has_enough_tables():
    assert len(REFS) >= 30
    assert sum(r["fisher_p"] != "NA" for r in REFS) >= 30


@pytest.mark.parametrize("rec", REFS, ids=IDS)
def test_chi_square_against_R(rec):
    res = chi_square(rec["table"])
    assert res.test == "chi_square"
    assert res.statistic == pytest.approx(_f(rec["chisq_statistic"]), rel=1e-6)
    assert res.df == _f(rec["chisq_df"])
    assert res.p_value == pytest.approx(_f(rec["chisq_p"]), rel=1e-6)
    assert res.n_used == rec["table"].sum()


def _is_slow(rec):
    t = rec["table"]
    return t.sum() >= 300 and min(t.shape) >= 3


FISHER = [pytest.param(r, id=r["id"], marks=[pytest.mark.slow] if _is_slow(r) else [])
          for r in REFS if r["fisher_p"] != "NA"]


@pytest.mark.parametrize("rec", FISHER)
def test_fisher_exact_against_R(rec):
    res = fisher_exact_rxc(rec["table"], time_budget=600)
    assert res.test == "fisher_exact"
    assert math.isnan(res.statistic) and math.isnan(res.df)
    assert res.p_value == pytest.approx(_f(rec["fisher_p"]), rel=1e-6)


@pytest.mark.parametrize("rec", REFS, ids=IDS)
def test_linear_by_linear_against_coin(rec):
    res = linear_by_linear(rec["table"])
    z = _f(rec["lbl_z"])
    assert res.df == 1
    assert res.statistic == pytest.approx(z * z, rel=1e-6)
    assert res.details["z"] == pytest.approx(z, rel=1e-6)
    assert res.p_value == pytest.approx(_f(rec["lbl_p"]), rel=1e-6)


@pytest.mark.parametrize("rec", REFS, ids=IDS)
def test_cmh_ordinal_against_coin(rec):
    res = cmh_ordinal(rec["table"])
    expected = _f(rec["cmh_statistic"])
    if rec["table"].shape[0] == 2:  # coin reports the signed scalar Z for two groups
        expected = expected**2
    assert res.statistic == pytest.approx(expected, rel=1e-6)
    assert res.df == _f(rec["cmh_df"])
    assert res.p_value == pytest.approx(_f(rec["cmh_p"]), rel=1e-6)


def test_linear_by_linear_hand_formula_with_scores():
    t = np.array([[10, 5, 2, 1], [4, 8, 9, 3]])
    u, v = np.array([0.0, 2.5]), np.array([1.0, 2.0, 4.0, 8.0])
    x = np.repeat(np.repeat(u, t.shape[1]), t.ravel())
    y = np.repeat(np.tile(v, t.shape[0]), t.ravel())
    r = np.corrcoef(x, y)[0, 1]
    res = linear_by_linear(t, row_scores=u, col_scores=v)
    assert res.statistic == pytest.approx((t.sum() - 1) * r * r, rel=1e-12)
    assert res.p_value == pytest.approx(stats.chi2.sf((t.sum() - 1) * r * r, 1), rel=1e-12)


@pytest.mark.parametrize("t", [[[3, 1], [1, 3]], [[12, 5], [7, 20]], [[0, 9], [6, 4]], [[1, 24], [13, 2]]])
def test_fisher_2x2_matches_scipy(t):
    assert fisher_exact_rxc(t).p_value == pytest.approx(stats.fisher_exact(t).pvalue, rel=1e-9)


def _brute_force_p(t):
    """Enumerate every table with the margins of ``t`` (small tables only)."""
    from itertools import product
    from scipy.special import gammaln
    t = np.asarray(t)
    R, C, N = t.sum(1), t.sum(0), t.sum()
    const = gammaln(R + 1).sum() + gammaln(C + 1).sum() - gammaln(N + 1)
    obs = -gammaln(t + 1).sum()
    total = 0.0
    r, c = t.shape
    ranges = [range(min(R[i], C[j]) + 1) for i in range(r - 1) for j in range(c - 1)]
    for free in product(*ranges):
        x = np.zeros((r, c), dtype=int)
        x[:-1, :-1] = np.array(free).reshape(r - 1, c - 1)
        x[:-1, -1] = R[:-1] - x[:-1, :-1].sum(1)
        x[-1, :] = C - x[:-1, :].sum(0)
        if (x < 0).any():
            continue
        val = -gammaln(x + 1).sum()
        if val <= obs + 1e-7:
            total += math.exp(const + val)
    return total


@pytest.mark.parametrize("seed", range(6))
def test_fisher_matches_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    shape = [(2, 3), (3, 3), (2, 4), (3, 4), (4, 3), (3, 2)][seed]
    t = rng.integers(0, 4, size=shape)
    t[:, 0] += 1
    t[0, :] += 1
    assert fisher_exact_rxc(t).p_value == pytest.approx(_brute_force_p(t), rel=1e-9)


SMALL = [r for r in REFS if r["table"].sum() <= 120]


@pytest.mark.parametrize("rec", SMALL, ids=[r["id"] for r in SMALL])
def test_fisher_symmetric_and_permutation_invariant(rec):
    t = rec["table"]
    p = fisher_exact_rxc(t).p_value
    assert 0.0 <= p <= 1.0
    rng = np.random.default_rng(0)
    assert fisher_exact_rxc(t.T).p_value == pytest.approx(p, rel=1e-9)
    perm = t[rng.permutation(t.shape[0])][:, rng.permutation(t.shape[1])]
    assert fisher_exact_rxc(perm).p_value == pytest.approx(p, rel=1e-9)
    assert chi_square(t.T).p_value == pytest.approx(chi_square(t).p_value, rel=1e-12)


def test_monte_carlo_fallback_is_seeded_and_close():
    t = np.array([[8, 2, 5, 1], [7, 1, 9, 4], [2, 6, 3, 5]])
    exact = fisher_exact_rxc(t).p_value
    with pytest.warns(ExactTestFallbackWarning):
        a = fisher_exact_rxc(t, time_budget=0, mc_draws=20_000, seed=7)
    with pytest.warns(ExactTestFallbackWarning):
        b = fisher_exact_rxc(t, time_budget=0, mc_draws=20_000, seed=7)
    assert a.test == "fisher_monte_carlo"
    assert a.p_value == b.p_value
    assert a.details["mc_draws"] == 20_000 and a.details["mc_seed"] == 7
    assert abs(a.p_value - exact) < 5 * a.details["mc_se"] + 1e-4


def test_empty_rows_and_columns_are_dropped_with_a_note():
    t = [[5, 0, 3], [0, 0, 0], [2, 0, 7]]
    res = chi_square(t)
    assert res.details["dropped_empty_rows"] == [2]
    assert res.details["dropped_empty_columns"] == [2]
    assert res.p_value == pytest.approx(chi_square([[5, 3], [2, 7]]).p_value)
    assert fisher_exact_rxc(t).p_value == pytest.approx(fisher_exact_rxc([[5, 3], [2, 7]]).p_value)


def test_degenerate_table_gives_nan_with_reason():
    for fn in (chi_square, fisher_exact_rxc):
        res = fn([[4, 0], [6, 0]])
        assert math.isnan(res.p_value) and "fewer than 2" in res.details["reason"]


@pytest.mark.parametrize("bad", [[[1, -2], [3, 4]], [[1.5, 2], [3, 4]], [[1, np.nan], [3, 4]], [1, 2, 3],
                                 [["a", 2], [3, 4]]])
def test_bad_counts_raise_cohort_error(bad):
    for fn in (chi_square, fisher_exact_rxc, linear_by_linear, cmh_ordinal):
        with pytest.raises(CohortError, match="contingency table"):
            fn(bad)


def test_crosstab_drops_missing_pairs_and_keeps_levels():
    x = pd.Series(pd.Categorical(["a", "b", None, "a", "b", "a"], categories=["a", "b", "c"]))
    y = [1, 2, 2, None, 1, 1]
    tab = crosstab(x, y)
    assert tab.attrs["n_used"] == 4 and tab.attrs["n_missing"] == 2
    assert list(tab.index) == ["a", "b", "c"]
    assert tab.to_numpy().tolist() == [[2, 0], [1, 1], [0, 0]]
    assert chi_square(tab).details["dropped_empty_rows"] == [3]


def test_inputs_not_modified():
    df = pd.DataFrame([[5, 1, 3], [2, 6, 4]])
    before = df.copy()
    chi_square(df), fisher_exact_rxc(df), linear_by_linear(df), cmh_ordinal(df)
    pd.testing.assert_frame_equal(df, before)


def _all_tables_log_kernel(t):
    """``-sum log x!`` of every table with the margins of ``t``, built column by column with no
    bounds and no merging (independent of analysis._fexact; small tables only)."""
    from scipy.special import gammaln
    t = np.asarray(t)
    R, C = t.sum(1), t.sum(0)
    rem, val = R[None, :].copy(), np.zeros(1)
    for c in C[:-1]:
        splits = np.array([x for x in np.ndindex(*([c + 1] * (len(R) - 1))) if sum(x) <= c])
        splits = np.c_[splits, c - splits.sum(1)]
        i, k = np.nonzero((splits[None, :, :] <= rem[:, None, :]).all(2))
        rem, val = rem[i] - splits[k], val[i] - gammaln(splits[k] + 1).sum(1)
    ok = rem.sum(1) == C[-1]
    return val[ok] - gammaln(rem[ok] + 1).sum(1)


def _enumerated_p(t):
    from scipy.special import gammaln
    t = np.asarray(t)
    R, C, N = t.sum(1), t.sum(0), t.sum()
    const = gammaln(R + 1).sum() + gammaln(C + 1).sum() - gammaln(N + 1)
    val = _all_tables_log_kernel(t)
    assert np.exp(const + val).sum() == pytest.approx(1.0, rel=1e-9)  # the enumeration is complete
    return float(np.exp(const + val[val <= -gammaln(t + 1).sum() + 1e-7]).sum())


ENUM_CASES = [(shape, n, assoc, seed) for seed, (shape, n) in enumerate(
    [((3, 4), 20), ((3, 4), 30), ((3, 4), 40), ((3, 5), 20), ((3, 5), 30), ((3, 5), 36),
     ((3, 6), 22), ((4, 4), 26), ((2, 6), 40), ((4, 5), 18)]) for assoc in (False, True)]


@pytest.mark.parametrize("shape,n,assoc,seed", ENUM_CASES)
def test_fisher_matches_full_enumeration_random_tables(shape, n, assoc, seed):
    """Random tables (independent or with cell-specific probabilities, i.e. association, giving
    small p) against the p-value summed over every table with the same margins."""
    rng = np.random.default_rng(100 + seed)
    w = rng.dirichlet(np.full(shape[0] * shape[1], 0.7)) if assoc else \
        np.outer(rng.dirichlet(np.full(shape[0], 3.0)), rng.dirichlet(np.full(shape[1], 3.0))).ravel()
    t = rng.multinomial(n, w).reshape(shape)
    t[0, :] += 1
    t[:, 0] += 1
    res = fisher_exact_rxc(t, time_budget=60)
    assert res.test == "fisher_exact"
    assert res.p_value == pytest.approx(_enumerated_p(t), rel=1e-9, abs=1e-300)


def test_fisher_memory_cap_falls_back_to_monte_carlo(monkeypatch):
    import analysis._fexact as fx
    t = np.array([[20, 15, 12, 9], [11, 14, 16, 8], [9, 12, 14, 19]])
    exact = fisher_exact_rxc(t).p_value
    monkeypatch.setattr(fx, "_MAX_ROWS", 50)
    with pytest.raises(fx.BudgetExceeded, match="memory cap"):
        fx.fexact_pvalue(t)
    with pytest.warns(ExactTestFallbackWarning):
        res = fisher_exact_rxc(t, mc_draws=20_000)
    assert res.test == "fisher_monte_carlo"
    assert abs(res.p_value - exact) < 5 * res.details["mc_se"] + 1e-4


def test_fexact_group_search_counts_ties():
    from analysis._fexact import _Groups
    rng = np.random.default_rng(3)
    g = rng.integers(0, 7, 400)
    v = rng.integers(-20, 20, 400) / 4.0  # many exact ties
    G = _Groups(g, v, -np.abs(v), 9)
    gq = rng.integers(0, 9, 300)
    q = rng.integers(-25, 25, 300) / 4.0
    want = [int(((g == a) & (v <= b)).sum()) for a, b in zip(gq, q)]
    assert G.count(gq, q).tolist() == want
    for a in range(7):  # log prefix masses
        sel = np.sort(v[g == a])
        got = G.logpre[G.start[a]:G.start[a] + G.cnt[a]]
        assert np.allclose(got, np.log(np.cumsum(np.exp(-np.abs(sel)))))


@pytest.mark.parametrize("t", [[[19, 84, 370], [49, 26, 57]],            # p ~ 2e-22, n = 605
                               [[20, 1, 1, 3], [1, 15, 1, 3], [1, 2, 14, 4]]])  # p ~ 1e-14
def test_fisher_tiny_p_matches_full_enumeration(t):
    """Tiny p-values keep their relative accuracy (an earlier version lost 22 % of the first one
    to cancellation in a global cumulative sum)."""
    assert fisher_exact_rxc(t).p_value == pytest.approx(_enumerated_p(t), rel=1e-9)


def test_monte_carlo_with_no_table_as_extreme_is_an_upper_bound():
    """p = 1/(B+1) is only a bound when no simulated table is as extreme: flagged, shown as '<'."""
    from analysis.formatting import format_p

    t = np.array([[30, 0, 0], [0, 30, 0], [0, 0, 30]])
    with pytest.warns(ExactTestFallbackWarning):
        res = fisher_exact_rxc(t, time_budget=0, mc_draws=199, seed=1)
    assert res.details["mc_hits"] == 0 and res.details["p_upper_bound"] is True
    assert res.p_value == pytest.approx(1 / 200)
    assert format_p(res.p_value, upper_bound=res.details["p_upper_bound"]) == "<0.0050"
    with pytest.warns(ExactTestFallbackWarning):
        some = fisher_exact_rxc([[8, 2, 5, 1], [7, 1, 9, 4], [2, 6, 3, 5]], time_budget=0, mc_draws=199)
    assert some.details["mc_hits"] > 0 and some.details["p_upper_bound"] is False


def test_fallback_decision_is_deterministic_and_its_reason_is_one_sentence(monkeypatch):
    """No clock by default: the same table gives the same decision and the same reason."""
    import inspect

    import analysis._fexact as fx
    from analysis.contingency import fallback_reason

    assert inspect.signature(fisher_exact_rxc).parameters["time_budget"].default is None
    t = np.array([[20, 15, 12, 9], [11, 14, 16, 8], [9, 12, 14, 19]])
    monkeypatch.setattr(fx, "_MAX_ROWS", 50)
    with pytest.warns(ExactTestFallbackWarning, match="memory cap"):
        a = fisher_exact_rxc(t, mc_draws=500)
    with pytest.warns(ExactTestFallbackWarning):
        b = fisher_exact_rxc(t, mc_draws=500)
    assert a.details["fallback_reason"] == b.details["fallback_reason"] == fallback_reason("memory", 50)
    monkeypatch.setattr(fx, "_MAX_ROWS", 10 ** 9)
    with pytest.warns(ExactTestFallbackWarning, match="work budget"):
        c = fisher_exact_rxc(t, work_budget=10, mc_draws=500)
    assert c.details["fallback_reason"] == fallback_reason("work", 10)
