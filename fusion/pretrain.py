"""Supervised pre-training of a backbone on a public ultrasound image set.

``python -m fusion.pretrain`` trains a backbone on labelled public images (default: BUS-BRA,
benign / malignant, with the authors' official fold 1 as the patient-disjoint validation set
for early stopping) and writes ``pretrained_<backbone>.pt``, a checkpoint that
``python -m fusion.train --weights pretrained_<backbone>.pt`` fine-tunes from (the head is
dropped there when the number of classes differs). This is the study's "pre-train on a
public medical image set, then fine-tune" step.

Data (``--data``):

``bus_bra``   ``<root>/bus_bra``: ``bus_data.csv`` (patient = ``Case``, label = ``Pathology``),
              images ``images/<ID>.png``, validation = official ``5-fold-cv.csv`` fold 1.
``busi``      ``<root>/busi``: class sub-folders ``benign/ malignant/ normal/``; BUSI has no
              patient ids, so the validation split is over images (as its documentation says).
``FOLDER``    any folder with one sub-folder per class (``ImageFolder`` layout); images are
              treated as separate patients.
``MANIFEST``  a ``.csv`` with columns ``path`` (relative to the csv's folder) and ``label``,
              optional ``patient_id`` and ``fold`` (fold 1 -> validation when present).

``<root>`` is ``--data-root``, else ``$LYMPH_SHARED_DATA``, else ``../shared/data`` relative
to the project root.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.errors import CohortError, ConfigError, did_you_mean
from fusion import runtime
from fusion.backbones import create_backbone, list_backbones
from fusion.checkpoint import atomic_save, load_checkpoint, make_checkpoint, save_checkpoint
from fusion.config import PretrainConfig, resolve_config, save_config
from fusion.engine import evaluate, fit

__all__ = ["build_parser", "main", "default_data_root", "pretraining_table", "run_pretraining"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

EPILOG = """\
examples:
  # BUS-BRA (default), ResNet18 at 64 px, a few epochs on CPU
  python -m fusion.pretrain --epochs 5 --size 64 --out runs/pretrain
  # then fine-tune on the cohort from that checkpoint
  python -m fusion.train demo_data/cohort.xlsx --weights runs/pretrain/pretrained_resnet18.pt
  # BUSI, or any folder with one sub-folder per class
  python -m fusion.pretrain --data busi --backbone densenet121 --out runs/pretrain_busi
