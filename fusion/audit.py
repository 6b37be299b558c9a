"""Leakage audit of a run (or of a data set): could the split have leaked?

``python -m fusion.audit RUN`` reads a finished run's outputs (``fold_assignments.csv``,
``config.yaml``, ``run_manifest.json``) and the images its config points to, and answers three
questions, each as a tidy frame of :class:`AuditResult`:

1. **Patient overlap** (``patient_overlap``): a patient whose images have more than one role
   (train / inner validation / test) in a fold, or who is a test patient of two folds, from
   the fold-assignment file alone (:func:`fusion.provenance.check_fold_assignments`).
2. **Near-duplicate images across splits** (``cross_split``): two images of *different*
   patients whose perceptual hashes are within :data:`PHASH_THRESHOLD` bits, that sit on two
   sides of a fold (e.g. one in training, one in test). Every near-duplicate pair of the data
   is in ``near_duplicates``, whatever the split.
3. **Pre-processing fitted before the split** (``preprocessing``): every step of the pipeline
   that could be estimated from data (normalisation, augmentation, resizing, pre-trained
   weights, imputation and scaling of clinical variables, fusion heads, early stopping,
   temperature scaling), with what it was fitted on and whether that can leak.

``python -m fusion.audit --data busi`` (or ``bus_bra``, a manifest or a cohort table) audits a
data set without a run: its near-duplicate groups and, for BUS-BRA, the official
patient-disjoint folds.

Perceptual hashes
-----------------
``imagehash`` (https://github.com/JohannesBuchner/imagehash) on the grey image: pHash (DCT of a
32 x 32 down-sampled image, 8 x 8 low frequencies against their median; 64 bits) decides;
dHash (sign of horizontal gradients on a 9 x 8 thumbnail; 64 bits) is reported beside it.
Two images are near-duplicates when their pHash Hamming distance is at most
:data:`PHASH_THRESHOLD` = 8 of 64 bits. The threshold was read off the two public sets, with
pairs checked by eye (``tests/fusion/test_audit.py`` keeps them):

* BUSI (780 images, 303,810 pairs): pairs at 0-8 bits are the same picture (re-saved, with or
  without calipers or a corner marker); pairs at 10 bits are still the same lesion in BUSI
  (a neighbouring frame, an annotation box), the unrelated pairs form a bulk centred on 32 bits
  whose tail starts at 12 bits (benign (127) vs normal (126), different images).
* BUS-BRA (1,875 images, 1,064 patients): nothing at 0-8 bits between different patients, but
  six pairs of *different* patients at exactly 10 bits that are different images (e.g.
  ``bus_0211-r`` vs ``bus_1013-l``).

So 8 bits keeps the copies and re-annotated frames without false pairs on either set;
``threshold=10`` also finds neighbouring frames of one lesion (BUSI: 11 more images) at the
price of false pairs on other data -- check those by eye.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import CohortError, ConfigError

__all__ = ["PHASH_THRESHOLD", "AuditResult", "audit_run", "audit_data", "image_table", "hash_images",
           "hamming_matrix", "near_duplicate_pairs", "duplicate_groups", "cross_split_pairs",
           "preprocessing_report", "official_fold_assignments", "build_parser", "main"]

#: Hamming distance (bits of 64) at or below which two pHashes are near-duplicates (see module docstring).
PHASH_THRESHOLD = 8
_HASH_SIZE = 8
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


# --------------------------------------------------------------------------- images of a data set
def image_table(cohort, schema=None, modalities=None, data_root=None) -> tuple[pd.DataFrame, object]:
    """Every image a run on ``cohort`` decodes: one row per dataset row x modality.

    Parameters
    ----------
    cohort : str or Path
        What ``fusion.train`` accepts (:func:`fusion.train.load_table`): a cohort table,
        ``busi``, ``bus_bra``, a manifest YAML or a folder of class folders.
    schema : str or Path, optional
    modalities : sequence of str, optional
        Default: every image column of the schema.
    data_root : str or Path, optional
        Folder of the public sets.

    Returns
    -------
    (pandas.DataFrame, DataSource)
        ``position, row, patient_id, image_id, label, modality, path`` -- ``position`` is the
        dataset row (0-based), ``image_id`` as in ``fold_assignments.csv`` (``row<N>`` when a
        patient has several images, else the position), ``path`` absolute; empty image cells
        are left out.
    """
    from fusion.dataset import _looks_like_rows
    from fusion.train import load_table

    table, schema_obj, source = load_table(cohort, schema, data_root)
    if hasattr(table, "data") and hasattr(table, "schema"):
        frame = table.data
        root = Path(table.source).parent if getattr(table, "source", None) else Path(str(cohort)).parent
    else:
        frame = table
        root = Path(frame.attrs.get("image_root") or Path(str(cohort)).parent)
    mods = list(modalities) if modalities else list(schema_obj.image_columns)
    for m in mods:
        if m not in schema_obj.image_columns:
            from analysis.errors import did_you_mean

            raise ConfigError(f"unknown modality {m!r} (schema images: {', '.join(schema_obj.image_columns)})"
                              f"{did_you_mean(m, schema_obj.image_columns)}")
    n = len(frame)
    rows = np.asarray(frame.index if frame.index.name == "row" or _looks_like_rows(frame.index)
                      else np.arange(n) + 2)
    ids = (frame[schema_obj.id_column].astype(str).to_numpy(dtype=object) if schema_obj.id_column
           else np.array([str(r) for r in rows], dtype=object))
    several = not pd.Series(ids).is_unique
    image_ids = np.array([f"row{int(r)}" for r in rows] if several else [str(i) for i in range(n)], dtype=object)
    labels = frame[schema_obj.group_column].astype(str).to_numpy()
    parts = []
    for m in mods:
        col = schema_obj.image_columns[m]
        for i, value in enumerate(frame[col].tolist()):
            if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
                continue
            text = str(value).strip()
            if os.sep == "/" and "\\" in text and not Path(text).exists():
                text = text.replace("\\", "/")
            p = Path(text)
            parts.append((i, int(rows[i]), ids[i], image_ids[i], labels[i], m, str(p if p.is_absolute() else root / p)))
    out = pd.DataFrame(parts, columns=["position", "row", "patient_id", "image_id", "label", "modality", "path"])
    return out, source


def _hash_one(path) -> tuple[str, str]:
    import imagehash
    from PIL import Image

    from fusion.images import _to_8bit

    with Image.open(path) as img:
        img.load()
        grey = _to_8bit(img, path, None, None).convert("L")
    return str(imagehash.phash(grey, hash_size=_HASH_SIZE)), str(imagehash.dhash(grey, hash_size=_HASH_SIZE))


def hash_images(paths, cache=None, progress: bool = False) -> pd.DataFrame:
    """pHash and dHash (64 bits each, hex) of every image file.

    Parameters
    ----------
    paths : sequence of str or Path
    cache : str or Path, optional
        A CSV of earlier hashes (``path, size, mtime_ns, phash, dhash``): files whose size and
        modification time are unchanged are not decoded again; the file is rewritten.
    progress : bool
        tqdm bar on stderr.

    Returns
    -------
    pandas.DataFrame
        ``path, phash, dhash, reason`` in the order of ``paths``; an unreadable file has empty
        hashes and the reason.
    """
    paths = [str(p) for p in paths]
    known = {}
    cache = None if cache is None else Path(cache)
    if cache is not None and cache.is_file():
        old = pd.read_csv(cache, dtype={"phash": str, "dhash": str, "path": str})
        known = {r.path: (int(r.size), int(r.mtime_ns), r.phash, r.dhash) for r in old.itertuples(index=False)}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        import sys

        bar = tqdm(total=len(paths), desc="hashing images", unit="img", file=sys.stderr, leave=False)
    rows, fresh = [], {}
    for p in paths:
        if bar is not None:
            bar.update(1)
        try:
            st = os.stat(p)
        except OSError:
            rows.append((p, "", "", "image file not found"))
            continue
        hit = known.get(p)
        if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            ph, dh = hit[2], hit[3]
        else:
            try:
                ph, dh = _hash_one(p)
            except Exception as exc:  # unreadable image: reported, not fatal for an audit
                rows.append((p, "", "", f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"))
                continue
        fresh[p] = (st.st_size, st.st_mtime_ns, ph, dh)
        rows.append((p, ph, dh, ""))
    if bar is not None:
        bar.close()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        merged = {**known, **fresh}
        pd.DataFrame([(k, *v) for k, v in merged.items()],
                     columns=["path", "size", "mtime_ns", "phash", "dhash"]).to_csv(cache, index=False)
    return pd.DataFrame(rows, columns=["path", "phash", "dhash", "reason"])


def _bits(hexes) -> np.ndarray:
    """Hex hashes (16 hex digits) -> ``(n, 8)`` uint8 bytes."""
    return np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hexes], dtype=np.uint8).reshape(
        len(hexes), -1)


def hamming_matrix(a, b=None, chunk: int = 256) -> np.ndarray:
    """Pairwise Hamming distances (bits) between hex hashes ``a`` and ``b`` (default ``a``).

    Equals ``imagehash.hex_to_hash(x) - imagehash.hex_to_hash(y)`` for every pair; computed on
    packed bytes in row chunks, so 2,000 images need a few MB.
    """
    A = _bits(list(a))
    B = A if b is None else _bits(list(b))
    out = np.empty((len(A), len(B)), dtype=np.int16)
    for s in range(0, len(A), chunk):
        x = np.bitwise_xor(A[s:s + chunk, None, :], B[None, :, :])
        out[s:s + chunk] = _POPCOUNT[x].sum(axis=-1, dtype=np.int16)
    return out


def near_duplicate_pairs(images: pd.DataFrame, threshold: int = PHASH_THRESHOLD) -> pd.DataFrame:
    """Pairs of images (same modality) whose pHash distance is at most ``threshold``.

    Parameters
    ----------
    images : pandas.DataFrame
        :func:`image_table` rows with ``phash`` and ``dhash`` columns (rows without a hash
        are skipped).
    threshold : int, default :data:`PHASH_THRESHOLD`

    Returns
    -------
    pandas.DataFrame
        ``modality, patient_a, image_a, label_a, path_a, patient_b, image_b, label_b, path_b,
        phash_distance, dhash_distance, same_patient, same_label``; ``a`` before ``b`` in
        table order, sorted by modality, distance, ``a``.
    """
    if not 0 <= int(threshold) <= _HASH_SIZE * _HASH_SIZE:
        raise ConfigError(f"--threshold must lie in 0..{_HASH_SIZE ** 2} bits, got {threshold}")
    cols = ["modality", "patient_a", "image_a", "label_a", "path_a", "patient_b", "image_b", "label_b", "path_b",
            "phash_distance", "dhash_distance", "same_patient", "same_label"]
    parts = []
    ok = images[images["phash"].fillna("").astype(str).str.len() > 0]
    for mod, g in ok.groupby("modality", sort=False):
        g = g.reset_index(drop=True)
        d = hamming_matrix(g["phash"])
        i, j = np.nonzero(np.triu(d <= int(threshold), k=1))
        if not len(i):
            continue
        dd = hamming_matrix(g["dhash"])
        a, b = g.iloc[i].reset_index(drop=True), g.iloc[j].reset_index(drop=True)
        parts.append(pd.DataFrame({
            "modality": mod, "patient_a": a["patient_id"], "image_a": a["image_id"], "label_a": a["label"],
            "path_a": a["path"], "patient_b": b["patient_id"], "image_b": b["image_id"], "label_b": b["label"],
            "path_b": b["path"], "phash_distance": d[i, j].astype(int), "dhash_distance": dd[i, j].astype(int),
            "same_patient": (a["patient_id"].to_numpy() == b["patient_id"].to_numpy()),
            "same_label": (a["label"].to_numpy() == b["label"].to_numpy())}))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols].sort_values(
        ["modality", "phash_distance", "path_a", "path_b"], kind="stable").reset_index(drop=True)


def duplicate_groups(pairs: pd.DataFrame) -> pd.DataFrame:
    """Connected groups of near-duplicate images (single linkage over ``pairs``).

    Returns
    -------
    pandas.DataFrame
        ``modality, group, n_images, n_patients, labels, paths``: one row per group of two or
        more images, largest first; ``labels`` lists the distinct labels (more than one = the
        same picture carries two diagnoses).
    """
    cols = ["modality", "group", "n_images", "n_patients", "labels", "paths"]
    out = []
    for mod, g in pairs.groupby("modality", sort=False):
        parent: dict = {}

        def find(x):
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        info = {}
        for r in g.itertuples(index=False):
            info[r.path_a] = (r.patient_a, r.label_a)
            info[r.path_b] = (r.patient_b, r.label_b)
            ra, rb = find(r.path_a), find(r.path_b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        members: dict = {}
        for p in info:
            members.setdefault(find(p), []).append(p)
        for paths in members.values():
            paths = sorted(paths)
            out.append({"modality": mod, "n_images": len(paths),
                        "n_patients": len({info[p][0] for p in paths}),
                        "labels": ", ".join(sorted({str(info[p][1]) for p in paths})),
                        "paths": "; ".join(paths)})
    if not out:
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame(out).sort_values(["modality", "n_images", "paths"], ascending=[True, False, True],
                                          kind="stable").reset_index(drop=True)
    frame.insert(1, "group", np.arange(1, len(frame) + 1))
    return frame[cols]


def cross_split_pairs(pairs: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    """Near-duplicate pairs of different patients that sit on two sides of a fold.

    Parameters
    ----------
    pairs : pandas.DataFrame
        :func:`near_duplicate_pairs`.
    assignments : pandas.DataFrame
        ``fold_assignments.csv`` (``fold, kind, name, patient_id, image_id, role``).

    Returns
    -------
    pandas.DataFrame
        ``fold, modality, patient_a, image_a, role_a, patient_b, image_b, role_b,
        phash_distance, dhash_distance, path_a, path_b``: one row per fold in which the two
        images have different roles (train / validation / test / heldout). A pair of one
        patient's images is left out (the patient-overlap check covers it).
    """
    cols = ["fold", "modality", "patient_a", "image_a", "role_a", "patient_b", "image_b", "role_b",
            "phash_distance", "dhash_distance", "path_a", "path_b"]
    p = pairs[~pairs["same_patient"].astype(bool)]
    if p.empty or assignments.empty:
        return pd.DataFrame(columns=cols)
    fa = assignments.assign(patient_id=assignments["patient_id"].astype(str),
                            image_id=assignments["image_id"].astype(str))[["fold", "patient_id", "image_id", "role"]]
    fa = fa.drop_duplicates(["fold", "patient_id", "image_id"])
    p = p.assign(patient_a=p["patient_a"].astype(str), image_a=p["image_a"].astype(str),
                 patient_b=p["patient_b"].astype(str), image_b=p["image_b"].astype(str))
    left = p.merge(fa.rename(columns={"patient_id": "patient_a", "image_id": "image_a", "role": "role_a"}),
                   on=["patient_a", "image_a"])
    both = left.merge(fa.rename(columns={"patient_id": "patient_b", "image_id": "image_b", "role": "role_b"}),
                      on=["fold", "patient_b", "image_b"])
    both = both[both["role_a"] != both["role_b"]]
    return both[cols].sort_values(["fold", "modality", "phash_distance", "path_a"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- pre-processing
def preprocessing_report(config: dict, manifest: dict | None = None) -> pd.DataFrame:
    """What each data-dependent step of a run was fitted on, from its config and manifest.

    Parameters
    ----------
    config : dict
        The run's ``config.yaml`` (a :class:`fusion.config.TrainConfig` as a dict).
    manifest : dict, optional
        The run's ``run_manifest.json``.

    Returns
    -------
    pandas.DataFrame
        ``step, setting, fitted_on, leaks, reason``: ``leaks`` is ``'no'``, ``'yes'`` or
        ``'check'`` (cannot be decided from the run's outputs; ``reason`` says what to check).

    Notes
    -----
    The constants are read from the code that ran (:mod:`fusion.transforms`), not restated:
    the normalisation is fixed (ImageNet mean / SD, or their grey equivalents) and is never
    estimated from the images, so nothing about the test images can reach training through it.
    """
    from fusion.transforms import GREY_MEAN, GREY_STD, IMAGENET_MEAN, IMAGENET_STD, PIPELINES

    manifest = manifest or {}
    rows = []

    def add(step, setting, fitted_on, leaks, reason):
        rows.append({"step": step, "setting": setting, "fitted_on": fitted_on, "leaks": leaks, "reason": reason})

    add("intensity normalisation", f"3 channels: mean {IMAGENET_MEAN}, SD {IMAGENET_STD}; 1 channel: mean "
        f"{GREY_MEAN[0]}, SD {GREY_STD[0]}", "nothing (fixed constants)", "no",
        "fusion.transforms uses fixed ImageNet constants; no statistic of the data set is computed")
    aug = str(config.get("augment", "light"))
    spec = PIPELINES.get(aug)
    add("augmentation", aug, "nothing (random per sample, training batches only)", "no" if spec is not None else "check",
        "random crop / rotation / flip / jitter drawn per training sample; the evaluation transform is "
        "deterministic" if spec is not None else f"unknown pipeline {aug!r}: check it fits no parameter")
    add("resizing", f"{config.get('size')} px, aspect kept (pad)", "nothing (fixed size)", "no",
        "every image is resized on its own; no data-dependent crop or statistic")
    weights = str(config.get("weights", "none"))
    if weights in ("none", "None", ""):
        add("initial weights", "none (random initialisation)", "nothing", "no", "no pre-training")
    elif weights == "imagenet":
        add("initial weights", "imagenet", "ImageNet (natural images, not this data set)", "no",
            "torchvision ImageNet weights; no image of this data set")
    else:
        data = _pretraining_data(weights)
        cohort = str(config.get("cohort", ""))
        same = data is not None and Path(str(data)).name.lower() == Path(cohort).name.lower()
        add("initial weights", weights, f"pre-training data: {data or 'unknown'}", "yes" if same else "check",
            ("the weights were pre-trained on the data set that is cross-validated here: every test image was "
             "seen by the pre-training") if same else
            "pre-trained weights: check that the pre-training data hold none of this run's test patients")
    stopping = (f"patience {config.get('patience')}" if config.get("patience") else
                "no early stop, lowest-loss epoch kept")
    add("early stopping (epoch choice)", f"{stopping}, inner validation share "
        f"{config.get('inner_val')}", "each fold's inner validation patients (carved from its training patients)",
        "no", "the test patients of a fold are used for nothing but its predictions; the fold-assignment check "
        "confirms that validation and test patients do not overlap")
    modes = list(config.get("fusion") or []) + (["late"] if config.get("late_fusion") else [])
    if "late" in modes:
        add("late fusion: temperature scaling", "one temperature per fold CNN",
            "that fold's inner validation patients", "no", "fusion.late_fusion.calibrate_first_level")
        add("late fusion: clinical imputation, scaling, L2 strength",
            "training mean / mode, mean / SD, C by inner CV", "each fold's training patients", "no",
            "fusion.late_fusion: estimated on the fold's training patients only")
        if not config.get("nested_fusion"):
            add("late fusion: first-level inputs", "shared folds (not nested)",
                "out-of-fold CNN predictions of other folds", "check",
                "inherent to stacking: the CNNs that produce fold k's training features saw fold k's test patients; "
                "--nested-fusion removes this")
    if "embedding" in modes:
        add("embedding fusion: standardisation, PCA, head", "per fold",
            "that fold's inner validation patients", "no", "fusion.embedding")
    if "joint" in modes:
        add("joint fusion", "per fold", "that fold's training patients (inner validation for early stopping)", "no",
            "fusion.joint")
    if config.get("baseline"):
        add("texture baseline: scaling, L2 strength", "per fold", "each fold's training patients", "no",
            "fusion.texture")
    src = (manifest.get("data_source") or {})
    if src.get("unit_of_analysis") == "image":
        add("unit of analysis", "image (no patient ids)", "-", "check",
            "every image is its own patient: near-duplicates of one patient can fall on both sides of a split "
            "(see the near-duplicate pairs across splits)")
    return pd.DataFrame(rows, columns=["step", "setting", "fitted_on", "leaks", "reason"])


def _pretraining_data(weights: str):
    """The ``data`` of the pre-training run that wrote ``weights`` (its config beside it), if known."""
    import yaml

    p = Path(weights)
    for cand in (p.parent / "config.yaml", p.parent / "pretrain_config.yaml"):
        if cand.is_file():
            try:
                cfg = yaml.safe_load(cand.read_text(encoding="utf-8")) or {}
            except Exception:
                return None
            return cfg.get("data") or cfg.get("cohort")
    return None


# --------------------------------------------------------------------------- the audit
@dataclass
class AuditResult:
    """The audit's tidy frames (see :func:`audit_run`).

    Attributes
    ----------
    summary : pandas.DataFrame
        ``check, status, n, detail``: one row per check; status ``'pass'``, ``'fail'``,
        ``'check'`` (needs a human) or ``'not run'``.
    patient_overlap : pandas.DataFrame
        ``fold, patient_id, roles`` (:func:`fusion.provenance.check_fold_assignments`).
    near_duplicates : pandas.DataFrame
        :func:`near_duplicate_pairs` over the whole data set.
    groups : pandas.DataFrame
        :func:`duplicate_groups`.
    cross_split : pandas.DataFrame
        :func:`cross_split_pairs`.
    preprocessing : pandas.DataFrame
        :func:`preprocessing_report`.
    problems : pandas.DataFrame
        Images that could not be hashed (``path, reason``).
    threshold : int
    source : str
    """

    summary: pd.DataFrame
    patient_overlap: pd.DataFrame
    near_duplicates: pd.DataFrame
    groups: pd.DataFrame
    cross_split: pd.DataFrame
    preprocessing: pd.DataFrame
    problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    threshold: int = PHASH_THRESHOLD
    source: str = ""

    @property
    def passed(self) -> bool:
        """No check failed (``'check'`` rows still need a human)."""
        return not (self.summary["status"] == "fail").any()

    def to_markdown(self) -> str:
        """The summary and the first pairs as markdown."""
        lines = [f"# Leakage audit: {self.source}", "",
                 f"Near-duplicates: pHash Hamming distance <= {self.threshold} of 64 bits (fusion.audit).", "",
                 _md(self.summary), ""]
        if len(self.patient_overlap):
            lines += ["## Patients on two sides of a fold", "", _md(self.patient_overlap.head(50)), ""]
        if len(self.cross_split):
            cols = ["fold", "patient_a", "image_a", "role_a", "patient_b", "image_b", "role_b", "phash_distance"]
            lines += [f"## Near-duplicate images across splits ({len(self.cross_split)} pair-folds; first 50)", "",
                      _md(self.cross_split[cols].head(50)), ""]
        if len(self.preprocessing):
            lines += ["## Pre-processing: what was fitted on what", "", _md(self.preprocessing), ""]
        return "\n".join(lines)

    def save(self, out) -> list:
        """``audit_summary.csv``, ``audit_patient_overlap.csv``, ``audit_near_duplicates.csv``,
        ``audit_duplicate_groups.csv``, ``audit_cross_split.csv``, ``audit_preprocessing.csv``,
        ``audit.md`` in ``out``; returns the paths."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, frame in (("audit_summary.csv", self.summary), ("audit_patient_overlap.csv", self.patient_overlap),
                            ("audit_near_duplicates.csv", self.near_duplicates),
                            ("audit_duplicate_groups.csv", self.groups), ("audit_cross_split.csv", self.cross_split),
                            ("audit_preprocessing.csv", self.preprocessing), ("audit_image_problems.csv", self.problems)):
            if name == "audit_image_problems.csv" and frame.empty:
                continue
            frame.to_csv(out / name, index=False)
            written.append(out / name)
        (out / "audit.md").write_text(self.to_markdown() + "\n", encoding="utf-8")
        written.append(out / "audit.md")
        return written


