"""Public image sets and image folders as (table, schema), like the cohort.

Every loader here returns ``(DataFrame, Schema)``: one row per image, the schema's id, group
and image columns, and clinical variables where the set has them -- the same shape as a
validated cohort, so :class:`fusion.dataset.MultimodalDataset`, the splits and the training
CLI treat a public set exactly like the lymph-node cohort. Image paths are relative to the
set's folder, which is also stored in ``df.attrs['image_root']`` (the dataset uses it when
no ``root=`` is given). All sets here have one modality, ``'2d'`` (grey B-mode).

Data root: ``root=`` if given, else the environment variable ``LYMPH_SHARED_DATA``, else
``../shared/data`` next to the repository. A missing folder is a one-line
:class:`~analysis.errors.CohortError` naming the path.

BUSI (:func:`busi_manifest`)
    Folders ``benign/``, ``malignant/``, ``normal/``; label = folder. BUSI has **no patient
    ids**: every image is its own "patient" (``patient_id`` = file stem), and about one image
    in five has a near-duplicate (Pawlowska et al. 2023), so results are **image-level**
    and optimistic; the loader says so in an :class:`ImageLevelWarning`.
BUS-BRA (:func:`bus_bra_manifest`)
    ``bus_data.csv``: patient = ``Case``, label = ``Pathology``; ``BIRADS``, ``Device`` and
    ``Side`` become the clinical variables ``birads``, ``device``, ``side``; the authors'
    patient-disjoint folds from ``5-fold-cv.csv`` / ``10-fold-cv.csv`` become the columns
    ``official_fold`` and ``official_fold_10``.
Any folder (:func:`folder_manifest`)
    One sub-folder per class (as torchvision's ``ImageFolder``), each image its own patient.
YAML (:func:`load_manifest`)
    ``examples/busi_manifest.yaml`` and friends: ``dataset: busi | bus_bra | folder`` plus
    an optional ``root:`` (relative to the YAML file).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis.errors import AnalysisWarning, CohortError, did_you_mean
from analysis.schema import Schema, Variable

__all__ = ["DATA_ENV", "IMAGE_EXTENSIONS", "ImageLevelWarning", "default_data_root", "resolve_data_root",
           "busi_manifest", "bus_bra_manifest", "folder_manifest", "busi_schema", "bus_bra_schema",
           "load_manifest"]

DATA_ENV = "LYMPH_SHARED_DATA"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
BUSI_CLASSES = ("malignant", "benign", "normal")
BUS_BRA_CLASSES = ("malignant", "benign")
_REPO = Path(__file__).resolve().parent.parent


class ImageLevelWarning(AnalysisWarning):
    """Results on this data set are image-level (no patient ids; near-duplicates possible)."""


def default_data_root() -> Path:
    """``$LYMPH_SHARED_DATA`` or ``../shared/data`` beside the repository (not checked)."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else _REPO.parent / "shared" / "data"


def resolve_data_root(root=None, subdir: str | None = None) -> Path:
    """The data folder (``root`` or the default, plus ``subdir``); a clear error if absent."""
    base = Path(root) if root is not None else default_data_root()
    path = base / subdir if subdir and root is None else base
    if not path.is_dir():
        how = "" if root is not None else f" (set {DATA_ENV} or pass root=)"
        raise CohortError(f"data folder not found{how}", file=path)
    return path


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _image_schema(classes, *, variables=(), label="label") -> Schema:
    return Schema(id_column="patient_id", group_column="group", group_levels=tuple(classes), group_label=label,
                  variables=tuple(variables), image_columns={"2d": "image_2d"},
                  reference_group=tuple(classes)[-1])


