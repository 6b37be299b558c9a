"""Patients x modalities as in-memory ``uint8`` tensors, with presence masks and labels.

:class:`MultimodalDataset` is built from a validated :class:`~analysis.cohort.Cohort` (or a
DataFrame plus its :class:`~analysis.schema.Schema`). Every image is decoded **once**, at
construction (:mod:`fusion.images`, optionally through :mod:`fusion.cache`), resized to the
training size and stored as one ``uint8`` tensor ``(N, C, H, W)`` per modality (1 channel for
B-mode, 3 for CDFI and elastography unless ``channels=`` says otherwise). An epoch then costs
no decoding: training indexes whole batches (:meth:`MultimodalDataset.batch`) and augments
them on tensors (:mod:`fusion.transforms`), on the GPU when the tensors are moved there
(:meth:`MultimodalDataset.to`).

Missing and broken images are handled per patient and modality:

* an **empty image cell** means the modality was not acquired: the patient is kept, the
  image is zeros, ``mask[i, m]`` is False, and the patient is listed in :attr:`problems`
  (reason ``no image``) and in one :class:`~analysis.errors.AnalysisWarning`;
* a path that is **missing, unreadable, truncated or of an unsupported mode**: with
  ``on_error='raise'`` (default) one :class:`~analysis.errors.ImageError` lists every such
  image (patient, modality, path, reason) after all were tried; with ``on_error='mask'`` they
  are treated like empty cells (masked, zero image, in :attr:`problems`, warned about).

Subsets (:meth:`MultimodalDataset.subset`) share the pixel storage of their parent: no copy.
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.errors import AnalysisWarning, CohortError, ImageError, did_you_mean
from fusion.cache import ImageCache, load_image_cached
from fusion.images import RESIZE_MODES, default_channels

__all__ = ["MultimodalDataset", "PROBLEM_COLUMNS"]

#: Columns of :attr:`MultimodalDataset.problems`.
PROBLEM_COLUMNS = ["row", "patient_id", "modality", "column", "path", "reason"]


@dataclass
class _Store:
    images: dict            # modality -> uint8 (N, C, H, W)
    mask: torch.Tensor      # bool (N, M)
    labels: torch.Tensor    # int64 (N,)
    patient_ids: np.ndarray  # object (N,)
    rows: np.ndarray        # spreadsheet rows (N,) or -1
    hospital: np.ndarray | None
    clinical: pd.DataFrame  # RangeIndex 0..N-1


def _is_empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    try:
        if pd.isna(value):
            return True
    except (TypeError, ValueError):
        pass
    return isinstance(value, str) and not value.strip()


class MultimodalDataset(torch.utils.data.Dataset):
    """Patients x modalities, decoded once into ``uint8`` tensors.

    Parameters
    ----------
    table : Cohort or DataFrame
        A validated cohort (its ``schema`` and ``source`` are used) or a table with the
        schema's id, group and image columns. Rows are patients.
    schema : Schema, optional
        Required with a DataFrame; overrides the cohort's own otherwise.
    root : str or Path, optional
        Folder that relative image paths start from. Default: ``table.attrs['image_root']``
        (set by :mod:`fusion.manifests`), else the folder of the cohort's source file, else
        the current directory.
    modalities : sequence of str, optional
        Modalities to load, keys of ``schema.image_columns`` (default: all, schema order).
    size : int or (int, int), default 128
        Stored image size (see :func:`fusion.images.load_image`).
    channels : dict, optional
        Modality -> 1 or 3 (default :data:`fusion.images.MODALITY_CHANNELS`, 3 if unlisted).
    resize : {'pad', 'stretch', 'crop'}, default 'pad'
    cache : ImageCache, str, Path or None, default None
        Decoded-image cache (a folder name creates an :class:`~fusion.cache.ImageCache`).
    on_error : {'raise', 'mask'}, default 'raise'
        What a missing or unreadable image file does (see the module docstring).
    progress : bool, default True
        tqdm progress bar on stderr while decoding.

    Attributes
    ----------
    modalities : tuple of str
    class_names : tuple of str
        ``schema.group_levels``; ``labels`` index into it.
    channels : dict
        Modality -> channels.
    problems : DataFrame
        ``row, patient_id, modality, column, path, reason``: every masked image.
    schema, root, size, resize

    Raises
    ------
    CohortError
        A required column is missing or a label is not a group level (names file, row, column).
    ImageError
        With ``on_error='raise'``: every unreadable image at once, one per line.
    """

    def __init__(self, table, schema=None, *, root=None, modalities=None, size=128, channels=None,
                 resize: str = "pad", cache=None, on_error: str = "raise", progress: bool = True):
        source = None
        if hasattr(table, "data") and hasattr(table, "schema"):
            schema = schema or table.schema
            source = getattr(table, "source", None)
            table = table.data
        if schema is None:
            raise TypeError("schema is required when table is a DataFrame")
        if on_error not in ("raise", "mask"):
            raise ValueError(f"on_error must be 'raise' or 'mask', got {on_error!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        if isinstance(cache, (str, os.PathLike)):
            cache = ImageCache(cache)
        if root is None:
            image_root = getattr(table, "attrs", {}).get("image_root")
            root = image_root or (Path(source).parent if source else Path.cwd())
        self.root = Path(root)
        self.schema = schema
        self.size = size
        self.resize = resize
        self.source = source
        file = source or "table"
        available = dict(schema.image_columns)
        if modalities is None:
            modalities = list(available)
        modalities = tuple(modalities)
        if not modalities:
            paths = _image_path_columns(table)
            seen = f" (columns holding image paths: {', '.join(paths)})" if paths else ""
            raise CohortError("no image modalities to load: the schema names no image columns; name each one with "
                              f"--image-column MODALITY=COLUMN (or in the schema's 'images:'){seen}", file=file)
        for mod in modalities:
            if mod not in available:
                raise CohortError(f"unknown modality '{mod}' (schema images: {', '.join(available) or 'none'})"
                                  f"{did_you_mean(mod, available)}", file=file)
        self.modalities = modalities
        self.channels = {m: int((channels or {}).get(m, default_channels(m))) for m in modalities}
        self.class_names = tuple(str(g) for g in schema.group_levels)

        needed = [schema.group_column] + [available[m] for m in modalities]
        if schema.id_column:
            needed.insert(0, schema.id_column)
        for col in needed:
            if col not in table.columns:
                raise CohortError(f"column not found (columns: {', '.join(map(str, table.columns))})"
                                  f"{did_you_mean(col, table.columns)}", file=file, column=col)
        n = len(table)
        rows = np.asarray(table.index if table.index.name == "row" or _looks_like_rows(table.index)
                          else np.arange(n) + 2)
        labels = self._labels(table[schema.group_column], rows, file)
        ids = (table[schema.id_column].astype(str).to_numpy(dtype=object) if schema.id_column
               else np.array([str(r) for r in rows], dtype=object))
        hospital = None
        if schema.hospital_column and schema.hospital_column in table.columns:
            hospital = table[schema.hospital_column].astype(object).to_numpy()
        clinical_cols = [c for c in schema.variable_names if c in table.columns]
        clinical = table[clinical_cols].reset_index(drop=True).copy()

        images, mask, problems, failures = self._decode(table, available, ids, rows, n, cache,
                                                        progress)
        if failures and on_error == "raise":
            bad = [Path(p[4]) for p in problems if p[5] != "no image"]
            tops = {self.root / q.parts[0] for q in bad if not q.is_absolute() and len(q.parts) > 1}
            if bad and tops and all(not t.exists() for t in tops) and all(
                    not q.is_absolute() and len(q.parts) > 1 for q in bad):
                raise ImageError(f"{len(bad)} image path(s) point into folder(s) that do not exist: "
                                 f"{', '.join(sorted(str(t) for t in tops))} (image paths are relative to the "
                                 f"cohort file's folder, {self.root})", file=file)
            shown = failures[:20]
            more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
            err = ImageError(f"{len(failures)} image(s) could not be loaded:\n  "
                             + "\n  ".join(shown) + more, file=file)
            err.problems = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
            raise err
        self.problems = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
        if len(self.problems):
            counts = self.problems.groupby("modality", sort=False).size()
            text = ", ".join(f"{m}: {k}" for m, k in counts.items())
            empty = int((self.problems["reason"] == "no image").sum())
            why = ", ".join(t for t in (f"{empty} empty image cell{'s' * (empty != 1)}" if empty else "",
                                        f"{len(self.problems) - empty} unreadable" if len(self.problems) > empty
                                        else "") if t)
            warnings.warn(f"{file}: {len(self.problems)} image(s) missing ({why}), kept as masked zero images "
                          f"({text}); the patients are listed in the dataset's problems table "
                          "(image_problems.csv of fusion.train)", AnalysisWarning, stacklevel=2)
        self._store = _Store(images, mask, labels, ids, rows, hospital, clinical)
        self._index = None

    # ------------------------------------------------------------------ construction helpers
    def _labels(self, column: pd.Series, rows, file) -> torch.Tensor:
        levels = list(self.class_names)
        lookup = {lvl: i for i, lvl in enumerate(levels)}
        out = np.empty(len(column), dtype=np.int64)
        for k, value in enumerate(column.tolist()):
            key = None if _is_empty(value) else str(value).strip()
            if key not in lookup:
                shown = "empty cell" if key is None else f"'{value}'"
                raise CohortError(f"group {shown} is not one of the group levels ({', '.join(levels)})"
                                  f"{did_you_mean(key or '', levels)}", file=file, row=int(rows[k]),
                                  column=self.schema.group_column)
            out[k] = lookup[key]
        return torch.from_numpy(out)

    def _decode(self, table, available, ids, rows, n, cache, progress):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            tqdm = None
        h, w = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        images = {m: torch.zeros((n, self.channels[m], h, w), dtype=torch.uint8) for m in self.modalities}
        mask = torch.zeros((n, len(self.modalities)), dtype=torch.bool)
        problems, failures = [], []
        bar = None
        if progress and tqdm is not None:
            bar = tqdm(total=n * len(self.modalities), desc="decoding images", unit="img", file=sys.stderr,
                       leave=False)
        for j, mod in enumerate(self.modalities):
            col = available[mod]
            for i, value in enumerate(table[col].tolist()):
                if bar is not None:
                    bar.update(1)
                if _is_empty(value):
                    problems.append((int(rows[i]), ids[i], mod, col, "", "no image"))
                    continue
                text = str(value).strip()
                if os.sep == "/" and "\\" in text and not Path(text).exists():
                    text = text.replace("\\", "/")  # a path typed on Windows (images\2d\P0001.png)
                path = Path(text)
                full = path if path.is_absolute() else self.root / path
                try:
                    img = load_image_cached(full, size=(h, w), channels=self.channels[mod], resize=self.resize,
                                            cache=cache, patient_id=ids[i], modality=mod)
                except ImageError as exc:
                    reason = exc.message.split(": ", 1)[-1] if ": " in exc.message else exc.message
                    problems.append((int(rows[i]), ids[i], mod, col, str(path), reason))
                    failures.append(f"row {int(rows[i])}, patient {ids[i]}, modality '{mod}': {path}: {reason}")
                    continue
                images[mod][i] = img
                mask[i, j] = True
        if bar is not None:
            bar.close()
        return images, mask, problems, failures

    @classmethod
    def from_tensors(cls, images: dict, labels, *, class_names, mask=None, patient_ids=None, hospital=None,
                     clinical=None) -> "MultimodalDataset":
        """A dataset from tensors already in memory (tests, pre-decoded data).

        ``images``: modality -> uint8 ``(N, C, H, W)``; ``labels``: ints into ``class_names``.
        """
        self = cls.__new__(cls)
        mods = tuple(images)
        n = len(labels)
        for m, t in images.items():
            if t.dtype != torch.uint8 or t.ndim != 4 or len(t) != n:
                raise ValueError(f"images['{m}'] must be uint8 (N={n}, C, H, W), got {t.dtype} {tuple(t.shape)}")
        self.modalities, self.class_names = mods, tuple(class_names)
        self.channels = {m: int(t.shape[1]) for m, t in images.items()}
        first = images[mods[0]]
        self.size, self.resize, self.root, self.schema, self.source = tuple(first.shape[-2:]), "pad", None, None, None
        mask = torch.ones((n, len(mods)), dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        ids = np.array([f"P{i + 1:04d}" for i in range(n)] if patient_ids is None else list(map(str, patient_ids)),
                       dtype=object)
        clinical = pd.DataFrame(index=range(n)) if clinical is None else clinical.reset_index(drop=True)
        self._store = _Store(dict(images), mask, torch.as_tensor(labels, dtype=torch.long), ids,
                             np.full(n, -1), None if hospital is None else np.asarray(hospital, dtype=object),
                             clinical)
        self.problems = pd.DataFrame(columns=PROBLEM_COLUMNS)
        self._index = None
        return self

    # ------------------------------------------------------------------ views
    def _take(self, x):
        return x if self._index is None else x[self._index]

    def __len__(self) -> int:
        return len(self._store.labels) if self._index is None else len(self._index)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{m}: {tuple(self._store.images[m].shape[1:])}" for m in self.modalities)
        return (f"MultimodalDataset(n={len(self)}, classes={list(self.class_names)}, {shapes}, "
                f"present={self.mask.sum(0).tolist()})")

    @property
    def labels(self) -> torch.Tensor:
        """int64 ``(N,)``: index into :attr:`class_names`."""
        return self._take(self._store.labels)

    @property
    def mask(self) -> torch.Tensor:
        """bool ``(N, n_modalities)``: True where the modality's image is present."""
        return self._take(self._store.mask)

    @property
    def patient_ids(self) -> np.ndarray:
        return self._take(self._store.patient_ids)

    @property
    def rows(self) -> np.ndarray:
        """Spreadsheet row of each patient (-1 when built from tensors)."""
        return self._take(self._store.rows)

    @property
    def hospital(self) -> np.ndarray | None:
        h = self._store.hospital
        return None if h is None else self._take(h)

    @property
    def clinical(self) -> pd.DataFrame:
        """The schema variables present in the table, one row per patient, RangeIndex."""
        c = self._store.clinical
        return c if self._index is None else c.iloc[self._index.numpy()].reset_index(drop=True)

    @property
    def indices(self) -> torch.Tensor:
        """Positions of this view's patients in the full dataset."""
        n = len(self._store.labels)
        return torch.arange(n) if self._index is None else self._index

    @property
    def device(self) -> torch.device:
        return self._store.images[self.modalities[0]].device

    def tensors(self, modality: str) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` of ``modality`` (the storage itself for a full dataset; a
        gathered copy for a subset -- prefer :meth:`batch` inside a training loop)."""
        return self._take(self._store.images[self._check_modality(modality)])

    def _check_modality(self, modality: str) -> str:
        if modality not in self._store.images:
            raise KeyError(f"modality '{modality}' not loaded (loaded: {', '.join(self.modalities)})"
                           f"{did_you_mean(modality, self.modalities)}")
        return modality

    def subset(self, indices) -> "MultimodalDataset":
        """A view on ``indices`` (positions in *this* dataset) sharing the pixel storage."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long).reshape(-1)
        n = len(self)
        if len(idx) and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise IndexError(f"subset index out of range for a dataset of {n} patients")
        idx = torch.where(idx < 0, idx + n, idx)
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view._index = idx if self._index is None else self._index[idx]
        return view

    def to(self, device) -> "MultimodalDataset":
        """A dataset whose images, mask and labels live on ``device`` (e.g. GPU-resident data)."""
        s = self._store
        moved = _Store({m: t.to(device) for m, t in s.images.items()}, s.mask.to(device), s.labels.to(device),
                       s.patient_ids, s.rows, s.hospital, s.clinical)
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out._store = moved
        out._index = None if self._index is None else self._index.to(device)
        return out

    def batch(self, positions, modalities=None) -> dict:
        """Whole batch by positions in this view: ``images`` {modality: uint8 (B,C,H,W)},
        ``mask`` (B, M), ``label`` (B,), ``index`` (positions in the full dataset)."""
        pos = torch.as_tensor(positions, dtype=torch.long, device=self.device)
        base = pos if self._index is None else self._index.to(self.device)[pos]
        mods = self.modalities if modalities is None else tuple(self._check_modality(m) for m in modalities)
        s = self._store
        return {"images": {m: s.images[m].index_select(0, base) for m in mods},
                "mask": s.mask.index_select(0, base), "label": s.labels.index_select(0, base), "index": base}

    def __getitem__(self, i) -> dict:
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} patients")
        j = int(i) % n
        k = j if self._index is None else int(self._index[j])
        s = self._store
        return {"images": {m: s.images[m][k] for m in self.modalities}, "mask": s.mask[k],
                "label": s.labels[k], "index": k}


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".npy")


def _image_path_columns(table) -> list:
    """Columns whose filled cells are mostly file names with an image suffix (for a hint)."""
    out = []
    for col in getattr(table, "columns", []):
        values = [str(v).strip().lower() for v in table[col].tolist() if isinstance(v, str) and v.strip()]
        if values and sum(v.endswith(_IMAGE_SUFFIXES) for v in values) >= 0.5 * len(values):
            out.append(str(col))
    return out


def _looks_like_rows(index: pd.Index) -> bool:
    """True when the index is already spreadsheet rows (integers >= 2, increasing)."""
    return (pd.api.types.is_integer_dtype(index) and len(index) > 0 and int(index.min()) >= 2
            and index.is_monotonic_increasing and index.is_unique)