def _md(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * len(cols)) + "|"]
    for r in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in r) + " |")
    return "\n".join(lines)


def _overlap(assignments: pd.DataFrame, source: str) -> tuple[pd.DataFrame, str | None]:
    from fusion.provenance import check_fold_assignments

    try:
        return check_fold_assignments(assignments, source=source), None
    except CohortError as exc:
        return pd.DataFrame(columns=["fold", "patient_id", "roles"]), exc.message


def _hashed_images(cohort, schema, modalities, data_root, cache, progress, limit=None):
    images, source = image_table(cohort, schema, modalities, data_root)
    if limit is not None:
        images = images.head(int(limit))
    hashes = hash_images(images["path"], cache=cache, progress=progress)
    images = images.assign(phash=hashes["phash"].to_numpy(), dhash=hashes["dhash"].to_numpy())
    problems = hashes.loc[hashes["reason"] != "", ["path", "reason"]].reset_index(drop=True)
    return images, problems, source


def _summary_rows(overlap, twice, images, pairs, groups, cross, pre, threshold, unit):
    rows = []
    if overlap is None:
        rows.append(("patient overlap (train / validation / test)", "not run", np.nan, "no fold assignments"))
    elif twice:
        rows.append(("patient overlap (train / validation / test)", "fail", np.nan, twice))
    else:
        n = int(overlap["patient_id"].nunique()) if len(overlap) else 0
        rows.append(("patient overlap (train / validation / test)", "fail" if n else "pass", n,
                     f"{n} patient(s) with images in two roles of a fold" if n else
                     "no patient has images in two roles of any fold, none is a test patient twice"))
    if images is None:
        rows.append(("near-duplicate images", "not run", np.nan, "hashing skipped"))
    else:
        in_groups = int(groups["n_images"].sum()) if len(groups) else 0
        n_img = int(len(images))
        conflicting = int((groups["labels"].str.contains(",")).sum()) if len(groups) else 0
        multi = int((groups["n_patients"] > 1).sum()) if len(groups) else 0
        detail = (f"{len(pairs)} pair(s) within pHash <= {threshold} bits; {in_groups} of {n_img} images "
                  f"({100 * in_groups / max(n_img, 1):.1f} %) in {len(groups)} group(s); {multi} group(s) span "
                  f"more than one patient id; {conflicting} group(s) carry more than one label")
        status = "check" if multi else "pass"
        rows.append(("near-duplicate images", status, len(pairs), detail))
        if cross is None:
            rows.append(("near-duplicates across splits", "not run", np.nan, "no fold assignments"))
        else:
            n = int(len(cross))
            test = cross[(cross["role_a"] == "test") ^ (cross["role_b"] == "test")] if n else cross
            rows.append(("near-duplicates across splits", "fail" if len(test) else ("check" if n else "pass"), n,
                         f"{len(test)} pair-fold(s) with one image in test and the other in training or validation; "
                         f"{n - len(test)} between training and validation" if n else
                         "no near-duplicate pair of different patients sits on two sides of a fold"))
    if pre is not None:
        yes = pre[pre["leaks"] == "yes"]
        chk = pre[pre["leaks"] == "check"]
        rows.append(("pre-processing fitted before the split", "fail" if len(yes) else ("check" if len(chk) else "pass"),
                     int(len(yes)), "; ".join(yes["step"]) if len(yes) else
                     ("to check: " + "; ".join(chk["step"]) if len(chk) else
                      "nothing data-dependent is fitted outside a fold's training (or inner validation) patients")))
    if unit == "image":
        rows.append(("unit of analysis", "check", np.nan,
                     "image-level: the data have no patient ids, so images of one patient can be in different folds"))
    return pd.DataFrame(rows, columns=["check", "status", "n", "detail"])


