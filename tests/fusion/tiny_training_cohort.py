"""A tiny demo cohort with tiny PNG images, for the training CLI tests (fusion.train, resume, DDP).

Images carry a class signal (brightness by group) so a model can learn something in one epoch;
elastography cells left empty by the simulator stay empty (masked modality).
"""
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def write_tiny_cohort(folder: Path, n: int = 24, size: int = 16, seed: int = 1) -> Path:
    from analysis.schema import default_schema_path
    from analysis.simulate import simulate_cohort

    folder = Path(folder)
    frame = simulate_cohort(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    level = {"metastatic": 200, "lymphoma": 120, "benign": 50}
    for _, row in frame.iterrows():
        for col, channels in (("image_2d", 1), ("image_cdfi", 3), ("image_elastography", 3)):
            rel = row[col]
            if not isinstance(rel, str):
                continue
            arr = np.clip(level[row["group"]] + rng.normal(0, 30, (size, size, channels)), 0, 255).astype(np.uint8)
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr[..., 0] if channels == 1 else arr).save(path)
    cohort = folder / "cohort.csv"
    frame.to_csv(cohort, index=False)
    shutil.copyfile(default_schema_path(), folder / "cohort_schema.yaml")
    return cohort


def write_class_folders(root: Path, n_per_class: int = 10) -> Path:
    """A tiny public-set stand-in: one sub-folder of grey PNGs per class (benign darker)."""
    rng = np.random.default_rng(0)
    for c, level in (("benign", 60), ("malignant", 190)):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            arr = np.clip(level + rng.normal(0, 25, (20, 24)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{c} ({i}).png")
    return root


TINY_ARGS = ["--size", "16", "--folds", "2", "--epochs", "2", "--patience", "5", "--batch-size", "8",
             "--n-boot", "20", "--device", "cpu", "--threads", "1", "--augment", "light", "--no-baseline"]
