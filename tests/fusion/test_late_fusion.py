"""fusion.late_fusion: stacked logistic regression over out-of-fold predictions (+ clinical)."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import ConfigError
from analysis.metrics import classification_metrics
from fusion import splits as sp
from fusion.late_fusion import FUSION_MODEL, fusion_comparison, late_fusion_predictions

CLASSES = ["metastatic", "lymphoma", "benign"]
PCOLS = [f"p_{c}" for c in CLASSES]


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _synthetic(n=150, seed=0, drop_cdfi=()):
    """Complementary modalities: '2d' separates metastatic vs rest, 'cdfi' lymphoma vs benign."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    rng.shuffle(y)
    ids = np.array([f"P{i:03d}" for i in range(n)], dtype=object)
    folds = sp.with_inner_validation(sp.patient_folds(ids, y, 3, seed), ids, y, 0.2, seed)
    z2 = np.zeros((n, 3))
    z2[:, 0] = 2.5 * (y == 0) + rng.normal(0, 0.7, n)
    zc = np.zeros((n, 3))
    zc[:, 1] = 2.5 * (y == 1) - 2.5 * (y == 2) + rng.normal(0, 0.7, n)
    frames = []
    for mod, z in (("2d", z2), ("cdfi", zc)):
        p = _softmax(z)
        fold_of = np.empty(n, int)
        for s in folds:
            fold_of[s.test_idx] = s.fold
        f = pd.DataFrame({"patient_id": ids, "fold": fold_of, "split": "test",
                          "y_true": np.asarray(CLASSES, dtype=object)[y], "model": "resnet18", "modality": mod})
        f[PCOLS] = p
        if mod == "cdfi":
            f = f[~f["patient_id"].isin(drop_cdfi)]
        frames.append(f)
    clinical = pd.DataFrame({"age": rng.normal(50, 10, n) + 5 * (y == 0),
                             "sex": pd.Categorical(rng.choice(["female", "male"], n), categories=["female", "male"])})
    clinical.loc[3, "age"] = np.nan
    return pd.concat(frames, ignore_index=True), ids, y, folds, clinical


def _macro_auc(frame):
    y = frame["y_true"].to_numpy()
    m = classification_metrics(y, frame[PCOLS].to_numpy(), CLASSES, n_boot=0)
    return float(m.loc[(m["metric"] == "auc") & (m["class"] == ""), "estimate"].iloc[0])


def test_fusion_of_complementary_modalities_beats_each_single_modality():
    oof, ids, y, folds, clinical = _synthetic()
    res = late_fusion_predictions(oof, CLASSES, folds, ids, y, clinical=clinical, seed=0)
    pred = res.predictions
    assert set(pred["modality"]) == {"fusion_images", "fusion_images_clinical", "clinical_only"}
    assert (pred["model"] == FUSION_MODEL).all() and (pred["split"] == "test").all()
    # one prediction per patient and variant, each from the fold in which it is a test patient
    fused = pred[pred["modality"] == "fusion_images"]
    assert sorted(fused["patient_id"]) == sorted(ids)
    fold_of = {p: s.fold for s in folds for p in ids[s.test_idx]}
    assert all(fold_of[p] == f for p, f in zip(fused["patient_id"], fused["fold"]))
    np.testing.assert_allclose(pred[PCOLS].sum(axis=1), 1.0, atol=1e-9)
    auc_fused = _macro_auc(fused)
    for mod in ("2d", "cdfi"):
        assert auc_fused > _macro_auc(oof[oof["modality"] == mod]) + 0.05
    assert set(res.models["modality"]) == set(pred["modality"]) and len(res.models) == 9


def test_a_patients_own_label_never_reaches_its_fusion_model():
    oof, ids, y, folds, clinical = _synthetic(n=90, seed=2)
    base = late_fusion_predictions(oof, CLASSES, folds, ids, y, clinical=clinical, seed=0).predictions
    changed_any = False
    for i in (0, 41, 77):
        y2 = y.copy()
        y2[i] = (y[i] + 1) % 3
        new = late_fusion_predictions(oof, CLASSES, folds, ids, y2, clinical=clinical, seed=0).predictions
        for variant in ("fusion_images", "fusion_images_clinical", "clinical_only"):
            a = base[(base["modality"] == variant) & (base["patient_id"] == ids[i])][PCOLS].to_numpy()
            b = new[(new["modality"] == variant) & (new["patient_id"] == ids[i])][PCOLS].to_numpy()
            np.testing.assert_array_equal(a, b)
            # the same label change does alter other folds' models (so the check can fail)
            other = new[(new["modality"] == variant) & (new["fold"] != base.loc[
                base["patient_id"] == ids[i], "fold"].iloc[0])]
            ref = base.set_index(["modality", "patient_id"]).loc[
                list(zip(other["modality"], other["patient_id"])), PCOLS].to_numpy()
            changed_any |= not np.array_equal(other[PCOLS].to_numpy(), ref)
    assert changed_any


