"""Ablation of the fusions: every modality subset x with / without clinical variables x fusion mode.

One call re-fits the second level of late fusion and the embedding-fusion heads on every
non-empty subset of the modalities, with and without the clinical block, on the same patient
folds and the same first-level CNNs (nothing is retrained, so the ablation costs seconds).
The joint network is trained once, on every source; its ablation would mean one training per
subset and is not run here (its per-patient Shapley contributions show what each source adds).

Rows use the prediction-file format with ``model`` = ``late_fusion`` / ``embedding_lr`` /
``embedding_mlp`` and ``modality`` = the subset, e.g. ``'2d+elastography+clinical'``.
:func:`ablation_table` compares each with the best single modality (paired patient bootstrap
of the macro AUC, Holm-adjusted over the whole ablation).
"""
from __future__ import annotations

import itertools

import pandas as pd

__all__ = ["subset_label", "ablation_predictions", "ablation_table"]


def subset_label(modalities, clinical: bool) -> str:
    """``'2d+cdfi'``, ``'2d+cdfi+clinical'``."""
    return "+".join([*modalities, *(["clinical"] if clinical else [])])


def ablation_predictions(oof: pd.DataFrame, classes, splits, patient_ids, labels, modalities, *, clinical=None,
                         schema=None, validation: pd.DataFrame | None = None, embeddings: dict | None = None,
                         modes=("late", "embedding"), seed: int = 0) -> pd.DataFrame:
    """Fusion predictions for every non-empty subset of ``modalities`` x (without, with) clinical.

    Parameters
    ----------
    oof : pandas.DataFrame
        First-level out-of-fold CNN predictions (rows of other models are ignored).
    classes, splits, patient_ids, labels, clinical, schema, seed
        As for :func:`fusion.late_fusion.late_fusion_predictions`.
    modalities : sequence of str
    validation : pandas.DataFrame, optional
        The CNNs' inner validation predictions (late fusion's calibration).
    embeddings : dict, optional
        ``(backbone, modality, fold) -> (positions, embeddings)`` for the embedding heads.
    modes : sequence of {'late', 'embedding'}

    Returns
    -------
    pandas.DataFrame
        Prediction rows; ``modality`` is :func:`subset_label` of the subset.
    """
    from fusion.embedding import embedding_fusion_predictions
    from fusion.late_fusion import late_fusion_predictions

    mods = list(modalities)
    first = oof[oof["modality"].isin(mods)]
    rows = []
    for r in range(1, len(mods) + 1):
        for subset in itertools.combinations(mods, r):
            sub = first[first["modality"].isin(subset)]
            if "late" in modes and len(sub):
                val = None if validation is None else validation[validation["modality"].isin(subset)]
                late = late_fusion_predictions(sub, classes, splits, patient_ids, labels, clinical=clinical,
                                               schema=schema, seed=seed, variants=("fusion_images",
                                                                                  "fusion_images_clinical"),
                                               calibration=val, contributions=False).predictions
                late["modality"] = [subset_label(subset, v == "fusion_images_clinical") for v in late["modality"]]
                rows.append(late)
            if "embedding" in modes and embeddings:
                emb = {k: v for k, v in embeddings.items() if k[1] in subset}
                if emb:
                    res = embedding_fusion_predictions(emb, classes, splits, patient_ids, labels, clinical=clinical,
                                                       schema=schema, seed=seed, contributions=False).predictions
                    res["modality"] = [subset_label(subset, v == "fusion_images_clinical") for v in res["modality"]]
                    rows.append(res)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def ablation_table(ablation: pd.DataFrame, predictions: pd.DataFrame, classes, best, *, n_boot: int = 2000,
                   seed: int = 0, digits: int = 3) -> pd.DataFrame:
    """Pooled macro AUC (95 % CI) of every ablation row and its paired test against ``best``.

    ``best`` = ``(model, modality)`` of the best single modality in ``predictions``.  The
    comparisons are :func:`fusion.evaluate.compare_models_delong` (macro AUC: paired patient
    bootstrap), with ``p_holm`` adjusted over all ablation rows of a split.
    """
    from analysis import formatting as fmt
    from fusion.evaluate import compare_models_delong, evaluate_predictions

    if ablation is None or ablation.empty:
        return pd.DataFrame()
    ref = predictions[(predictions["model"] == best[0]) & (predictions["modality"] == best[1])]
    frame = pd.concat([ablation, ref[ablation.columns.intersection(ref.columns)]], ignore_index=True)
    metrics = evaluate_predictions(ablation, classes, n_boot=n_boot, seed=seed, source="ablation")
    auc = metrics[(metrics["metric"] == "auc") & (metrics["class"].fillna("").astype(str) == "")]
    comp = compare_models_delong(frame, classes, n_boot=n_boot, seed=seed, source="ablation",
                                 pairs=lambda a, b: tuple(best) in (a, b))
    comp = comp[comp["class"].fillna("").astype(str) == ""]
    rows = []
    for r in auc.itertuples(index=False):
        hit = comp[(comp["split"] == r.split) & (((comp["model_a"] == r.model) & (comp["modality_a"] == r.modality)) |
                                                 ((comp["model_b"] == r.model) & (comp["modality_b"] == r.modality)))]
        sign = 1.0 if len(hit) and hit["model_a"].iloc[0] == r.model and hit["modality_a"].iloc[0] == r.modality \
            else -1.0
        sources = r.modality.split("+")
        rows.append({"Fusion": r.model, "Modalities": "+".join(s for s in sources if s != "clinical"),
                     "Clinical": "yes" if "clinical" in sources else "no", "Split": r.split,
                     "Patients": int(r.n_patients),
                     "Macro AUC (95% CI)": fmt.format_effect_size(r.estimate, r.ci_low, r.ci_high, digits=digits),
                     f"Difference vs {best[0]}/{best[1]}": (fmt.format_number(sign * hit["difference"].iloc[0], digits)
                                                           if len(hit) else ""),
                     "p": fmt.format_p(hit["p_value"].iloc[0]) if len(hit) else "",
                     "p (Holm)": fmt.format_p(hit["p_holm"].iloc[0]) if len(hit) else "",
                     "_n": len([x for x in sources if x != "clinical"]), "_e": float(r.estimate)})
    table = pd.DataFrame(rows).sort_values(["Split", "Fusion", "_n", "Modalities", "Clinical"], kind="stable")
    return table.drop(columns=["_n", "_e"]).reset_index(drop=True)
