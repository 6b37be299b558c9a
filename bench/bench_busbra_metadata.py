"""BUS-BRA: which metadata carries the 'metadata-only' AUC, on the folds of a finished run.

BUS-BRA's metadata are BI-RADS, the scanner (``device``) and the breast side. BI-RADS is the
radiologist's reading of the same image, graded by suspicion of malignancy, so a "metadata only"
model that includes it is largely a model of the radiologist. This script refits the late
fusion's second level (``fusion.late_fusion.late_fusion_predictions``: the same folds, the same
inner CV, the CNN probabilities of the run, temperature-scaled on each fold's inner validation
patients) with three clinical blocks -- all metadata, without BI-RADS, BI-RADS alone -- and
reports each model's out-of-fold AUC with its patient-level bootstrap CI.

No CNN is trained here: it reads ``oof_predictions.csv``, ``validation_predictions.csv`` and
``config.yaml`` of a run of::

    python -m fusion.train bus_bra --fold-column official_fold --fusion late embedding joint --out RUN

Usage: ``python bench/bench_busbra_metadata.py RUN [--out bench/results/busbra_metadata.md]``
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion.config import TrainConfig  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="output folder of python -m fusion.train bus_bra --fold-column official_fold ...")
    p.add_argument("--out", default="bench/results/busbra_metadata.md")
    p.add_argument("--n-boot", type=int, default=2000)
    args = p.parse_args(argv)

    from fusion.config import resolve_config
    from fusion.evaluate import evaluate_predictions
    from fusion.late_fusion import late_fusion_predictions
    from fusion.manifests import bus_bra_manifest
    from fusion.splits import make_splits

    run = Path(args.run)
    cfg = resolve_config(TrainConfig, run / "config.yaml")
    table, schema = bus_bra_manifest()
    classes = list(schema.group_levels)
    ids = table["patient_id"].astype(str).to_numpy(dtype=object)
    labels = table["group"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    folds, _ = make_splits(cfg, ids, labels, None, table[cfg.fold_column].to_numpy(dtype=object))
    oof = pd.read_csv(run / "oof_predictions.csv", dtype={"patient_id": str})
    oof = oof[oof["model"] == cfg.backbones[0]]
    val = pd.read_csv(run / "validation_predictions.csv", dtype={"patient_id": str})
    blocks = {"BI-RADS + device + side": ["birads", "device", "side"], "device + side (no BI-RADS)": ["device", "side"],
              "BI-RADS only": ["birads"]}
    rows = []
    for name, cols in blocks.items():
        clinical = table[cols].reset_index(drop=True)
        res = late_fusion_predictions(oof, classes, folds, ids, labels, clinical=clinical, schema=schema,
                                      seed=cfg.seed, calibration=val, contributions=False)
        preds = res.predictions
        m = evaluate_predictions(preds, classes, n_boot=args.n_boot, seed=cfg.seed, source=name)
        auc = m[(m["metric"] == "auc") & (m["class"].fillna("").astype(str) == "")]
        for _, r in auc.iterrows():
            variant = {"clinical_only": "metadata only", "fusion_images_clinical": "CNN + metadata",
                       "fusion_images": "CNN only (stacked)"}.get(r["modality"], r["modality"])
            rows.append({"metadata block": name, "model": variant, "patients": int(r["n_patients"]),
                         "AUC (95% CI)": f"{r['estimate']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})"})
    out = pd.DataFrame(rows).drop_duplicates(subset=["model", "AUC (95% CI)"])
    text = ("Out-of-fold AUC (BUS-BRA official 5 folds, benign / malignant, patient-level bootstrap "
            f"{args.n_boot} resamples) of the late fusion's second level with three metadata blocks; run: "
            f"`{run}`.\n\n" + out.to_markdown(index=False) + "\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
