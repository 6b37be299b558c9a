"""Each modality's CNN against the texture baseline on the same patients and folds, paired.

``python bench/bench_cnn_vs_texture.py RUN [RUN ...] [--out FILE.md]`` reads each run's
``oof_predictions.csv`` (a ``python -m fusion.train`` run with the texture baseline, on by
default) and compares, per modality, the CNN's out-of-fold macro AUC with the texture model's
(``fusion.evaluate.compare_models_delong``: DeLong per class, paired patient bootstrap for the
macro AUC). Nothing is retrained.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def compare(run, n_boot: int = 2000) -> pd.DataFrame:
    from fusion.evaluate import compare_models_delong

    run = Path(run)
    manifest = json.loads((run / "run_manifest.json").read_text())
    oof = pd.read_csv(run / "oof_predictions.csv", dtype={"patient_id": str})
    classes = [c[2:] for c in oof.columns if c.startswith("p_")]
    cnn = [m for m in oof["model"].unique() if m not in ("texture_lr",) and not str(m).startswith(("late", "emb",
                                                                                                    "joint"))]
    mods = set(manifest.get("modalities", []))

    def pairs(a, b):
        return a[1] == b[1] and a[1] in mods and {a[0], b[0]} == {cnn[0], "texture_lr"}

    table = compare_models_delong(oof, classes, n_boot=n_boot, seed=0, source=str(run), pairs=pairs)
    table = table[table["class"].fillna("").astype(str) == ""]
    rows = []
    for _, r in table.iterrows():
        cnn_first = r["model_a"] == cnn[0]
        a, b = (r["auc_a"], r["auc_b"]) if cnn_first else (r["auc_b"], r["auc_a"])
        rows.append({"run": run.name, "modality": r["modality_a"], "patients": int(r["n"]), "CNN": round(a, 3),
                     "texture": round(b, 3), "CNN - texture": round(a - b, 3), "p (paired bootstrap)": r["p_value"]})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--out")
    p.add_argument("--n-boot", type=int, default=2000)
    args = p.parse_args(argv)
    out = pd.concat([compare(r, args.n_boot) for r in args.runs], ignore_index=True)
    out["p (paired bootstrap)"] = out["p (paired bootstrap)"].map(lambda v: "<0.001" if v < 0.001 else f"{v:.2f}")
    text = out.to_markdown(index=False)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
