"""Synthetic B-mode, CDFI and elastography images for the demo cohort.

The private cohort's images cannot be shared, so the demo cohort
(:func:`analysis.simulate.simulate_cohort`) gets images drawn from each patient's own row.
They are cartoons, not a model of ultrasound physics: their purpose is a pipeline that can be
run end to end, in which the images carry class information in a known, documented way.

How one patient's images are made (size ``S``, default 128 px)
----------------------------------------------------------------
Randomness: a :class:`numpy.random.Generator` seeded with ``(seed, h(patient_id), stream)``
where ``h`` is the first 8 bytes of the SHA-256 of the id (stable across runs, machines and
Python's hash randomisation); stream 0 draws the node's geometry and the latent factors
shared by all three images, streams 1-3 the noise of each image. Same cohort + seed ->
byte-identical PNG files.

Node geometry (shared): field of view 50 mm, so a node's long / short axes in pixels are
``long_axis_mm`` / ``short_axis_mm`` x ``S / 50`` (clipped to the frame); centre and tilt
(SD 15 deg) vary at random. ``shape`` sets the outline: ``oval`` (long/short >= 1.6),
``round`` (<= 1.15), ``irregular`` (radius modulated by 3rd-7th harmonics). ``margin``:
``smooth`` (sharp edge), ``irregular`` (fine 11th-17th harmonic ripples), ``ill-defined``
(wide blurred edge).

B-mode ("2d", grey, 1 channel): tissue background with a depth gradient and layered
texture; the node at an echo level set by ``internal_echo`` (hypoechoic dark, isoechoic near
the background, heterogeneous patchy); an echogenic (bright) hilum band along the long axis
when ``hilum`` is ``present``, thin and eccentric when ``narrowed``, none when ``absent``;
3-8 bright specks when ``calcification`` is present; a dark anechoic area when ``necrosis``
is present; multiplicative Rayleigh speckle, additive noise and a random gain.

CDFI (colour, 3 channels): a B-mode background (same node, new speckle) plus colour flow
(red / blue, brighter cores) drawn as random-walk vessels whose placement follows
``cdfi_pattern`` (``avascular`` none; ``hilar`` from the hilum along the long axis;
``central`` inside the centre; ``peripheral`` arcs along the rim; ``mixed`` both) and whose
number follows ``adler_grade`` (0: none, 1: 1-2 dots, 2: 2-3 vessels, 3: 4-6), plus random
colour "flash" artefacts.

Elastography (colour, 3 channels): a B-mode background under a box-shaped colour overlay
(alpha 0.7) that maps stiffness to colour, **blue = hard ... green ... red = soft**. Tissue
is intermediate; the node's stiffness follows ``elasticity_score`` (1 soft throughout,
2 mostly soft with hard patches, 3 half and half, 4 hard, 5 hard including the
surrounding tissue), with smooth random heterogeneity.

Missing feature values (NaN) are drawn from a neutral default or at random (not from the
group); an empty image cell means no file is written.

Class signal
------------
Beyond the rendered features (which are associated with the group in the simulated table),
each patient has three latent factors, one per modality, each ``effect[group] + N(0, 1)``
with independent noise, so every modality gives a separate noisy view of the class and
combining them averages the noise out (fusion can beat any single modality):

* B-mode: node echo level and speckle coarseness, effect lymphoma -0.7, metastatic +0.35,
  benign +0.35 (separates lymphoma);
* CDFI: extra vessels and flow brightness, effect metastatic +0.7, lymphoma +0.2, benign -0.7;
* elastography: node stiffness, effect metastatic +1.2, lymphoma 0, benign -1.2 (the
  strongest, as the study found elastography most informative).

No modality is perfect: the latent noise, the missing values and the overlap of the
feature distributions between groups keep every single-modality classifier below 100 %.

Command line
------------
    python -m analysis.simulate --out demo_data
    python -m fusion.synthetic demo_data/cohort.xlsx
    python -m fusion.synthetic demo_data/cohort.xlsx --size 64 --seed 1 --out-root /tmp/imgs
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter
from scipy.special import expit

from analysis.errors import CohortError

__all__ = ["LATENT_EFFECTS", "patient_rng", "synthesize_patient", "write_synthetic_images", "build_parser",
           "main"]

GROUPS = ("metastatic", "lymphoma", "benign")
#: Mean of each modality's latent factor per group (noise SD 1); see the module docstring.
LATENT_EFFECTS = {
    "2d": {"metastatic": 0.35, "lymphoma": -0.7, "benign": 0.35},
    "cdfi": {"metastatic": 0.7, "lymphoma": 0.2, "benign": -0.7},
    "elastography": {"metastatic": 1.2, "lymphoma": 0.0, "benign": -1.2},
}
_FOV_MM = 50.0
_STREAMS = {"geometry": 0, "2d": 1, "cdfi": 2, "elastography": 3}
# stiffness 0 (soft) .. 1 (hard) -> red, yellow, green, cyan, blue
_CMAP_X = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_CMAP_RGB = np.array([[210, 20, 20], [250, 210, 0], [20, 200, 40], [0, 190, 250], [20, 30, 210]], float)


def _pid_hash(patient_id) -> int:
    return int.from_bytes(hashlib.sha256(str(patient_id).encode("utf-8")).digest()[:8], "little")


def patient_rng(seed: int, patient_id, stream: str) -> np.random.Generator:
    """The generator of one patient's ``stream`` ('geometry', '2d', 'cdfi', 'elastography')."""
    return np.random.default_rng([int(seed), _pid_hash(patient_id), _STREAMS[stream]])


