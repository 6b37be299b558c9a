"""Provenance of a run: what is needed to tell two runs apart and to check them later.

:func:`run_manifest` gathers the resolved configuration, seed, package versions, git commit,
data source and content hashes of the table and of every decoded image tensor
(``run_manifest.json``); :func:`fold_assignments` lists the role of every patient in every
fold (``fold_assignments.csv``) so that the absence of leakage can be checked from a run's
outputs alone (:func:`check_fold_assignments`).
"""
from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import CohortError

__all__ = ["run_manifest", "versions", "git_commit", "sha256_file", "table_sha256", "fold_assignments",
           "check_fold_assignments", "FOLD_ROLES"]

def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:
        return None


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "scipy", "statsmodels"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def table_sha256(dataset) -> str:
    """Hash of what defines the data: patient id, label and row of every image."""
    frame = pd.DataFrame({"patient_id": dataset.patient_ids, "label": dataset.labels.cpu().numpy(),
                          "row": dataset.rows})
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def run_manifest(cfg, dataset, splits, holdout, world_size: int, device, source=None) -> dict:
    """Everything needed to tell two runs apart: config, versions, commit, data source and hashes."""
    data_hashes = {}
    if source is None or Path(str(source.path)).is_file():
        data_hashes["cohort_file_sha256"] = sha256_file(cfg.cohort)
    data_hashes["table_sha256"] = table_sha256(dataset)
    for m in dataset.modalities:
        t = dataset.tensors(m).contiguous().cpu()
        data_hashes[f"tensors_{m}_sha256"] = hashlib.sha256(t.numpy().tobytes()).hexdigest()
    ids = pd.Series(np.asarray(dataset.patient_ids, dtype=object)).astype(str)
    return {
        "config": asdict(cfg),
        "seed": cfg.seed,
        "classes": list(dataset.class_names),
        "n_patients": int(ids.nunique()),
        "n_images": int(len(dataset)),
        "data_source": None if source is None else source.to_dict(),
        "modalities": list(dataset.modalities),
        "present_per_modality": {m: int(dataset.mask[:, j].sum()) for j, m in enumerate(dataset.modalities)},
        "splits": [{"fold": s.fold, "kind": s.kind, "name": s.name, "n_train": int(len(s.train_idx)),
                    "n_val": int(len(s.val_idx)), "n_test": int(len(s.test_idx))} for s in splits],
        "holdout": None if holdout is None else {"name": holdout.name, "n_test": int(len(holdout.test_idx))},
        "versions": versions(),
        "git_commit": git_commit(),
        "device": str(device),
        "world_size": int(world_size),
        "global_batch_size": int(cfg.batch_size) * int(world_size),  # config.batch_size is per process
        "command": " ".join(sys.argv),
        "data": data_hashes,
    }


#: ``role`` values of :func:`fold_assignments`.
FOLD_ROLES = ("train", "validation", "test", "heldout")


def fold_assignments(splits, patient_ids, holdout=None, image_ids=None) -> pd.DataFrame:
    """The role of every patient (and image) in every fold, as a tidy frame.

    Parameters
    ----------
    splits : list of fusion.splits.Split
        Positions into ``patient_ids``.
    patient_ids : array-like
        Patient id of each dataset row.
    holdout : fusion.splits.Split, optional
        A held-out test set predicted by every fold model (role ``'heldout'`` in each fold).
    image_ids : array-like, optional
        An id of each dataset row (default: the row position), for data with several images
        per patient.

    Returns
    -------
    pandas.DataFrame
        ``fold, kind, name, patient_id, image_id, role`` with role one of :data:`FOLD_ROLES`
        (``'validation'`` = the inner validation patients that early stopping looks at), one
        row per fold x dataset row that the fold uses.
    """
    ids = pd.Series(np.asarray(patient_ids, dtype=object)).astype(str).to_numpy()
    images = (np.arange(len(ids)).astype(str) if image_ids is None
              else pd.Series(np.asarray(image_ids, dtype=object)).astype(str).to_numpy())
    parts = []
    for s in splits:
        roles = [("train", s.train_idx), ("validation", s.val_idx), ("test", s.test_idx)]
        if holdout is not None:
            roles.append(("heldout", holdout.test_idx))
        for role, idx in roles:
            idx = np.asarray(idx, dtype=np.int64)
            parts.append(pd.DataFrame({"fold": s.fold, "kind": s.kind, "name": s.name, "patient_id": ids[idx],
                                       "image_id": images[idx], "role": role}))
    cols = ["fold", "kind", "name", "patient_id", "image_id", "role"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def check_fold_assignments(assignments: pd.DataFrame, source: str = "fold_assignments.csv") -> pd.DataFrame:
    """Patients on two sides of a fold, from a fold-assignment table alone.

    Returns one row per (fold, patient) whose images have more than one role in that fold
    (``fold, patient_id, roles``); empty when no patient crosses a split.  Raises
    :class:`~analysis.errors.CohortError` when a patient is a test patient of two folds.
    """
    frame = assignments.assign(patient_id=assignments["patient_id"].astype(str))
    per = frame.groupby(["fold", "patient_id"], sort=True)["role"].agg(lambda r: ", ".join(sorted(set(r))))
    crossing = per[per.str.contains(",")].reset_index().rename(columns={"role": "roles"})
    tests = frame[frame["role"] == "test"].drop_duplicates(["fold", "patient_id"])
    twice = tests["patient_id"].duplicated(keep=False)
    if twice.any():
        p = tests.loc[twice, "patient_id"].iloc[0]
        raise CohortError(f"patient {p!r} is a test patient of folds "
                          f"{sorted(tests.loc[tests['patient_id'] == p, 'fold'].tolist())}", file=source)
    return crossing
