"""Train one CNN per modality x backbone with patient-grouped, stratified cross-validation.

``python -m fusion.train COHORT`` reads the cohort table (+ schema), decodes every image once
(:class:`fusion.dataset.MultimodalDataset`), makes patient-level folds
(:mod:`fusion.splits`, the only place splits are made), and for every modality x backbone x
fold trains on the fold's training patients, early-stops on an inner validation split carved
from those training patients only, then predicts the fold's test patients (out-of-fold).
Optionally a held-out test set (a hospital, or a random share of patients) is predicted by
the mean of the fold models, or each hospital is left out in turn (external validation).

Data (``COHORT``): a cohort table (``.xlsx``/``.csv`` + ``cohort_schema.yaml``, one row per
patient), or a public set through :mod:`fusion.manifests` -- ``busi``, ``bus_bra``, a manifest
YAML such as ``examples/busi_manifest.yaml``, or a folder with one sub-folder of images per
class. :func:`load_table` is where that choice is made; from there on a public set takes
exactly the cohort's path (dataset, splits, training, evaluation). BUS-BRA has several images
per patient (``Case``): they stay on one side of every split and the bootstrap resamples them
together. BUSI and image folders have no patient ids: every image is its own patient, so the
cross-validation is **image-level** (BUSI: about one image in five has a near-duplicate, so
the estimates are optimistic); a warning says so and ``run_manifest.json`` records it
(``data_source.unit_of_analysis = 'image'``).

Outputs in ``--out``: ``oof_predictions.csv``, ``metrics.csv`` (patient-level bootstrap CIs
through :func:`fusion.evaluate.evaluate_predictions`; with ``--external-hospital`` the
``'external'`` rows pool every held-out hospital), ``metrics_by_fold.csv`` (``--external-hospital``
only: the same metrics for each held-out hospital, columns ``fold`` and ``held_out`` (the
hospital's name), :func:`fusion.evaluate.evaluate_by_fold`), ``checkpoints/<modality>/<backbone>/
fold<k>/`` (``latest.pt`` rolling, ``model.pt`` final best-epoch weights, ``predictions.csv``),
``run_manifest.json`` (resolved config, seed, versions, git commit, data hashes) and
``config.yaml``. With ``--late-fusion`` (k-fold or ``--external-hospital``), stacked fusion rows
(``model = 'late_fusion'``, :mod:`fusion.late_fusion`, fitted over the same patient folds) are
appended to ``oof_predictions.csv`` before the metrics, and ``late_fusion_comparison.csv``
(paired DeLong / bootstrap tests of each fusion variant against each single modality on the
patients common to both, raw and Holm-adjusted p-values) and ``late_fusion_models.csv`` (chosen
``C`` per fold) are written. With ``--nested-fusion`` as well,
the first level is re-run inside every outer fold's training patients (an inner k-fold, or
leave-one-of-the-other-hospitals-out; checkpoints in ``fold<k>/inner<j>/``) and the second level
of fold ``k`` is trained on those inner out-of-fold predictions (``nested_predictions.csv``), so
no model fitted for fold ``k`` has seen one of its test patients (see :mod:`fusion.late_fusion`).
``--resume`` continues a killed run from the latest checkpoints and skips finished models; on CPU
it reaches exactly the predictions of an uninterrupted run.
"""
from __future__ import annotations

import argparse
import sys
import warnings
import zlib
from dataclasses import dataclass
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.errors import CohortError, ConfigError, did_you_mean
from analysis.schema import image_column_map
from fusion import runtime
from fusion.backbones import list_backbones, resolve_backbone
from fusion.checkpoint import atomic_save, completion_marker, load_checkpoint, make_checkpoint, save_checkpoint
from fusion.config import TrainConfig, resolve_config
from fusion.engine import FitOptions, ImageData, balanced_class_weights, fit, predict_proba, setup_training
from fusion.provenance import run_manifest  # noqa: F401 - re-exported
from fusion.splits import make_splits, nested_splits  # noqa: F401 - re-exported

__all__ = ["build_parser", "main", "run_training", "load_table", "load_dataset", "make_splits", "DataSource",
           "PUBLIC_SETS"]

#: ``split`` of the inner validation patients' rows (``validation_predictions.csv``).
VALIDATION_SPLIT = "validation"
#: Names accepted in place of a cohort file (read by :mod:`fusion.manifests`).
PUBLIC_SETS = ("busi", "bus_bra")
_MANIFEST_SUFFIXES = (".yaml", ".yml")

