"""Classical texture-feature baseline: IBSI first-order + GLCM features, logistic regression.

Every CNN result of :mod:`fusion` should stand next to what hand-crafted features reach on
the same patients and folds.  This module provides that baseline, one model per modality:

1. :func:`texture_features` -- per image and channel, first-order intensity statistics and
   grey-level co-occurrence (GLCM) features in the sense of the Image Biomarker
   Standardisation Initiative (IBSI; Zwanenburg et al. 2020) and Haralick et al. (1973),
   computed from the stored ``uint8`` images of :class:`fusion.dataset.MultimodalDataset`.
   Nothing in a feature is estimated from other images or labels (fixed quantisation), so
   features can be computed once for all images without leaking between folds.
2. :func:`texture_baseline` / :func:`texture_predictions` -- for every modality and every
   fold of :mod:`fusion.splits`, an L2 multinomial logistic regression on the standardised
   features of the fold's training patients (``train_idx`` + ``val_idx``), with ``C`` chosen
   by a patient-grouped inner cross-validation on those patients only
   (:func:`fusion._logistic.fit_predict_logistic`, shared with :mod:`fusion.late_fusion`),
   applied to the fold's test images.  Rows are written in the prediction-file format of
   :mod:`fusion.evaluate` with ``model = 'texture_lr'``.

Region of interest
------------------
The stored images have no lesion mask, so the region of interest (ROI) is the image itself
minus its **black border**: leading and trailing rows and columns that are zero in every
channel are trimmed (``roi='trim'``, the default).  These are the letterbox bands that
``resize='pad'`` adds to non-square images (and black frames around exported ultrasound
screens); left in, they would add a spike at intensity 0 and a sharp edge whose size
depends only on the image's aspect ratio.  Zero pixels *inside* the trimmed rectangle
(anechoic areas) are kept: the ROI is always a rectangle, never a "non-zero pixels" mask.  An
all-zero image keeps its whole frame.  ``roi='full'`` uses every pixel.

References
----------
Zwanenburg A, Vallières M, Abdalah MA, et al. The Image Biomarker Standardization
Initiative: standardized quantitative radiomics for high-throughput image-based phenotyping.
Radiology. 2020;295(2):328-338. doi:10.1148/radiol.2020191145

Haralick RM, Shanmugam K, Dinstein I. Textural features for image classification. IEEE Trans
Syst Man Cybern. 1973;SMC-3(6):610-621. doi:10.1109/TSMC.1973.4309314
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import ConfigError, did_you_mean

__all__ = ["TEXTURE_MODEL", "FIRST_ORDER_FEATURES", "GLCM_FEATURES", "TextureResult", "feature_names",
           "texture_features", "texture_baseline", "texture_predictions"]

#: ``model`` value of every texture-baseline prediction row.
TEXTURE_MODEL = "texture_lr"
#: First-order feature names, in column order (see :func:`texture_features`).
FIRST_ORDER_FEATURES = ("mean", "sd", "skewness", "kurtosis", "minimum", "p10", "p25", "median", "p75", "p90",
                        "maximum", "iqr", "range", "mad", "rmad", "medad", "cov", "qcod", "energy", "rms",
                        "entropy", "uniformity")
#: GLCM feature names (columns are prefixed ``glcm_``), in column order.
GLCM_FEATURES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "asm", "entropy")
#: Columns of :attr:`TextureResult.models`.
MODEL_COLUMNS = ["fold", "split", "modality", "c", "n_train", "n_train_patients", "n_test", "n_test_patients",
                 "n_heldout", "n_features", "inner_folds", "reason"]
_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
_PERCENTILES = (10.0, 25.0, 50.0, 75.0, 90.0)
_CHUNK = 128  # images per vectorised block (bounds memory at 128 px)


def _channel_names(c: int) -> tuple:
    if c == 1:
        return ("grey",)
    if c == 3:
        return ("red", "green", "blue")
    return tuple(f"c{k}" for k in range(c))


def feature_names(channels: int = 1) -> list:
    """Column names of :func:`texture_features` for images with ``channels`` channels."""
    names = []
    for ch in _channel_names(channels):
        names += [f"{ch}_{f}" for f in FIRST_ORDER_FEATURES] + [f"{ch}_glcm_{f}" for f in GLCM_FEATURES]
    return names


def _as_uint8(images) -> np.ndarray:
    if hasattr(images, "detach"):  # torch tensor
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W) as stored by MultimodalDataset, "
                         f"got {arr.dtype} {tuple(arr.shape)}")
    return arr


def _roi_boxes(arr: np.ndarray, roi: str) -> np.ndarray:
    """(N, 4) int: row0, row1, col0, col1 (inclusive) of each image's ROI rectangle."""
    n, _, h, w = arr.shape
    boxes = np.tile(np.array([0, h - 1, 0, w - 1]), (n, 1))
    if roi == "full":
        return boxes
    nz = (arr != 0).any(axis=1)                      # (N, H, W)
    rows, cols = nz.any(axis=2), nz.any(axis=1)      # (N, H), (N, W)
    some = rows.any(axis=1)
    boxes[some, 0] = rows[some].argmax(axis=1)
    boxes[some, 1] = h - 1 - rows[some][:, ::-1].argmax(axis=1)
    boxes[some, 2] = cols[some].argmax(axis=1)
    boxes[some, 3] = w - 1 - cols[some][:, ::-1].argmax(axis=1)
    return boxes