def _value(row: Mapping, key: str):
    v = row.get(key) if hasattr(row, "get") else None
    if v is None:
        return None
    try:
        import pandas as pd
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _text(row, key):
    v = _value(row, key)
    return None if v is None else str(v).strip().lower()


def _number(row, key):
    v = _value(row, key)
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------- geometry
class _Node:
    """Node geometry in pixels plus per-pixel maps shared by all three images."""

    def __init__(self, row, size: int, rng: np.random.Generator):
        s = size
        scale = s / _FOV_MM
        long_mm = _number(row, "long_axis_mm") or rng.uniform(10, 25)
        short_mm = _number(row, "short_axis_mm") or long_mm / rng.uniform(1.2, 2.0)
        a = np.clip(long_mm / 2 * scale, 0.06 * s, 0.40 * s)
        b = np.clip(short_mm / 2 * scale, 0.04 * s, 0.34 * s)
        b = min(b, a)
        shape = _text(row, "shape")
        if shape == "oval":
            b = min(b, a / 1.6)
        elif shape == "round":
            b = max(b, a / 1.15)
        self.a, self.b = float(a), float(b)
        self.cx = s / 2 + rng.normal(0, 0.04 * s)
        self.cy = s * 0.52 + rng.normal(0, 0.04 * s)
        self.theta = np.deg2rad(rng.normal(0, 15))
        yy, xx = np.mgrid[0:s, 0:s].astype(float) + 0.5
        dx, dy = xx - self.cx, yy - self.cy
        c, si = np.cos(self.theta), np.sin(self.theta)
        self.xr = c * dx + si * dy  # along the long axis
        self.yr = -si * dx + c * dy
        phi = np.arctan2(self.yr / self.b, self.xr / self.a)
        mod = np.ones_like(phi)
        if shape == "irregular":
            for k in range(3, 8):
                mod += rng.uniform(0.04, 0.12) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
        margin = _text(row, "margin")
        if margin == "irregular":
            for k in range(11, 18, 2):
                mod += rng.uniform(0.02, 0.05) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
        self.r = np.hypot(self.xr / self.a, self.yr / self.b) / mod
        edge = {"ill-defined": 0.18, "irregular": 0.05}.get(margin, 0.6 / max(self.b, 1.0))
        self.alpha = expit((1.0 - self.r) / edge)
        self.size = s
        # latent factors (independent per modality)
        group = _text(row, "group")
        self.latent = {m: LATENT_EFFECTS[m].get(group, 0.0) + rng.normal() for m in LATENT_EFFECTS}
        # details drawn once so all images agree
        self.hilum_side = rng.choice([-1.0, 1.0])
        self.necrosis = (rng.uniform(-0.35, 0.35), rng.uniform(-0.3, 0.3), rng.uniform(0.25, 0.45))
        n_calc = int(rng.integers(3, 9))
        rad = np.sqrt(rng.uniform(0, 0.7, n_calc))
        ang = rng.uniform(0, 2 * np.pi, n_calc)
        self.calc = [(rr * np.cos(t), rr * np.sin(t), rng.uniform(0.6, 1.4)) for rr, t in zip(rad, ang)]

    def radius(self, x, y) -> float:
        """Elliptic radius of pixel (x, y): < 1 inside the (unmodulated) outline."""
        dx, dy = x - self.cx, y - self.cy
        c, s = np.cos(self.theta), np.sin(self.theta)
        return float(np.hypot((c * dx + s * dy) / self.a, (-s * dx + c * dy) / self.b))

    def clip_path(self, pts, limit: float):
        """The leading part of a path that stays within elliptic radius ``limit``."""
        out = []
        for x, y in pts:
            if self.radius(x, y) > limit:
                break
            out.append((x, y))
        return out

    def to_xy(self, u, v):
        """Node coordinates (u along the long axis in units of a, v in units of b) -> pixels."""
        x, y = u * self.a, v * self.b
        c, s = np.cos(self.theta), np.sin(self.theta)
        return self.cx + c * x - s * y, self.cy + s * x + c * y