def test_patients_without_a_modality_get_predictions_and_output_is_deterministic():
    dropped = ("P000", "P001", "P002", "P010")
    oof, ids, y, folds, clinical = _synthetic(n=90, seed=3, drop_cdfi=dropped)
    a = late_fusion_predictions(oof, CLASSES, folds, ids, y, clinical=clinical, seed=5)
    b = late_fusion_predictions(oof, CLASSES, folds, ids, y, clinical=clinical, seed=5)
    pd.testing.assert_frame_equal(a.predictions, b.predictions)
    pd.testing.assert_frame_equal(a.models, b.models)
    fused = a.predictions[a.predictions["modality"] == "fusion_images"].set_index("patient_id")
    assert set(dropped) <= set(fused.index)
    assert np.isfinite(fused.loc[list(dropped), PCOLS].to_numpy()).all()


def test_without_clinical_only_image_fusion_and_holdout_is_refused():
    oof, ids, y, folds, _ = _synthetic(n=60, seed=4)
    res = late_fusion_predictions(oof, CLASSES, folds, ids, y)
    assert set(res.predictions["modality"]) == {"fusion_images"}
    hold = sp.holdout_split(ids, y, 0.3, 0)
    with pytest.raises(ConfigError, match="not supported"):
        late_fusion_predictions(oof, CLASSES, [hold], ids, y)
    with pytest.raises(ConfigError, match="did you mean"):
        late_fusion_predictions(oof, CLASSES, folds, ids, y, variants=["fusion_image"])


def test_comparison_keeps_only_pairs_with_a_fusion_row():
    oof, ids, y, folds, clinical = _synthetic(n=60, seed=6)
    res = late_fusion_predictions(oof, CLASSES, folds, ids, y, clinical=clinical)
    cmp = fusion_comparison(pd.concat([oof, res.predictions], ignore_index=True), CLASSES, n_boot=20)
    assert len(cmp) and ((cmp["model_a"] == FUSION_MODEL) | (cmp["model_b"] == FUSION_MODEL)).all()
    assert not ((cmp["modality_a"] == "2d") & (cmp["modality_b"] == "cdfi")).any()
    # fusion of images vs each single modality, macro + 3 classes
    single = cmp[(cmp["modality_a"].isin(["2d", "cdfi"])) & (cmp["modality_b"] == "fusion_images")]
    assert len(single) == 8


sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_cli_late_fusion_writes_fusion_rows_and_comparison(tmp_path):
    from tiny_training_cohort import TINY_ARGS, write_tiny_cohort

    from fusion.train import main

    cohort = write_tiny_cohort(tmp_path / "tiny", n=30)
    out = tmp_path / "run"
    args = [a for a in TINY_ARGS]
    args[args.index("--epochs") + 1] = "1"
    assert main([str(cohort), *args, "--modalities", "2d", "elastography", "--late-fusion", "--out", str(out)]) == 0
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    fusion = oof[oof["model"] == FUSION_MODEL]
    assert set(fusion["modality"]) == {"fusion_images", "fusion_images_clinical", "clinical_only"}
    n_pat = pd.read_csv(cohort)["patient_id"].nunique()
    assert fusion.groupby("modality").size().eq(n_pat).all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert (metrics["model"] == FUSION_MODEL).any()
    cmp = pd.read_csv(out / "late_fusion_comparison.csv")
    assert len(cmp) and ((cmp["model_a"] == FUSION_MODEL) | (cmp["model_b"] == FUSION_MODEL)).all()
    assert (out / "late_fusion_models.csv").is_file()


def test_hospital_splits_fit_on_other_hospitals_and_write_external_rows():
    oof, ids, y, _, clinical = _synthetic(n=90, seed=7)
    hospital = np.array(["A", "B", "C"] * 30, dtype=object)
    folds = sp.with_inner_validation(sp.hospital_splits(hospital, ids), ids, y, 0.2, 0)
    ext = oof.assign(split="external")
    res = late_fusion_predictions(ext, CLASSES, folds, ids, y, clinical=clinical)
    pred = res.predictions
    assert set(pred["split"]) == {"external"} and len(pred) == 3 * 90
    by_fold = {s.fold: set(ids[s.test_idx]) for s in folds}
    assert all(p in by_fold[f] for p, f in zip(pred["patient_id"], pred["fold"]))
    assert (res.models["n_train"] == 60).all()