def _histograms(arr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, C, 256) counts of each intensity inside each image's ROI."""
    n, c, h, w = arr.shape
    r = np.arange(h)[None, :, None]
    q = np.arange(w)[None, None, :]
    inside = ((r >= boxes[:, 0, None, None]) & (r <= boxes[:, 1, None, None])
              & (q >= boxes[:, 2, None, None]) & (q <= boxes[:, 3, None, None]))   # (N, H, W)
    inside = np.broadcast_to(inside[:, None], arr.shape)
    offset = (np.arange(n * c, dtype=np.int64) * 256).reshape(n, c, 1, 1)
    codes = (offset + arr)[inside]
    return np.bincount(codes, minlength=n * c * 256).reshape(n, c, 256).astype(np.float64)


def _percentiles(hist: np.ndarray, n: np.ndarray, qs) -> np.ndarray:
    """(M, len(qs)) percentiles with numpy's default 'linear' interpolation, from histograms."""
    cum = hist.cumsum(axis=1)                                   # (M, 256)
    pos = (n[:, None] - 1.0) * (np.asarray(qs)[None, :] / 100.0)  # (M, Q)
    lo, hi = np.floor(pos), np.ceil(pos)

    def value_at(k):  # k-th smallest value (0-based): first intensity whose cumulative count exceeds k
        return (cum[:, :, None] <= k[:, None, :]).sum(axis=1).astype(np.float64)

    v_lo, v_hi = value_at(lo), value_at(hi)
    return v_lo + (pos - lo) * (v_hi - v_lo)


def _safe_div(a, b):
    out = np.zeros(np.broadcast(a, b).shape)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _first_order(hist: np.ndarray, levels: int) -> np.ndarray:
    """(M, 22) first-order features from (M, 256) intensity histograms."""
    v = np.arange(256, dtype=np.float64)[None, :]
    n = hist.sum(axis=1)
    mean = (hist * v).sum(axis=1) / n
    d = v - mean[:, None]
    m2 = (hist * d ** 2).sum(axis=1) / n
    m3 = (hist * d ** 3).sum(axis=1) / n
    m4 = (hist * d ** 4).sum(axis=1) / n
    sd = np.sqrt(m2)
    zero_var = m2 <= 0
    skew = np.where(zero_var, 0.0, _safe_div(m3, m2 ** 1.5))
    kurt = np.where(zero_var, 0.0, _safe_div(m4, m2 ** 2) - 3.0)
    p10, p25, med, p75, p90 = _percentiles(hist, n, _PERCENTILES).T
    present = hist > 0
    vmin = present.argmax(axis=1).astype(np.float64)
    vmax = 255.0 - present[:, ::-1].argmax(axis=1)
    mad = (hist * np.abs(d)).sum(axis=1) / n
    robust = hist * ((v >= p10[:, None]) & (v <= p90[:, None]))
    nr = robust.sum(axis=1)
    mean_r = (robust * v).sum(axis=1) / nr
    rmad = (robust * np.abs(v - mean_r[:, None])).sum(axis=1) / nr
    medad = (hist * np.abs(v - med[:, None])).sum(axis=1) / n
    energy = (hist * v ** 2).sum(axis=1)
    rms = np.sqrt(energy / n)
    bins = (np.arange(256) * levels) >> 8                  # fixed bin width 256 / levels
    onehot = np.zeros((256, levels))
    onehot[np.arange(256), bins] = 1.0
    p = (hist @ onehot) / n[:, None]
    logp = np.log2(p, out=np.zeros_like(p), where=p > 0)
    entropy = -(p * logp).sum(axis=1)
    uniformity = (p ** 2).sum(axis=1)
    cols = [mean, sd, skew, kurt, vmin, p10, p25, med, p75, p90, vmax, p75 - p25, vmax - vmin, mad, rmad, medad,
            _safe_div(sd, mean), _safe_div(p75 - p25, p75 + p25), energy, rms, entropy, uniformity]
    return np.stack(cols, axis=1)


