"""Embedding fusion: the CNNs' penultimate embeddings of every modality + the clinical variables.

Late fusion (:mod:`fusion.late_fusion`) combines each modality's *probabilities*; here one
second-level classifier sees the modalities' *embeddings* together (the output of
:meth:`fusion.backbones.Backbone.forward_features`), optionally with the encoded clinical
variables, so it can use information a single modality's 3-class head has thrown away.

What the head is trained on, and why
------------------------------------
A fold's CNN has been fitted to its training patients: their embeddings separate the classes
far better than a new patient's would (the CNN memorises them), so a head trained on them
learns a decision rule that is over-confident on new patients.  The embeddings of the fold's
**inner validation patients** are the ones the CNN was never trained on (they were only used
to choose its epoch), and they live in the same embedding space as the test patients'
(the same CNN).  The head of fold ``k`` is therefore fitted on the inner validation patients
of fold ``k`` and applied to its test patients; the test patients are used for nothing else.
Out-of-fold embeddings from inner CNNs are not an option: each inner CNN has its own embedding
space, so a head fitted on a mixture of them would be applied to yet another space.
``fit_on='training'`` gives the naive head (trained on the training patients' embeddings) so
that its optimism can be measured (see BENCHMARKS.md).

Features of one fold (everything estimated on the head's training patients only): per
``(backbone, modality)`` block the patient's mean embedding over its images, standardised and
reduced by PCA to at most :data:`N_COMPONENTS` components; a patient without that modality
gets the block's training mean and a missing indicator 1.  Clinical variables are encoded as
in late fusion.  Heads: multinomial L2 logistic regression (``'lr'``) and a one-hidden-layer
MLP (``'mlp'``), strength chosen by inner cross-validation (:func:`fusion.late_fusion.fit_head`).

Output rows use the prediction-file format with ``model = 'embedding_lr'`` or
``'embedding_mlp'`` and ``modality`` = ``'fusion_images'`` / ``'fusion_images_clinical'``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.errors import ConfigError
from fusion.contributions import CONTRIBUTION_COLUMNS, feature_block_contributions

__all__ = ["EMBEDDING_MODELS", "EMBEDDING_VARIANTS", "N_COMPONENTS", "EmbeddingFusionResult", "extract_embeddings",
           "load_run_embeddings", "embedding_fusion_predictions"]

#: ``model`` value of the rows of each head.
EMBEDDING_MODELS = {"lr": "embedding_lr", "mlp": "embedding_mlp"}
#: ``modality`` values of the rows, in output order.
EMBEDDING_VARIANTS = ("fusion_images", "fusion_images_clinical")
#: Most principal components kept per (backbone, modality) block.
N_COMPONENTS = 16
MODEL_COLUMNS = ["fold", "split", "model", "modality", "fit_on", "chosen", "n_train", "n_test", "n_features",
                 "inner_folds", "reason"]


@torch.no_grad()
def extract_embeddings(model, images: torch.Tensor, positions, transform, *, batch_size: int = 64, device=None,
                       amp=None, channels_last: bool = True) -> np.ndarray:
    """Penultimate embeddings ``(len(positions), D)`` (float32) of ``images[positions]`` in eval mode."""
    from fusion.engine import ImageData  # the same batch preparation as predict_proba
    from fusion.runtime import autocast, unwrap

    net = unwrap(model)
    device = device or next(net.parameters()).device
    net.eval()
    positions = np.asarray(positions, dtype=np.int64)
    data = images if hasattr(images, "inputs") else ImageData(images, np.zeros(images.shape[0], dtype=np.int64))
    out = []
    for start in range(0, len(positions), batch_size):
        idx = positions[start:start + batch_size]
        x = data.inputs(idx, transform, device, channels_last)
        with autocast(device, amp):
            emb = net.forward_features(x)
        out.append(emb.float().cpu())
    if not out:
        return np.zeros((0, int(getattr(getattr(net, "info", None), "embedding_dim", 0))), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def load_run_embeddings(checkpoints, folds, modalities, backbones) -> dict:
    """``(backbone, modality, fold) -> (positions, embeddings)`` from a run's ``embeddings.pt`` files."""
    root = Path(checkpoints)
    out = {}
    for m in modalities:
        for b in backbones:
            for k in folds:
                path = root / m / b / f"fold{k}" / "embeddings.pt"
                if not path.is_file():
                    raise ConfigError(f"no embeddings for {m}/{b}/fold{k} (re-run the training into a new --out)",
                                      file=path)
                blob = torch.load(path, map_location="cpu", weights_only=True)
                out[(b, m, k)] = (blob["positions"].numpy(), blob["embeddings"].numpy())
    return out