def audit_run(run_dir, *, threshold: int = PHASH_THRESHOLD, hashes: bool = True, cohort=None, data_root=None,
              cache=None, progress: bool = False) -> AuditResult:
    """Leakage audit of a finished run of ``fusion.train`` / :func:`fusion.cross_validate`.

    Parameters
    ----------
    run_dir : str or Path
        The run's output folder (``fold_assignments.csv``, ``config.yaml``, ``run_manifest.json``).
    threshold : int, default :data:`PHASH_THRESHOLD`
        pHash Hamming distance (bits of 64) for a near-duplicate.
    hashes : bool, default True
        Hash the images (False: patient overlap and pre-processing only).
    cohort : str or Path, optional
        The data the run used (default: ``cohort`` of ``config.yaml``, relative to the working
        directory as when training).
    data_root : str or Path, optional
        Folder of the public sets.
    cache : str or Path, optional
        Hash cache CSV (default ``RUN/audit/image_hashes.csv``).
    progress : bool

    Returns
    -------
    AuditResult

    Raises
    ------
    ConfigError
        Not a run folder (no ``fold_assignments.csv``), or the cohort cannot be found.
    """
    import yaml

    run = Path(run_dir)
    fa_path = run / "fold_assignments.csv"
    if not fa_path.is_file():
        raise ConfigError(f"{run}: no fold_assignments.csv (expected the --out folder of fusion.train)")
    assignments = pd.read_csv(fa_path, dtype={"patient_id": str, "image_id": str})
    cfg_path = run / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    man_path = run / "run_manifest.json"
    manifest = json.loads(man_path.read_text(encoding="utf-8")) if man_path.is_file() else {}
    overlap, twice = _overlap(assignments, str(fa_path))
    pre = preprocessing_report(config, manifest)
    images = pairs = groups = cross = None
    problems = pd.DataFrame(columns=["path", "reason"])
    unit = (manifest.get("data_source") or {}).get("unit_of_analysis")
    if hashes:
        cohort = cohort or config.get("cohort")
        if not cohort:
            raise ConfigError(f"{run}: no cohort in config.yaml; pass cohort=")
        mods = manifest.get("modalities") or config.get("modalities")
        images, problems, _ = _hashed_images(cohort, config.get("schema"), mods, data_root,
                                             cache if cache is not None else run / "audit" / "image_hashes.csv",
                                             progress)
        pairs = near_duplicate_pairs(images, threshold)
        groups = duplicate_groups(pairs)
        cross = cross_split_pairs(pairs, assignments)
    summary = _summary_rows(overlap, twice, images, pairs, groups, cross, pre, threshold, unit)
    empty = near_duplicate_pairs(pd.DataFrame(columns=["modality", "phash"]), threshold)
    return AuditResult(summary=summary, patient_overlap=overlap,
                       near_duplicates=empty if pairs is None else pairs,
                       groups=duplicate_groups(empty) if groups is None else groups,
                       cross_split=cross_split_pairs(empty, assignments) if cross is None else cross,
                       preprocessing=pre, problems=problems, threshold=int(threshold), source=str(run))


