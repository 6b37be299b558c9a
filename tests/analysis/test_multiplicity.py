"""Holm and Benjamini–Hochberg against R p.adjust (tests/fixtures/r_reference/location.R)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.multiplicity import benjamini_hochberg, holm

REF = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference" / "padjust.csv"
PADJ = pd.read_csv(REF)


@pytest.mark.parametrize("vector", sorted(PADJ["vector"].unique()))
@pytest.mark.parametrize("func,column", [(holm, "holm"), (benjamini_hochberg, "bh")])
def test_adjustment_matches_r_p_adjust(vector, func, column):
    sub = PADJ[PADJ["vector"] == vector].sort_values("position")
    got = func(sub["p"].to_numpy())
    np.testing.assert_allclose(got, sub[column].to_numpy(), rtol=1e-12, equal_nan=True)


def test_nan_is_kept_and_not_counted():
    p = [0.01, np.nan, 0.02]
    np.testing.assert_allclose(holm(p), [0.02, np.nan, 0.02], equal_nan=True)
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, np.nan, 0.02], equal_nan=True)


def test_input_not_modified_and_order_kept():
    p = np.array([0.5, 0.001, 0.04])
    before = p.copy()
    out = holm(p)
    np.testing.assert_array_equal(p, before)
    assert out[1] == pytest.approx(0.003)
    assert out[0] == pytest.approx(0.5 * 1)


def test_all_nan_and_empty():
    assert np.isnan(holm([np.nan, np.nan])).all()
    assert benjamini_hochberg([]).size == 0


def test_out_of_range_p_value_is_rejected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])