@dataclass(frozen=True)
class EmbeddingFusionResult:
    """Output of :func:`embedding_fusion_predictions`: ``predictions`` (prediction-file rows),
    ``models`` (one row per fold x head x variant) and ``contributions`` (Shapley, per test
    patient x source x class)."""

    predictions: pd.DataFrame
    models: pd.DataFrame
    contributions: pd.DataFrame | None = None


def _patient_mean(positions, emb, ids) -> pd.DataFrame:
    frame = pd.DataFrame(emb, index=pd.Index(ids[positions], name="patient_id"))
    return frame.groupby(level=0, sort=False).mean()


def fit_block(train: np.ndarray, n_components: int) -> dict | None:
    """Standardisation + PCA of one (backbone, modality) block, fitted on the head's training patients.

    Returns ``{'mean', 'sd', 'components', 'pca_mean'}`` (numpy arrays), or None with fewer than
    2 training patients.
    """
    from sklearn.decomposition import PCA

    train = np.asarray(train, dtype=float)
    if len(train) < 2:
        return None
    mean, sd = train.mean(axis=0), train.std(axis=0)
    sd[sd == 0] = 1.0
    k = int(min(n_components, len(train) - 1, train.shape[1]))
    pca = PCA(n_components=k, random_state=0).fit((train - mean) / sd)
    return {"mean": mean, "sd": sd, "components": pca.components_, "pca_mean": pca.mean_}


def apply_block(X: np.ndarray, params: dict | None) -> np.ndarray:
    """Block features of embeddings ``X`` (rows with NaN = modality missing): the PCA scores
    (missing -> 0, the training mean) and a missing indicator."""
    X = np.asarray(X, dtype=float)
    missing = np.isnan(X).any(axis=1)
    if params is None:
        return np.hstack([np.zeros((len(X), 1)), missing[:, None].astype(float)])
    Z = (((np.where(missing[:, None], params["mean"], X) - params["mean"]) / params["sd"]) - params["pca_mean"]) \
        @ np.asarray(params["components"]).T
    Z[missing] = 0.0
    return np.hstack([Z, missing[:, None].astype(float)])


def _block_features(frame: pd.DataFrame, patients, train_p, n_components: int):
    """Standardise + PCA (fitted on ``train_p``); missing patients -> training mean + indicator."""
    params = fit_block(frame.reindex(train_p).dropna().to_numpy(dtype=float), n_components)
    return apply_block(frame.reindex(patients).to_numpy(dtype=float), params)


