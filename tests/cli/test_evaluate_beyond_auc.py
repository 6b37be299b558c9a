"""python -m fusion.evaluate: decision curves, conformal sets, per-hospital metrics and meta-analysis."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.conformal import conformal_sets
from analysis.decision_curve import decision_curve
from fusion.evaluate import conformal_predictions, default_binary_questions, hospital_of, main

CLASSES = ["metastatic", "lymphoma", "benign"]


def _predictions(n=90, seed=0, folds=3, hospitals=("north", "south", "east")):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.35, 0.25, 0.4])
    pid = np.array([f"P{i:03d}" for i in range(n)])
    parts = []
    for model, strength in (("resnet18", 1.0), ("late_fusion", 2.0)):
        z = rng.normal(0, 1, (n, 3)) + strength * np.eye(3)[y]
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        f = pd.DataFrame({"patient_id": pid, "fold": np.arange(n) % folds, "split": "test",
                          "y_true": np.asarray(CLASSES)[y], "model": model, "modality": "2d"})
        f[[f"p_{c}" for c in CLASSES]] = p
        parts.append(f)
    frame = pd.concat(parts, ignore_index=True)
    hosp = pd.DataFrame({"patient_id": pid, "hospital": np.asarray(hospitals)[np.arange(n) % len(hospitals)]})
    return frame, hosp


def test_every_table_and_figure_is_written_and_equals_the_library(tmp_path, capsys):
    frame, hosp = _predictions()
    frame.to_csv(tmp_path / "p.csv", index=False)
    hosp.to_csv(tmp_path / "h.csv", index=False)
    out = tmp_path / "ev"
    rc = main([str(tmp_path / "p.csv"), "--out", str(out), "--n-boot", "20", "--binary",
               "malignant=metastatic,lymphoma", "--conformal-alpha", "0.2", "--hospital-map", str(tmp_path / "h.csv"),
               "--meta-method", "DL"])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    for name in ("decision_curves.csv", "conformal_sets.csv", "conformal_coverage.csv", "metrics_by_hospital.csv",
                 "hospital_auc.csv", "hospital_meta_analysis.csv"):
        assert (out / name).is_file() and name in last
    assert len(list((out / "figures").glob("decision_curves_*.png"))) == 2
    assert len(list((out / "figures").glob("forest_hospitals_*.png"))) == 2
    curves = pd.read_csv(out / "decision_curves.csv")
    g = frame[frame.model == "late_fusion"]
    ref = decision_curve(g.y_true, g[[f"p_{c}" for c in CLASSES]], CLASSES, g.patient_id,
                         binary="malignant=metastatic,lymphoma", n_boot=20)
    mine = curves[curves.model == "late_fusion"].reset_index(drop=True)
    np.testing.assert_allclose(mine.net_benefit, ref.net_benefit, atol=1e-12)
    sets = pd.read_csv(out / "conformal_sets.csv", dtype={"patient_id": str})
    ref_sets = conformal_sets(g.y_true, g[[f"p_{c}" for c in CLASSES]], CLASSES, g.patient_id, g.fold, alpha=0.2)
    assert sets[sets.model == "late_fusion"].prediction_set.tolist() == ref_sets.prediction_set.tolist()
    by_h = pd.read_csv(out / "metrics_by_hospital.csv")
    assert set(by_h.hospital) == {"north", "south", "east"} and (by_h.n_patients == 30).all()
    meta = pd.read_csv(out / "hospital_meta_analysis.csv", keep_default_na=False, na_values=[""])
    assert set(meta["method"]) == {"DL"} and (meta.k + meta.k_excluded == 3).all()
    assert (meta.loc[meta["class"] == "", "k"] == 3).all()    # a class AUC of 1 can drop a hospital, not macro


def test_hospital_column_of_the_file_is_used_without_a_map(tmp_path):
    frame, hosp = _predictions()
    frame.merge(hosp, on="patient_id").to_csv(tmp_path / "p.csv", index=False)
    assert main([str(tmp_path / "p.csv"), "--out", str(tmp_path / "o"), "--n-boot", "10"]) == 0
    assert (tmp_path / "o" / "hospital_meta_analysis.csv").is_file()


def test_bad_inputs_give_one_line_with_file_row_and_column(tmp_path, capsys):
    frame, hosp = _predictions()
    frame.to_csv(tmp_path / "p.csv", index=False)
    hosp.iloc[1:].to_csv(tmp_path / "h.csv", index=False)        # P000 has no hospital
    assert main([str(tmp_path / "p.csv"), "--out", str(tmp_path / "o"), "--n-boot", "10",
                 "--hospital-map", str(tmp_path / "h.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "p.csv" in err and "row 2" in err and "'P000' has no hospital" in err
    assert main([str(tmp_path / "p.csv"), "--out", str(tmp_path / "o"), "--n-boot", "10",
                 "--binary", "malignant=metastatic,lymphona"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown class 'lymphona'" in err and "did you mean 'lymphoma'" in err and "\n" not in err
    assert main([str(tmp_path / "p.csv"), "--out", str(tmp_path / "o"), "--conformal-alpha", "1.5"]) == 2


def test_conformal_uses_validation_rows_of_the_same_model_only():
    frame, _ = _predictions()
    val, _ = _predictions(seed=1)
    val = val[val.model == "resnet18"].assign(split="validation")
    conf = conformal_predictions(frame, CLASSES, alpha=0.1, calibration=val)
    calib = conf.sets.groupby("model").calibration.first()
    assert calib["resnet18"] == "validation" and calib["late_fusion"] == "other_folds"
    assert set(conf.coverage["class"]) == set(CLASSES) | {""}


def test_hospital_sources_and_default_question():
    frame, hosp = _predictions()
    assert list(hospital_of(frame, mapping=hosp)[:3]) == ["north", "south", "east"]
    assert list(hospital_of(frame, mapping=dict(zip(hosp.patient_id, hosp.hospital)))[:1]) == ["north"]
    with pytest.raises(Exception, match="no hospital"):
        hospital_of(frame)
    assert default_binary_questions(CLASSES) == {"malignant": ("metastatic", "lymphoma")}
    assert default_binary_questions(["a", "b"]) == {}
    assert default_binary_questions(["benign", "malignant", "normal"]) == {}     # BUSI: no guessing