def _smooth_noise(rng, size, sigma):
    return gaussian_filter(rng.normal(size=(size, size)), sigma, mode="reflect") * sigma * 1.8


# ---------------------------------------------------------------------------- B-mode
def _bmode(row, node: _Node, rng: np.random.Generator, latent: float) -> np.ndarray:
    """Grey B-mode image as float in [0, 1]."""
    s = node.size
    depth = np.linspace(1.0, 0.6, s)[:, None] * np.ones((1, s))
    layers = gaussian_filter(rng.normal(size=(s, s)), (s / 40, s / 8)) * (s / 40) * 0.6
    tissue = 0.42 * depth + 0.06 * layers
    echo = _text(row, "internal_echo")
    level = {"hypoechoic": 0.17, "isoechoic": 0.34, "heterogeneous": 0.25}.get(echo, 0.24)
    level += 0.035 * latent
    inside = np.full((s, s), level)
    if echo == "heterogeneous":
        inside = inside + 0.10 * _smooth_noise(rng, s, s / 25)
    hilum = _text(row, "hilum")
    if hilum in ("present", "narrowed"):
        if hilum == "present":
            hu, ha, hb, gain = 0.0, 0.55, 0.28, 0.33
        else:
            hu, ha, hb, gain = 0.5 * node.hilum_side, 0.32, 0.10, 0.22
        rh = np.hypot((node.xr / node.a - hu) / ha, (node.yr / node.b) / hb)
        inside = inside + gain * expit((1.0 - rh) / 0.12)
    if _text(row, "necrosis") == "present":
        nu, nv, nr = node.necrosis
        rn = np.hypot(node.xr / node.a - nu, node.yr / node.b - nv) / nr
        inside = inside * (1 - 0.85 * expit((1.0 - rn) / 0.08))
    img = tissue * (1 - node.alpha) + inside * node.alpha
    # speckle: coarser with the latent factor; Rayleigh amplitude with mean 1
    grain = max(0.4, (0.7 + 0.15 * latent)) * s / 128
    speckle = gaussian_filter(rng.rayleigh(1.0, (s, s)), grain)
    speckle /= speckle.mean()
    img = img * (1 + 0.9 * (speckle - 1)) + rng.normal(0, 0.03, (s, s))
    img *= rng.uniform(0.85, 1.15)
    if _text(row, "calcification") == "present":  # bright specks on top of the speckle
        for u, v, rad in node.calc:
            x, y = node.to_xy(u, v)
            d2 = (np.arange(s)[None, :] + 0.5 - x) ** 2 + (np.arange(s)[:, None] + 0.5 - y) ** 2
            r_px = max(1.0, 1.2 * rad * s / 128)
            img = np.maximum(img, np.clip(1.3 - 0.3 * d2 / r_px ** 2, 0, 1))  # saturated core, soft rim
    return np.clip(img, 0, 1)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- CDFI
