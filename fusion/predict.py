"""Predict new patients with a saved model bundle (``python -m fusion.train --final``).

``python -m fusion.predict BUNDLE cohort.xlsx --out DIR`` writes ``predictions.csv``
(probabilities, predicted class, each source's exact Shapley contribution to the predicted
class, the modalities that were missing) and ``prediction_problems.csv`` (one line per bad
row or image; the other patients are still predicted).  With ``--gradcam``, a Grad-CAM overlay
per patient and image for the predicted class, ``gradcam/<patient>_<modality>.png`` (for a
late or embedding bundle, the final CNN of that modality; for a joint bundle, the joint network
with the other sources switched off).  One patient can be given by option
instead of a table: ``--image MODALITY=PATH`` (repeatable) and ``--clinical NAME=VALUE``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

__all__ = ["build_parser", "main", "predict"]

EPILOG = """\
examples:
  # every patient of a table (image paths relative to the table's folder)
  python -m fusion.predict runs/cv/model_bundle.pt new_patients.xlsx --out runs/predictions
  # one patient by option (any image may be left out)
  python -m fusion.predict runs/cv/model_bundle.pt --image 2d=P1_bmode.png --image elastography=P1_elasto.png \\
      --clinical age=54 --clinical sex=male --out runs/p1
  # with Grad-CAM overlays of each image for the predicted class
  python -m fusion.predict runs/cv/model_bundle.pt new_patients.xlsx --gradcam --out runs/predictions
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fusion.predict", description="Predict new patients with a model bundle.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="model_bundle.pt written by python -m fusion.train --final")
    p.add_argument("cohort", nargs="?", help="table of new patients (.xlsx/.csv) with the bundle schema's columns")
    p.add_argument("--image", action="append", default=[], metavar="MODALITY=PATH", help="one patient's image")
    p.add_argument("--clinical", action="append", default=[], metavar="NAME=VALUE", help="one patient's clinical value")
    p.add_argument("--id", default="patient", help="the one patient's id (default: patient)")
    p.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    p.add_argument("--gradcam", action="store_true",
                   help="also write a Grad-CAM overlay per patient and image for the predicted class "
                        "(OUT/gradcam/<patient>_<modality>.png; default: off)")
    p.add_argument("--gradcam-layer", metavar="LAYER",
                   help="layer for --gradcam, e.g. body.layer4 (default: the deepest block with at least "
                        "3 x 3 cells at the bundle's image size)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: 1)")
    return p


def _pairs(items, flag):
    from analysis.errors import ConfigError

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def predict(bundle, cohort=None, *, images=None, clinical=None, patient_id="patient") -> tuple:
    """``(predictions, problems)`` of a bundle on a table, or on one patient's images and values."""
    from analysis.errors import ConfigError
    from fusion.bundle import FusionModel, load_bundle

    model = bundle if isinstance(bundle, FusionModel) else load_bundle(bundle)
    if cohort is not None:
        return model.predict_table(cohort)
    schema = model.schema
    images = dict(images or {})
    for m in images:
        if m not in model.modalities:
            from analysis.errors import did_you_mean

            raise ConfigError(f"--image {m}=...: unknown modality (the bundle has {', '.join(model.modalities)})"
                              f"{did_you_mean(m, model.modalities)}")
    names = {v.name for v in schema.variables}
    for k in dict(clinical or {}):
        if k not in names:
            from analysis.errors import did_you_mean

            raise ConfigError(f"--clinical {k}=...: not a variable of the bundle's schema{did_you_mean(k, sorted(names))}")
    row = {schema.id_column: patient_id, **dict(clinical or {})}
    for m, path in images.items():
        row[schema.image_columns[m]] = str(Path(path).resolve())
    return model.predict_table(pd.DataFrame([row]), source="command line")