EPILOG = """\
examples:
  # demo: three single-modality ResNet18s on the synthetic cohort (CPU, a few minutes)
  python -m fusion.train demo_data/cohort.xlsx --folds 3 --epochs 4 --size 64 --out runs/demo
  # the study's design, honestly evaluated: its four backbones on elastography, ImageNet weights
  # (needs internet once; offline, the error says how to save them to a file for --weights FILE)
  python -m fusion.train demo_data/cohort.xlsx --modalities elastography \\
      --backbones resnet18 efficientnet_b7 convnext_tiny vit_small --weights imagenet
  # a cohort with its own column names and no schema file (types inferred from the table)
  python -m fusion.train my_cohort.csv --group Diagnosis --id-column PatientID --hospital-column Hospital \\
      --image-column bmode=Bmode_file --image-column cdfi=Doppler_file --image-column elastography=Elasto_file
  # fine-tune from a checkpoint of python -m fusion.pretrain (same backbone)
  python -m fusion.train demo_data/cohort.xlsx --weights runs/pretrain/pretrained_resnet18.pt
  # external validation on a held-out hospital; resume after a kill
  python -m fusion.train demo_data/cohort.xlsx --holdout-hospital "Hospital C" --out runs/ext --resume
  # public data through the same path: BUSI three-class (image-level CV), BUS-BRA (grouped by Case)
  python -m fusion.train busi --folds 5 --size 64 --out runs/busi
  python -m fusion.train examples/bus_bra_manifest.yaml --size 64 --out runs/bus_bra
  # two CPU processes (DDP, gloo)
  torchrun --nproc_per_node 2 -m fusion.train demo_data/cohort.xlsx --device cpu --out runs/ddp
"""