"""


def default_data_root() -> Path:
    """``$LYMPH_SHARED_DATA`` or ``<project>/../shared/data``."""
    env = os.environ.get("LYMPH_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _folder_table(folder: Path) -> pd.DataFrame:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = []
    for c in classes:
        for f in sorted((folder / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES and "_mask" not in f.stem:
                rows.append({"path": str(f), "label": c, "patient_id": f"{c}/{f.name}"})
    if len(classes) < 2 or not rows:
        raise ConfigError(f"--data {folder}: expected one sub-folder of images per class (found "
                          f"{len(classes)} class folder(s), {len(rows)} image(s))")
    return pd.DataFrame(rows)


def pretraining_table(data: str, root: Path | None = None) -> tuple[pd.DataFrame, str]:
    """Rows ``path, label, patient_id, fold`` (fold may be NaN) and a description of the source."""
    root = Path(root) if root else default_data_root()
    if data == "bus_bra":
        base = root / "bus_bra"
        meta, folds = base / "bus_data.csv", base / "5-fold-cv.csv"
        for f in (meta, folds):
            if not f.is_file():
                raise ConfigError(f"--data bus_bra: {f} not found (set --data-root or LYMPH_SHARED_DATA)")
        table = pd.read_csv(meta)
        official = pd.read_csv(folds)[["ID", "kFold"]]
        table = table.merge(official, on="ID", how="left", validate="one_to_one")
        if table["kFold"].isna().any():
            row = int(np.flatnonzero(table["kFold"].isna().to_numpy())[0]) + 2
            raise ConfigError("image without an official fold", file=meta, row=row, column="ID")
        out = pd.DataFrame({"path": [str(base / "images" / f"{i}.png") for i in table["ID"]],
                            "label": table["Pathology"].astype(str), "patient_id": table["Case"].astype(str),
                            "fold": table["kFold"].astype(int)})
        return out, "BUS-BRA (official fold 1 = validation)"
    if data == "busi":
        base = root / "busi"
        if not base.is_dir():
            raise ConfigError(f"--data busi: {base} not found (set --data-root or LYMPH_SHARED_DATA)")
        out = _folder_table(base)
        out["fold"] = np.nan
        return out, "BUSI (image-level validation split: no patient ids)"
    path = Path(data)
    if path.is_dir():
        out = _folder_table(path)
        out["fold"] = np.nan
        return out, f"folder {path}"
    if path.is_file() and path.suffix.lower() in {".csv", ".tsv"}:
        table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        for col in ("path", "label"):
            if col not in table.columns:
                raise ConfigError(f"missing column (a pre-training manifest needs path, label; optional "
                                  f"patient_id, fold){did_you_mean(col, table.columns)}", file=path, column=col)
        for col in ("path", "label"):
            bad = table[col].isna().to_numpy()
            if bad.any():
                raise ConfigError("empty cell", file=path, row=int(np.flatnonzero(bad)[0]) + 2, column=col)
        out = pd.DataFrame({"path": [str(p if Path(p).is_absolute() else path.parent / p) for p in table["path"]],
                            "label": table["label"].astype(str)})
        out["patient_id"] = (table["patient_id"].astype(str) if "patient_id" in table.columns
                             else [f"row{r + 2}" for r in range(len(table))])
        out["fold"] = table["fold"] if "fold" in table.columns else np.nan
        return out, f"manifest {path}"
    raise ConfigError(f"--data {data!r}: expected bus_bra, busi, a folder of class sub-folders or a .csv manifest"
                      f"{did_you_mean(data, ['bus_bra', 'busi'])}")


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The ``fusion.pretrain`` argument parser."""
    d = PretrainConfig()
    p = argparse.ArgumentParser(prog="python -m fusion.pretrain", add_help=add_help, argument_default=argparse.SUPPRESS,
                                description="Pre-train a backbone on a public ultrasound image set.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="run.yaml with any of the settings below (flags win)")
    g = p.add_argument_group("data")
    g.add_argument("--data", help=f"bus_bra, busi, FOLDER or MANIFEST.csv (default: {d.data})")
    g.add_argument("--data-root", help="folder holding bus_bra/ and busi/ (default: $LYMPH_SHARED_DATA "
                                       "or ../shared/data)")
    g.add_argument("--size", type=int, help=f"image size in pixels (default: {d.size})")
    g.add_argument("--channels", type=int, choices=[1, 3], help=f"image channels (default: {d.channels})")
    g.add_argument("--val-fraction", type=float, help=f"validation share without official folds "
                                                      f"(default: {d.val_fraction})")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", help=f"backbone (default: {d.backbone}; available: {', '.join(list_backbones())})")
    g.add_argument("--weights", help="initial weights: none, imagenet or a file (default: none)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help=f"maximum epochs (default: {d.epochs})")
    g.add_argument("--patience", type=int, help=f"early-stopping patience (default: {d.patience})")
    g.add_argument("--batch-size", type=int, help=f"batch size (default: {d.batch_size})")
    g.add_argument("--lr", type=float, help=f"AdamW learning rate (default: {d.lr})")
    g.add_argument("--augment", help=f"light, study or none (default: {d.augment})")
    g = p.add_argument_group("run")
    g.add_argument("--out", help=f"output folder (default: {d.out})")
    g.add_argument("--seed", type=int, help=f"random seed (default: {d.seed})")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--threads", type=int, help="CPU threads (default: 1)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, help="bf16 autocast (default: on for CUDA)")
    g.add_argument("--resume", action="store_true", help="continue from --out/checkpoints/latest.pt")
    return p


def _decode(table: pd.DataFrame, size: int, channels: int, progress: bool) -> torch.Tensor:
    from fusion.cache import load_image_cached

    images = torch.zeros((len(table), channels, size, size), dtype=torch.uint8)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(table), desc="decoding images", unit="img", file=sys.stderr, leave=False)
    for i, (path, pid) in enumerate(zip(table["path"], table["patient_id"])):
        images[i] = load_image_cached(path, size=size, channels=channels, patient_id=pid)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return images