def _vessel(rng, start, heading, length, wiggle):
    pts = [start]
    x, y = start
    h = heading
    for _ in range(int(length)):
        h += rng.normal(0, wiggle)
        x, y = x + np.cos(h), y + np.sin(h)
        pts.append((x, y))
    return pts


def _cdfi(row, node: _Node, rng: np.random.Generator, latent: float) -> np.ndarray:
    s = node.size
    grey = _bmode(row, node, rng, 0.0) * 0.85
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    pattern = _text(row, "cdfi_pattern")
    adler = _number(row, "adler_grade")
    if adler is None:
        adler = float(rng.integers(0, 4))
    base = {0: 0, 1: int(rng.integers(1, 3)), 2: int(rng.integers(2, 4)), 3: int(rng.integers(4, 7))}[int(adler)]
    n = max(0, base + int(np.rint(0.9 * latent)))
    if pattern == "avascular":
        n = 0 if latent < 1.5 else 1
    length_scale = (0.6 + 0.35 * min(adler, 3)) * node.a
    layer = Image.new("RGB", (s, s), (0, 0, 0))
    alpha = Image.new("L", (s, s), 0)
    draw, adraw = ImageDraw.Draw(layer), ImageDraw.Draw(alpha)
    width = max(1, round(s / 90))
    for k in range(n):
        kind = pattern if pattern != "mixed" else ("central" if k % 2 == 0 else "peripheral")
        if kind == "hilar":
            u0 = -0.9 * node.hilum_side
            start = node.to_xy(u0, rng.normal(0, 0.1))
            heading = node.theta + (0.0 if node.hilum_side > 0 else np.pi) + rng.normal(0, 0.35)
            pts = _vessel(rng, start, heading, length_scale * rng.uniform(0.7, 1.3), 0.15)
        elif kind == "peripheral":
            t = rng.uniform(0, 2 * np.pi)
            start = node.to_xy(0.95 * np.cos(t), 0.95 * np.sin(t))
            tangent = np.arctan2(node.b * np.cos(t), -node.a * np.sin(t)) + node.theta
            pts = _vessel(rng, start, tangent + rng.choice([0, np.pi]), length_scale * rng.uniform(0.5, 1.0), 0.12)
        else:  # central, or an unknown pattern
            start = node.to_xy(rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4))
            pts = _vessel(rng, start, rng.uniform(0, 2 * np.pi), length_scale * rng.uniform(0.3, 0.6), 0.3)
        pts = node.clip_path(pts, 1.25 if kind == "peripheral" else 1.0)
        if adler == 1:
            pts = pts[: max(2, len(pts) // 5)]
        if len(pts) < 2:
            continue
        red = rng.uniform() < 0.6
        bright = float(np.clip(0.75 + 0.1 * latent + rng.normal(0, 0.1), 0.4, 1.0))
        colour = (int(255 * bright), int(40 * bright), 20) if red else (20, int(70 * bright), int(255 * bright))
        core = (255, 230, 80) if red else (120, 230, 255)
        flat = [(float(x), float(y)) for x, y in pts]
        draw.line(flat, fill=colour, width=width + 1)
        adraw.line(flat, fill=255, width=width + 1)
        mid = flat[len(flat) // 3: 2 * len(flat) // 3]
        if len(mid) >= 2 and bright > 0.8:
            draw.line(mid, fill=core, width=width)
    for _ in range(int(rng.poisson(0.4))):  # flash artefacts
        x, y, r = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(1, 3) * s / 128
        c = (200, 30, 20) if rng.uniform() < 0.5 else (20, 60, 200)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=c)
        adraw.ellipse([x - r, y - r, x + r, y + r], fill=180)
    col = np.asarray(layer, dtype=float) / 255
    a = np.asarray(alpha, dtype=float)[:, :, None] / 255
    out = rgb * (1 - a) + col * a
    out += rng.normal(0, 0.02, out.shape)
    return np.clip(out, 0, 1)


# ---------------------------------------------------------------------------- elastography
def _elastography(row, node: _Node, rng: np.random.Generator, latent: float) -> np.ndarray:
    s = node.size
    grey = _bmode(row, node, rng, 0.0)
    score = _number(row, "elasticity_score")
    tissue = 0.45 + 0.08 * _smooth_noise(rng, s, s / 16)
    if score is None:
        node_stiff = np.full((s, s), 0.55)
    else:
        sc = int(score)
        node_stiff = np.full((s, s), {1: 0.12, 2: 0.28, 3: 0.5, 4: 0.78, 5: 0.88}.get(sc, 0.5))
        if sc == 2:
            patches = _smooth_noise(rng, s, s / 20) > 0.9
            node_stiff = np.where(patches, 0.75, node_stiff)
        elif sc == 3:
            split = node.xr * np.cos(rng.uniform(0, np.pi)) + node.yr * rng.normal()
            node_stiff = np.where(split > 0, 0.78, 0.25)
        elif sc == 5:
            halo = expit((1.5 - node.r) / 0.1)
            tissue = tissue * (1 - halo) + 0.8 * halo
    node_stiff = node_stiff + 0.07 * latent + 0.10 * _smooth_noise(rng, s, s / 12)
    stiff = tissue * (1 - node.alpha) + node_stiff * node.alpha
    stiff = np.clip(stiff + rng.normal(0, 0.04, (s, s)), 0, 1)
    colour = np.stack([np.interp(stiff, _CMAP_X, _CMAP_RGB[:, c]) for c in range(3)], axis=-1) / 255
    # the colour box around the node
    x0, x1 = node.cx - 1.6 * node.a, node.cx + 1.6 * node.a
    y0, y1 = node.cy - 1.9 * node.b, node.cy + 1.9 * node.b
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    box = ((xx >= max(2, x0)) & (xx <= min(s - 2, x1)) & (yy >= max(2, y0)) & (yy <= min(s - 2, y1)))
    a = 0.7 * box[:, :, None]
    out = np.repeat(grey[:, :, None], 3, axis=2) * (1 - a) + colour * a
    out += rng.normal(0, 0.015, out.shape)
    return np.clip(out, 0, 1)


# ---------------------------------------------------------------------------- public API
def synthesize_patient(row: Mapping, *, size: int = 128, seed: int = 0, id_column: str = "patient_id") -> dict:
    """The three synthetic images of one patient.

    Parameters
    ----------
    row : mapping
        The patient's table row (``patient_id``, ``group`` and the variables of the demo
        schema; missing keys or NaN are allowed).
    size : int, default 128
        Square image size in pixels.
    seed : int, default 0
        Cohort-wide seed, combined with a hash of the patient id.
    id_column : str, default 'patient_id'

    Returns
    -------
    dict
        ``{'2d': uint8 (S, S), 'cdfi': uint8 (S, S, 3), 'elastography': uint8 (S, S, 3)}``.
    """
    pid = _value(row, id_column)
    if pid is None:
        raise ValueError(f"row has no '{id_column}'")
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    node = _Node(row, size, patient_rng(seed, pid, "geometry"))
    return {
        "2d": _to_uint8(_bmode(row, node, patient_rng(seed, pid, "2d"), node.latent["2d"])),
        "cdfi": _to_uint8(_cdfi(row, node, patient_rng(seed, pid, "cdfi"), node.latent["cdfi"])),
        "elastography": _to_uint8(_elastography(row, node, patient_rng(seed, pid, "elastography"),
                                                node.latent["elastography"])),
    }


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_synthetic_images(table, *, root, schema=None, size: int = 128, seed: int = 0,
                           progress: bool = True, overwrite: bool = False) -> list:
    """Write every patient's images at the table's relative image paths under ``root``.

    Parameters
    ----------
    table : Cohort or DataFrame
        A cohort (its schema is used) or a table with the demo columns.
    root : str or Path
        Folder the image paths are relative to (normally the cohort file's folder).
    schema : Schema, optional
        Default: the cohort's, else the demo schema (:func:`analysis.schema.load_schema`).
    size, seed : int
        See :func:`synthesize_patient`.
    progress : bool, default True
        tqdm bar on stderr.
    overwrite : bool, default False
        Replace image files that already exist.  Without it nothing is written when any
        target exists: pointed at a real cohort, this function must never replace a
        patient's image with a synthetic one.

    Returns
    -------
    list of Path
        Files written (empty image cells are skipped).

    Raises
    ------
    CohortError
        An image path points outside ``root``, the id column is missing, or (without
        ``overwrite``) an image file already exists.
    """
    if hasattr(table, "data") and hasattr(table, "schema"):
        schema = schema or table.schema
        table = table.data
    if schema is None:
        from analysis.schema import load_schema
        schema = load_schema()
    root = Path(root)
    id_col = schema.id_column or "patient_id"
    if id_col not in table.columns:
        raise CohortError("id column not found", column=id_col)
    from tqdm.auto import tqdm
    written = []
    root_resolved = root.resolve()
    records = table.to_dict("records")
    rows = list(table.index)
    # every target first: nothing is written when one is invalid or (without overwrite) exists
    plan = []
    for rownum, rec in zip(rows, records):
        targets = {}
        for mod, col in schema.image_columns.items():
            rel = _value(rec, col)
            if rel is None or mod not in LATENT_EFFECTS or not str(rel).strip():
                continue
            target = (root / str(rel).strip())
            if not target.resolve().is_relative_to(root_resolved):
                raise CohortError(f"image path '{rel}' points outside {root}", row=rownum, column=col)
            targets[mod] = target
        if targets:
            plan.append((rec, targets))
    if not overwrite:
        existing = [t for _, targets in plan for t in targets.values() if t.exists()]
        if existing:
            raise CohortError(f"{len(existing)} image file(s) already exist under {root} (e.g. "
                              f"{existing[0]}); synthetic images never replace existing "
                              "files: use another folder, or pass --overwrite if they are synthetic too")
    for rec, targets in tqdm(plan, desc="synthetic images", unit="patient", file=sys.stderr,
                             disable=not progress, leave=False):
        images = synthesize_patient(rec, size=size, seed=seed, id_column=id_col)
        for mod, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_png_bytes(images[mod]))
            written.append(target)
    return written


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Command-line parser of ``python -m fusion.synthetic``."""
    p = argparse.ArgumentParser(
        prog="python -m fusion.synthetic", add_help=add_help,
        description="Write synthetic B-mode, CDFI and elastography images for every patient of a cohort.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m analysis.simulate --out demo_data\n"
               "  python -m fusion.synthetic demo_data/cohort.xlsx\n"
               "  python -m fusion.synthetic demo_data/cohort.xlsx --size 64 --seed 1 --out-root /tmp/imgs\n")
    p.add_argument("cohort", help="cohort table (.xlsx or .csv) whose image columns name the files")
    p.add_argument("--schema", default=None, help="cohort schema YAML (default: the packaged demo schema)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out-root", "--out", dest="out_root", default=None,
                   help="folder the relative image paths start from (default: the cohort file's folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace image files that already exist (default: refuse, write nothing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from analysis.readers import read_table
    from analysis.schema import load_schema
    root = Path(args.out_root) if args.out_root else Path(args.cohort).parent
    try:
        schema = load_schema(args.schema) if args.schema else load_schema()
        # the raw table (not validate_cohort): images are written for every row, whatever
        # the statistical checks later decide about it
        table = read_table(args.cohort)
        files = write_synthetic_images(table, schema=schema, root=root, size=args.size, seed=args.seed,
                                       progress=not args.no_progress, overwrite=args.overwrite)
    except OSError as exc:
        print(f"error: cannot write the images under {root}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except CohortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} images under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
