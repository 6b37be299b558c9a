"""Fusion diagnostics on a finished ``fusion.train`` run (no CNN is retrained).

    python bench/bench_fusion.py RUN_DIR [--n-boot 500] [--out bench/results/fusion_<name>.md]

Reports, on the run's own folds and first-level CNNs:

1. Late fusion's cross-fold calibration drift: pooled out-of-fold macro AUC against the
   per-fold AUCs, without and with each fold CNN's temperature scaling on its inner
   validation patients (:func:`fusion.late_fusion.calibrate_first_level`).
2. The embedding head's optimism: fitted on the inner validation patients' embeddings (the
   default) against the naive head fitted on the training patients' embeddings.
3. Wall time of each stage (``run_manifest.json`` ``timings_s``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def _auc_rows(preds, classes, n_boot, label):
    from fusion.evaluate import evaluate_by_fold, evaluate_predictions

    m = evaluate_predictions(preds, classes, n_boot=n_boot, seed=0)
    f = evaluate_by_fold(preds, classes, n_boot=0, seed=0, splits=("test", "external"))
    rows = []
    for (model, modality), g in m[(m["metric"] == "auc") & (m["class"].fillna("") == "")].groupby(
            ["model", "modality"], sort=False):
        r = g.iloc[0]
        per = f[(f["model"] == model) & (f["modality"] == modality) & (f["metric"] == "auc") &
                (f["class"].fillna("") == "")]["estimate"]
        rows.append({"variant": label, "model": model, "modality": modality,
                     "pooled AUC (95% CI)": f"{r.estimate:.3f} ({r.ci_low:.3f}-{r.ci_high:.3f})",
                     "per-fold AUC min-max": f"{per.min():.3f}-{per.max():.3f}" if len(per) else "",
                     "pooled below every fold": bool(len(per) and r.estimate < per.min())})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--n-boot", type=int, default=500)
    p.add_argument("--out")
    args = p.parse_args(argv)
    run = Path(args.run)

    from fusion.api import make_config
    from fusion.config import load_yaml_config, TrainConfig
    from fusion.embedding import embedding_fusion_predictions, load_run_embeddings
    from fusion.late_fusion import late_fusion_predictions
    from fusion.splits import make_splits
    from fusion.train import load_dataset

    cfg = make_config(config=load_yaml_config(run / "config.yaml", TrainConfig))
    manifest = json.loads((run / "run_manifest.json").read_text())
    dataset, _ = load_dataset(cfg, progress=False)
    classes = list(dataset.class_names)
    labels = dataset.labels.numpy()
    folds, _ = make_splits(cfg, dataset.patient_ids, labels, dataset.hospital)
    oof = pd.read_csv(run / "oof_predictions.csv", dtype={"patient_id": str})
    cnn = oof[oof["model"].isin(cfg.backbones)]
    val = pd.read_csv(run / "validation_predictions.csv", dtype={"patient_id": str})
    kw = dict(clinical=dataset.clinical, schema=dataset.schema, seed=cfg.seed, contributions=False)
    rows = _auc_rows(cnn, classes, args.n_boot, "CNN (as trained)")
    raw = late_fusion_predictions(cnn, classes, folds, dataset.patient_ids, labels, **kw).predictions
    cal = late_fusion_predictions(cnn, classes, folds, dataset.patient_ids, labels, calibration=val, **kw).predictions
    rows += _auc_rows(raw, classes, args.n_boot, "late fusion, uncalibrated first level")
    rows += _auc_rows(cal, classes, args.n_boot, "late fusion, temperature-scaled first level (default)")
    emb = load_run_embeddings(run / "checkpoints", [s.fold for s in folds], dataset.modalities, cfg.backbones)
    for fit_on in ("validation", "training"):
        res = embedding_fusion_predictions(emb, classes, folds, dataset.patient_ids, labels, fit_on=fit_on,
                                           clinical=dataset.clinical, schema=dataset.schema, seed=cfg.seed,
                                           contributions=False)
        rows += _auc_rows(res.predictions, classes, args.n_boot, f"embedding head fitted on {fit_on} patients")
    table = pd.DataFrame(rows)
    lines = [f"# Fusion diagnostics: {run}", "",
             f"{manifest.get('n_patients')} patients, modalities {', '.join(manifest.get('modalities', []))}, "
             f"{len(folds)} folds; pooled CIs from {args.n_boot} patient bootstrap resamples.", "",
             "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in table.itertuples(index=False)]
    timings = manifest.get("timings_s")
    if timings:
        lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
