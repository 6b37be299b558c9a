"""fusion.api (cross_validate -> CVResult), embedding fusion, first-level calibration, Shapley
contributions and the fold-assignment file."""
import math

import numpy as np
import pandas as pd
import pytest

from fusion.splits import Split, patient_folds, with_inner_validation


# ----------------------------------------------------------------------------- Shapley
def test_shapley_values_of_known_games():
    from fusion.contributions import shapley_values

    # additive game: each player's value is its own weight
    w = {"a": 1.0, "b": 2.0, "c": -0.5}
    phi = shapley_values(lambda s: np.array([sum(w[p] for p in s)]), list(w))
    for p in w:
        assert phi[p][0] == pytest.approx(w[p])
    # glove game / unanimity of {a, b}: value 1 only when a and b are both in -> 1/2 each, c 0
    phi = shapley_values(lambda s: np.array([1.0 if {"a", "b"} <= s else 0.0]), ["a", "b", "c"])
    assert phi["a"][0] == pytest.approx(0.5) and phi["b"][0] == pytest.approx(0.5)
    assert phi["c"][0] == pytest.approx(0.0)
    # majority game of 3 (any two win): symmetric -> 1/3 each
    phi = shapley_values(lambda s: np.array([1.0 if len(s) >= 2 else 0.0]), ["a", "b", "c"])
    assert all(v[0] == pytest.approx(1 / 3) for v in phi.values())


def test_block_contributions_add_up_to_prediction_minus_reference():
    from sklearn.linear_model import LogisticRegression

    from fusion.contributions import feature_block_contributions

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    y = (X[:, 0] + X[:, 3] > 0).astype(int) + (X[:, 1] > 1).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    keys = pd.DataFrame({"patient_id": [f"p{i}" for i in range(10)], "fold": 0, "split": "test", "model": "m",
                         "modality": "v"})
    out = feature_block_contributions(model.predict_proba, X[:10], X.mean(axis=0),
                                      {"2d": [0, 1], "cdfi": [2], "clinical": [3, 4]}, ["a", "b", "c"], keys)
    assert len(out) == 10 * 3 * 3
    total = out.groupby(["patient_id", "class"]).agg(s=("contribution", "sum"), ref=("reference", "first"),
                                                     pred=("prediction", "first"))
    assert np.allclose(total["s"], total["pred"] - total["ref"], atol=1e-10)
    # feature 2 carries no signal in y, so its block moves the predictions least
    size = out.assign(a=out["contribution"].abs()).groupby("source")["a"].mean()
    assert size["cdfi"] < size["2d"] and size["cdfi"] < size["clinical"]


# ----------------------------------------------------------------------------- calibration
def test_fit_temperature_matches_a_grid_search_and_undoes_a_known_sharpening():
    from scipy.special import log_softmax, softmax

    from analysis.calibration import apply_temperature, fit_temperature

    rng = np.random.default_rng(1)
    logits = rng.normal(scale=1.5, size=(4000, 3))
    p = softmax(logits, axis=1)
    y = np.array([rng.choice(3, p=row) for row in p])   # p is calibrated by construction
    sharp = softmax(np.log(p) / 0.4, axis=1)           # an over-confident model's output
    t = fit_temperature(sharp, y)
    grid = np.exp(np.linspace(np.log(0.1), np.log(10), 4001))
    nll = [-log_softmax(np.log(sharp) / g, axis=1)[np.arange(len(y)), y].mean() for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(nll))], rel=2e-3)
    assert t == pytest.approx(1 / 0.4, rel=0.1)
    back = apply_temperature(sharp, t)
    assert np.allclose(back.sum(axis=1), 1)
    assert (back.argmax(axis=1) == sharp.argmax(axis=1)).all()


def test_calibrate_first_level_fits_each_fold_on_its_own_validation_rows_only():
    from fusion.late_fusion import calibrate_first_level

    classes = ["a", "b"]
    rng = np.random.default_rng(2)

    def rows(fold, split, n, sharpen):
        p = rng.uniform(0.2, 0.8, n)
        y = np.where(rng.uniform(size=n) < p, "a", "b")
        q = p ** (1 / sharpen) / (p ** (1 / sharpen) + (1 - p) ** (1 / sharpen))
        return pd.DataFrame({"patient_id": [f"{fold}{split}{i}" for i in range(n)], "fold": fold, "split": split,
                             "y_true": y, "model": "cnn", "modality": "2d", "p_a": q, "p_b": 1 - q})

    val = pd.concat([rows(0, "validation", 3000, 1.0), rows(1, "validation", 3000, 0.25)], ignore_index=True)
    test = pd.concat([rows(0, "test", 50, 1.0), rows(1, "test", 50, 0.25)], ignore_index=True)
    out, temps = calibrate_first_level(test, val, classes)
    t = temps.set_index("fold")["temperature"]
    assert t[0] == pytest.approx(1.0, abs=0.15) and t[1] == pytest.approx(4.0, rel=0.15)
    assert np.allclose(out.loc[out["fold"] == 0, "p_a"], test.loc[test["fold"] == 0, "p_a"], atol=0.05)
    # test rows' labels play no part: flipping them leaves the calibrated probabilities unchanged
    flipped = test.assign(y_true=np.where(test["y_true"] == "a", "b", "a"))
    out2, _ = calibrate_first_level(flipped, val, classes)
    assert np.allclose(out2[["p_a", "p_b"]], out[["p_a", "p_b"]])