def _glcm(arr: np.ndarray, boxes: np.ndarray, levels: int, distances) -> np.ndarray:
    """(N, C, 7) GLCM features, each the mean over distances x 4 angles."""
    from skimage.feature import graycomatrix, graycoprops

    n, c = arr.shape[:2]
    nd = len(distances)
    quantised = ((arr.astype(np.uint16) * levels) >> 8).astype(np.uint8)
    # scikit-image offsets are (round(d sin a), round(d cos a)): its 45 / 135 degree pair at distance
    # d would be round(d / sqrt 2) pixels away; IBSI (and pyradiomics) use the Chebyshev distance,
    # offset (d, d), which scikit-image gives at distance d * sqrt(2)
    dist = np.array([*distances, *(np.sqrt(2.0) * np.asarray(distances, dtype=np.float64))])
    mats = []
    for i in range(n):
        r0, r1, c0, c1 = boxes[i]
        for k in range(c):
            P = graycomatrix(quantised[i, k, r0:r1 + 1, c0:c1 + 1], dist, _ANGLES, levels=levels, symmetric=True,
                             normed=True)
            mats.append(np.concatenate([P[:, :, :nd, 0::2], P[:, :, nd:, 1::2]], axis=3))  # (L, L, D, 4)
    # graycoprops works on (L, L, distances, angles): stack the images along the angle axis
    P = np.concatenate(mats, axis=3)                    # (L, L, D, A * N * C)
    out = []
    for prop in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM"):
        out.append(graycoprops(P, prop))
    logp = np.log2(P, out=np.zeros_like(P), where=P > 0)
    out.append(-(P * logp).sum(axis=(0, 1)))
    a = len(_ANGLES)
    feats = np.stack(out, axis=-1)                       # (D, A * N * C, 7)
    feats = feats.reshape(len(distances), n * c, a, len(out)).mean(axis=(0, 2))
    return feats.reshape(n, c, len(out))


