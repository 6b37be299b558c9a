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


def _nested(oof, ids, folds, shift=0.0):
    """Nested first-level rows: for outer fold k, one row per training patient and first-level
    model (the outer out-of-fold probabilities, optionally shifted, stand in for inner CNNs)."""
    rows = []
    for s in folds:
        train = set(ids[np.concatenate([s.train_idx, s.val_idx])])
        f = oof[oof["patient_id"].isin(train)].copy()
        f["fold"] = s.fold
        f["inner_fold"] = f["patient_id"].map(lambda p: int(p[1:]) % 2)
        f["split"] = "inner"
        f[PCOLS] = _softmax(np.log(f[PCOLS].to_numpy()) + shift * np.array([1.0, -1.0, 0.0]))
        rows.append(f)
    return pd.concat(rows, ignore_index=True)


def test_nested_first_level_keeps_test_patients_out_of_their_folds_training_features():
    """With nested predictions a fold's second level never sees its test patients' first-level outputs.

    Changing the outer out-of-fold probabilities of fold 0's test patients changes fold 0's
    fusion predictions (they are its test features) but no other fold's: without nested
    predictions they are training features of every other fold, and those change.
    """
    oof, ids, y, folds, clinical = _synthetic()
    inner = _nested(oof, ids, folds)
    t0 = set(ids[folds[0].test_idx])
    moved = oof.copy()
    hit = moved["patient_id"].isin(t0)
    moved.loc[hit, PCOLS] = _softmax(np.log(moved.loc[hit, PCOLS].to_numpy()) + np.array([2.0, 0.0, -2.0]))

    def fold_preds(frame, inner_rows):
        res = late_fusion_predictions(frame, CLASSES, folds, ids, y, clinical=clinical, seed=0, inner=inner_rows)
        p = res.predictions
        return p[p["modality"] == "fusion_images"].set_index("patient_id"), res.models

    nested_a, models = fold_preds(oof, inner)
    nested_b, _ = fold_preds(moved, inner)
    others = [p for p in nested_a.index if p not in t0]
    assert np.allclose(nested_a.loc[others, PCOLS], nested_b.loc[others, PCOLS], atol=0, rtol=0)
    assert not np.allclose(nested_a.loc[sorted(t0), PCOLS], nested_b.loc[sorted(t0), PCOLS])
    shared_a, shared_models = fold_preds(oof, None)
    shared_b, _ = fold_preds(moved, None)
    assert not np.allclose(shared_a.loc[others, PCOLS], shared_b.loc[others, PCOLS])
    img = models["modality"] != "clinical_only"
    assert set(models.loc[img, "first_level"]) == {"nested"}
    assert set(shared_models.loc[img, "first_level"]) == {"shared folds"}
    # the nested rows are used: shifting them changes the training features, hence the predictions
    shifted, _ = fold_preds(oof, _nested(oof, ids, folds, shift=1.5))
    assert not np.allclose(shifted[PCOLS], nested_a[PCOLS])


def test_nested_predictions_are_checked_against_the_folds():
    oof, ids, y, folds, clinical = _synthetic(n=60)
    inner = _nested(oof, ids, folds)
    leak = inner[inner["fold"] == 1].head(1).assign(fold=0, patient_id=ids[folds[0].test_idx][0])
    with pytest.raises(ConfigError, match="not a training patient of that fold"):
        late_fusion_predictions(oof, CLASSES, folds, ids, y, inner=pd.concat([inner, leak]))
    with pytest.raises(ConfigError, match="no nested first-level predictions for fold 2"):
        late_fusion_predictions(oof, CLASSES, folds, ids, y, inner=inner[inner["fold"] != 2])
    with pytest.raises(ConfigError, match="do not match the outer ones"):
        late_fusion_predictions(oof, CLASSES, folds, ids, y, inner=inner[inner["modality"] != "cdfi"])
    two = inner[inner["fold"] == 0].head(1).assign(inner_fold=7)
    with pytest.raises(ConfigError, match="two inner folds"):
        late_fusion_predictions(oof, CLASSES, folds, ids, y, inner=pd.concat([inner, two]))


