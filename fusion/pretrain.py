"""Supervised pre-training of a backbone on a public ultrasound image set.

``python -m fusion.pretrain`` trains a backbone on labelled public images (default: BUS-BRA,
benign / malignant, with the authors' official fold 1 as the patient-disjoint validation set
for early stopping) and writes ``pretrained_<backbone>.pt``, a checkpoint that
``python -m fusion.train --weights pretrained_<backbone>.pt`` fine-tunes from (the head is
dropped there when the number of classes differs). This is the study's "pre-train on a
public medical image set, then fine-tune" step.

Data (``--data``), read through :func:`fusion.train.load_table` -- the same readers
(:mod:`fusion.manifests`) and the same :class:`~fusion.dataset.MultimodalDataset` as
``fusion.train``:

``bus_bra``   ``<root>/bus_bra``: patient = ``Case``, label = ``Pathology``; validation =
              the authors' patient-disjoint ``5-fold-cv.csv`` fold 1.
``busi``      ``<root>/busi``: class sub-folders; BUSI has no patient ids, so the validation
              split is over images (a warning says so; the checkpoint records it).
``FOLDER``    any folder with one sub-folder per class (``ImageFolder`` layout); images are
              treated as separate patients.
``MANIFEST``  a manifest ``.yaml`` (``examples/busi_manifest.yaml``), a cohort table with
              its schema, or a ``.csv`` with columns ``path`` (relative to the csv's folder)
              and ``label``, optional ``patient_id`` and ``fold`` (fold 1 -> validation).

Without official folds the validation patients are a stratified, patient-grouped share
(``--val-fraction``) from :func:`fusion.splits.inner_validation_split`.

``<root>`` is ``--data-root``, else ``$LYMPH_SHARED_DATA``, else ``../shared/data`` relative
to the project root. The image modality pre-trained on is the table's first (``2d``).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import ConfigError, did_you_mean
from fusion import runtime
from fusion.backbones import list_backbones, resolve_backbone
from fusion.checkpoint import atomic_save, load_checkpoint, make_checkpoint, save_checkpoint
from fusion.config import PretrainConfig, resolve_config, save_config
from fusion.engine import FitOptions, ImageData, evaluate, fit, setup_training

__all__ = ["build_parser", "main", "load_pretraining_data", "pretraining_table",
           "run_pretraining"]

EPILOG = """\
examples:
  # BUS-BRA (default), ResNet18 at 64 px, a few epochs on CPU
  python -m fusion.pretrain --epochs 5 --size 64 --out runs/pretrain
  # then fine-tune on the cohort from that checkpoint
  python -m fusion.train demo_data/cohort.xlsx --weights runs/pretrain/pretrained_resnet18.pt
  # BUSI, or any folder with one sub-folder per class
  python -m fusion.pretrain --data busi --backbone densenet121 --out runs/pretrain_busi