def gradcam_overlays(model, table, predictions, folder, *, root=None, layer=None) -> list:
    """Write a Grad-CAM overlay PNG per predicted patient and image, for the predicted class.

    Parameters
    ----------
    model : fusion.bundle.FusionModel
    table : pandas.DataFrame
        The table that was predicted (the bundle schema's id and image columns).
    predictions : pandas.DataFrame
        :meth:`~fusion.bundle.FusionModel.predict_table` output (``patient_id``, ``predicted``).
    folder : str or Path
        Where ``<patient>_<modality>.png`` go (names made file-safe).
    root : str or Path, optional
        Folder relative image paths start from.
    layer : str, optional
        Grad-CAM layer (default: :func:`fusion.gradcam.auto_gradcam_layer` per modality).

    Returns
    -------
    list of Path
    """
    import re

    from fusion.gradcam import auto_gradcam_layer, grad_cam, overlay_png
    from fusion.images import load_image
    from fusion.transforms import build_transform

    schema = model.schema
    folder, root = Path(folder), Path(root) if root is not None else Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    table = table.copy()
    table.columns = [" ".join(str(c).split()) for c in table.columns]
    rows = {str(pid): i for i, pid in enumerate(table[schema.id_column].astype(str))}
    layers = {m: layer or auto_gradcam_layer(model._cnn(m), int(model.size), int(model.channels[m]))
              for m in model.modalities}
    written = []
    for _, pred in predictions.iterrows():
        i = rows.get(str(pred["patient_id"]))
        if i is None:
            continue
        target = model.classes.index(str(pred["predicted"]))
        for m in model.modalities:
            col = schema.image_columns.get(m)
            cell = table[col].iloc[i] if col in table.columns else None
            if cell is None or (isinstance(cell, float) and cell != cell) or not str(cell).strip():
                continue
            path = Path(str(cell).replace("\\", "/"))
            path = path if path.is_absolute() else root / path
            try:
                img = load_image(path, size=model.size, channels=int(model.channels[m]), resize=model.resize)
            except Exception:  # noqa: BLE001 - reported once by predict_table; no map for that image
                continue
            x = build_transform("none", train=False, channels=int(model.channels[m]))(img[None])
            cam = grad_cam(model._cnn(m), x, target_class=target, layer=layers[m])[0].numpy()
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{pred['patient_id']}_{m}") + ".png"
            (folder / name).write_bytes(overlay_png(img, cam))
            written.append(folder / name)
    return written


def main(argv=None) -> int:
    from analysis.errors import run_cli

    return run_cli(lambda: _run(build_parser().parse_args(argv)))


def _run(args) -> list:
    from analysis.errors import ConfigError
    from fusion import runtime

    runtime.set_threads(args.threads)
    if args.cohort is None and not args.image and not args.clinical:
        raise ConfigError("give a table of patients, or one patient with --image / --clinical")
    from fusion.bundle import load_bundle

    model = load_bundle(args.bundle)
    images = _pairs(args.image, "--image")
    preds, problems = predict(model, args.cohort, images=images, clinical=_pairs(args.clinical, "--clinical"),
                              patient_id=args.id)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "predictions.csv"]
    preds.to_csv(written[0], index=False)
    if args.gradcam:
        if args.cohort is not None:
            from analysis.readers import read_table

            table, root = read_table(args.cohort), Path(args.cohort).parent
        else:
            schema = model.schema
            table = pd.DataFrame([{schema.id_column: args.id, **{schema.image_columns[m]: str(Path(p).resolve())
                                                                  for m, p in images.items()}}])
            root = Path.cwd()
        written += gradcam_overlays(model, table, preds, out / "gradcam", root=root, layer=args.gradcam_layer)
    for p in problems["problem"]:
        print(f"warning: {p}", file=sys.stderr)
    if len(problems):
        problems.to_csv(out / "prediction_problems.csv", index=False)
        written.append(out / "prediction_problems.csv")
    print(f"{len(preds)} patient(s) predicted, {problems['row'].nunique()} row(s) with problems; "
          "a research tool, not a diagnostic device", file=sys.stderr)
    return written


if __name__ == "__main__":
    raise SystemExit(main())