def test_nested_splits_stay_inside_the_outer_training_patients():
    from fusion.config import TrainConfig
    from fusion.train import nested_splits

    n = 90
    ids = np.array([f"P{i // 2:03d}" for i in range(n)], dtype=object)  # two rows per patient
    y = (np.arange(n) // 2) % 3
    hospital = np.array(["A", "B", "C"])[(np.arange(n) // 2) % 3]
    cfg = TrainConfig(cohort="x", folds=3)
    for outer in sp.with_inner_validation(sp.patient_folds(ids, y, 3, 0), ids, y, 0.2, 0):
        inner = nested_splits(cfg, outer, ids, y, hospital)
        dev = set(np.concatenate([outer.train_idx, outer.val_idx]))
        assert len(inner) == 3
        assert set(np.concatenate([s.test_idx for s in inner])) == dev  # every training row predicted once
        for s in inner:
            assert set(np.concatenate([s.train_idx, s.val_idx, s.test_idx])) <= dev and len(s.val_idx)
    for outer in sp.with_inner_validation(sp.hospital_splits(hospital, ids), ids, y, 0.2, 0):
        inner = nested_splits(cfg, outer, ids, y, hospital)
        assert [s.name for s in inner] == sorted(set("ABC") - {outer.name})
        assert all(set(hospital[s.test_idx]) == {s.name} for s in inner)
    two = sp.with_inner_validation(sp.hospital_splits(hospital[hospital != "C"], ids[hospital != "C"]),
                                   ids[hospital != "C"], y[hospital != "C"], 0.2, 0)
    with pytest.raises(ConfigError, match="at least 3 hospitals"):
        nested_splits(cfg, two[0], ids[hospital != "C"], y[hospital != "C"], hospital[hospital != "C"])


def test_cli_nested_fusion_trains_inner_folds_inside_each_outer_fold(tmp_path, capsys):
    from tiny_training_cohort import TINY_ARGS, write_tiny_cohort

    from fusion.train import main

    cohort = write_tiny_cohort(tmp_path / "tiny", n=30)
    table = pd.read_csv(cohort, dtype={"patient_id": str})
    blank = table.loc[4, "patient_id"]
    table.loc[4, "image_elastography"] = None  # one patient without elastography: masked, kept
    table.to_csv(cohort, index=False)
    out = tmp_path / "run"
    args = [a for a in TINY_ARGS]
    args[args.index("--epochs") + 1] = "1"
    run = [str(cohort), *args, "--modalities", "2d", "elastography", "--late-fusion", "--nested-fusion",
           "--out", str(out)]
    assert main(run) == 0
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    inner = pd.read_csv(out / "nested_predictions.csv", dtype={"patient_id": str})
    assert set(inner["split"]) == {"inner"} and set(inner["inner_fold"]) == {0, 1}
    first = oof[oof["model"] != FUSION_MODEL]
    for (k, modality), g in inner.groupby(["fold", "modality"]):
        own = first[first["modality"] == modality]
        test_k = set(own.loc[own["fold"] == k, "patient_id"])
        others = set(own.loc[own["fold"] != k, "patient_id"])  # fold k's training patients with this image
        assert set(g["patient_id"]) == others and not (set(g["patient_id"]) & test_k)
        assert g.groupby("patient_id")["inner_fold"].nunique().eq(1).all()
    assert (out / "checkpoints" / "2d" / "resnet18" / "fold1" / "inner0" / "model.pt").is_file()
    problems = pd.read_csv(out / "image_problems.csv", dtype={"patient_id": str})  # the masked image
    assert problems[["patient_id", "modality", "reason"]].values.tolist() == [[blank, "elastography", "no image"]]
    models = pd.read_csv(out / "late_fusion_models.csv")
    assert set(models.loc[models["modality"] != "clinical_only", "first_level"]) == {"nested"}
    before = (out / "oof_predictions.csv").read_bytes()
    assert main([*run, "--resume"]) == 0  # every unit, inner ones included, is reused
    assert (out / "oof_predictions.csv").read_bytes() == before
    assert main([str(cohort), *args, "--nested-fusion", "--out", str(tmp_path / "x")]) == 2
    assert "--nested-fusion needs --late-fusion" in capsys.readouterr().err


def test_comparison_p_holm_is_holm_over_the_fusion_pairs_of_each_class():
    from statsmodels.stats.multitest import multipletests

    oof, ids, y, folds, clinical = _synthetic(n=60, seed=6)
    res = late_fusion_predictions(oof, CLASSES, folds, ids, y, clinical=clinical)
    cmp = fusion_comparison(pd.concat([oof, res.predictions], ignore_index=True), CLASSES, n_boot=20)
    cols = list(cmp.columns)
    assert cols.index("p_holm") == cols.index("p_value") + 1
    for cls, fam in cmp.groupby("class"):
        assert len(fam) == 9                  # 3 fusion variants x 2 modalities + 3 variant pairs
        ok = fam["p_value"].notna()
        np.testing.assert_allclose(fam.loc[ok, "p_holm"], multipletests(fam.loc[ok, "p_value"], method="holm")[1],
                                   rtol=1e-12)
        assert fam.loc[~ok, "p_holm"].isna().all()
    assert (cmp["p_holm"].dropna() >= cmp.loc[cmp["p_holm"].notna(), "p_value"]).all()


def test_cli_external_hospital_writes_per_hospital_metrics(tmp_path):
    from tiny_training_cohort import TINY_ARGS, write_tiny_cohort

    from fusion.evaluate import evaluate_predictions
    from fusion.train import main

    cohort = write_tiny_cohort(tmp_path / "tiny", n=30)
    out = tmp_path / "run"
    args = list(TINY_ARGS)
    args[args.index("--epochs") + 1] = "1"
    assert main([str(cohort), *args, "--modalities", "2d", "--external-hospital", "--late-fusion",
                 "--out", str(out)]) == 0
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    metrics = pd.read_csv(out / "metrics.csv", keep_default_na=False, na_values=[""])
    by_fold = pd.read_csv(out / "metrics_by_fold.csv", keep_default_na=False, na_values=[""])
    assert list(by_fold.columns) == [*metrics.columns[:3], "fold", "held_out", *metrics.columns[3:]]
    splits = __import__("json").loads((out / "run_manifest.json").read_text())["splits"]
    hospitals = {s["fold"]: s["name"] for s in splits}
    assert set(by_fold["fold"]) == set(hospitals) and len(hospitals) == 3
    assert (by_fold["held_out"] == by_fold["fold"].map(hospitals)).all()
    assert set(by_fold["model"]) == {"resnet18", FUSION_MODEL}
    sub = oof[(oof["model"] == "resnet18") & (oof["fold"] == 1)]
    alone = evaluate_predictions(sub, CLASSES, n_boot=20, seed=0)
    got = by_fold[(by_fold["model"] == "resnet18") & (by_fold["fold"] == 1)]
    np.testing.assert_allclose(got["estimate"].to_numpy(), alone["estimate"].to_numpy(), equal_nan=True)
    assert (got["n_patients"] == sub["patient_id"].nunique()).all()
    md = (out / "model_modality.md").read_text()
    assert "pooled over 3 held-out hospitals" in md and "metrics_by_fold.csv" in md
    assert "p_holm" in pd.read_csv(out / "late_fusion_comparison.csv").columns
    # Grad-CAM of test patients works on leave-one-hospital-out runs too (split 'external')
    from fusion.gradcam import explain_test_patients

    table, _ = explain_test_patients(out, "2d", per_class=1, cohort=cohort, out=tmp_path / "cam")
    first = oof[(oof["model"] == "resnet18")].drop_duplicates("patient_id").set_index("patient_id")
    assert len(table) == 3 and (table["fold"].to_numpy() == first.loc[table["patient_id"], "fold"].to_numpy()).all()


def test_nested_fusion_too_small_a_class_fails_before_any_training(tmp_path, capsys):
    from tiny_training_cohort import TINY_ARGS, write_tiny_cohort

    from fusion.train import main

    cohort = write_tiny_cohort(tmp_path / "tiny", n=30)
    table = pd.read_csv(cohort)
    keep = table[table["group"] != "lymphoma"].index.tolist() + table[table["group"] == "lymphoma"].index[:5].tolist()
    table.loc[sorted(keep)].to_csv(cohort, index=False)  # 5 lymphoma patients: enough for 5 outer folds only
    args = [a for a in TINY_ARGS]
    args[args.index("--folds") + 1] = "5"
    out = tmp_path / "run"
    assert main([str(cohort), *args, "--modalities", "2d", "--late-fusion", "--nested-fusion", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--nested-fusion: outer fold" in err and "of class 'lymphoma'" in err
    assert not (out / "checkpoints").exists()  # nothing was trained
