"""fusion.texture: IBSI first-order + GLCM features and the per-modality logistic-regression baseline."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from scipy.ndimage import gaussian_filter

from analysis.errors import ConfigError
from fusion import splits as sp
from fusion._logistic import fit_predict_logistic
from fusion.dataset import MultimodalDataset
from fusion.evaluate import evaluate_predictions
from fusion.texture import (FIRST_ORDER_FEATURES, GLCM_FEATURES, TEXTURE_MODEL, feature_names, texture_baseline,
                            texture_features, texture_predictions)

CLASSES = ["metastatic", "lymphoma", "benign"]
PCOLS = [f"p_{c}" for c in CLASSES]


# ----------------------------------------------------------------------------- independent references
def _reference_first_order(x: np.ndarray, levels: int) -> dict:
    """First-order features of the ROI pixels ``x`` with numpy / scipy.stats, one formula each."""
    x = x.astype(np.float64).ravel()
    p10, p25, med, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
    inner = x[(x >= p10) & (x <= p90)]
    counts = np.bincount(np.floor(x * levels / 256).astype(int), minlength=levels)
    return {"mean": np.mean(x), "sd": np.std(x), "skewness": stats.skew(x), "kurtosis": stats.kurtosis(x),
            "minimum": x.min(), "p10": p10, "p25": p25, "median": med, "p75": p75, "p90": p90, "maximum": x.max(),
            "iqr": stats.iqr(x), "range": np.ptp(x), "mad": np.mean(np.abs(x - x.mean())),
            "rmad": np.mean(np.abs(inner - inner.mean())), "medad": np.mean(np.abs(x - np.median(x))),
            "cov": stats.variation(x), "qcod": (p75 - p25) / (p75 + p25), "energy": np.sum(x ** 2),
            "rms": np.sqrt(np.mean(x ** 2)), "entropy": stats.entropy(counts, base=2),
            "uniformity": np.sum((counts / counts.sum()) ** 2)}


def _brute_glcm(g: np.ndarray, d: int, levels: int) -> list:
    """Symmetric co-occurrence counts for offsets 0, 45, 90, 135 degrees, by visiting every pixel pair."""
    h, w = g.shape
    out = []
    for dr, dc in ((0, d), (-d, d), (-d, 0), (-d, -d)):
        m = np.zeros((levels, levels))
        for r in range(h):
            for c in range(w):
                r2, c2 = r + dr, c + dc
                if 0 <= r2 < h and 0 <= c2 < w:
                    m[g[r, c], g[r2, c2]] += 1
                    m[g[r2, c2], g[r, c]] += 1
        out.append(m)
    return out


def _haralick_features(counts: np.ndarray) -> dict:
    """Haralick / IBSI GLCM features of one co-occurrence matrix, written out from the formulas."""
    P = counts / counts.sum()
    i, j = np.indices(P.shape)
    mi, mj = (P * i).sum(), (P * j).sum()
    si, sj = np.sqrt((P * (i - mi) ** 2).sum()), np.sqrt((P * (j - mj) ** 2).sum())
    nz = P[P > 0]
    return {"contrast": (P * (i - j) ** 2).sum(), "dissimilarity": (P * np.abs(i - j)).sum(),
            "homogeneity": (P / (1 + (i - j) ** 2)).sum(), "energy": np.sqrt((P ** 2).sum()),
            "correlation": (P * (i - mi) * (j - mj)).sum() / (si * sj), "asm": (P ** 2).sum(),
            "entropy": -(nz * np.log2(nz)).sum()}


#: Haralick, Shanmugam & Dinstein (1973), Fig. 2: a 4 x 4 image with grey levels 0-3 and its
#: symmetric distance-1 co-occurrence matrices for 0, 45, 90 and 135 degrees.
HARALICK_IMAGE = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]])
HARALICK_GLCM = [np.array([[4, 2, 1, 0], [2, 4, 0, 0], [1, 0, 6, 1], [0, 0, 1, 2]]),
                 np.array([[4, 1, 0, 0], [1, 2, 2, 0], [0, 2, 4, 1], [0, 0, 1, 0]]),
                 np.array([[6, 0, 2, 0], [0, 4, 2, 0], [2, 2, 2, 2], [0, 0, 2, 0]]),
                 np.array([[2, 1, 3, 0], [1, 2, 1, 0], [3, 1, 0, 2], [0, 0, 2, 0]])]


def _as_levels(g: np.ndarray, levels: int) -> np.ndarray:
    """uint8 intensities that the fixed-width quantisation maps back to grey levels ``g``."""
    return (g * (256 // levels) + 3).astype(np.uint8)


# ----------------------------------------------------------------------------- features
def test_first_order_features_equal_numpy_and_scipy_on_the_roi():
    rng = np.random.default_rng(0)
    imgs = np.zeros((3, 3, 20, 26), dtype=np.uint8)
    imgs[:, :, 2:18, 1:24] = rng.integers(0, 256, (3, 3, 16, 23))   # black letterbox around the ROI
    imgs[1, 0, 2:18, 1:24] = rng.gamma(2.0, 20.0, (16, 23)).clip(0, 255)  # skewed channel
    imgs[2, :, 5, 1:24] = 0                                          # anechoic row inside: kept
    f = texture_features(imgs, levels=32)
    for n in range(3):
        for k, ch in enumerate(("red", "green", "blue")):
            ref = _reference_first_order(imgs[n, k, 2:18, 1:24], 32)
            got = {name: f.loc[n, f"{ch}_{name}"] for name in FIRST_ORDER_FEATURES}
            for name in FIRST_ORDER_FEATURES:
                assert got[name] == pytest.approx(ref[name], rel=1e-9, abs=1e-9), (n, ch, name)


def test_first_order_percentiles_match_numpy_for_small_and_odd_rois():
    rng = np.random.default_rng(5)
    for h, w in ((1, 1), (1, 3), (3, 5), (7, 2)):
        img = rng.integers(1, 256, (1, 1, h, w)).astype(np.uint8)
        f = texture_features(img, distances=(1,))
        want = np.percentile(img.astype(float), [10, 25, 50, 75, 90])
        got = f.loc[0, ["grey_p10", "grey_p25", "grey_median", "grey_p75", "grey_p90"]].to_numpy(float)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_constant_and_black_images_give_finite_ibsi_conventions():
    imgs = np.zeros((2, 1, 8, 8), dtype=np.uint8)
    imgs[0] = 77
    f = texture_features(imgs)
    assert np.isfinite(f.to_numpy()).all()
    for n in range(2):
        assert f.loc[n, "grey_skewness"] == 0 and f.loc[n, "grey_kurtosis"] == 0
        assert f.loc[n, "grey_sd"] == 0 and f.loc[n, "grey_entropy"] == 0 and f.loc[n, "grey_uniformity"] == 1
    assert f.loc[1, "grey_cov"] == 0 and f.loc[1, "grey_qcod"] == 0


def test_glcm_reference_reproduces_haralicks_published_matrices():
    for mine, published in zip(_brute_glcm(HARALICK_IMAGE, 1, 4), HARALICK_GLCM):
        np.testing.assert_array_equal(mine, published)


def test_glcm_features_equal_haralicks_example_averaged_over_the_four_angles():
    img = _as_levels(HARALICK_IMAGE, 4)[None, None]
    f = texture_features(img, levels=4, distances=(1,))
    per_angle = [_haralick_features(m) for m in HARALICK_GLCM]
    for name in GLCM_FEATURES:
        want = np.mean([p[name] for p in per_angle])
        assert f.loc[0, f"grey_glcm_{name}"] == pytest.approx(want, rel=1e-12), name


def test_glcm_features_average_over_distances_and_ignore_the_padding():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 8, (9, 11))
    core = _as_levels(g, 8)
    padded = np.zeros((1, 1, 15, 15), dtype=np.uint8)
    padded[0, 0, 3:12, 2:13] = core
    f = texture_features(padded, levels=8, distances=(1, 2))
    feats = [_haralick_features(m) for d in (1, 2) for m in _brute_glcm(g, d, 8)]
    for name in GLCM_FEATURES:
        assert f.loc[0, f"grey_glcm_{name}"] == pytest.approx(np.mean([p[name] for p in feats]), rel=1e-12), name
    full = texture_features(padded, levels=8, distances=(1, 2), roi="full")
    assert full.loc[0, "grey_glcm_contrast"] != pytest.approx(f.loc[0, "grey_glcm_contrast"])


def test_features_accept_torch_tensors_and_keep_column_order():
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, (4, 3, 12, 12)).astype(np.uint8)
    a = texture_features(arr)
    b = texture_features(torch.from_numpy(arr.copy()))
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == feature_names(3)
    assert len(feature_names(1)) == len(FIRST_ORDER_FEATURES) + len(GLCM_FEATURES)
    assert isinstance(a.index, pd.RangeIndex) and len(a) == 4


def test_features_in_blocks_equal_features_one_image_at_a_time():
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (130, 1, 10, 10)).astype(np.uint8)   # more than one vectorised block
    arr[7, :, :, :2] = 0
    together = texture_features(arr)
    alone = pd.concat([texture_features(arr[i:i + 1]) for i in (0, 7, 129)], ignore_index=True)
    np.testing.assert_allclose(together.iloc[[0, 7, 129]].to_numpy(), alone.to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8), np.uint8), np.zeros((1, 1, 8, 8), np.float32)])
def test_features_reject_images_that_are_not_uint8_nchw(bad):
    with pytest.raises(ValueError, match="uint8 \\(N, C, H, W\\)"):
        texture_features(bad)


# ----------------------------------------------------------------------------- baseline on folds
def _texture(kind: int, rng, size: int = 16) -> np.ndarray:
    """Same mean and SD, different texture: 0 smooth blobs, 1 white noise, 2 horizontal stripes."""
    if kind == 0:
        z = gaussian_filter(rng.normal(size=(size, size)), 2.0)
    elif kind == 1:
        z = rng.normal(size=(size, size))
    else:
        z = np.sin(np.arange(size) * np.pi / 2 + rng.uniform(0, 6.3))[:, None] + 0.3 * rng.normal(size=(size, size))
    z = (z - z.mean()) / z.std()
    return np.clip(128 + 35 * z, 1, 255).astype(np.uint8)


def _dataset(n=45, seed=0, images_per_patient=1, mask=None):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    ids = [f"P{i:03d}" for i in range(n)]
    y = np.repeat(y, images_per_patient)
    ids = np.repeat(ids, images_per_patient)
    grey = np.stack([_texture(k, rng)[None] for k in y])
    colour = np.stack([np.stack([_texture(k, rng), _texture((k + 1) % 3, rng), _texture(k, rng)]) for k in y])
    ds = MultimodalDataset.from_tensors({"2d": torch.from_numpy(grey), "cdfi": torch.from_numpy(colour)}, y,
                                        class_names=CLASSES, patient_ids=ids, mask=mask)
    folds = sp.with_inner_validation(sp.patient_folds(ids, y, 3, seed), ids, y, 0.2, seed)
    return ds, folds


def test_predictions_are_in_the_prediction_file_format_and_separate_textures():
    ds, folds = _dataset()
    preds = texture_predictions(ds, folds)
    assert list(preds.columns) == ["patient_id", "fold", "split", "y_true", "model", "modality", *PCOLS]
    assert set(preds["model"]) == {TEXTURE_MODEL} and list(preds["modality"].unique()) == ["2d", "cdfi"]
    assert set(preds["split"]) == {"test"}
    np.testing.assert_allclose(preds[PCOLS].sum(axis=1), 1.0)
    metrics = evaluate_predictions(preds, CLASSES, n_boot=0)
    auc = metrics[(metrics["metric"] == "auc") & (metrics["class"] == "")].set_index("modality")["estimate"]
    assert (auc > 0.85).all(), auc


def test_every_patient_is_predicted_once_per_modality_by_the_fold_that_holds_it_out():
    ds, folds = _dataset()
    preds = texture_predictions(ds, folds)
    for mod, g in preds.groupby("modality"):
        assert g["patient_id"].is_unique and set(g["patient_id"]) == set(ds.patient_ids), mod
    fold_of = {p: s.fold for s in folds for p in ds.patient_ids[s.test_idx]}
    assert (preds["fold"] == preds["patient_id"].map(fold_of)).all()
    truth = dict(zip(ds.patient_ids, np.asarray(CLASSES)[ds.labels.numpy()]))
    assert (preds["y_true"] == preds["patient_id"].map(truth)).all()


def test_a_test_patients_prediction_does_not_change_with_its_own_label():
    ds, folds = _dataset()
    base = texture_predictions(ds, folds)
    target = ds.patient_ids[folds[0].test_idx[0]]
    train_patient = ds.patient_ids[folds[0].train_idx[0]]
    for who, changed_must_differ in ((target, False), (train_patient, True)):
        labels = ds.labels.numpy().copy()
        k = int(np.flatnonzero(ds.patient_ids == who)[0])
        labels[k] = (labels[k] + 1) % 3
        images = {m: ds.tensors(m) for m in ds.modalities}
        other = MultimodalDataset.from_tensors(images, labels, class_names=CLASSES, patient_ids=ds.patient_ids)
        again = texture_predictions(other, folds)
        rows = (base["patient_id"] == target).to_numpy()
        if not changed_must_differ:
            np.testing.assert_array_equal(again.loc[rows, PCOLS].to_numpy(), base.loc[rows, PCOLS].to_numpy())
        else:  # the check above can fail: a *training* patient's label does move fold 0's predictions
            fold0 = (base["fold"] == 0).to_numpy()
            assert not np.allclose(again.loc[fold0, PCOLS].to_numpy(), base.loc[fold0, PCOLS].to_numpy())


def test_a_missing_image_has_no_row_and_its_pixels_are_never_used():
    n = 45
    mask = np.ones((n, 2), bool)
    mask[[4, 10], 1] = False
    ds, folds = _dataset(n=n, mask=mask)
    preds = texture_predictions(ds, folds)
    cdfi = preds[preds["modality"] == "cdfi"]
    assert set(cdfi["patient_id"]) == set(ds.patient_ids) - {ds.patient_ids[4], ds.patient_ids[10]}
    assert set(preds.loc[preds["modality"] == "2d", "patient_id"]) == set(ds.patient_ids)
    images = {m: ds.tensors(m).clone() for m in ds.modalities}
    images["cdfi"][[4, 10]] = 255                                   # garbage behind the mask
    other = MultimodalDataset.from_tensors(images, ds.labels, class_names=CLASSES, patient_ids=ds.patient_ids,
                                           mask=mask)
    pd.testing.assert_frame_equal(texture_predictions(other, folds), preds)


def test_several_images_per_patient_give_one_row_per_image_and_grouped_inner_folds():
    ds, folds = _dataset(n=30, images_per_patient=2)
    result = texture_baseline(ds, folds, modalities=["2d"])
    preds = result.predictions
    assert len(preds) == len(ds) and preds.groupby("patient_id").size().eq(2).all()
    models = result.models
    assert list(models["modality"]) == ["2d"] * 3 and (models["n_train"] == 2 * models["n_train_patients"]).all()
    assert (models["inner_folds"] == 3).all() and models["c"].notna().all()


def test_hospital_splits_are_named_external():
    ds, _ = _dataset(n=36)
    hospital = np.array(["A", "B", "C"] * 12, dtype=object)
    folds = sp.hospital_splits(hospital, ds.patient_ids)
    preds = texture_predictions(ds, folds, modalities=["2d"])
    assert set(preds["split"]) == {"external"} and len(preds) == 36


def test_unknown_modality_is_a_config_error_with_a_suggestion():
    ds, folds = _dataset(n=12)
    with pytest.raises(ConfigError, match="did you mean 'cdfi'"):
        texture_predictions(ds, folds, modalities=["cdf"])


def test_grouped_inner_folds_keep_a_patients_copies_together():
    """Every patient's features twice: row-wise inner folds reward memorising (large C), patient-grouped do not."""
    rng = np.random.default_rng(0)
    n, k = 60, 20
    X = rng.normal(size=(n, k))
    y = rng.integers(0, 3, n)
    groups = np.arange(n)
    X2, y2, g2 = np.repeat(X, 2, axis=0), np.repeat(y, 2), np.repeat(groups, 2)
    _, c_rows, _, _ = fit_predict_logistic(X2, y2, X2[:1], 3, 0, standardize=True)
    _, c_grouped, inner, _ = fit_predict_logistic(X2, y2, X2[:1], 3, 0, groups=g2, standardize=True)
    assert inner == 3 and c_grouped < c_rows


