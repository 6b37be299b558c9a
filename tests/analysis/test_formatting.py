"""analysis.formatting: the only place that rounds (journal / AMA conventions)."""
import math

import numpy as np
import pytest

from analysis import formatting as F


@pytest.mark.parametrize("p, expected", [
    (0.0, "<0.001"),
    (0.000999, "<0.001"),
    (0.001, "0.001"),
    (0.0042, "0.004"),
    (0.00999, "0.01"),  # rounds up to 0.01: printed as 0.0101 is, not "0.010"
    (0.012, "0.01"),
    (0.0449, "0.04"),
    (0.045, "0.045"),      # near 0.05: three decimals
    (0.0496, "0.050"),
    (0.0504, "0.050"),
    (0.0512, "0.051"),
    (0.0549, "0.055"),
    (0.055, "0.06"),
    (0.2349, "0.23"),
    (0.99, "0.99"),
    (0.991, ">0.99"),
    (1.0, ">0.99"),
])
def test_format_p_follows_ama_rules(p, expected):
    assert F.format_p(p) == expected


def test_format_p_never_hides_the_side_of_005():
    for p in np.linspace(0.04, 0.06, 401):
        text = F.format_p(p)
        if p < 0.0495:
            assert float(text) < 0.05, (p, text)
        if p >= 0.0505:
            assert float(text) > 0.05, (p, text)


@pytest.mark.parametrize("p", [float("nan"), None])
def test_format_p_missing_is_dash(p):
    assert F.format_p(p) == F.MISSING


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_format_p_rejects_out_of_range(p):
    with pytest.raises(ValueError):
        F.format_p(p)


def test_format_p_other_threshold():
    assert F.format_p(0.00005, threshold=0.0001) == "<0.0001"


def test_n_pct_uses_one_decimal_and_whole_counts():
    assert F.format_n_pct(1, 3) == "1 (33.3)"
    assert F.format_n_pct(2, 3) == "2 (66.7)"
    assert F.format_n_pct(0, 0) == "0 (" + F.MISSING + ")"
    assert F.format_n_pct(5, pct=12.345) == "5 (12.3)"


def test_mean_sd_and_median_iqr():
    assert F.format_mean_sd(54.2049, 12.7951) == "54.2 \u00b1 12.8"
    assert F.format_mean_sd(2.314, 0.5849, digits=2) == "2.31 \u00b1 0.58"
    assert F.format_mean_sd(3.0, float("nan")) == "3.0 \u00b1 " + F.MISSING
    assert F.format_mean_sd(float("nan"), 1.0) == F.MISSING
    assert F.format_median_iqr(45, 38.04, 52, digits=1) == "45.0 [38.0, 52.0]"


def test_choose_digits_by_magnitude():
    assert F.choose_digits([2.31, 0.58, 2.9]) == 2
    assert F.choose_digits([54.2, 12.8]) == 1
    assert F.choose_digits([math.nan]) == 1


def test_effect_size_and_odds_ratio_text():
    assert F.format_effect_size(0.3214, 0.2499, 0.3901) == "0.32 (0.25\u20130.39)"
    assert F.format_effect_size(0.3214, math.nan, 0.39) == "0.32"
    assert F.format_effect_size(math.nan) == F.MISSING
    assert F.format_odds_ratio(2.1, 1.3, 3.4) == "2.10 (1.30\u20133.40)"
    assert F.format_odds_ratio(5e4, 2.0, math.inf) == ">999 (2.00\u2013>999)"
    assert F.format_odds_ratio(0.001, 0.0001, 0.5) == "<0.01 (<0.01\u20130.50)"


def test_format_number_no_negative_zero():
    assert F.format_number(-0.0001, 2) == "0.00"
    assert F.format_number(math.inf) == "\u221e"


@pytest.mark.parametrize("x, digits, expected", [
    (14.25, 1, "14.3"), (6.45, 1, "6.5"), (13.95, 1, "14.0"), (17.75, 1, "17.8"), (0.125, 2, "0.13"),
    ((14.2 + 14.3) / 2, 1, "14.3"), (6.449999999999999, 1, "6.5"), (-2.5, 0, "-3"), (-0.04, 1, "0.0"),
    (2.675, 2, "2.68"), (1e20, 1, "100000000000000000000.0"), (1234567890123.4, 1, "1234567890123.4"),
    (0.0, 2, "0.00"),
])
def test_format_number_rounds_half_up_on_the_decimal_value(x, digits, expected):
    """Half-up on what the reader sees: 14.25 and 6.45 round the same way (half-even did not)."""
    assert F.format_number(x, digits) == expected


def test_choose_digits_uses_significant_figures_of_small_values():
    """Issue 9: 0.007 mm/pixel printed as '0.01 [0.01, 0.01]'; now as R's summaries, by significant figures."""
    from analysis.formatting import choose_digits, format_median_iqr

    assert choose_digits([0.0071, 0.0066, 0.0075]) == 5
    assert format_median_iqr(0.0071, 0.00665, 0.00752, choose_digits([0.0071, 0.00665, 0.00752])) == \
        "0.00710 [0.00665, 0.00752]"
    assert choose_digits([54.2, 12.8]) == 1 and choose_digits([2.31, 0.58]) == 2
    assert choose_digits([120.0, 0.5]) == 2  # a tiny spread keeps two significant figures
    assert choose_digits([0.0, float("nan")]) == 1


def test_format_p_upper_bound_and_format_sig():
    from analysis.formatting import format_p, format_sig

    assert format_p(1 / 100_001, upper_bound=True) == "<0.001"
    assert format_p(1 / 100, upper_bound=True) == "<0.010"
    assert format_p(1 / 100) == "0.01"
    assert [format_sig(x) for x in (0.000529, 12.67, 1.0)] == ["0.000529", "12.7", "1.00"]