"""


def _csv_manifest(path: Path):
    """A pre-training ``.csv`` (``path, label``, optional ``patient_id, fold``) as (table, schema)."""
    from analysis.readers import read_table
    from analysis.schema import Schema

    table = read_table(path)
    for col in ("path", "label"):
        if col not in table.columns:
            raise ConfigError(f"missing column (a pre-training manifest needs path, label; optional "
                              f"patient_id, fold){did_you_mean(col, table.columns)}", file=path, column=col)
    for col in ("path", "label"):
        bad = table[col].isna().to_numpy() | (table[col].astype(str).str.strip() == "").to_numpy()
        if bad.any():
            raise ConfigError("empty cell", file=path, row=int(table.index[np.flatnonzero(bad)[0]]), column=col)
    labels = table["label"].astype(str).str.strip()
    classes = tuple(sorted(labels.unique()))
    if len(classes) < 2:
        raise ConfigError(f"only one label ({classes[0]!r}); pre-training needs at least two", file=path,
                          column="label")
    ids = (table["patient_id"].astype(str) if "patient_id" in table.columns
           else pd.Series([f"row{r}" for r in table.index], index=table.index))
    frame = pd.DataFrame({"patient_id": ids, "group": labels, "image_2d": table["path"].astype(str)},
                         index=table.index)
    if "fold" in table.columns:
        frame["official_fold"] = table["fold"]
    frame.attrs["image_root"] = str(Path(path).resolve().parent)
    schema = Schema(id_column="patient_id", group_column="group", group_levels=classes, group_label="label",
                    variables=(), image_columns={"2d": "image_2d"}, reference_group=classes[-1])
    return frame, schema


def load_pretraining_data(data: str, root=None):
    """``(table, schema, DataSource)`` of a ``--data`` value (see the module docstring).

    ``bus_bra`` / ``busi`` / a folder / a ``.yaml`` / a cohort table go through
    :func:`fusion.train.load_table` (hence :mod:`fusion.manifests`); only the pre-training
    ``.csv`` layout (``path, label``) is read here.
    """
    from fusion.train import DataSource, load_table

    path = Path(str(data))
    if path.suffix.lower() in {".csv", ".tsv"} and path.is_file():
        head = pd.read_csv(path, nrows=0, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        if "path" in head.columns or "label" in head.columns or not (path.parent / "cohort_schema.yaml").is_file():
            table, schema = _csv_manifest(path)
            image_level = "patient_id" not in head.columns
            notes = ()
            if image_level:
                from fusion.manifests import ImageLevelWarning

                notes = (f"{path}: no patient_id column: every image is treated as its own patient, so the "
                         f"validation split is image-level",)
                warnings.warn(notes[0], ImageLevelWarning, stacklevel=2)
            source = DataSource("csv_manifest", str(path), table.attrs["image_root"],
                                "image" if image_level else "patient", len(table),
                                int(table["patient_id"].nunique()), notes)
            return table, schema, source
    try:
        return load_table(data, data_root=root)
    except ConfigError as exc:
        if "cohort file not found" in str(exc):
            raise ConfigError(f"--data {data!r}: expected bus_bra, busi, a folder of class sub-folders, a manifest "
                              f".yaml or .csv{did_you_mean(str(data), ['bus_bra', 'busi'])}") from None
        raise


def _official_fold(table) -> np.ndarray | None:
    if "official_fold" not in getattr(table, "columns", ()):
        return None
    folds = pd.to_numeric(table["official_fold"], errors="coerce")
    return folds.to_numpy() if folds.notna().all() else None


def pretraining_table(data: str, root: Path | None = None) -> tuple[pd.DataFrame, str]:
    """Rows ``path, label, patient_id, fold`` (fold NaN without official folds) and a description.

    A flat view of :func:`load_pretraining_data` (nothing is read twice or differently).
    """
    table, schema, source = load_pretraining_data(data, root)
    frame = table.data if hasattr(table, "data") else table
    base = Path(source.image_root) if source.image_root else Path(source.path).parent
    col = next(iter(schema.image_columns.values()))
    paths = [str(p if Path(p).is_absolute() else base / p) for p in frame[col].astype(str)]
    folds = _official_fold(frame)
    out = pd.DataFrame({"path": paths, "label": frame[schema.group_column].astype(str).to_numpy(),
                        "patient_id": frame[schema.id_column].astype(str).to_numpy(),
                        "fold": folds if folds is not None else np.nan})
    return out, _describe(source, folds is not None)


def _describe(source, official: bool) -> str:
    name = {"bus_bra": "BUS-BRA", "busi": "BUSI"}.get(source.kind, f"{source.kind} {source.path}")
    split = "official fold 1 = validation" if official else (
        "image-level validation split: no patient ids" if source.unit_of_analysis == "image"
        else "patient-grouped validation split")
    return f"{name} ({split})"


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The ``fusion.pretrain`` argument parser."""
    d = PretrainConfig()
    p = argparse.ArgumentParser(prog="python -m fusion.pretrain", add_help=add_help, argument_default=argparse.SUPPRESS,
                                description="Pre-train a backbone on a public ultrasound image set.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="run.yaml with any of the settings below (flags win)")
    g = p.add_argument_group("data")
    g.add_argument("--data", help=f"bus_bra, busi, FOLDER, MANIFEST.yaml or MANIFEST.csv (default: {d.data})")
    g.add_argument("--data-root", help="folder holding bus_bra/ and busi/ (default: $LYMPH_SHARED_DATA "
                                       "or ../shared/data)")
    g.add_argument("--size", type=int, help=f"image size in pixels (default: {d.size})")
    g.add_argument("--channels", type=int, choices=[1, 3], help=f"image channels (default: {d.channels})")
    g.add_argument("--val-fraction", type=float, help=f"validation share without official folds "
                                                      f"(default: {d.val_fraction})")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", "--backbones", dest="backbone", help=f"backbone (default: {d.backbone}; available: {', '.join(list_backbones())})")
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


def run_pretraining(cfg: PretrainConfig, progress: bool = True) -> list[Path]:
    """Everything ``main`` does after parsing; returns the files written."""
    from fusion import splits as sp
    from fusion.dataset import MultimodalDataset

    try:
        cfg.backbone = resolve_backbone(cfg.backbone)  # 'ViT-small' -> vit_small_patch16_224 (file names, checkpoint)
    except ConfigError as exc:
        raise ConfigError(f"--backbone: {exc}") from None
    runtime.set_threads(cfg.threads)
    device = runtime.pick_device(cfg.device)
    table, schema, data_source = load_pretraining_data(cfg.data, cfg.data_root)
    modality = next(iter(schema.image_columns))
    dataset = MultimodalDataset(table, schema, modalities=[modality], size=cfg.size,
                                channels={modality: cfg.channels}, progress=progress)
    classes = list(dataset.class_names)
    labels = dataset.labels.numpy()
    ids = np.asarray(dataset.patient_ids, dtype=object)
    folds = _official_fold(table.data if hasattr(table, "data") else table)
    if folds is not None:
        val_split = [s for s in sp.predefined_folds(folds, ids, column="official_fold")
                     if s.name in ("1", "1.0")]
        if not val_split:
            raise ConfigError(f"--data {cfg.data}: official folds present but no fold 1 for validation")
        train_idx, val_idx = val_split[0].train_idx, val_split[0].test_idx
    else:
        train_idx, val_idx = sp.inner_validation_split(np.arange(len(dataset)), ids, labels, cfg.val_fraction,
                                                       cfg.seed)
    sp.check_disjoint(ids, train=train_idx, validation=val_idx)
    source = _describe(data_source, folds is not None)
    present = dataset.mask[:, 0].numpy()
    train_idx, val_idx = train_idx[present[train_idx]], val_idx[present[val_idx]]
    images = dataset.tensors(modality)

    setup = setup_training(cfg.backbone, cfg.weights, in_chans=cfg.channels, num_classes=len(classes),
                           device=device, seed=cfg.seed, lr=cfg.lr, weight_decay=cfg.weight_decay,
                           epochs=cfg.epochs, channels_last=cfg.channels_last, augment=cfg.augment)
    model, optimizer, scheduler, generator = setup.model, setup.optimizer, setup.scheduler, setup.generator
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckdir = out / "checkpoints"
    resume = load_checkpoint(ckdir / "latest.pt") if cfg.resume and (ckdir / "latest.pt").is_file() else None
    plain = asdict(cfg)
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

    data = ImageData(images, labels, train_idx, val_idx)
    options = FitOptions(epochs=cfg.epochs, patience=cfg.patience, min_epochs=cfg.min_epochs,
                         batch_size=cfg.batch_size, amp=cfg.amp,
                         channels_last=cfg.channels_last, resume=resume)
    result = fit(setup, data, options, on_epoch_end=on_epoch_end)
    if bar is not None:
        bar.close()
    val_loss, proba = evaluate(model, data, val_idx, transform=setup.transform_eval, batch_size=cfg.batch_size,
                               device=device, amp=cfg.amp, channels_last=cfg.channels_last)
    val_acc = float((proba.argmax(1) == labels[val_idx]).mean())
    path = atomic_save({"model": runtime.unwrap(model).state_dict(), "backbone": cfg.backbone, "classes": classes,
                        "in_chans": cfg.channels, "size": cfg.size, "source": source,
                        "best_epoch": result.best_epoch, "val_loss": val_loss, "val_accuracy": val_acc,
                        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "history": result.history,
                        "data_source": data_source.to_dict(), "config": plain}, out / f"pretrained_{cfg.backbone}.pt")
    return [save_config(cfg, out / "config.yaml"), path]


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    from analysis.errors import run_cli

    def work():
        args = vars(build_parser().parse_args(argv))
        return run_pretraining(resolve_config(PretrainConfig, args.pop("config", None), args))

    return run_cli(work)


if __name__ == "__main__":
    raise SystemExit(main())