def texture_features(images, *, levels: int = 32, distances=(1, 2), roi: str = "trim",
                     progress: bool = False) -> pd.DataFrame:
    """IBSI first-order and GLCM texture features of every image and channel.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        ``uint8`` ``(N, C, H, W)``, as stored by :class:`fusion.dataset.MultimodalDataset`
        (``dataset.tensors(modality)``); 1 (grey) or 3 (RGB) channels, or any other number.
        Not modified.
    levels : int, default 32
        Grey levels of the discretisation used by the histogram (``entropy``,
        ``uniformity``) and GLCM features: a fixed bin width of ``256 / levels`` on the 8-bit
        scale, ``g = floor(x * levels / 256)`` -- for 32 levels, bins of 8 (IBSI "fixed bin
        size"; equivalently a fixed bin number over the fixed range 0-255, never over each
        image's own minimum-maximum).
    distances : sequence of int, default (1, 2)
        GLCM pixel distances.
    roi : {'trim', 'full'}, default 'trim'
        'trim': the image minus its leading / trailing rows and columns that are zero in every
        channel (padding bands, black frames; see the module docstring); 'full': every pixel.
    progress : bool, default False
        tqdm progress bar on stderr.

    Returns
    -------
    pandas.DataFrame
        One row per image (RangeIndex, input order), ``22 + 7`` columns per channel named
        ``<channel>_<feature>`` with channel ``grey`` (1 channel), ``red, green, blue``
        (3 channels) or ``c0, c1, ...``; the order is :func:`feature_names`.

        First-order (IBSI section 3.3 "intensity-based statistics" on the ROI's raw
        intensities ``x_1..x_n`` in 0-255, with mean ``mu`` and population moments):
        ``mean``; ``sd`` (population SD, ``sqrt(mean((x - mu)^2))``); ``skewness``
        (``m3 / m2^1.5``) and ``kurtosis`` (excess, ``m4 / m2^2 - 3``), both 0 when the ROI
        is constant (IBSI); ``minimum``, ``p10``, ``p25``, ``median``, ``p75``, ``p90``,
        ``maximum`` (percentiles with linear interpolation, numpy's default); ``iqr``
        (``p75 - p25``); ``range``; ``mad`` (mean absolute deviation from the mean);
        ``rmad`` (robust MAD: the same over the intensities within ``[p10, p90]``);
        ``medad`` (mean absolute deviation from the median, IBSI "median absolute
        deviation"); ``cov`` (``sd / mean``); ``qcod`` (``(p75 - p25) / (p75 + p25)``)
        -- both 0 when their denominator is 0, which for non-negative intensities happens only
        in an all-zero ROI; ``energy`` (``sum(x^2)``, grows with the ROI's pixel count);
        ``rms`` (``sqrt(energy / n)``).  Histogram features (IBSI section 3.4, on the
        discretised grey levels with probabilities ``p_g``): ``entropy``
        (``-sum p_g log2 p_g``, bits) and ``uniformity`` (``sum p_g^2``).

        GLCM (``glcm_`` prefix; Haralick 1973, IBSI section 3.6): for every distance in
        ``distances`` and the 4 angles 0, 45, 90, 135 degrees (pixel offsets ``(0, d)``,
        ``(-d, d)``, ``(-d, 0)``, ``(-d, -d)``: Chebyshev distance ``d`` as in IBSI and
        pyradiomics), the symmetric co-occurrence matrix of the discretised ROI is normalised
        to probabilities ``P(i, j)`` (:func:`skimage.feature.graycomatrix`, pairs with both
        pixels inside the ROI) and
        ``contrast`` (``sum P (i-j)^2``), ``dissimilarity`` (``sum P |i-j|``),
        ``homogeneity`` (``sum P / (1 + (i-j)^2)``, IBSI "inverse difference moment"),
        ``energy`` (``sqrt(asm)``), ``correlation`` (``sum P (i-mu_i)(j-mu_j) /
        (sd_i sd_j)``, 1 when ``sd_i`` or ``sd_j`` is 0, scikit-image's convention),
        ``asm`` (angular second moment ``sum P^2``, IBSI "joint energy") and ``entropy``
        (``-sum P log2 P``, IBSI "joint entropy") are computed
        (:func:`skimage.feature.graycoprops`, entropy in bits here) and averaged over all
        distance x angle matrices (IBSI's "2D, averaged" aggregation).

    Raises
    ------
    ValueError
        ``images`` not ``uint8`` of 4 dimensions, ``levels`` outside 2-256, an empty
        ``distances`` or an unknown ``roi``.

    Notes
    -----
    First-order features come from per-image 256-bin histograms computed for a block of
    images at once (exact, no sorting); the GLCMs from scikit-image, one per image, channel,
    distance and angle, with the properties computed for a whole block in one call.  A ROI
    smaller than a distance has no pixel pair in that direction: its matrix is all zero and
    contributes 0 (correlation 1) to the average.  The tests check the first-order features
    against numpy / :mod:`scipy.stats` on hand-made arrays and the GLCM features against
    Haralick et al.'s (1973) published co-occurrence matrices of a 4 x 4 image.

    References
    ----------
    Zwanenburg A, et al. The Image Biomarker Standardization Initiative. Radiology.
    2020;295(2):328-338. doi:10.1148/radiol.2020191145

    Haralick RM, Shanmugam K, Dinstein I. Textural features for image classification. IEEE
    Trans Syst Man Cybern. 1973;SMC-3(6):610-621. doi:10.1109/TSMC.1973.4309314

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((1, 1, 4, 6), dtype=np.uint8)
    >>> img[0, 0, :, 1:5] = [[8, 8, 16, 16], [8, 8, 16, 16], [8, 16, 16, 16], [16, 16, 24, 24]]
    >>> f = texture_features(img, distances=(1,))
    >>> float(f.loc[0, "grey_mean"]), float(f.loc[0, "grey_minimum"])  # black side columns trimmed
    (14.5, 8.0)
    """
    arr = _as_uint8(images)
    levels = int(levels)
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be between 2 and 256, got {levels}")
    distances = tuple(int(d) for d in distances)
    if not distances or min(distances) < 1:
        raise ValueError(f"distances must be positive integers, got {distances}")
    if roi not in ("trim", "full"):
        raise ValueError(f"roi must be 'trim' or 'full', got {roi!r}")
    n, c = arr.shape[:2]
    columns = feature_names(c)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="texture features", unit="img", file=sys.stderr, leave=False)
    blocks = []
    for start in range(0, n, _CHUNK):
        block = arr[start:start + _CHUNK]
        boxes = _roi_boxes(block, roi)
        hist = _histograms(block, boxes)
        m = len(block)
        fo = _first_order(hist.reshape(m * c, 256), levels).reshape(m, c, -1)
        gl = _glcm(block, boxes, levels, distances)
        blocks.append(np.concatenate([fo, gl], axis=2).reshape(m, -1))
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()
    values = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, len(columns)))
    return pd.DataFrame(values, columns=columns)