def run_pretraining(cfg: PretrainConfig, progress: bool = True) -> list[Path]:
    """Everything ``main`` does after parsing; returns the files written."""
    from fusion import splits as sp
    from fusion.transforms import build_transform

    if cfg.backbone not in list_backbones():
        raise ConfigError(f"--backbone: unknown backbone {cfg.backbone!r}{did_you_mean(cfg.backbone, list_backbones())}")
    runtime.set_threads(cfg.threads)
    device = runtime.pick_device(cfg.device)
    table, source = pretraining_table(cfg.data, cfg.data_root)
    classes = sorted(table["label"].unique())
    labels = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    ids = table["patient_id"].to_numpy(dtype=object)
    if table["fold"].notna().all():
        val_split = [s for s in sp.predefined_folds(table["fold"].to_numpy(), ids, column="fold")
                     if s.name in ("1", "1.0")][0]
        train_idx, val_idx = val_split.train_idx, val_split.test_idx
    else:
        train_idx, val_idx = sp.inner_validation_split(np.arange(len(table)), ids, labels, cfg.val_fraction, cfg.seed)
    sp.check_disjoint(ids, train=train_idx, validation=val_idx)
    images = _decode(table, cfg.size, cfg.channels, progress)

    runtime.set_seed(cfg.seed)
    model = create_backbone(cfg.backbone, cfg.weights, in_chans=cfg.channels, num_classes=len(classes)).to(device)
    if cfg.channels_last:
        model = runtime.to_channels_last(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckdir = out / "checkpoints"
    resume = load_checkpoint(ckdir / "latest.pt") if cfg.resume and (ckdir / "latest.pt").is_file() else None
    plain = asdict(cfg)
    t_train = build_transform(cfg.augment, train=True, channels=cfg.channels)
    t_eval = build_transform("none", train=False, channels=cfg.channels)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, desc=f"pretrain {cfg.backbone}", unit="epoch", file=sys.stderr, leave=False)

    def on_epoch_end(epoch, stopper, history):
        save_checkpoint(make_checkpoint(model, optimizer, scheduler, None, epoch=epoch, best_metric=stopper.best_loss,
                                        early_stopping=stopper.state_dict(), config=plain, generator=generator,
                                        history=history, backbone=cfg.backbone, classes=classes), ckdir)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(train=f"{history[-1]['train_loss']:.3f}", val=f"{history[-1]['val_loss']:.3f}")

    result = fit(model, optimizer, scheduler, images, labels, train_idx, val_idx, epochs=cfg.epochs,
                 patience=cfg.patience, transform_train=t_train, transform_eval=t_eval, batch_size=cfg.batch_size,
                 device=device, generator=generator, amp=cfg.amp, channels_last=cfg.channels_last,
                 resume=resume, on_epoch_end=on_epoch_end)
    if bar is not None:
        bar.close()
    val_loss, proba = evaluate(model, images, labels, val_idx, transform=t_eval, batch_size=cfg.batch_size,
                               device=device, amp=cfg.amp, channels_last=cfg.channels_last)
    val_acc = float((proba.argmax(1) == labels[val_idx]).mean())
    path = atomic_save({"model": runtime.unwrap(model).state_dict(), "backbone": cfg.backbone, "classes": classes,
                        "in_chans": cfg.channels, "size": cfg.size, "source": source,
                        "best_epoch": result.best_epoch, "val_loss": val_loss, "val_accuracy": val_acc,
                        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "history": result.history,
                        "config": plain}, out / f"pretrained_{cfg.backbone}.pt")
    return [save_config(cfg, out / "config.yaml"), path]


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    try:
        args = vars(build_parser().parse_args(argv))
        cfg = resolve_config(PretrainConfig, args.pop("config", None), args)
        written = run_pretraining(cfg)
    except CohortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("wrote: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