# ----------------------------------------------------------------------------- embedding fusion
def _embedding_setup(n=120, seed=0, missing=()):
    rng = np.random.default_rng(seed)
    ids = np.array([f"P{i:03d}" for i in range(n)], dtype=object)
    y = rng.integers(0, 3, n)
    folds = with_inner_validation(patient_folds(ids, y, 3, seed), ids, y, 0.3, seed)
    emb = {}
    for m, scale in (("2d", 0.6), ("elastography", 1.2)):
        for s in folds:
            pos = np.concatenate([s.val_idx, s.test_idx])
            if m == "elastography":
                pos = np.array([p for p in pos if p not in missing], dtype=np.int64)
            centres = rng.normal(size=(3, 24)) * 0 + np.eye(3, 24) * scale * 3
            e = centres[y[pos]] + rng.normal(size=(len(pos), 24))
            emb[("resnet18", m, s.fold)] = (pos, e.astype(np.float32))
    clinical = pd.DataFrame({"age": rng.normal(50, 10, n) + 5 * (y == 0), "sex": rng.choice(["F", "M"], n)})
    return ids, y, folds, emb, clinical


def test_embedding_fusion_predicts_every_test_patient_once_and_learns():
    from sklearn.metrics import roc_auc_score

    from fusion.embedding import embedding_fusion_predictions

    ids, y, folds, emb, clinical = _embedding_setup()
    classes = ["metastatic", "lymphoma", "benign"]
    res = embedding_fusion_predictions(emb, classes, folds, ids, y, clinical=clinical)
    preds = res.predictions
    assert set(preds["model"]) == {"embedding_lr", "embedding_mlp"}
    assert set(preds["modality"]) == {"fusion_images", "fusion_images_clinical"}
    for _, g in preds.groupby(["model", "modality"]):
        assert sorted(g["patient_id"]) == sorted(ids)
        assert np.allclose(g[[f"p_{c}" for c in classes]].sum(axis=1), 1)
        codes = pd.Series(g["y_true"]).map({c: i for i, c in enumerate(classes)}).to_numpy()
        assert roc_auc_score(codes, g[[f"p_{c}" for c in classes]].to_numpy(), multi_class="ovr") > 0.8
    # the head of each fold is fitted on that fold's inner validation patients only
    for r in res.models.itertuples():
        s = folds[r.fold]
        assert r.n_train == len(np.unique(ids[s.val_idx])) and r.fit_on == "validation"
    # contributions: per test patient x source x class, adding up to prediction - reference
    c = res.contributions
    assert set(c["source"]) == {"2d", "elastography", "clinical"}
    tot = c.groupby(["patient_id", "model", "modality", "class"]).agg(
        s=("contribution", "sum"), d=("prediction", "first"), r=("reference", "first"))
    assert np.allclose(tot["s"], tot["d"] - tot["r"], atol=1e-8)


def test_embedding_fusion_test_patients_label_never_reaches_its_prediction():
    from fusion.embedding import embedding_fusion_predictions

    ids, y, folds, emb, clinical = _embedding_setup(seed=3)
    classes = ["a", "b", "c"]
    base = embedding_fusion_predictions(emb, classes, folds, ids, y, clinical=clinical, contributions=False)
    victim = int(folds[1].test_idx[0])
    y2 = y.copy()
    y2[victim] = (y[victim] + 1) % 3
    again = embedding_fusion_predictions(emb, classes, folds, ids, y2, clinical=clinical, contributions=False)
    pcols = [f"p_{c}" for c in classes]
    a = base.predictions[base.predictions["patient_id"] == ids[victim]][pcols].to_numpy()
    b = again.predictions[again.predictions["patient_id"] == ids[victim]][pcols].to_numpy()
    assert np.array_equal(a, b)
    # whereas a validation patient's label does reach its fold's head
    helper = int(folds[1].val_idx[0])
    y3 = y.copy()
    y3[helper] = (y[helper] + 1) % 3
    moved = embedding_fusion_predictions(emb, classes, folds, ids, y3, clinical=clinical, contributions=False)
    c = moved.predictions[moved.predictions["fold"] == 1][pcols].to_numpy()
    d = base.predictions[base.predictions["fold"] == 1][pcols].to_numpy()
    assert not np.allclose(c, d)