def official_fold_assignments(table: pd.DataFrame, column: str = "official_fold") -> pd.DataFrame:
    """Fold assignments of a data set's official folds (BUS-BRA ``official_fold``): fold ``k``
    tests official fold ``k`` and trains on the others (``fold_assignments.csv`` format)."""
    ids = table["patient_id"].astype(str).to_numpy()
    several = not pd.Series(ids).is_unique
    image_ids = (np.array([f"row{int(r)}" for r in table.index], dtype=object) if several
                 else np.arange(len(ids)).astype(str))
    parts = []
    for k in sorted(pd.unique(table[column])):
        role = np.where(table[column].to_numpy() == k, "test", "train")
        parts.append(pd.DataFrame({"fold": int(k) - 1, "kind": "official", "name": f"official fold {int(k)}",
                                   "patient_id": ids, "image_id": image_ids, "role": role}))
    return pd.concat(parts, ignore_index=True)


def audit_data(spec, *, schema=None, modalities=None, threshold: int = PHASH_THRESHOLD, data_root=None,
               cache=None, hashes: bool = True, progress: bool = False, limit: int | None = None) -> AuditResult:
    """Near-duplicate audit of a data set without a run (and its official folds, if it has any).

    Parameters
    ----------
    spec : str or Path
        ``busi``, ``bus_bra``, a manifest YAML, a folder of class folders or a cohort table.
    schema, modalities, data_root : optional
        As for :func:`image_table`.
    threshold : int, default :data:`PHASH_THRESHOLD`
    cache : str or Path, optional
        Hash cache CSV (see :func:`hash_images`).
    hashes : bool, default True
    progress : bool
    limit : int, optional
        Hash only the first ``limit`` images (a quick look).

    Returns
    -------
    AuditResult
        With the official folds' patient overlap (BUS-BRA: ``official_fold``), else
        ``patient_overlap`` empty and its check ``'not run'``.
    """
    import warnings

    from fusion.manifests import ImageLevelWarning
    from fusion.train import load_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageLevelWarning)
        table, _, source = load_table(spec, schema, data_root)
    frame = table.data if hasattr(table, "data") else table
    overlap, twice, cross = None, None, None
    assignments = None
    if "official_fold" in frame.columns:
        assignments = official_fold_assignments(frame)
        overlap, twice = _overlap(assignments, f"{spec}: official folds")
    images = pairs = groups = None
    problems = pd.DataFrame(columns=["path", "reason"])
    if hashes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImageLevelWarning)
            images, problems, _ = _hashed_images(spec, schema, modalities, data_root, cache, progress, limit)
        pairs = near_duplicate_pairs(images, threshold)
        groups = duplicate_groups(pairs)
        if assignments is not None:
            cross = cross_split_pairs(pairs, assignments)
    summary = _summary_rows(overlap, twice, images, pairs, groups, cross, None, threshold, source.unit_of_analysis)
    empty = near_duplicate_pairs(pd.DataFrame(columns=["modality", "phash"]), threshold)
    return AuditResult(summary=summary,
                       patient_overlap=overlap if overlap is not None else pd.DataFrame(
                           columns=["fold", "patient_id", "roles"]),
                       near_duplicates=empty if pairs is None else pairs,
                       groups=duplicate_groups(empty) if groups is None else groups,
                       cross_split=cross if cross is not None else cross_split_pairs(empty, pd.DataFrame()),
                       preprocessing=pd.DataFrame(columns=["step", "setting", "fitted_on", "leaks", "reason"]),
                       problems=problems, threshold=int(threshold), source=str(spec))