def test_a_held_out_set_is_predicted_by_every_fold_model_and_never_trained_on():
    ds, _ = _dataset(n=45)
    ids, y = ds.patient_ids, ds.labels.numpy()
    holdout = sp.holdout_split(ids, y, test_fraction=0.2, seed=0)
    dev = holdout.train_idx
    from dataclasses import replace

    local = sp.patient_folds(ids[dev], y[dev], 3, 0)
    folds = [replace(s, train_idx=dev[s.train_idx], test_idx=dev[s.test_idx]) for s in local]
    result = texture_baseline(ds, folds, holdout=holdout, modalities=["2d"])
    preds = result.predictions
    held = preds[preds["split"] == "_heldout"]
    assert set(held["patient_id"]) == set(ids[holdout.test_idx])
    assert all(sorted(f) == [0, 1, 2] for f in held.groupby("patient_id")["fold"].apply(list))
    assert set(preds.loc[preds["split"] == "test", "patient_id"]) == set(ids[dev])
    assert (result.models["n_heldout"] == len(holdout.test_idx)).all()
    labels = y.copy()
    labels[holdout.test_idx] = (labels[holdout.test_idx] + 1) % 3   # every held-out label changed
    other = MultimodalDataset.from_tensors({m: ds.tensors(m) for m in ds.modalities}, labels, class_names=CLASSES,
                                           patient_ids=ids)
    again = texture_predictions(other, folds, holdout=holdout, modalities=["2d"])
    np.testing.assert_array_equal(again[PCOLS].to_numpy(), preds[PCOLS].to_numpy())
    leaky = [replace(folds[0], train_idx=np.concatenate([folds[0].train_idx, holdout.test_idx[:1]]))]
    with pytest.raises(ConfigError, match="split leak"):
        texture_predictions(ds, leaky, holdout=holdout)
