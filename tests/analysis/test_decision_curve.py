"""analysis.decision_curve: net benefit against dcurves + exact fractions, bands, binary questions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.decision_curve import (DECISION_CURVE_COLUMNS, decision_curve, net_benefit,
                                     parse_binary_questions, useful_thresholds)
from analysis.errors import CohortError

REF = Path(__file__).resolve().parents[1] / "fixtures" / "dca_reference"
CLASSES = ["metastatic", "lymphoma", "benign"]


@pytest.fixture(scope="module")
def reference():
    data = pd.read_csv(REF / "dca_data.csv", dtype={"patient_id": str})
    return data, pd.read_csv(REF / "dca_results.csv")


def test_net_benefit_matches_dcurves_and_exact_fractions(reference):
    data, ref = reference
    out = decision_curve(data["y_true"], data[[f"p_{c}" for c in CLASSES]], CLASSES, data["patient_id"],
                         binary="malignant=metastatic,lymphoma", n_boot=0)
    merged = out.merge(ref, on=["question", "strategy", "threshold"], how="outer", validate="one_to_one")
    assert len(merged) == len(ref) == len(out) == 4 * 3 * 99
    np.testing.assert_allclose(merged["net_benefit_x"], merged["net_benefit_y"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged["net_benefit_x"], merged["net_benefit_dcurves"], rtol=0, atol=1e-12)
    assert list(out.columns) == DECISION_CURVE_COLUMNS
    assert set(out.loc[out.question == "malignant", "positive"]) == {"metastatic+lymphoma"}


def test_treat_if_probability_equals_threshold():
    # one case at exactly p = 0.5: treated at pt = 0.5 (TP = 1), not at 0.51
    assert net_benefit([1, 0], [0.5, 0.2], [0.5, 0.51]).tolist() == [0.5, 0.0]


def test_perfect_model_gains_the_prevalence_at_every_threshold():
    y = np.array(["a"] * 30 + ["b"] * 70)
    p = np.where(y[:, None] == np.array(["a", "b"]), 1.0, 0.0)
    out = decision_curve(y, p, ["a", "b"], n_boot=0)
    model = out[(out.question == "a") & (out.strategy == "model")]
    np.testing.assert_allclose(model.net_benefit, 0.3, atol=1e-15)
    allr = out[(out.question == "a") & (out.strategy == "treat_all")]
    np.testing.assert_allclose(allr.net_benefit, 0.3 - 0.7 * allr.threshold / (1 - allr.threshold), atol=1e-15)


def test_bands_are_patient_level_and_cover_the_estimate(reference):
    data, _ = reference
    p = data[[f"p_{c}" for c in CLASSES]].to_numpy()
    one = decision_curve(data["y_true"], p, CLASSES, data["patient_id"], n_boot=200, seed=3,
                         thresholds=[0.1, 0.3, 0.5])
    # every image duplicated: a patient-level bootstrap gives the same bands
    two = decision_curve(np.repeat(data["y_true"], 2), np.repeat(p, 2, axis=0), CLASSES,
                         np.repeat(data["patient_id"], 2), n_boot=200, seed=3, thresholds=[0.1, 0.3, 0.5])
    np.testing.assert_allclose(two.ci_low.fillna(9), one.ci_low.fillna(9), atol=1e-12)
    banded = one[one.strategy != "treat_none"]
    assert ((banded.ci_low <= banded.net_benefit + 1e-12) & (banded.net_benefit <= banded.ci_high + 1e-12)).all()
    assert (banded.ci_high > banded.ci_low).all()
    assert one.loc[one.strategy == "treat_none", "ci_low"].isna().all()
    assert (one.n_patients == data.patient_id.nunique()).all()


def test_binary_question_parsing():
    assert parse_binary_questions(["malignant=lymphoma+metastatic"], CLASSES) == {
        "malignant": ("metastatic", "lymphoma")}
    assert parse_binary_questions({"m": ["metastatic"]}, CLASSES) == {"m": ("metastatic",)}
    with pytest.raises(CohortError, match="unknown class 'lymphona'.*did you mean 'lymphoma'"):
        parse_binary_questions("malignant=metastatic,lymphona", CLASSES)
    with pytest.raises(CohortError, match="NAME=CLASS"):
        parse_binary_questions("malignant", CLASSES)
    with pytest.raises(CohortError, match="some but not all"):
        parse_binary_questions("all=metastatic,lymphoma,benign", CLASSES)


def test_useful_thresholds_range(reference):
    data, _ = reference
    out = decision_curve(data["y_true"], data[[f"p_{c}" for c in CLASSES]], CLASSES, n_boot=0)
    use = useful_thresholds(out.assign(model="m"))
    assert list(use.columns[:3]) == ["model", "question", "positive"]
    row = use[use.question == "metastatic"].iloc[0]
    sub = out[(out.question == "metastatic")].pivot(index="threshold", columns="strategy", values="net_benefit")
    assert sub.loc[row.threshold_low, "model"] > max(sub.loc[row.threshold_low, "treat_all"], 0)


def test_probabilities_outside_unit_interval_are_rejected():
    with pytest.raises(CohortError, match="probabilities in \\[0, 1\\]"):
        decision_curve(["a", "b"], [[2.0, -1.0], [0.1, 0.9]], ["a", "b"], n_boot=0)
