"""analysis.meta_analysis: random-effects pooling against R metafor, per-hospital AUCs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import CohortError
from analysis.meta_analysis import (CENTRE_AUC_COLUMNS, centre_auc, meta_analysis_of_centres,
                                    random_effects_meta)
from analysis.roc import delong_ci

REF = Path(__file__).resolve().parents[1] / "fixtures" / "r_reference"
DATA = pd.read_csv(REF / "meta_data.csv")
RESULTS = pd.read_csv(REF / "meta_results.csv")
FIELDS = ["estimate", "se", "ci_low", "ci_high", "z", "p_value", "tau2", "i2", "h2", "q", "q_p_value",
          "pi_low", "pi_high"]


@pytest.mark.parametrize("row", RESULTS.to_dict("records"), ids=lambda r: f"{r['dataset']}-{r['method']}")
def test_random_effects_meta_against_R_metafor(row):
    d = DATA[DATA.dataset == row["dataset"]]
    r = random_effects_meta(d.yi, d.vi, method=row["method"])
    assert r.k == row["k"] and r.q_df == row["k"] - 1
    for f in FIELDS:
        assert getattr(r, f) == pytest.approx(row[f], rel=1e-6, abs=1e-9), f


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(CohortError, match="at least 2 studies"):
        random_effects_meta([0.1], [0.01])
    with pytest.raises(CohortError, match="> 0"):
        random_effects_meta([0.1, 0.2], [0.01, 0.0])
    with pytest.raises(CohortError, match="unknown meta-analysis method 'ML'"):
        random_effects_meta([0.1, 0.2], [0.01, 0.02], method="ML")


CLASSES = ["metastatic", "lymphoma", "benign"]


def _hospital_predictions(seed=0, n_per=(60, 80, 50), images=2, signal=(1.5, 1.0, 0.5)):
    rng = np.random.default_rng(seed)
    frames = []
    for h, (n, s) in enumerate(zip(n_per, signal)):
        y = rng.choice(3, size=n, p=[0.3, 0.2, 0.5])
        pid = np.repeat([f"H{h}P{i}" for i in range(n)], images)
        yy = np.repeat(y, images)
        logits = rng.normal(size=(yy.size, 3)) + s * np.eye(3)[yy]
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        frames.append(pd.DataFrame({"patient_id": pid, "hospital": f"hospital_{h}", "y_true": np.array(CLASSES)[yy],
                                    **{f"p_{c}": p[:, j] for j, c in enumerate(CLASSES)}}))
    return pd.concat(frames, ignore_index=True)


def test_centre_auc_per_class_is_delong_on_patient_means():
    df = _hospital_predictions()
    p = df[[f"p_{c}" for c in CLASSES]].to_numpy()
    out = centre_auc(df.y_true, p, CLASSES, df.patient_id, df.hospital, n_boot=100)
    assert list(out.columns) == CENTRE_AUC_COLUMNS
    assert len(out) == 3 * (1 + len(CLASSES))
    sub = df[df.hospital == "hospital_1"]
    means = sub.groupby("patient_id", sort=False)[[f"p_{c}" for c in CLASSES]].mean()
    truth = sub.groupby("patient_id", sort=False).y_true.first()
    ref = delong_ci(truth == "lymphoma", means["p_lymphoma"])
    row = out[(out.hospital == "hospital_1") & (out["class"] == "lymphoma")].iloc[0]
    assert row.auc == pytest.approx(ref.estimate, rel=1e-12)
    assert row.vi == pytest.approx(ref.variance / (ref.estimate * (1 - ref.estimate)) ** 2, rel=1e-12)
    assert row.yi == pytest.approx(math.log(ref.estimate / (1 - ref.estimate)), rel=1e-12)
    assert row.n_patients == 80 and row.ci_low < row.auc < row.ci_high
    macro = out[(out.hospital == "hospital_0") & (out["class"] == "")].iloc[0]
    assert macro.vi > 0 and macro.reason == ""


def test_heterogeneous_hospitals_show_heterogeneity_and_the_pooled_auc_lies_between():
    df = _hospital_predictions(n_per=(150, 150, 150, 150), signal=(2.5, 0.3, 2.5, 0.3), images=1)
    p = df[[f"p_{c}" for c in CLASSES]].to_numpy()
    table = centre_auc(df.y_true, p, CLASSES, df.patient_id, df.hospital, n_boot=200)
    meta = meta_analysis_of_centres(table, method="REML")
    macro = meta[meta["class"] == ""].iloc[0]
    aucs = table.loc[table["class"] == "", "auc"]
    assert aucs.min() < macro.auc < aucs.max()
    assert macro.i2 > 75 and macro.q_p_value < 0.001 and macro.k == 4
    assert macro.pi_low < macro.ci_low and macro.ci_high < macro.pi_high


def test_hospital_without_a_class_is_left_out_with_a_reason():
    df = _hospital_predictions()
    df = df[~((df.hospital == "hospital_2") & (df.y_true == "lymphoma"))]
    p = df[[f"p_{c}" for c in CLASSES]].to_numpy()
    table = centre_auc(df.y_true, p, CLASSES, df.patient_id, df.hospital, n_boot=50)
    row = table[(table.hospital == "hospital_2") & (table["class"] == "lymphoma")].iloc[0]
    assert math.isnan(row.vi) and "no patients" in row.reason
    meta = meta_analysis_of_centres(table.assign(model="m"), method="DL")
    lym = meta[meta["class"] == "lymphoma"].iloc[0]
    assert lym.k == 2 and lym.k_excluded == 1 and lym.model == "m"


def test_patient_in_two_hospitals_is_an_error():
    df = _hospital_predictions()
    df.loc[1, "hospital"] = "hospital_1"
    with pytest.raises(CohortError, match="two hospitals"):
        centre_auc(df.y_true, df[[f"p_{c}" for c in CLASSES]].to_numpy(), CLASSES, df.patient_id, df.hospital)