def embedding_fusion_predictions(embeddings: dict, classes, splits, patient_ids, labels, clinical=None, schema=None,
                                 *, heads=("lr", "mlp"), variants=EMBEDDING_VARIANTS, fit_on: str = "validation",
                                 n_components: int = N_COMPONENTS, seed: int = 0,
                                 contributions: bool = True) -> EmbeddingFusionResult:
    """Embedding-fusion predictions for every fold's test patients.

    Parameters
    ----------
    embeddings : dict
        ``(backbone, modality, fold) -> (positions, embeddings)``: the fold CNN's embeddings of
        dataset rows ``positions`` (at least the fold's validation and test rows), e.g. from
        :func:`load_run_embeddings`.
    classes : list of str
    splits : list of fusion.splits.Split
        The folds the CNNs were trained on (positions into ``patient_ids``).
    patient_ids, labels : array-like
        Per dataset row; labels are class indices or names.
    clinical : pandas.DataFrame, optional
        One row per dataset row (``MultimodalDataset.clinical``).
    schema : analysis.schema.Schema, optional
    heads : sequence of {'lr', 'mlp'}
    variants : sequence of {'fusion_images', 'fusion_images_clinical'}
    fit_on : {'validation', 'training'}
        Whose embeddings the head is fitted on: the inner validation patients (default; see
        the module docs) or, to measure the optimism of doing so, the training patients.
    n_components : int
        PCA components per block.
    seed : int
        Seed of the heads' inner cross-validation (fold ``k`` uses ``seed + k``).
    contributions : bool
        Exact Shapley contributions per source (modality, ``'clinical'``) and class.

    Returns
    -------
    EmbeddingFusionResult
    """
    from fusion.late_fusion import _clinical_features, _variable_types, fit_head, patient_index, source_blocks

    classes = [str(c) for c in classes]
    if fit_on not in ("validation", "training"):
        raise ConfigError(f"fit_on must be 'validation' or 'training', got {fit_on!r}")
    for h in heads:
        if h not in EMBEDDING_MODELS:
            raise ConfigError(f"unknown embedding head {h!r} (expected: {', '.join(EMBEDDING_MODELS)})")
    ids, patients, first, pos, y = patient_index(patient_ids, labels, classes)
    n_classes = len(classes)
    clin = None
    if clinical is not None and "fusion_images_clinical" in variants:
        frame = clinical.reset_index(drop=True).iloc[first].reset_index(drop=True)
        types = _variable_types(frame, schema)
        clin = (frame, types) if types else None
    variants = tuple(v for v in variants if v == "fusion_images" or clin is not None)
    kinds = {s.kind for s in splits}
    split_name = "external" if kinds == {"hospital"} else "test"
    block_keys = sorted({(b, m) for (b, m, _k) in embeddings})

    pred_rows, model_rows, contrib_rows = [], [], []
    for s in splits:
        fit_idx = s.val_idx if fit_on == "validation" else np.concatenate([s.train_idx, s.val_idx])
        train_p = pd.unique(ids[np.asarray(fit_idx, dtype=np.int64)])
        test_p = pd.unique(ids[np.asarray(s.test_idx, dtype=np.int64)])
        if len(test_p) == 0 or len(train_p) == 0:
            continue
        train_mask = np.zeros(len(patients), bool)
        train_mask[[pos[p] for p in train_p]] = True
        test_pos = np.array([pos[p] for p in test_p], dtype=np.int64)
        parts, widths = [], []
        for b, m in block_keys:
            if (b, m, s.fold) not in embeddings:
                raise ConfigError(f"no embeddings of {m}/{b} for fold {s.fold}")
            positions, emb = embeddings[(b, m, s.fold)]
            feats = _block_features(_patient_mean(np.asarray(positions), emb, ids), patients, train_p, n_components)
            parts.append(feats)
            widths.append(feats.shape[1])
        img = np.hstack(parts)
        cx = _clinical_features(clin[0], clin[1], train_mask) if clin is not None else None
        for v in variants:
            X = img if v == "fusion_images" else np.hstack([img, cx])
            blocks_of = {}
            start = 0
            for (b, m), w in zip(block_keys, widths):
                blocks_of.setdefault(m, []).extend(range(start, start + w))
                start += w
            if v != "fusion_images":
                blocks_of.update(source_blocks([], 0, cx.shape[1], offset=start))
            for h in heads:
                head = fit_head(X[train_mask], y[train_mask], n_classes, seed + s.fold, h)
                proba = head.predict_proba(X[test_pos])
                out = pd.DataFrame({"patient_id": patients[test_pos], "fold": s.fold, "split": split_name,
                                    "y_true": np.asarray(classes, dtype=object)[y[test_pos]],
                                    "model": EMBEDDING_MODELS[h], "modality": v})
                for k, c in enumerate(classes):
                    out[f"p_{c}"] = proba[:, k]
                pred_rows.append(out)
                if contributions:
                    contrib_rows.append(feature_block_contributions(
                        head.predict_proba, X[test_pos], X[train_mask].mean(axis=0), blocks_of, classes,
                        out[["patient_id", "fold", "split", "model", "modality"]]))
                model_rows.append({"fold": s.fold, "split": split_name, "model": EMBEDDING_MODELS[h], "modality": v,
                                   "fit_on": fit_on, "chosen": head.chosen, "n_train": int(train_mask.sum()),
                                   "n_test": int(len(test_pos)), "n_features": int(X.shape[1]),
                                   "inner_folds": head.inner_folds, "reason": head.reason})
    cols = ["patient_id", "fold", "split", "y_true", "model", "modality", *[f"p_{c}" for c in classes]]
    preds = pd.concat(pred_rows, ignore_index=True)[cols] if pred_rows else pd.DataFrame(columns=cols)
    contrib = None
    if contributions:
        contrib = (pd.concat(contrib_rows, ignore_index=True) if contrib_rows
                   else pd.DataFrame(columns=CONTRIBUTION_COLUMNS))
    return EmbeddingFusionResult(preds, pd.DataFrame(model_rows, columns=MODEL_COLUMNS), contrib)
