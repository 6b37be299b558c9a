"""Does Grad-CAM look at the lesion? Share of the heat inside BUS-BRA's lesion masks vs a random map.

One ResNet-18 (no pre-training) is trained on CPU on BUS-BRA's official folds 2-5 (early
stopping on an inner validation split of those patients, :mod:`fusion.splits`) and explains
every image of official fold 1 (patients it never saw) with Grad-CAM (:mod:`fusion.gradcam`),
for the image's true class. For each image:

* ``share``      -- :func:`fusion.gradcam.cam_inside_mask`: heat inside the lesion mask / all heat;
* ``area``       -- the mask's share of the image: what a uniform (random) map would score;
* ``excess``     -- ``share - area``; ``ratio`` = ``share / area``.

Means over images with 95 % patient-level bootstrap CIs (:func:`analysis.bootstrap.cluster_bootstrap`;
BUS-BRA has several images per patient), for the default layer (``layer4``) and the finer ``layer3`` and
``layer2``, with the number of degenerate maps (:func:`fusion.gradcam.degenerate_reasons`).

    python bench/bench_gradcam_masks.py --size 64 --epochs 4 --patience 2 --out bench/results/gradcam_masks

Writes ``<out>.md`` (the table for BENCHMARKS.md), ``<out>_images.csv`` (one row per image and
layer) and ``<out>.log``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", nargs="+", default=["body.layer4", "body.layer3", "body.layer2"],
                   help="Grad-CAM layers of the ResNet-18 (default: layer4 = the registered one, layer3, layer2)")
    p.add_argument("--limit", type=int, default=None, help="explain only the first N test images (smoke test)")
    p.add_argument("--max-train", type=int, default=None,
                   help="train on only the first N training and N validation images (smoke test)")
    p.add_argument("--out", default="bench/results/gradcam_masks")
    args = p.parse_args(argv)

    from sklearn.metrics import roc_auc_score

    from analysis.bootstrap import cluster_bootstrap
    from fusion import runtime
    from fusion.dataset import MultimodalDataset
    from fusion.engine import fit, predict_proba, setup_training
    from fusion.gradcam import _grad_cam, cam_inside_mask
    from fusion.images import load_image
    from fusion.manifests import bus_bra_manifest
    from fusion.splits import Split, check_disjoint, with_inner_validation

    runtime.set_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(f"{out}.log", "w", encoding="utf-8")

    def say(msg):
        print(msg, file=sys.stderr)
        log.write(msg + "\n")
        log.flush()

    t0 = time.perf_counter()
    table, schema = bus_bra_manifest()
    ds = MultimodalDataset(table, schema, size=args.size, progress=False)
    ids = np.asarray(ds.patient_ids, dtype=object)
    y = ds.labels.numpy()
    fold = table["official_fold"].to_numpy()
    split = Split(fold=0, train_idx=np.nonzero(fold != 1)[0], val_idx=np.array([], dtype=np.int64),
                  test_idx=np.nonzero(fold == 1)[0], kind="predefined", name="official fold 1")
    (split,) = with_inner_validation([split], ids, y, 0.2, args.seed)
    check_disjoint(ids, split)
    if args.max_train is not None:
        split = Split(fold=0, train_idx=split.train_idx[: args.max_train], val_idx=split.val_idx[: args.max_train],
                      test_idx=split.test_idx, kind=split.kind, name=split.name)
    say(f"BUS-BRA {len(ds)} images, {len(set(ids))} patients; train {len(split.train_idx)}, validation "
        f"{len(split.val_idx)}, test (official fold 1) {len(split.test_idx)} images; size {args.size}; "
        f"decoded in {time.perf_counter() - t0:.0f} s")
    device = torch.device("cpu")
    setup = setup_training("resnet18", "none", in_chans=1, num_classes=len(ds.class_names), device=device,
                           seed=args.seed, lr=args.lr, weight_decay=1e-4, epochs=args.epochs, channels_last=True,
                           augment="light")
    images = ds.tensors("2d")
    t1 = time.perf_counter()
    from fusion.engine import FitOptions, ImageData

    data = ImageData(images, y, split.train_idx, split.val_idx)
    res = fit(setup, data, FitOptions(epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                                      amp=False, channels_last=True),
              on_epoch_end=lambda e, s, h: say(f"epoch {e}: train {h[-1]['train_loss']:.3f} val "
                                                f"{h[-1]['val_loss']:.3f} ({time.perf_counter() - t1:.0f} s)"))
    model = setup.model.eval()
    test = split.test_idx if args.limit is None else split.test_idx[: args.limit]
    proba = predict_proba(model, images, test, transform=setup.transform_eval, batch_size=64, device=device,
                          amp=False, channels_last=True)
    classes = list(ds.class_names)
    pos = classes.index("malignant")
    auc = roc_auc_score((y[test] == pos).astype(int), proba[:, pos])
    say(f"best epoch {res.best_epoch}; test AUC (malignant vs benign, image level) {auc:.3f}")
    root = Path(table.attrs["image_root"])
    masks = torch.stack([load_image(root / "masks" / f"mask_{table['image_id'].iloc[i].removeprefix('bus_')}.png", size=args.size,
                                    channels=1)[0] > 127 for i in test])
    rows = []
    for layer in args.layers:
        for s in range(0, len(test), 64):
            idx = test[s:s + 64]
            x = setup.transform_eval(images[torch.as_tensor(idx)])
            cams, _, reasons = _grad_cam(model, x, torch.as_tensor(y[idx]), _layer(model, layer))
            for k, i in enumerate(idx):
                m = masks[s + k]
                rows.append({"layer": layer, "patient_id": ids[i], "image_id": table["image_id"].iloc[i],
                             "true_class": classes[y[i]], "p_malignant": proba[s + k, pos],
                             "share": cam_inside_mask(cams[k], m), "area": float(m.float().mean()),
                             "degenerate": reasons[k]})
    frame = pd.DataFrame(rows)
    frame["excess"] = frame["share"] - frame["area"]
    frame["ratio"] = frame["share"] / frame["area"]
    frame.to_csv(f"{out}_images.csv", index=False)
    lines = []
    for layer, g in frame.groupby("layer", sort=False):
        ok = g.dropna(subset=["share"])
        boot = cluster_bootstrap(lambda d: {"share": d["share"].mean(), "area": d["area"].mean(),
                                            "excess": d["excess"].mean(),
                                            "above": (d["excess"] > 0).mean()},
                                 ok[["share", "area", "excess"]].reset_index(drop=True),
                                 cluster=ok["patient_id"].to_numpy(), n_boot=args.n_boot, seed=args.seed)
        est = dict(zip(boot.names, np.atleast_1d(boot.estimate)))
        lo = dict(zip(boot.names, np.atleast_1d(boot.ci_low)))
        hi = dict(zip(boot.names, np.atleast_1d(boot.ci_high)))
        cell = lambda k: f"{est[k]:.3f} ({lo[k]:.3f} to {hi[k]:.3f})"  # noqa: E731
        fh = fw = args.size // {"body.layer4": 32, "body.layer3": 16, "body.layer2": 8, "body.layer1": 4}.get(layer, 1)
        lines.append(f"| {layer} ({fh} x {fw}) | {len(ok)} ({ok['patient_id'].nunique()}) | {cell('share')} | "
                     f"{cell('area')} | {cell('excess')} | {cell('above')} | "
                     f"{int((g['degenerate'] != '').sum())} |")
    md = [f"BUS-BRA, ResNet-18 (no pre-training), {args.size} px, trained on official folds 2-5 (best epoch "
          f"{res.best_epoch} of {res.epochs_run}), explained on official fold 1 for the true class; test AUC "
          f"{auc:.3f}. Mean over images (95 % CI, patient bootstrap, {args.n_boot} resamples).", "",
          "| Grad-CAM layer (feature map) | images (patients) | heat inside mask | mask area (random map) | "
          "excess (inside - area) | share of images above random | degenerate maps |",
          "|---|---|---|---|---|---|---|", *lines, "",
          f"Wall time {time.perf_counter() - t0:.0f} s ({args.threads} thread(s)).", ""]
    Path(f"{out}.md").write_text("\n".join(md), encoding="utf-8")
    say("\n".join(md))
    log.close()
    return 0


def _layer(model, name):
    return model.get_submodule(name)


if __name__ == "__main__":
    raise SystemExit(main())