def test_embedding_fusion_patient_without_a_modality_is_predicted_from_the_others():
    from fusion.embedding import embedding_fusion_predictions

    ids, y, folds, emb, clinical = _embedding_setup(seed=4)
    gone = int(folds[0].test_idx[0])
    ids, y, folds, emb, clinical = _embedding_setup(seed=4, missing=(gone,))
    res = embedding_fusion_predictions(emb, ["a", "b", "c"], folds, ids, y, clinical=None, heads=("lr",),
                                       contributions=False)
    row = res.predictions[res.predictions["patient_id"] == ids[gone]]
    assert len(row) == 1 and np.isfinite(row[["p_a", "p_b", "p_c"]].to_numpy()).all()


# ----------------------------------------------------------------------------- fold assignments
def test_fold_assignments_list_every_role_and_the_check_finds_a_crossing_patient():
    from analysis.errors import CohortError
    from fusion.provenance import check_fold_assignments, fold_assignments

    ids = np.array(["A", "A", "B", "C", "C", "D", "E", "F"], dtype=object)
    splits = [Split(0, np.array([0, 1, 2]), np.array([3, 4]), np.array([5, 6, 7]), "cv"),
              Split(1, np.array([5, 6, 7]), np.array([2]), np.array([0, 1, 3, 4]), "cv")]
    fa = fold_assignments(splits, ids, image_ids=[f"img{i}" for i in range(8)])
    assert len(fa) == 16 and set(fa["role"]) == {"train", "validation", "test"}
    assert check_fold_assignments(fa).empty
    bad = pd.concat([fa, pd.DataFrame([{"fold": 0, "kind": "cv", "name": "", "patient_id": "A", "image_id": "x",
                                         "role": "validation"}])], ignore_index=True)
    crossing = check_fold_assignments(bad)
    assert list(crossing["patient_id"]) == ["A"] and crossing["roles"].iloc[0] == "train, validation"
    with pytest.raises(CohortError, match="test patient of folds"):
        check_fold_assignments(pd.concat([fa, fa.assign(fold=2)], ignore_index=True))


# ----------------------------------------------------------------------------- the API end to end
@pytest.mark.slow
def test_cross_validate_late_and_embedding_fusion_one_results_table(tmp_path):
    from tiny_training_cohort import write_tiny_cohort

    from fusion import cross_validate
    from fusion.provenance import check_fold_assignments

    cohort = write_tiny_cohort(tmp_path / "tiny", n=36)
    result = cross_validate(cohort, modalities=["2d", "elastography"], fusion=("late", "embedding", "joint"),
                            baseline=True,
                            out=tmp_path / "run", size=16, folds=2, epochs=2, patience=5, batch_size=8, n_boot=20,
                            device="cpu", threads=1, progress=False)
    preds = result.predictions
    assert {"resnet18", "texture_lr", "late_fusion", "embedding_lr", "embedding_mlp", "joint_concat",
            "joint_gated"} <= set(preds["model"])
    # every fusion row's test patient is predicted once per model x variant
    for _, g in preds.groupby(["model", "modality"]):
        assert g["patient_id"].is_unique
    assert check_fold_assignments(result.fold_assignments).empty
    # every test patient of the fold assignments has exactly the fold its predictions say
    test = result.fold_assignments[result.fold_assignments["role"] == "test"].set_index("patient_id")["fold"]
    assert (preds["fold"].to_numpy() == test.reindex(preds["patient_id"]).to_numpy()).all()
    assert set(result.validation_predictions["split"]) == {"validation"}
    table = result.results_table()
    assert {"late fusion", "embedding fusion", "joint fusion", "CNN, one modality", "texture baseline",
            "clinical only"} <= set(table["Kind"])
    # Shapley contributions of the joint heads add up to prediction - reference
    c = result.contributions[result.contributions["model"].str.startswith("joint")]
    tot = c.groupby(["patient_id", "model", "class"]).agg(s=("contribution", "sum"), d=("prediction", "first"),
                                                          r=("reference", "first"))
    assert len(tot) and np.allclose(tot["s"], tot["d"] - tot["r"], atol=1e-6)
    assert {"Fold 0", "Fold 1"} <= set(table.columns)
    assert (table["Difference vs best single"] == "best single modality (reference)").sum() == 1
    written = {p.name for p in result.save(tmp_path / "run")}
    assert {"oof_predictions.csv", "fold_assignments.csv", "results.md", "fusion_contributions.csv",
            "calibration_temperatures.csv", "embedding_fusion_models.csv", "metrics_by_fold.csv"} <= written
    again = pd.read_csv(tmp_path / "run" / "fold_assignments.csv", dtype={"patient_id": str})
    assert check_fold_assignments(again).empty