def _bool_flag(group, name, help_text):
    group.add_argument(name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The ``fusion.train`` argument parser (flags left unset do not override the YAML config)."""
    d = TrainConfig()
    S = argparse.SUPPRESS
    p = argparse.ArgumentParser(prog="python -m fusion.train", add_help=add_help,
                                description="Train per-modality CNNs with patient-level cross-validation.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=S)
    p.add_argument("cohort", nargs="?", help="required (or 'cohort:' in --config): cohort table (.xlsx/.csv) whose image columns point to the images; "
                                            "or busi, bus_bra, a manifest .yaml (examples/) or a folder with "
                                            "one sub-folder per class")
    p.add_argument("--config", default=None, help="run.yaml with any of the settings below (flags win)")
    g = p.add_argument_group("data")
    g.add_argument("--schema", help="cohort_schema.yaml (default: the one next to the cohort file; for a public "
                                    "set, the schema its manifest builds)")
    g.add_argument("--group", metavar="COLUMN", help="group (diagnosis) column; without --schema the schema is "
                                                     "inferred from the table (default: the schema's)")
    g.add_argument("--id-column", metavar="COLUMN", help="patient id column (default: the schema's; inferred: a "
                                                         "unique column named like PatientID, patient_id, ID, case)")
    g.add_argument("--hospital-column", metavar="COLUMN", help="hospital column (default: the schema's)")
    g.add_argument("--image-column", dest="image_columns", metavar="MODALITY=COLUMN", action="append",
                   help="column holding one modality's image paths, e.g. bmode=Bmode_file; repeat per modality "
                        "(default: the schema's images, or columns named image_<modality>)")
    g.add_argument("--modalities", nargs="+", help="modalities to train (default: every image column)")
    g.add_argument("--size", type=int, help=f"image size in pixels (default: {d.size})")
    g.add_argument("--cache", help="folder for the decoded-image cache (default: none)")
    g = p.add_argument_group("model")
    g.add_argument("--backbones", nargs="+", help=f"backbones (default: {' '.join(d.backbones)}; "
                                                  f"available: {', '.join(list_backbones())})")
    g.add_argument("--weights", help="none, imagenet, or a local file: a torchvision/timm state dict (.pth, .pt, "
                                     ".safetensors) or a fusion.pretrain checkpoint (default: none)")
    g = p.add_argument_group("validation")
    g.add_argument("--folds", type=int, help=f"cross-validation folds over patients (default: {d.folds})")
    g.add_argument("--inner-val", type=float, help=f"share of training patients for early stopping "
                                                   f"(default: {d.inner_val})")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--holdout-hospital", help="hold this hospital out as an external test set")
    x.add_argument("--external-hospital", action="store_true",
                   help="leave-one-hospital-out: each hospital in turn is the test fold")
    x.add_argument("--test-fraction", type=float, help="hold out this share of patients as a test set")
    x.add_argument("--fold-column", metavar="COLUMN",
                   help="take the test folds from this column of the table (one fold label per row, every row "
                        "of a patient in one fold; e.g. BUS-BRA's official_fold) instead of --folds random "
                        "patient-stratified folds")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help=f"maximum epochs (default: {d.epochs})")
    g.add_argument("--patience", type=int,
                   help="stop a fold's training after this many epochs without a lower inner-validation loss "
                        "(default: no early stop: every epoch of the cosine schedule is trained and the epoch with "
                        "the lowest inner-validation loss is kept; 0 = the default)")
    g.add_argument("--min-epochs", type=int, help=f"with --patience: early stopping never ends training before "
                                                  f"this many epochs (default: {d.min_epochs})")
    g.add_argument("--batch-size", type=int, help=f"batch size per process; under DDP (torchrun) the global batch is "
                                                 f"this x the number of processes (default: {d.batch_size})")
    g.add_argument("--lr", type=float, help=f"AdamW learning rate (default: {d.lr})")
    g.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default: {d.weight_decay})")
    _bool_flag(g, "--class-weights", "balanced cross-entropy class weights (default: off)")
    g.add_argument("--augment", help=f"augmentation: light, study or none (default: {d.augment})")
    g = p.add_argument_group("run")
    g.add_argument("--out", help=f"output folder (default: {d.out})")
    g.add_argument("--seed", type=int, help=f"random seed (default: {d.seed})")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    g.add_argument("--threads", type=int, help="CPU threads per process (default: 1; see fusion.runtime)")
    _bool_flag(g, "--amp", "bf16 mixed precision (default: on for CUDA, off for CPU)")
    _bool_flag(g, "--compile", "torch.compile the model (default: off)")
    _bool_flag(g, "--channels-last", "channels_last memory format (default: on)")
    g.add_argument("--resume", action="store_true", help="continue a killed run in --out from its checkpoints")
    _bool_flag(g, "--keep-epochs", "keep a checkpoint file per epoch besides latest.pt (default: off)")
    g.add_argument("--n-boot", type=int, help=f"bootstrap resamples for metric CIs (default: {d.n_boot})")
    g = p.add_argument_group("fusion")
    g.add_argument("--late-fusion", action="store_true",
                   help="also fit a stacked logistic regression on the out-of-fold predictions of all modalities "
                        "(+ clinical variables) over the same folds (fusion.late_fusion; k-fold or "
                        "--external-hospital only; default: off)")
    g.add_argument("--fusion", nargs="+", metavar="MODE",
                   help="fusion modes on the same patient folds: late (stacked probabilities), embedding (CNN "
                        "embeddings + clinical variables, L2 logistic regression and a small MLP), joint (one "
                        "network trained end to end); --late-fusion = --fusion late (default: none)")
    _bool_flag(g, "--baseline", "texture-feature (first-order + GLCM) logistic-regression baseline per modality on "
                                "the same folds (default: on)")
    g.add_argument("--recalibrate", action="store_true",
                   help="report each fold CNN's predictions temperature-scaled on that fold's inner validation "
                        "patients (calibration; the ranking, hence the AUC of one fold, is unchanged; default: off)")
    g.add_argument("--final", action="store_true",
                   help="after the cross-validation, train the final model on all patients (late fusion; "
                        "embedding with --fusion embedding; the joint network, concatenation head, with --fusion "
                        "joint) and save OUT/model_bundle.pt for python -m fusion.predict and python -m "
                        "fusion.serve (default: off)")
    g.add_argument("--ablation", action="store_true",
                   help="also fuse every modality subset, with and without the clinical variables (late and "
                        "embedding fusion; same folds, no CNN retrained): ablation.md (default: off)")
    g.add_argument("--nested-fusion", action="store_true",
                   help="with --late-fusion: train the fusion's second level of each outer fold on first-level "
                        "predictions from CNNs re-trained inside that fold's training patients, so nothing fitted "
                        "for a fold has seen its test patients (folds x folds more CNN fits; with "
                        "--external-hospital, hospitals x (hospitals - 1); default: off)")
    return p


def config_from_args(argv=None) -> TrainConfig:
    """Parse ``argv`` into the resolved :class:`TrainConfig`."""
    args = vars(build_parser().parse_args(argv))
    yaml_path = args.pop("config", None)
    cfg = resolve_config(TrainConfig, yaml_path, args)
    _check_config(cfg)
    return cfg


def _check_config(cfg: TrainConfig) -> None:
    if not cfg.cohort:
        raise ConfigError("no cohort given (pass COHORT or set 'cohort' in --config)")
    cfg.image_columns = image_column_map(cfg.image_columns) or None  # 'M=C' strings -> {M: C}
    try:  # registry names ('ViT-small' -> vit_small_patch16_224) name the checkpoint folders
        cfg.backbones = [resolve_backbone(name) for name in cfg.backbones]
    except ConfigError as exc:
        raise ConfigError(f"--backbones: {exc}") from None
    if cfg.patience is not None and int(cfg.patience) < 0:
        raise ConfigError(f"--patience must be 0 (no early stop) or a positive integer, got {cfg.patience}")
    for key in ("folds", "epochs", "batch_size", "size"):
        if int(getattr(cfg, key)) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(cfg, key)}")
    if not float(cfg.lr) > 0:
        raise ConfigError(f"--lr must be a positive number, got {cfg.lr}")
    if float(cfg.weight_decay) < 0:
        raise ConfigError(f"--weight-decay must be 0 or positive, got {cfg.weight_decay}")
    if not 0 < float(cfg.inner_val) < 1:
        raise ConfigError(f"--inner-val must lie strictly between 0 and 1, got {cfg.inner_val}")
    if cfg.test_fraction is not None and not 0 < float(cfg.test_fraction) < 1:
        raise ConfigError(f"--test-fraction must lie strictly between 0 and 1, got {cfg.test_fraction}")
    for flag, value in (("--out", cfg.out), ("--cache", cfg.cache)):
        if value and Path(value).exists() and not Path(value).is_dir():
            raise ConfigError(f"{flag} {value}: is a file, not a folder")
    chosen = [cfg.holdout_hospital is not None, bool(cfg.external_hospital), cfg.test_fraction is not None,
              cfg.fold_column is not None]
    if sum(chosen) > 1:
        raise ConfigError("choose at most one of --holdout-hospital, --external-hospital, --test-fraction, "
                          "--fold-column")
    modes = list(cfg.fusion or []) + (["late"] if cfg.late_fusion else [])
    if set(modes) - {"late"} and (cfg.holdout_hospital is not None or cfg.test_fraction is not None):
        raise ConfigError("--fusion embedding / joint with --holdout-hospital or --test-fraction is not supported yet "
                          "(late fusion is; or use k-fold cross-validation or --external-hospital)")
    if cfg.nested_fusion and "late" not in modes:
        raise ConfigError("--nested-fusion needs --late-fusion (it changes how the fusion is trained)")


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class DataSource:
    """Where the training table came from and what one of its rows is.

    Attributes
    ----------
    kind : {'cohort', 'busi', 'bus_bra', 'manifest', 'folder', 'csv_manifest'}
    path : str
        The cohort file, manifest or folder; the data set name for ``busi`` / ``bus_bra``.
    image_root : str or None
        Folder relative image paths start from (None: the cohort file's folder).
    unit_of_analysis : {'patient', 'image'}
        ``'image'`` when the data have no patient ids and every image is its own patient
        (BUSI, image folders): cross-validation is then image-level.
    n_rows, n_patients : int
        Table rows (images) and distinct patient ids.
    notes : tuple of str
        Facts about the data to report (e.g. the image-level warning).
    """

    kind: str
    path: str
    image_root: str | None
    unit_of_analysis: str
    n_rows: int
    n_patients: int
    notes: tuple = ()

    def to_dict(self) -> dict:
        return {**asdict(self), "notes": list(self.notes)}


def _image_level_note(kind: str) -> str:
    if kind == "busi":
        return ("BUSI has no patient ids: every image is treated as its own patient, so cross-validation (and "
                "every split) is image-level; about one image in five has a near-duplicate (Pawlowska et al. "
                "2023), so the estimates are optimistic; report them as image-level")
    return ("no patient ids: every image is treated as its own patient, so cross-validation (and every split) "
            "is image-level; near-duplicate images on both sides of a split would make the estimates optimistic")


def load_table(spec, schema=None, data_root=None, *, group=None, id_column=None, hospital_column=None,
               image_columns=None):
    """Resolve a ``COHORT`` argument to ``(table, schema, DataSource)``.

    Parameters
    ----------
    spec : str or Path
        ``busi`` or ``bus_bra`` (:mod:`fusion.manifests`, shared data root), a manifest
        ``.yaml`` (:func:`fusion.manifests.load_manifest`), a folder of class sub-folders
        (:func:`fusion.manifests.folder_manifest`) or a cohort table (``.xlsx``/``.csv``,
        validated by :func:`analysis.cohort.load_cohort`).
    schema : Schema, str or Path, optional
        Cohort: its schema (default: ``cohort_schema.yaml`` beside it). Public set: replaces
        the schema its manifest builds.
    data_root : str or Path, optional
        Folder holding ``busi/`` and ``bus_bra/`` (default: ``$LYMPH_SHARED_DATA`` or
        ``../shared/data``).
    group, id_column, hospital_column, image_columns : optional
        Columns named by the user (:func:`analysis.schema.with_columns`; ``image_columns``
        as ``{modality: column}`` or ``'MODALITY=COLUMN'`` strings). A cohort table with
        ``group`` and no ``schema`` gets a schema inferred from it
        (:func:`analysis.schema.infer_schema`).

    Returns
    -------
    (Cohort or DataFrame, Schema, DataSource)
        A validated :class:`~analysis.cohort.Cohort` for a cohort table; the manifest's
        DataFrame (one row per image, ``attrs['image_root']`` set) otherwise. Both go to
        :class:`fusion.dataset.MultimodalDataset` unchanged.

    Raises
    ------
    CohortError
        Missing file or folder, unknown data set name (with did-you-mean), and every error
        of the manifest readers and of cohort validation.

    Warns
    -----
    ImageLevelWarning
        Data without patient ids (BUSI, image folders): every image is its own patient.
    """
    from analysis.schema import Schema, load_schema, with_columns
    from fusion import manifests

    text = str(spec)
    path = Path(text)
    name = text.strip().lower()
    if name in PUBLIC_SETS and not path.exists():
        kind = name
        root = None if data_root is None else Path(data_root) / name
        reader = manifests.busi_manifest if kind == "busi" else manifests.bus_bra_manifest
        (table, built), flagged = _without_image_level_warning(reader, root)
    elif path.is_dir():
        kind = "folder"
        (table, built), flagged = _without_image_level_warning(manifests.folder_manifest, path)
    elif path.suffix.lower() in _MANIFEST_SUFFIXES:
        kind = "manifest"
        (table, built), flagged = _without_image_level_warning(manifests.load_manifest, path)
    else:
        if not path.is_file():
            hint = "" if path.suffix else did_you_mean(name, PUBLIC_SETS)
            raise ConfigError(f"cohort file not found: {path} (expected a cohort table, "
                              f"{' or '.join(PUBLIC_SETS)}, a manifest .yaml or a folder of class folders){hint}")
        from analysis.cohort import load_cohort

        beside = path.with_name("cohort_schema.yaml")
        if group is not None and schema is None and beside.exists():
            from analysis.errors import AnalysisWarning

            warnings.warn(f"{path}: --group given, so the schema is inferred from the table and {beside} is not "
                          f"used; pass --schema {beside} to use it", AnalysisWarning, stacklevel=2)
        cohort = load_cohort(path, schema=schema, group=group, id_column=id_column,
                             hospital_column=hospital_column, image_columns=image_columns)
        ids = cohort.data[cohort.schema.id_column] if cohort.schema.id_column else cohort.data.index
        source = DataSource("cohort", str(path), None, "patient", len(cohort.data), int(pd.Series(ids).nunique()),
                            tuple(cohort.notes))
        return cohort, cohort.schema, source
    if schema is not None:
        built = schema if isinstance(schema, Schema) else load_schema(schema)
    if any(v is not None for v in (group, id_column, hospital_column, image_columns)):
        built = with_columns(built, id_column=id_column, group_column=group, hospital_column=hospital_column,
                             image_columns=image_columns, columns=table.columns, source=text)
    ids = table[built.id_column].astype(str)
    # BUSI says so itself (ImageLevelWarning); folders have no ids either (patient id = image path)
    image_level = flagged or (bool(ids.is_unique) and "image_id" not in table.columns)
    notes = ()
    if image_level:
        note = _image_level_note("busi" if flagged else kind)
        warnings.warn(f"{text}: {note}", manifests.ImageLevelWarning, stacklevel=2)
        notes = (note,)
    source = DataSource(kind, text, table.attrs.get("image_root"), "image" if image_level else "patient",
                        len(table), int(ids.nunique()), notes)
    return table, built, source


def _without_image_level_warning(reader, *args):
    """``reader(*args)`` and whether it warned that its data are image-level (re-issued once by
    :func:`load_table`, with the same wording for every source); other warnings pass through."""
    from fusion.manifests import ImageLevelWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = reader(*args)
    flagged = False
    for w in caught:
        if issubclass(w.category, ImageLevelWarning):
            flagged = True
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out, flagged


def load_dataset(cfg: TrainConfig, progress: bool = True, data_root=None):
    """The training data as ``(MultimodalDataset, DataSource)`` (see :func:`load_table`)."""
    from fusion.dataset import MultimodalDataset

    table, schema, source = load_table(cfg.cohort, cfg.schema, data_root, group=cfg.group, id_column=cfg.id_column,
                                       hospital_column=cfg.hospital_column, image_columns=cfg.image_columns)
    folds = None
    if cfg.fold_column:  # checked before images are decoded; fold labels are never a predictor
        folds = fold_labels(table, cfg.fold_column, getattr(source, "path", source))
        if cfg.fold_column in schema.variable_names:
            from dataclasses import replace

            schema = replace(schema, variables=tuple(v for v in schema.variables if v.name != cfg.fold_column),
                             excluded=(*schema.excluded, (cfg.fold_column, "the --fold-column: fold labels, not a "
                                                                           "predictor")))
    dataset = MultimodalDataset(table, schema, modalities=cfg.modalities, size=cfg.size, cache=cfg.cache,
                                progress=progress)
    dataset.fold_labels = folds
    return dataset, source


def fold_labels(table, column: str, source=None) -> np.ndarray:
    """The ``--fold-column`` values, one per row; a missing column or an empty cell is a one-line error."""
    frame = table.data if hasattr(table, "data") else table
    file = str(source) if source else None
    if column not in frame.columns:
        raise CohortError(f"fold column not found (columns: {', '.join(map(str, frame.columns))})"
                          f"{did_you_mean(column, frame.columns)}", file=file, column=column)
    values = frame[column]
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        at = int(np.flatnonzero(empty.to_numpy())[0])
        row = frame.index[at] if frame.index.name == "row" else at + 2
        raise CohortError(f"empty fold label ({int(empty.sum())} row(s) without a fold)", file=file, row=int(row),
                          column=column)
    return values.to_numpy(dtype=object)


# ----------------------------------------------------------------------------- training
def _unit_seed(seed: int, modality: str, backbone: str, fold) -> int:
    """A seed per trained model, independent of which other models ran before it."""
    return (int(seed) + zlib.crc32(f"{modality}/{backbone}/{fold}".encode())) % (2**31)


def _prediction_frame(ids, y, classes, proba, fold, split, backbone, modality, image_ids=None) -> pd.DataFrame:
    frame = pd.DataFrame({"patient_id": ids, "fold": fold, "split": split,
                          "y_true": np.asarray(classes, dtype=object)[np.asarray(y)],
                          "model": backbone, "modality": modality})
    if image_ids is not None:
        frame.insert(1, "image_id", image_ids)
    for k, c in enumerate(classes):
        frame[f"p_{c}"] = proba[:, k]
    return frame


def image_ids(dataset) -> np.ndarray | None:
    """An id per dataset row where a patient has several images (``row<N>``: the table row), else None.

    Prediction files carry it (column ``image_id``) so that every image of a patient can be
    traced to its side of a split from the outputs alone (``fold_assignments.csv``).
    """
    ids = pd.Series(np.asarray(dataset.patient_ids, dtype=object)).astype(str)
    if ids.is_unique:
        return None
    rows = np.asarray(dataset.rows)
    if (rows < 0).any():
        return np.array([f"pos{i}" for i in range(len(ids))], dtype=object)
    return np.array([f"row{int(r)}" for r in rows], dtype=object)


def train_unit(cfg: TrainConfig, dataset, modality: str, backbone: str, split, holdout, device,
               unit_dir: Path, show_progress: bool, outer_fold: int | None = None) -> pd.DataFrame:
    """Train (or resume) one modality x backbone x fold; return its prediction rows.

    ``outer_fold`` marks an inner fold of ``--nested-fusion`` (``split`` is then inner fold
    ``split.fold`` of outer fold ``outer_fold``): its own seed and progress label, and its rows
    get ``fold = outer_fold``, ``inner_fold = split.fold`` and split ``'inner'``.
    """
    tag = split.fold if outer_fold is None else f"{outer_fold}.inner{split.fold}"
    j = dataset.modalities.index(modality)
    present = dataset.mask[:, j].cpu().numpy()
    images = dataset.tensors(modality)
    labels = dataset.labels.cpu().numpy()
    ids = np.asarray(dataset.patient_ids, dtype=object)
    classes = list(dataset.class_names)
    channels = int(images.shape[1])
    train_idx = split.train_idx[present[split.train_idx]]
    val_idx = split.val_idx[present[split.val_idx]]
    test_idx = split.test_idx[present[split.test_idx]]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(f"modality '{modality}', fold {tag}: no training or validation images present")

    setup = setup_training(backbone, cfg.weights, in_chans=channels, num_classes=len(classes), device=device,
                           seed=_unit_seed(cfg.seed, modality, backbone, tag), lr=cfg.lr,
                           weight_decay=cfg.weight_decay, epochs=cfg.epochs, channels_last=cfg.channels_last,
                           augment=cfg.augment)
    model, optimizer, scheduler, generator = setup.model, setup.optimizer, setup.scheduler, setup.generator
    t_eval = setup.transform_eval
    if runtime.is_distributed():
        setup.model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        setup.model = torch.compile(setup.model)
    weights = balanced_class_weights(labels[train_idx], len(classes)) if cfg.class_weights else None
    resume = None
    latest = unit_dir / "latest.pt"
    if cfg.resume and latest.is_file():
        resume = load_checkpoint(latest)
    plain_cfg = asdict(cfg)

    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, desc=f"{modality}/{backbone}/" + ("final" if split.kind == "final" else f"fold{tag}"), unit="epoch",
                   file=sys.stderr, leave=False, initial=0 if resume is None else int(resume["epoch"]) + 1)

    def on_epoch_end(epoch, stopper, history):
        ckpt = make_checkpoint(model, optimizer, scheduler, None, epoch=epoch, best_metric=stopper.best_loss,
                               early_stopping=stopper.state_dict(), config=plain_cfg, generator=generator,
                               history=history, backbone=backbone, modality=modality, fold=split.fold,
                               classes=classes)
        save_checkpoint(ckpt, unit_dir, keep_epochs=cfg.keep_epochs)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(train=f"{history[-1]['train_loss']:.3f}", val=f"{history[-1]['val_loss']:.3f}")

    data = ImageData(images, labels, train_idx, val_idx)
    options = FitOptions(epochs=cfg.epochs, patience=cfg.patience, min_epochs=cfg.min_epochs,
                         batch_size=cfg.batch_size, amp=cfg.amp,
                         channels_last=cfg.channels_last, class_weights=weights, resume=resume)
    result = fit(setup, data, options, on_epoch_end=on_epoch_end)
    if bar is not None:
        bar.close()

    split_name = "external" if split.kind == "hospital" else "test"
    img_ids = image_ids(dataset)

    def rows_for(idx, split_label):
        proba = predict_proba(model, data, idx, transform=t_eval, batch_size=cfg.batch_size, device=device,
                              amp=cfg.amp, channels_last=cfg.channels_last)
        return _prediction_frame(ids[idx], labels[idx], classes, proba, split.fold, split_label, backbone, modality,
                                 None if img_ids is None else img_ids[idx])

    frames = []
    if len(test_idx):
        frames.append(rows_for(test_idx, split_name))
    h_idx = holdout.test_idx[present[holdout.test_idx]] if holdout is not None else test_idx[:0]
    if len(h_idx):
        frames.append(rows_for(h_idx, "_heldout"))
    preds = (pd.concat(frames, ignore_index=True) if frames else  # no test image: the columns, no rows
             _prediction_frame(ids[:0], labels[:0], classes, np.zeros((0, len(classes))), split.fold, split_name,
                               backbone, modality, None if img_ids is None else img_ids[:0]))
    # the inner validation patients' predictions (calibration of the late fusion's inputs) and the
    # penultimate embeddings of validation, test and held-out images (embedding fusion); never trained on
    val_preds = rows_for(val_idx, VALIDATION_SPLIT)
    from fusion.embedding import extract_embeddings

    emb_idx = np.concatenate([val_idx, test_idx, h_idx]).astype(np.int64)
    embeddings = extract_embeddings(model, images, emb_idx, t_eval, batch_size=cfg.batch_size, device=device,
                                    amp=cfg.amp, channels_last=cfg.channels_last)
    if outer_fold is not None and len(preds):
        from fusion.late_fusion import INNER_SPLIT

        preds["split"] = INNER_SPLIT
        preds["fold"] = outer_fold
        preds.insert(2, "inner_fold", split.fold)
    if outer_fold is not None:
        val_preds["fold"] = outer_fold
        val_preds.insert(2, "inner_fold", split.fold)
    if runtime.is_main_process():
        atomic_save({"model": runtime.unwrap(model).state_dict(), "backbone": backbone, "modality": modality,
                     "fold": split.fold, "classes": classes, "in_chans": channels, "size": cfg.size,
                     "best_epoch": result.best_epoch, "best_val_loss": result.best_loss,
                     "history": result.history, "config": plain_cfg}, unit_dir / "model.pt")
        preds.to_csv(unit_dir / "predictions.csv", index=False)
        val_preds.to_csv(unit_dir / "validation_predictions.csv", index=False)
        atomic_save({"positions": torch.as_tensor(emb_idx), "embeddings": torch.as_tensor(embeddings),
                     "backbone": backbone, "modality": modality, "fold": split.fold}, unit_dir / "embeddings.pt")
        hist = pd.DataFrame(result.history)
        hist.insert(0, "fold", split.fold)
        hist.insert(0, "modality", modality)
        hist.insert(0, "model", backbone)
        hist["best_epoch"] = result.best_epoch
        hist.to_csv(unit_dir / "history.csv", index=False)
        # mark complete last: a kill before this line retrains from latest.pt; the finished unit's weights
        # live in model.pt, so latest.pt keeps only the record (--keep-epochs keeps the per-epoch files)
        atomic_save(completion_marker(load_checkpoint(latest)), latest)
    runtime.barrier()
    return preds


def _heldout_ensemble(frame: pd.DataFrame, classes, holdout) -> pd.DataFrame:
    """Mean over fold models of the held-out predictions (fold = -1)."""
    held = frame[frame["split"] == "_heldout"]
    if held.empty:
        return held
    name = "external" if holdout.name != "random" else "holdout"
    pcols = [f"p_{c}" for c in classes]
    ids = ["patient_id", "image_id"] if "image_id" in held.columns else ["patient_id"]
    keys = [*ids, "y_true", "model", "modality"]
    mean = held.groupby(keys, sort=False)[pcols].mean().reset_index()
    mean.insert(len(ids), "fold", -1)
    mean.insert(len(ids) + 1, "split", name)
    return mean[[*ids, "fold", "split", "y_true", "model", "modality", *pcols]]


def run_training(cfg: TrainConfig, progress: bool = True) -> list[Path]:
    """Everything ``main`` does after parsing: :func:`fusion.api.cross_validate`, then
    :meth:`~fusion.api.CVResult.save` into ``cfg.out``; returns the files written (rank 0)."""
    from fusion.api import _cross_validate, make_config

    cfg = make_config(config=cfg)
    if cfg.final and not {"late", "embedding", "joint"} & set(cfg.fusion):  # the bundle's estimated performance
        cfg = make_config(config=cfg, fusion=[*cfg.fusion, "late"])
    result = _cross_validate(cfg, progress)
    if result is None:
        return []
    written = result.save(cfg.out)
    if cfg.final:
        from fusion.bundle import fit

        mode = {("embedding",): "embedding", ("joint",): "joint"}.get(tuple(cfg.fusion), "late")
        bundle = fit(config=cfg, fusion=mode, cv=result, progress=progress)
        written.append(bundle.save(Path(cfg.out) / "model_bundle.pt"))
    return written


def _unit_complete(unit_dir: Path) -> bool:
    try:
        return bool(load_checkpoint(unit_dir / "latest.pt").get("complete"))
    except ConfigError:
        return False


_RUNTIME_ONLY = {"resume", "device", "threads", "out", "n_boot", "cache", "compile", "late_fusion", "nested_fusion",
                 "fusion", "baseline", "ablation", "final", "recalibrate"}


def _check_resume_compatible(cfg: TrainConfig, path: Path) -> None:
    import yaml

    old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    new = asdict(cfg)
    diff = [k for k in new if k not in _RUNTIME_ONLY and k in old and old[k] != new[k]]
    if diff:
        k = diff[0]
        raise ConfigError(f"--resume: setting '{k}' was {old[k]!r} in the interrupted run but is {new[k]!r} now "
                          f"({len(diff)} setting(s) differ); resume with the same settings or use a new --out",
                          file=path)


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    from analysis.errors import run_cli

    return run_cli(lambda: run_training(config_from_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
