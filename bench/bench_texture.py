"""Classical texture baseline (fusion.texture) on the demo cohort and on BUS-BRA: time and macro AUC.

What the hand-crafted baseline of issue 8 reaches, per modality, on the folds the CNNs use:

* **demo**: the 586-patient simulated cohort with its synthetic B-mode / CDFI / elastography
  images (``python -m analysis.simulate`` + ``python -m fusion.synthetic``; made in
  ``--demo-dir`` when missing), loaded by :func:`fusion.train.load_dataset` at ``--size`` and
  split by :func:`fusion.train.make_splits` with the default :class:`fusion.config.TrainConfig`
  (5-fold patient-grouped stratified CV, inner validation 0.2, seed 0) -- the CNN's folds;
* **bus_bra**: BUS-BRA (1875 images, 1064 patients, benign / malignant;
  :func:`fusion.manifests.bus_bra_manifest`), the authors' official patient-disjoint 5 folds
  (``official_fold``, :func:`fusion.splits.predefined_folds`).

For each: :func:`fusion.texture.texture_features` time per modality (all images, one process),
the whole :func:`fusion.texture.texture_baseline` time (features + per-fold inner CV + fits),
and out-of-fold macro one-vs-rest AUC with patient-level percentile bootstrap 95 % CIs
(:func:`fusion.evaluate.evaluate_predictions`) pooled over the folds, plus the per-fold AUCs
(:func:`fusion.evaluate.evaluate_by_fold`).  Nothing is tuned: feature settings are the
module's defaults (32 grey levels, distances 1 and 2, trimmed black border) and ``C`` is
chosen inside each fold's training patients.

Run (CPU; the threads are limited to 1 unless ``--threads`` says otherwise)::

    python bench/bench_texture.py                      # demo + BUS-BRA, 64 px
    python bench/bench_texture.py --data demo --size 128
    python bench/bench_texture.py --data bus_bra --data-root ../shared/data

Writes ``--report`` (markdown, default ``bench/results/texture.md``) and beside it
``<stem>_metrics.csv``, ``<stem>_by_fold.csv``, ``<stem>_models.csv`` and
``<stem>_predictions.csv``.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Texture-feature baseline: feature time and macro AUC per modality.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python bench/bench_texture.py\n"
                                       "  python bench/bench_texture.py --data demo --size 128\n")
    p.add_argument("--data", choices=("demo", "bus_bra", "both"), default="both", help="data sets (default: both)")
    p.add_argument("--size", type=int, default=64, help="stored image size in pixels (default: 64)")
    p.add_argument("--demo-dir", default="/tmp/texture_demo",
                   help="demo cohort folder, made when missing (default: /tmp/texture_demo)")
    p.add_argument("--data-root", default=None, help="folder holding bus_bra/ (default: $LYMPH_SHARED_DATA or "
                                                     "../shared/data)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the CIs (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inner CV and the bootstrap (default: 0)")
    p.add_argument("--threads", type=int, default=1, help="torch / BLAS threads (default: 1)")
    p.add_argument("--report", default=str(REPO / "bench" / "results" / "texture.md"),
                   help="markdown report (default: bench/results/texture.md)")
    return p


def _demo(args):
    from fusion.config import TrainConfig
    from fusion.train import load_dataset, make_splits

    folder = Path(args.demo_dir)
    cohort = folder / "cohort.xlsx"
    if not cohort.is_file():
        subprocess.run([sys.executable, "-m", "analysis.simulate", "--out", str(folder)], check=True)
        subprocess.run([sys.executable, "-m", "fusion.synthetic", str(cohort)], check=True)
    cfg = TrainConfig(cohort=str(cohort), size=args.size)
    t0 = time.perf_counter()
    dataset, _ = load_dataset(cfg, progress=False)
    t_load = time.perf_counter() - t0
    splits, holdout = make_splits(cfg, dataset.patient_ids, dataset.labels.numpy(), dataset.hospital)
    assert holdout is None
    return dataset, splits, t_load, ("5-fold patient-grouped stratified CV of `fusion.train` (default TrainConfig: "
                                     "seed 0, inner validation 0.2)")


def _bus_bra(args):
    from fusion.dataset import MultimodalDataset
    from fusion.manifests import bus_bra_manifest
    from fusion.splits import predefined_folds

    root = None if args.data_root is None else Path(args.data_root) / "bus_bra"
    table, schema = bus_bra_manifest(root)
    t0 = time.perf_counter()
    dataset = MultimodalDataset(table, schema, size=args.size, progress=False)
    t_load = time.perf_counter() - t0
    splits = predefined_folds(table["official_fold"].to_numpy(), dataset.patient_ids, column="official_fold")
    return dataset, splits, t_load, "the authors' official patient-disjoint 5 folds (`official_fold`)"


def _run(name, args):
    import numpy as np

    from fusion.evaluate import evaluate_by_fold, evaluate_predictions
    from fusion.texture import texture_baseline, texture_features

    dataset, splits, t_load, split_text = _demo(args) if name == "demo" else _bus_bra(args)
    classes = list(dataset.class_names)
    timing = []
    for j, m in enumerate(dataset.modalities):
        rows = np.flatnonzero(dataset.mask[:, j].numpy())
        images = dataset.tensors(m).numpy()[rows]
        texture_features(images[:2])  # imports, first-call overhead
        t0, c0 = time.perf_counter(), time.process_time()
        feats = texture_features(images)
        timing.append({"modality": m, "images": len(rows), "channels": int(images.shape[1]),
                       "features": feats.shape[1], "seconds": time.perf_counter() - t0,
                       "cpu_seconds": time.process_time() - c0})
    t0, c0 = time.perf_counter(), time.process_time()
    result = texture_baseline(dataset, splits, seed=args.seed)
    t_total, cpu_total = time.perf_counter() - t0, time.process_time() - c0
    preds = result.predictions
    metrics = evaluate_predictions(preds, classes, n_boot=args.n_boot, seed=args.seed)
    by_fold = evaluate_by_fold(preds, classes, n_boot=0, seed=args.seed, splits=("test", "external"))
    for frame in (metrics, by_fold, result.models, preds):
        frame.insert(0, "data", name)
    info = {"name": name, "n_rows": len(dataset), "n_patients": len(set(dataset.patient_ids)), "classes": classes,
            "t_load": t_load, "t_total": t_total, "cpu_total": cpu_total, "splits": split_text, "n_folds": len(splits)}
    return info, timing, metrics, by_fold, result.models, preds


def _report(runs, args) -> str:
    lines = ["# Texture-feature baseline (fusion.texture)", "",
             f"Command: `python bench/bench_texture.py --data {args.data} --size {args.size}` "
             f"(threads {args.threads}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
             "shared with other jobs).", ""]
    for info, timing, metrics, by_fold, models, _ in runs:
        lines += [f"## {info['name']}: {info['n_rows']} images, {info['n_patients']} patients, classes "
                  f"{', '.join(info['classes'])}", "",
                  f"Images decoded and resized to {args.size} px in {info['t_load']:.1f} s; folds: {info['splits']}.",
                  f"Whole baseline (features of every modality + {info['n_folds']} folds x inner CV x logistic "
                  f"regressions): {info['t_total']:.1f} s wall, {info['cpu_total']:.1f} s CPU.", "",
                  "| modality | images | channels | features | feature time, wall (s) | CPU (s) | CPU ms / image |",
                  "|---|---|---|---|---|---|---|"]
        for t in timing:
            lines.append(f"| {t['modality']} | {t['images']} | {t['channels']} | {t['features']} | {t['seconds']:.2f} "
                         f"| {t['cpu_seconds']:.2f} | {1000 * t['cpu_seconds'] / max(t['images'], 1):.2f} |")
        auc = metrics[(metrics["metric"] == "auc") & (metrics["class"] == "")]
        fold_auc = by_fold[(by_fold["metric"] == "auc") & (by_fold["class"] == "")]
        lines += ["", "| modality | patients | macro AUC (95% CI, patient-level bootstrap) | per-fold AUC (min-max) "
                  "| C chosen per fold |", "|---|---|---|---|---|"]
        for _, r in auc.iterrows():
            f = fold_auc[fold_auc["modality"] == r["modality"]]["estimate"]
            cs = models[models["modality"] == r["modality"]]["c"]
            lines.append(f"| {r['modality']} | {int(r['n_patients'])} | {r['estimate']:.3f} ({r['ci_low']:.3f}-"
                         f"{r['ci_high']:.3f}) | {f.min():.3f}-{f.max():.3f} | "
                         f"{', '.join(f'{c:g}' for c in cs)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    names = ("demo", "bus_bra") if args.data == "both" else (args.data,)
    runs = [_run(n, args) for n in names]
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    text = _report(runs, args)
    report.write_text(text + "\n")
    stem = report.with_suffix("")
    written = [report]
    for k, suffix in ((2, "metrics"), (3, "by_fold"), (4, "models"), (5, "predictions")):
        path = Path(f"{stem}_{suffix}.csv")
        pd.concat([r[k] for r in runs], ignore_index=True).to_csv(path, index=False)
        written.append(path)
    print(text)
    print("wrote: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
