"""Decision-curve and per-hospital forest figures (analysis.figures)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.decision_curve import decision_curve
from analysis.errors import CohortError
from analysis.figures import centre_forest_plot, decision_curve_plot
from analysis.meta_analysis import centre_auc, meta_analysis_of_centres

CLASSES = ["metastatic", "lymphoma", "benign"]


def _data(seed=0, n=240):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.3, 0.2, 0.5])
    logits = rng.normal(size=(n, 3)) + 1.2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return np.array(CLASSES)[y], p, np.arange(n), np.array(["A", "B", "C", "D"])[np.arange(n) % 4]


def test_decision_curve_plot_draws_one_panel_per_question_and_is_reproducible(tmp_path):
    y, p, pid, _ = _data()
    curves = decision_curve(y, p, CLASSES, pid, binary="malignant=metastatic,lymphoma", n_boot=30,
                            thresholds=np.arange(1, 60) / 100)
    fig = decision_curve_plot(curves, tmp_path / "a.png")
    assert sum(a.get_visible() for a in fig.axes) == 4
    assert fig.axes[3].get_title() == "malignant (metastatic or lymphoma)"
    decision_curve_plot(curves, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    with pytest.raises(CohortError, match="no decision curve for question 'benin'"):
        decision_curve_plot(curves, questions=["benin"])


def test_centre_forest_plot_has_a_row_per_hospital_and_the_pooled_row(tmp_path):
    y, p, pid, hosp = _data()
    table = centre_auc(y, p, CLASSES, pid, hosp, n_boot=50)
    meta = meta_analysis_of_centres(table)
    macro = table[table["class"] == ""]
    fig = centre_forest_plot(macro, meta[meta["class"] == ""].iloc[0], tmp_path / "f.png")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:4] == [f"{h} (n = 60)" for h in "ABCD"] and labels[4].startswith("Pooled (REML), I² = ")
    assert (tmp_path / "f.png").stat().st_size > 0