# --------------------------------------------------------------------------- CLI
EPILOG = """\
examples:
  # audit a finished run (patient overlap, near-duplicates across splits, pre-processing)
  python -m fusion.audit runs/cv
  # the same, and the TRIPOD+AI / CLAIM 2024 checklist (markdown + docx) beside the results
  python -m fusion.audit runs/cv --checklist
  # near-duplicate images within a data set, without a run
  python -m fusion.audit --data busi --out reports/audit_busi
  python -m fusion.audit --data bus_bra --out reports/audit_bus_bra
"""


def build_parser(add_help: bool = True):
    import argparse

    p = argparse.ArgumentParser(prog="python -m fusion.audit", add_help=add_help,
                                description="Leakage audit of a run or a data set (patients, near-duplicates, "
                                            "pre-processing).",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", help="output folder of fusion.train / fusion.cross_validate")
    p.add_argument("--data", help="audit a data set instead of a run: busi, bus_bra, a manifest .yaml, a folder "
                                  "of class folders or a cohort table")
    p.add_argument("--schema", default=None, help="cohort_schema.yaml (with --data; default: beside the table)")
    p.add_argument("--cohort", default=None, help="the run's data, if not where config.yaml says")
    p.add_argument("--data-root", default=None, help="folder of busi/ and bus_bra/ (default: $LYMPH_SHARED_DATA "
                                                     "or ../shared/data)")
    p.add_argument("--threshold", type=int, default=PHASH_THRESHOLD,
                   help=f"pHash Hamming distance for a near-duplicate, bits of 64 (default: {PHASH_THRESHOLD})")
    p.add_argument("--no-hashes", action="store_true", help="skip the image hashes (patients and pre-processing only)")
    p.add_argument("--checklist", action="store_true",
                   help="also write the TRIPOD+AI / CLAIM 2024 checklist of the run (fusion.checklist)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/audit, or reports/audit_<data>)")
    return p


def _run(args) -> list:
    if bool(args.run) == bool(args.data):
        raise ConfigError("give a RUN folder or --data DATASET (one of them)")
    hashes = not args.no_hashes
    if args.data:
        if args.checklist:
            raise ConfigError("--checklist needs a RUN folder (it describes a run)")
        out = Path(args.out) if args.out else Path("reports") / f"audit_{Path(str(args.data)).stem}"
        result = audit_data(args.data, schema=args.schema, threshold=args.threshold, data_root=args.data_root,
                            cache=out / "image_hashes.csv", hashes=hashes, progress=True)
        return result.save(out)
    run = Path(args.run)
    out = Path(args.out) if args.out else run / "audit"
    result = audit_run(run, threshold=args.threshold, hashes=hashes, cohort=args.cohort, data_root=args.data_root,
                       cache=out / "image_hashes.csv", progress=True)
    written = result.save(out)
    if args.checklist:
        from fusion.checklist import write_checklist

        written += write_checklist(run, audit=result)
    return written


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    from analysis.errors import run_cli

    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args))


if __name__ == "__main__":
    raise SystemExit(main())
