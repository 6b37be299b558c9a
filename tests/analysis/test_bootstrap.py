"""analysis.bootstrap: patients stay together, determinism, strata, undefined resamples."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.bootstrap import BootstrapResult, cluster_bootstrap
from analysis.errors import CohortError, UndefinedMetricWarning


@pytest.fixture
def patients():
    rng = np.random.default_rng(0)
    n = 120
    pid = np.arange(n)
    value = rng.normal(size=n) + rng.normal(size=n)[pid]
    return pid, value


def test_duplicating_rows_of_each_patient_leaves_patient_level_ci_unchanged(patients):
    pid, value = patients
    once = cluster_bootstrap(np.mean, value, cluster=pid, n_boot=400, seed=3)
    twice = cluster_bootstrap(np.mean, np.repeat(value, 2), cluster=np.repeat(pid, 2), n_boot=400, seed=3)
    assert twice.estimate == pytest.approx(once.estimate)
    assert twice.ci_low == pytest.approx(once.ci_low, rel=1e-12)
    assert twice.ci_high == pytest.approx(once.ci_high, rel=1e-12)
    # ignoring the patients (row bootstrap) wrongly shrinks the interval by about 1/sqrt(2)
    naive = cluster_bootstrap(np.mean, np.repeat(value, 2), n_boot=400, seed=3)
    ratio = (naive.ci_high - naive.ci_low) / (once.ci_high - once.ci_low)
    assert 0.6 < ratio < 0.85


def test_rows_of_a_drawn_patient_come_together():
    # two rows per patient with values (k, -k): every resample's sum is exactly 0
    pid = np.repeat(np.arange(50), 2)
    value = np.ravel(np.column_stack([np.arange(50), -np.arange(50)])).astype(float)
    r = cluster_bootstrap(np.sum, value, cluster=pid, n_boot=200, seed=1)
    assert np.all(r.replicates == 0)
    # and every resample has exactly as many rows as the data
    r2 = cluster_bootstrap(len, value, cluster=pid, n_boot=50, seed=1)
    assert np.all(r2.replicates == 100)


def test_bootstrap_standard_error_of_mean_matches_theory():
    rng = np.random.default_rng(5)
    x = rng.normal(size=400)
    r = cluster_bootstrap(np.mean, x, n_boot=2000, seed=0)
    se = np.std(r.replicates[:, 0], ddof=1)
    assert se == pytest.approx(x.std(ddof=0) / math.sqrt(x.size), rel=0.08)
    z = (r.ci_high - r.ci_low) / 2 / se
    assert z == pytest.approx(1.96, rel=0.08)


def test_same_seed_same_result_and_different_seed_different(patients):
    pid, value = patients
    a = cluster_bootstrap(np.mean, value, cluster=pid, n_boot=300, seed=7)
    b = cluster_bootstrap(np.mean, value, cluster=pid, n_boot=300, seed=7)
    c = cluster_bootstrap(np.mean, value, cluster=pid, n_boot=300, seed=8)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_basic_interval_is_reflected_percentile(patients):
    pid, value = patients
    p = cluster_bootstrap(np.mean, value, cluster=pid, n_boot=300, seed=2)
    b = cluster_bootstrap(np.mean, value, cluster=pid, n_boot=300, seed=2, method="basic")
    assert b.ci_low == pytest.approx(2 * p.estimate - p.ci_high)
    assert b.ci_high == pytest.approx(2 * p.estimate - p.ci_low)


def test_stratified_resampling_keeps_stratum_sizes():
    pid = np.repeat(np.arange(30), 3)
    label = np.where(pid < 10, "a", "b")
    r = cluster_bootstrap(lambda lab: float(np.sum(lab == "a")), (label,), cluster=pid, strata=label,
                          n_boot=100, seed=0)
    assert np.all(r.replicates == 30)
    with pytest.raises(CohortError, match="stratum varies within one cluster"):
        cluster_bootstrap(np.mean, np.arange(4.0), cluster=[1, 1, 2, 2], strata=["a", "b", "a", "a"])


def test_undefined_resamples_are_dropped_and_counted():
    # statistic undefined (NaN, with a warning) when group 1 is absent from the resample
    pid = np.arange(12)
    group = np.array([1] + [0] * 11)
    x = np.arange(12.0)

    def mean_of_group_1(g, v):
        if not np.any(g == 1):
            import warnings
            warnings.warn("no group 1", UndefinedMetricWarning)
            return math.nan
        return float(v[g == 1].mean())

    r = cluster_bootstrap(mean_of_group_1, (group, x), cluster=pid, n_boot=500, seed=0)
    assert 0 < r.n_boot_valid < 500
    assert r.n_boot_valid == np.isfinite(r.replicates).sum()
    assert r.ci_low == r.ci_high == 0.0


def test_several_statistics_at_once_from_a_dataframe():
    df = pd.DataFrame({"pid": np.repeat(np.arange(40), 2), "x": np.arange(80.0)})
    r = cluster_bootstrap(lambda d: {"mean": d["x"].mean(), "max": d["x"].max()}, df, cluster="pid",
                          n_boot=100, seed=0)
    out = r.to_frame()
    assert out["statistic"].tolist() == ["mean", "max"]
    assert list(out.columns) == ["statistic", "estimate", "ci_low", "ci_high", "ci_level",
                                 "n_boot_valid", "n_boot", "method"]
    assert out["estimate"].tolist() == [39.5, 79.0]
    assert "over 40 clusters" in r.method


def test_zero_resamples_gives_estimate_only():
    r = cluster_bootstrap(np.mean, np.arange(5.0), n_boot=0)
    assert isinstance(r, BootstrapResult)
    assert r.estimate == 2.0 and math.isnan(r.ci_low) and r.n_boot_valid == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"cluster": [1, 2]}, "cluster has 2 values"),
    ({"cluster": [1, None, 2, 3, 4]}, "missing cluster"),
    ({"method": "bca"}, "unknown bootstrap method"),
    ({"ci": 95}, "strictly between 0 and 1"),
    ({"n_boot": -1}, "non-negative"),
])
def test_bad_arguments_raise_cohort_error(kwargs, match):
    with pytest.raises(CohortError, match=match):
        cluster_bootstrap(np.mean, np.arange(5.0), **kwargs)


def test_unknown_cluster_column_suggests_name():
    df = pd.DataFrame({"patient_id": [1, 2], "x": [1.0, 2.0]})
    with pytest.raises(CohortError, match="did you mean 'patient_id'"):
        cluster_bootstrap(lambda d: d["x"].mean(), df, cluster="patient_ids")