def folder_manifest(root, *, classes=None, extensions=IMAGE_EXTENSIONS) -> tuple[pd.DataFrame, Schema]:
    """An ImageFolder-like tree (one sub-folder per class) as ``(table, schema)``.

    Parameters
    ----------
    root : str or Path
        Folder whose sub-folders are the classes.
    classes : sequence of str, optional
        Class order (default: sub-folder names sorted); every listed class must exist.
    extensions : tuple of str
        Image file suffixes (case-insensitive); other files are ignored. Hidden files and
        files named ``*_mask.*`` (BUSI's original masks) are ignored too.

    Returns
    -------
    (DataFrame, Schema)
        Columns ``patient_id`` (``<class>/<stem>``: each image is its own patient),
        ``group``, ``image_2d`` (path relative to ``root``); ``attrs['image_root']``.

    Raises
    ------
    CohortError
        Missing folder, no class folders, an unknown or empty class folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise CohortError("image folder not found", file=root)
    found = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural_key)
    tables = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".xlsx", ".csv"))
    hint = f"; is {root / tables[0]} the cohort table you meant?" if tables else ""
    if not found:
        raise CohortError(f"no class sub-folders (expected one folder of images per class){hint}", file=root)
    if classes is None and len(found) < 2:
        raise CohortError(f"only one class sub-folder ('{found[0]}'); a folder dataset needs one sub-folder of "
                          f"images per class, at least two{hint}", file=root)
    if classes is None:
        classes = tuple(found)
    else:
        classes = tuple(classes)
        for c in classes:
            if c not in found:
                raise CohortError(f"class folder '{c}' not found (folders: {', '.join(found)})"
                                  f"{did_you_mean(c, found)}", file=root)
    exts = {e.lower() for e in extensions}
    records = []
    for c in classes:
        files = sorted((p for p in (root / c).rglob("*") if p.is_file() and p.suffix.lower() in exts
                        and not p.name.startswith(".") and "_mask" not in p.stem),
                       key=lambda p: _natural_key(str(p.relative_to(root))))
        if not files:
            raise CohortError(f"class folder '{c}' holds no images ({', '.join(sorted(exts))})", file=root / c)
        for p in files:
            rel = p.relative_to(root).as_posix()
            records.append({"patient_id": rel.rsplit(".", 1)[0], "group": c, "image_2d": rel})
    df = pd.DataFrame(records)
    df.attrs["image_root"] = str(root)
    return df, _image_schema(classes)


def busi_schema() -> Schema:
    """Schema of :func:`busi_manifest` (as shipped in ``examples/busi_schema.yaml``)."""
    return _image_schema(BUSI_CLASSES, label="BUSI finding")


def busi_manifest(root=None, *, warn: bool = True) -> tuple[pd.DataFrame, Schema]:
    """BUSI (Al-Dhabyani et al. 2020, doi:10.1016/j.dib.2019.104863) as ``(table, schema)``.

    Parameters
    ----------
    root : str or Path, optional
        The ``busi`` folder (default: ``<data root>/busi``).
    warn : bool, default True
        Emit the :class:`ImageLevelWarning` (no patient ids, near-duplicates).

    Returns
    -------
    (DataFrame, Schema)
        780 rows in the shared copy; see :func:`folder_manifest` for the columns.
    """
    folder = resolve_data_root(root, "busi")
    df, _ = folder_manifest(folder, classes=BUSI_CLASSES)
    if warn:
        warnings.warn("BUSI has no patient ids and about one image in five has a near-duplicate: each image is "
                      "treated as its own patient, so cross-validation results are image-level (optimistic); "
                      "report them as such", ImageLevelWarning, stacklevel=2)
    return df, busi_schema()


def bus_bra_schema(devices=None) -> Schema:
    """Schema of :func:`bus_bra_manifest` (as shipped in ``examples/bus_bra_schema.yaml``)."""
    devices = tuple(devices) if devices is not None else (
        "GE Logiq 5 @10-12MHz", "GE Logiq 7 @10-14MHz", "Toshiba Aplio 300 @12-14 MHz", "U-Systems @10-14MHz")
    variables = (
        Variable("birads", label="BI-RADS", type="ordinal", levels=("2", "3", "4", "5")),
        Variable("device", label="Ultrasound device", type="categorical", levels=devices),
        Variable("side", label="Side", type="categorical", levels=("left", "right", "single")),
    )
    return _image_schema(BUS_BRA_CLASSES, variables=variables, label="Pathology")


def _read_csv(path: Path, required) -> pd.DataFrame:
    if not path.is_file():
        raise CohortError("file not found", file=path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CohortError(f"cannot read CSV ({str(exc).splitlines()[0]})", file=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise CohortError(f"column not found (columns: {', '.join(df.columns)}){did_you_mean(col, df.columns)}",
                              file=path, column=col)
    return df


def _folds(path: Path, ids: pd.Series, cases: pd.Series, k: int):
    if not path.is_file():
        return None
    df = _read_csv(path, ["ID", "kFold"])
    lookup = dict(zip(df["ID"].str.strip(), df["kFold"].str.strip()))
    out = np.empty(len(ids), dtype=np.int64)
    for i, image_id in enumerate(ids):
        value = lookup.get(image_id)
        if value is None:
            raise CohortError(f"image '{image_id}' has no fold", file=path, column="ID")
        try:
            fold = int(float(value))
        except ValueError:
            fold = -1
        if not 1 <= fold <= k:
            row = int(df.index[df["ID"].str.strip() == image_id][0]) + 2
            raise CohortError(f"fold '{value}' is not a number 1..{k}", file=path, row=row, column="kFold")
        out[i] = fold
    per_case = pd.Series(out).groupby(cases.to_numpy()).nunique()
    if (per_case > 1).any():
        bad = per_case.index[per_case > 1][0]
        raise CohortError(f"patient (Case) {bad} is in more than one official fold; folds must be patient-disjoint",
                          file=path, column="kFold")
    return out


def bus_bra_manifest(root=None) -> tuple[pd.DataFrame, Schema]:
    """BUS-BRA (Gomez-Flores et al. 2023, doi:10.1002/mp.16812) as ``(table, schema)``.

    Parameters
    ----------
    root : str or Path, optional
        The ``bus_bra`` folder (default: ``<data root>/bus_bra``).

    Returns
    -------
    (DataFrame, Schema)
        One row per image (1875 in the shared copy, 1064 patients): ``patient_id``
        (``Case``, several images per patient), ``image_id``, ``group`` (``Pathology``),
        ``histology``, ``birads``, ``device``, ``side``, ``image_2d``
        (``images/<ID>.png``), ``official_fold`` (1-5) and ``official_fold_10`` (1-10)
        when the fold files are present. Spreadsheet rows of ``bus_data.csv`` are the index.

    Raises
    ------
    CohortError
        Missing folder or file, missing column, unknown label, unsafe image id, a fold
        file that is not patient-disjoint -- each naming file, row and column.
    """
    folder = resolve_data_root(root, "bus_bra")
    csv = folder / "bus_data.csv"
    raw = _read_csv(csv, ["ID", "Case", "Pathology", "BIRADS", "Device", "Side"])
    if raw.empty:
        raise CohortError("no rows", file=csv)
    raw.index = pd.RangeIndex(2, len(raw) + 2, name="row")
    labels = raw["Pathology"].str.strip().str.lower()
    for row, value, orig in zip(raw.index, labels, raw["Pathology"]):
        if value not in BUS_BRA_CLASSES:
            raise CohortError(f"unknown label '{orig}' (expected: {', '.join(BUS_BRA_CLASSES)})"
                              f"{did_you_mean(value, BUS_BRA_CLASSES)}", file=csv, row=int(row), column="Pathology")
    ids = raw["ID"].str.strip()
    for row, image_id in zip(raw.index, ids):
        if not image_id or "/" in image_id or "\\" in image_id or image_id.startswith("."):
            raise CohortError(f"image id '{image_id}' is not a plain file name (it would point outside "
                              f"{folder / 'images'})", file=csv, row=int(row), column="ID")
    cases = raw["Case"].str.strip()
    for row, case in zip(raw.index, cases):
        if not case:
            raise CohortError("empty patient id (Case)", file=csv, row=int(row), column="Case")
    df = pd.DataFrame({
        "patient_id": cases, "image_id": ids, "group": labels,
        "histology": raw["Histology"].str.strip() if "Histology" in raw.columns else "",
        "birads": raw["BIRADS"].str.strip(), "device": raw["Device"].str.strip(),
        "side": raw["Side"].str.strip().str.lower(), "image_2d": "images/" + ids + ".png",
    }, index=raw.index)
    for name, k, col in (("5-fold-cv.csv", 5, "official_fold"), ("10-fold-cv.csv", 10, "official_fold_10")):
        folds = _folds(folder / name, ids, cases, k)
        if folds is not None:
            df[col] = folds
    df.attrs["image_root"] = str(folder)
    devices = sorted(set(df["device"]) - {""})
    schema = bus_bra_schema(devices)
    return df, schema


_MANIFEST_KEYS = ("dataset", "root", "classes")


def load_manifest(path) -> tuple[pd.DataFrame, Schema]:
    """Read a manifest YAML (``dataset: busi | bus_bra | folder``, optional ``root``, ``classes``).

    ``root`` is relative to the YAML file's folder; without it the shared data root is used
    (``folder`` requires it).

    Raises
    ------
    CohortError
        Unknown key or data set name (with did-you-mean), missing ``root`` for ``folder``.
    """
    path = Path(path)
    if not path.is_file():
        raise CohortError("manifest file not found", file=path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CohortError(f"not valid YAML ({str(exc).splitlines()[0]})", file=path) from None
    if not isinstance(raw, dict):
        raise CohortError("expected a mapping with 'dataset:'", file=path)
    for key in raw:
        if key not in _MANIFEST_KEYS:
            raise CohortError(f"unknown key '{key}' (expected: {', '.join(_MANIFEST_KEYS)})"
                              f"{did_you_mean(key, _MANIFEST_KEYS)}", file=path)
    kinds = ("busi", "bus_bra", "folder")
    kind = str(raw.get("dataset", "")).strip()
    if kind not in kinds:
        raise CohortError(f"dataset '{kind}' is not one of {', '.join(kinds)}{did_you_mean(kind, kinds)}", file=path)
    root = raw.get("root")
    root = None if root in (None, "") else (path.parent / str(root))
    if kind == "busi":
        return busi_manifest(root)
    if kind == "bus_bra":
        return bus_bra_manifest(root)
    if root is None:
        raise CohortError("dataset 'folder' needs 'root:' (the folder with one sub-folder per class)", file=path)
    return folder_manifest(root, classes=raw.get("classes"))