def test_cross_validate_refuses_unknown_modes_and_settings():
    from analysis.errors import ConfigError
    from fusion import cross_validate

    with pytest.raises(ConfigError, match="unknown mode 'embeding'.*embedding"):
        cross_validate("x.csv", fusion=["embeding"])
    with pytest.raises(ConfigError, match="unknown setting 'epoch'"):
        cross_validate("x.csv", epoch=3)


# ----------------------------------------------------------------------------- beyond the AUC on a CVResult
def _fake_result(with_hospitals=True, n=90):
    import dataclasses

    import numpy as np

    from fusion.api import CVResult
    from fusion.config import TrainConfig

    classes = ["metastatic", "lymphoma", "benign"]
    rng = np.random.default_rng(0)
    y = rng.choice(3, size=n, p=[0.35, 0.25, 0.4])
    pid = [f"P{i:03d}" for i in range(n)]
    frames = []
    for model, split, strength in (("resnet18", "test", 1.0), ("late_fusion", "test", 1.5),
                                   ("resnet18", "validation", 1.0)):
        z = rng.normal(size=(n, 3)) + strength * np.eye(3)[y]
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        f = pd.DataFrame({"patient_id": pid, "fold": np.arange(n) % 3, "split": split,
                          "y_true": np.asarray(classes)[y], "model": model, "modality": "2d"})
        f[[f"p_{c}" for c in classes]] = p
        frames.append(f)
    hospitals = pd.DataFrame({"patient_id": pid, "hospital": np.array(["A", "B", "C"])[rng.integers(0, 3, n)]})
    return CVResult(predictions=pd.concat(frames[:2], ignore_index=True), classes=classes, splits=[],
                    fold_assignments=pd.DataFrame(), validation_predictions=frames[2],
                    config=dataclasses.replace(TrainConfig(), n_boot=20), manifest={"modalities": ["2d"]},
                    problems=pd.DataFrame(), hospitals=hospitals if with_hospitals else None)


def test_cv_result_decision_curves_conformal_and_centre_effects():
    result = _fake_result()
    curves = result.decision_curves()
    assert set(curves["question"]) == {"metastatic", "lymphoma", "benign", "malignant"}   # benign -> malignant
    conf = result.conformal(alpha=0.2)
    calib = conf.sets.groupby("model")["calibration"].first()
    assert calib["resnet18"] == "validation" and calib["late_fusion"] == "other_folds"
    by_h = result.by_hospital()
    assert set(by_h["hospital"]) == {"A", "B", "C"} and set(by_h["split"]) == {"test"}
    meta = result.meta_analysis()
    assert set(meta.pooled["model"]) == {"resnet18", "late_fusion"} and (meta.pooled["k"] <= 3).all()
    bare = _fake_result(with_hospitals=False)
    assert bare.meta_analysis() is None and bare.by_hospital().empty


@pytest.mark.slow
def test_cv_result_save_writes_the_beyond_auc_tables_and_figures(tmp_path):
    written = {p.name for p in _fake_result().save(tmp_path)}
    assert {"decision_curves.csv", "conformal_sets.csv", "conformal_coverage.csv", "patient_hospitals.csv",
            "metrics_by_hospital.csv", "hospital_auc.csv", "hospital_meta_analysis.csv",
            "decision_curves_resnet18_2d_test.png", "forest_hospitals_late_fusion_2d_test.png"} <= written


@pytest.mark.slow
def test_recalibrate_scales_each_fold_cnn_on_its_validation_patients_only(tmp_path):
    from tiny_training_cohort import write_tiny_cohort

    from analysis.calibration import apply_temperature
    from fusion import cross_validate

    cohort = write_tiny_cohort(tmp_path / "tiny", n=36)
    kw = dict(modalities=["2d"], baseline=False, size=16, folds=2, epochs=2, patience=5, batch_size=8, n_boot=20,
              device="cpu", threads=1, progress=False)
    raw = cross_validate(cohort, out=tmp_path / "raw", **kw)
    cal = cross_validate(cohort, out=tmp_path / "cal", recalibrate=True, **kw)
    temps = {r["fold"]: r["temperature"] for r in cal.manifest["recalibrated"]}
    pcols = [f"p_{c}" for c in raw.classes]
    for fold, t in temps.items():
        a = raw.predictions[raw.predictions["fold"] == fold].sort_values("patient_id")
        b = cal.predictions[cal.predictions["fold"] == fold].sort_values("patient_id")
        assert np.allclose(apply_temperature(a[pcols].to_numpy(), t), b[pcols].to_numpy())