# ----------------------------------------------------------------------------- per-fold baseline
@dataclass(frozen=True)
class TextureResult:
    """Output of :func:`texture_baseline`.

    Attributes
    ----------
    predictions : pandas.DataFrame
        ``patient_id, fold, split, y_true, model, modality, p_<class>...`` (``model ==
        'texture_lr'``), one row per test image of every fold and modality.
    models : pandas.DataFrame
        One row per fold x modality: ``fold, split, modality``, ``c`` (chosen ``C``),
        ``n_train, n_train_patients, n_test, n_test_patients`` (images and patients),
        ``n_heldout`` (held-out images also predicted),
        ``n_features``, ``inner_folds`` (0 = ``C`` not tuned) and ``reason`` (why, else '').
    """

    predictions: pd.DataFrame
    models: pd.DataFrame


def texture_baseline(dataset, splits, *, holdout=None, modalities=None, seed: int = 0, levels: int = 32,
                     distances=(1, 2), roi: str = "trim", progress: bool = False) -> TextureResult:
    """Out-of-fold predictions of a texture-feature logistic regression per modality.

    Parameters
    ----------
    dataset : fusion.dataset.MultimodalDataset
        Images (``tensors(modality)``), presence ``mask``, ``labels``, ``patient_ids`` and
        ``class_names``.  Not modified.
    splits : sequence of fusion.splits.Split
        The folds of the CNNs (positions into ``dataset``).  Training patients of a fold =
        ``train_idx`` + ``val_idx``; its test patients = ``test_idx``.
    holdout : fusion.splits.Split, optional
        A held-out test set (the second value of :func:`fusion.train.make_splits`, whose folds
        then cover only the development patients).  Each fold's model also predicts the
        held-out images, in rows with ``split = '_heldout'`` and that fold's number, as the
        CNN units of :mod:`fusion.train` do (which average them over the folds).
    modalities : sequence of str, optional
        Default: every modality of the dataset.
    seed : int, default 0
        Seed of the inner cross-validation (fold ``k`` uses ``seed + k``).
    levels, distances, roi
        Passed to :func:`texture_features`.
    progress : bool, default False
        tqdm progress bars on stderr.

    Returns
    -------
    TextureResult
        ``predictions`` in the prediction-file format of :mod:`fusion.evaluate` (``split`` is
        ``'external'`` for leave-one-hospital-out splits, else ``'test'``; one row per test
        image, so a patient with several images has several rows, like the CNN's; plus the
        ``'_heldout'`` rows with ``holdout``) and
        ``models`` (chosen ``C`` per fold x modality).

    Raises
    ------
    ConfigError
        Unknown modality, a patient on two sides of a split (or in a fold's training patients
        and the held-out set), or a fold without a training image of a modality.

    Notes
    -----
    Only images present in ``dataset.mask`` are used, for training and prediction: a patient
    without an image of a modality has no row for that modality.  Features
    (:func:`texture_features`) are computed once per modality for all present images; they
    involve no fitted quantity (fixed quantisation), so this does not share information
    between patients.  Then, per fold and modality, everything estimated from data is
    estimated on the fold's training images only: the standardisation (mean / SD of each
    feature) and ``C`` of an L2 multinomial logistic regression, chosen from
    :data:`fusion._logistic.C_GRID` by minimum log loss over an inner stratified
    patient-grouped k-fold (``min(3, training patients of the smallest class)`` folds,
    scikit-learn ``StratifiedGroupKFold``; the scaler is refitted inside every inner split).
    The model is refitted on all training images with that ``C`` and applied to the fold's
    test images, which nothing before has seen.
    """
    from fusion._logistic import fit_predict_logistic
    from fusion.splits import check_disjoint

    all_mods = tuple(dataset.modalities)
    mods = all_mods if modalities is None else tuple(modalities)
    for m in mods:
        if m not in all_mods:
            raise ConfigError(f"unknown modality {m!r} (loaded: {', '.join(all_mods)}){did_you_mean(m, all_mods)}")
    splits = list(splits)
    ids = pd.Series(np.asarray(dataset.patient_ids, dtype=object)).astype(str).to_numpy()
    y = dataset.labels.cpu().numpy().astype(np.int64)
    classes = [str(c) for c in dataset.class_names]
    names = np.asarray(classes, dtype=object)
    mask = dataset.mask.cpu().numpy()
    for s in splits:
        check_disjoint(ids, s)
        if holdout is not None:
            check_disjoint(ids, train=np.concatenate([s.train_idx, s.val_idx]), held_out=holdout.test_idx)
    held = np.zeros(0, dtype=np.int64) if holdout is None else np.asarray(holdout.test_idx, dtype=np.int64)
    pcols = [f"p_{c}" for c in classes]
    cols = ["patient_id", "fold", "split", "y_true", "model", "modality", *pcols]
    pred_frames, model_rows = [], []
    for m in mods:
        present = mask[:, all_mods.index(m)]
        rows = np.flatnonzero(present)
        X = np.full((len(ids), 0), np.nan)
        if len(rows):
            images = dataset.tensors(m).cpu().numpy()
            feats = texture_features(images[rows] if len(rows) < len(ids) else images, levels=levels,
                                     distances=distances, roi=roi, progress=progress)
            X = np.full((len(ids), feats.shape[1]), np.nan)
            X[rows] = feats.to_numpy()
        for s in splits:
            split_name = "external" if s.kind == "hospital" else "test"
            train = np.sort(np.concatenate([s.train_idx, s.val_idx]).astype(np.int64))
            train = train[present[train]]
            test = np.asarray(s.test_idx, dtype=np.int64)
            test = test[present[test]]
            held_m = held[present[held]]
            n_test = len(test)
            test = np.concatenate([test, held_m])
            row_split = np.array([split_name] * n_test + ["_heldout"] * len(held_m), dtype=object)
            if len(train) == 0:
                raise ConfigError(f"modality '{m}', fold {s.fold}: no training image present")
            if len(test) == 0:
                model_rows.append({"fold": s.fold, "split": split_name, "modality": m, "c": np.nan,
                                   "n_train": len(train), "n_train_patients": len(set(ids[train])), "n_test": 0,
                                   "n_test_patients": 0, "n_heldout": 0, "n_features": X.shape[1], "inner_folds": 0,
                                   "reason": "no test image"})
                continue
            proba, c, n_inner, reason = fit_predict_logistic(X[train], y[train], X[test], len(classes), seed + s.fold,
                                                             groups=ids[train], standardize=True)
            out = pd.DataFrame({"patient_id": ids[test], "fold": s.fold, "split": row_split, "y_true": names[y[test]],
                                "model": TEXTURE_MODEL, "modality": m})
            for k, pc in enumerate(pcols):
                out[pc] = proba[:, k]
            pred_frames.append(out)
            model_rows.append({"fold": s.fold, "split": split_name, "modality": m, "c": c, "n_train": len(train),
                               "n_train_patients": len(set(ids[train])), "n_test": n_test,
                               "n_test_patients": len(set(ids[test[:n_test]])), "n_heldout": len(held_m),
                               "n_features": X.shape[1],
                               "inner_folds": n_inner, "reason": reason})
    preds = pd.concat(pred_frames, ignore_index=True)[cols] if pred_frames else pd.DataFrame(columns=cols)
    return TextureResult(preds, pd.DataFrame(model_rows, columns=MODEL_COLUMNS))


def texture_predictions(dataset, splits, *, holdout=None, modalities=None, seed: int = 0, levels: int = 32,
                        distances=(1, 2), roi: str = "trim", progress: bool = False) -> pd.DataFrame:
    """The prediction rows of :func:`texture_baseline` (same parameters; see there).

    Returns
    -------
    pandas.DataFrame
        ``patient_id, fold, split, y_true, model, modality, p_<class>...`` with ``model =
        'texture_lr'`` and ``modality`` = the image modality, one row per test image of every
        fold and modality (ready for :func:`fusion.evaluate.evaluate_predictions`).
    """
    return texture_baseline(dataset, splits, holdout=holdout, modalities=modalities, seed=seed, levels=levels,
                            distances=distances, roi=roi, progress=progress).predictions
