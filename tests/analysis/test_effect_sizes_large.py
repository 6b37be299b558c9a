"""The count-based bootstrap path of effect_sizes (used for large n_boot * N).

Checks that the count kernels compute exactly the statistic of the matrix kernels on the
same resamples, that both resampling schemes give the same bootstrap distribution, and
that the path switch happens where documented.
"""
import numpy as np
import pytest

from analysis import effect_sizes as es
from analysis.location import anova_oneway, kruskal_wallis


def _groups(seed, distinct):
    rng = np.random.default_rng(seed)
    if distinct:
        return [rng.normal(m, s, n) for m, s, n in [(0, 1, 40), (0.8, 2, 25), (0.3, 1, 33)]]
    return [rng.integers(1, 6, n).astype(float) + d for n, d in [(40, 0), (25, 1), (33, 0)]]


@pytest.mark.parametrize("distinct", [False, True])
def test_count_kernels_equal_matrix_kernels_on_the_same_resamples(distinct):
    groups = _groups(1, distinct)
    mat, sizes = es._bootstrap_matrix(groups, 7, seed=3)
    values, codes = np.unique(mat, return_inverse=True)
    codes = codes.reshape(mat.shape)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    counts = np.zeros((7, 3, values.size))
    for g, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        for r in range(7):
            counts[r, g] = np.bincount(codes[r, a:b], minlength=values.size)
    np.testing.assert_allclose(es._epsilon_counts(counts, values, sizes),
                               es._epsilon_rows(mat, sizes), rtol=1e-12)
    np.testing.assert_allclose(es._eta_counts(counts, values, sizes),
                               es._eta_rows(mat, sizes), rtol=1e-10)
    # and the scalar, R-checked statistics on one resample
    first = [mat[0, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    h = kruskal_wallis(first)
    assert es._epsilon_counts(counts, values, sizes)[0] == pytest.approx(h.statistic / (h.n_used - 1),
                                                                         rel=1e-12)
    f = anova_oneway(first).details
    assert es._eta_counts(counts, values, sizes)[0] == pytest.approx(
        f["ss_between"] / (f["ss_between"] + f["ss_within"]), rel=1e-10)


@pytest.mark.parametrize("distinct", [False, True])
def test_count_blocks_are_within_group_resamples(distinct):
    groups = _groups(2, distinct)
    pooled = np.unique(np.concatenate(groups))
    for counts, values, sizes in es._bootstrap_count_blocks(groups, 50, seed=0):
        np.testing.assert_array_equal(values, pooled)
        np.testing.assert_array_equal(counts.sum(axis=2), np.broadcast_to(sizes, counts.shape[:2]))
        for g, grp in enumerate(groups):  # only values of that group are drawn for it
            outside = ~np.isin(values, grp)
            assert counts[:, g, outside].sum() == 0


def test_both_paths_give_the_same_bootstrap_distribution(monkeypatch):
    groups = _groups(3, distinct=False)
    matrix = es.epsilon_squared(groups, n_boot=4000, seed=0)
    eta_m = es.eta_squared(_groups(4, True), ci_method="bootstrap", n_boot=4000)
    monkeypatch.setattr(es, "_MATRIX_MAX_CELLS", 0)       # force the count path
    counted = es.epsilon_squared(groups, n_boot=4000, seed=0)
    assert counted.estimate == matrix.estimate
    assert (counted.ci_low, counted.ci_high) != (matrix.ci_low, matrix.ci_high)  # other draws
    assert counted.ci_low == pytest.approx(matrix.ci_low, abs=0.02)
    assert counted.ci_high == pytest.approx(matrix.ci_high, abs=0.02)
    eta_c = es.eta_squared(_groups(4, True), ci_method="bootstrap", n_boot=4000)
    assert eta_c.ci_low != eta_m.ci_low
    assert eta_c.ci_low == pytest.approx(eta_m.ci_low, abs=0.03)
    assert eta_c.ci_high == pytest.approx(eta_m.ci_high, abs=0.03)


def test_large_n_uses_bounded_count_path_and_is_seeded():
    rng = np.random.default_rng(0)
    groups = [np.round(rng.normal(m, 10, n)) for m, n in [(50, 60_000), (52, 30_000), (48, 50_000)]]
    a = es.epsilon_squared(groups, n_boot=200, seed=5)
    b = es.epsilon_squared(groups, n_boot=200, seed=5)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.ci_low < a.estimate < a.ci_high
