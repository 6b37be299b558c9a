"""A trained model people can use: fit on all patients, save one bundle, predict new patients.

:func:`fit` trains the final model of a fusion mode on **all** patients (each modality's CNN
with the usual inner validation split for early stopping, then the fusion head) and
:meth:`FusionModel.save` writes one file holding everything needed to predict: every
branch's weights, the fusion head, the schema, the preprocessing (image size, channels,
resize), the class order, package versions, a hash of the training data and the
cross-validated performance (with CIs) that the same recipe was estimated to have.  The file
is a plain ``torch.save`` dictionary of tensors, numbers and strings, read back with
``torch.load(weights_only=True)`` (no pickled code runs when a bundle is opened).

What the final head is trained on
---------------------------------
``late``: the second-level logistic regression is fitted on the cross-validation's
out-of-fold CNN probabilities (each patient predicted by a CNN that never saw it,
temperature-scaled per fold on that fold's inner validation patients) and the clinical
variables of all patients; a new patient's features come from the final CNNs,
temperature-scaled on the final inner validation patients.  ``embedding``: the head is
fitted on the final CNNs' embeddings of the final inner validation patients (never trained
on), as in :mod:`fusion.embedding`.

Prediction (:meth:`FusionModel.predict_table`, ``python -m fusion.predict``): any modality
may be missing (late: the class prior with a missing indicator, as in training; embedding:
the training mean with a missing indicator); a row with a bad clinical value or a patient id
missing is reported (one line, file / row / column) and left out while the others are
predicted; an unreadable image is reported and that modality treated as missing.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.errors import CohortError, ConfigError

__all__ = ["BUNDLE_FORMAT", "FusionModel", "fit", "load_bundle"]

#: Version of the bundle layout; a bundle of another layout is refused with one line.
BUNDLE_FORMAT = 1
_FINAL_FOLD = -1


# ----------------------------------------------------------------------------- heads as plain arrays
def _head_to_dict(head) -> dict:
    """A fitted :class:`fusion._logistic.HeadFit` as arrays (logistic regression or MLP, with scaler)."""
    out = {"n_classes": int(head.n_classes), "chosen": float(head.chosen), "only_class": head.only_class}
    model = head.model
    if model is None:
        return {**out, "kind": "constant"}
    steps = getattr(model, "steps", None)
    if steps:
        scaler, model = steps[0][1], steps[-1][1]
        out["scale_mean"] = torch.as_tensor(scaler.mean_)
        out["scale_sd"] = torch.as_tensor(scaler.scale_)
    out["classes"] = torch.as_tensor(np.asarray(model.classes_, dtype=np.int64))
    if hasattr(model, "coefs_"):
        out["kind"] = "mlp"
        out["weights"] = [torch.as_tensor(w) for w in model.coefs_]
        out["biases"] = [torch.as_tensor(b) for b in model.intercepts_]
    else:
        out["kind"] = "lr"
        out["coef"] = torch.as_tensor(model.coef_)
        out["intercept"] = torch.as_tensor(model.intercept_)
    return out


def _head_predict(head: dict, X: np.ndarray) -> np.ndarray:
    """``predict_proba`` of a head stored by :func:`_head_to_dict` (numpy; same numbers as scikit-learn)."""
    from scipy.special import expit, softmax

    X = np.asarray(X, dtype=float)
    n = int(head["n_classes"])
    out = np.zeros((len(X), n))
    if head["kind"] == "constant":
        out[:, int(head["only_class"])] = 1.0
        return out
    if "scale_mean" in head:
        X = (X - head["scale_mean"].numpy()) / head["scale_sd"].numpy()
    classes = head["classes"].numpy()
    if head["kind"] == "lr":
        z = X @ head["coef"].numpy().T + head["intercept"].numpy()
        p = np.hstack([1 - expit(z), expit(z)]) if z.shape[1] == 1 else softmax(z, axis=1)
    else:
        a = X
        ws, bs = head["weights"], head["biases"]
        for i, (w, b) in enumerate(zip(ws, bs)):
            a = a @ w.numpy() + b.numpy()
            if i < len(ws) - 1:
                a = np.maximum(a, 0.0)
        p = np.hstack([1 - expit(a), expit(a)]) if a.shape[1] == 1 else softmax(a, axis=1)
    out[:, classes] = p
    return out


# ----------------------------------------------------------------------------- the model
@dataclasses.dataclass
class FusionModel:
    """A fitted fusion model (see the module docs); build with :func:`fit` or :func:`load_bundle`."""

    fusion: str
    classes: list
    modalities: list
    backbone: str
    size: int
    channels: dict
    resize: str
    schema_yaml: str
    cnn_states: dict
    temperatures: dict
    head: dict
    encoder: dict | None
    blocks: dict
    prior_log: list
    meta: dict

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        return {"format": BUNDLE_FORMAT, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}

    def save(self, path) -> Path:
        """Write the bundle (``torch.save`` of tensors, numbers and strings only)."""
        from fusion.checkpoint import atomic_save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_save(self.to_dict(), path)

    @property
    def schema(self):
        from analysis.schema import _schema_from_mapping
        import yaml

        return _schema_from_mapping(yaml.safe_load(self.schema_yaml), "bundle")

    @property
    def cv_performance(self) -> pd.DataFrame:
        """The cross-validated metrics of this recipe (with CIs), as stored in the bundle."""
        return pd.DataFrame(self.meta.get("cv_performance", []))

    def summary(self) -> str:
        perf = self.cv_performance
        perf = perf[perf["metric"] == "auc"] if len(perf) else perf
        line = ""
        if len(perf):
            r = perf.iloc[0]
            line = (f"; cross-validated macro AUC {r['estimate']:.3f} (95% CI {r['ci_low']:.3f}-{r['ci_high']:.3f}, "
                    f"{int(r['n_patients'])} patients, split '{r['split']}')")
        return (f"{self.fusion} fusion of {', '.join(self.modalities)} + clinical variables ({self.backbone}, "
                f"{self.size} px), classes {', '.join(self.classes)}{line}")

    # ---------------------------------------------------------------- prediction
    def _joint_net(self):
        """The joint network (``fusion='joint'``), built once and cached."""
        from fusion.backbones import create_backbone
        from fusion.joint import JointFusionNet

        cache = self.__dict__.setdefault("_nets", {})
        if "joint" not in cache:
            h = self.head
            branches = {m: create_backbone(self.backbone, "none", in_chans=int(self.channels[m]),
                                           num_classes=len(self.classes)) for m in self.modalities}
            net = JointFusionNet(branches, int(h["n_clinical"]), len(self.classes), fusion=str(h["fusion"]),
                                 embed_dim=int(h["embed_dim"]), hidden=int(h["hidden"]),
                                 clinical_hidden=int(h["clinical_hidden"]), dropout=float(h["dropout"]),
                                 modality_dropout=float(h["modality_dropout"]))
            net.load_state_dict(self.cnn_states["joint"])
            cache["joint"] = net.eval()
        return cache["joint"]

    def _cnn(self, modality: str):
        """The network that scores one image of ``modality`` alone: the final CNN (late, embedding)
        or, for a joint bundle, the joint network with every other source switched off
        (:class:`_JointBranchView`); what Grad-CAM explains."""
        from fusion.backbones import create_backbone

        cache = self.__dict__.setdefault("_nets", {})
        if self.fusion == "joint":
            if modality not in cache:
                cache[modality] = _JointBranchView(self._joint_net(), modality).eval()
            return cache[modality]
        if modality not in cache:
            net = create_backbone(self.backbone, "none", in_chans=int(self.channels[modality]),
                                  num_classes=len(self.classes))
            net.load_state_dict(self.cnn_states[modality])
            cache[modality] = net.eval()
        return cache[modality]

    @torch.no_grad()
    def _image_outputs(self, modality: str, images: torch.Tensor):
        """(probabilities, embeddings) of uint8 images ``(N, C, H, W)`` through the final CNN."""
        from fusion.transforms import build_transform

        net = self._cnn(modality)
        x = build_transform("none", train=False, channels=int(self.channels[modality]))(images)
        emb = net.forward_features(x)
        proba = torch.softmax(net.head(emb).float(), dim=1).double().numpy()
        return proba, emb.float().numpy()

    def _features(self, outputs: dict, present: dict, clinical: pd.DataFrame | None) -> tuple:
        """Design matrix of the head and its source blocks."""
        from analysis.calibration import apply_temperature
        from fusion.late_fusion import ClinicalEncoder

        n = len(next(iter(present.values())))
        parts, blocks, start = [], {}, 0
        for m in self.modalities:
            ok = present[m]
            if self.fusion == "late":
                k = len(self.classes)
                feats = np.tile(np.asarray(self.prior_log, dtype=float), (n, 1))
                if ok.any():
                    p = apply_temperature(outputs[m][0], self.temperatures[m])
                    feats[ok] = np.log(np.clip(p, 1e-6, None))
                block = np.hstack([feats, (~ok)[:, None].astype(float)])
                width = k + 1
            else:
                from fusion.embedding import apply_block

                X = np.full((n, self.blocks[m]["components"].shape[1]), np.nan)
                if ok.any():
                    X[ok] = outputs[m][1]
                block = apply_block(X, {k: v.numpy() for k, v in self.blocks[m].items()})
                width = block.shape[1]
            parts.append(block)
            blocks[m] = list(range(start, start + width))
            start += width
        if self.encoder is not None:
            cx = ClinicalEncoder.from_dict(self.encoder).transform(clinical.reset_index(drop=True))
            parts.append(cx)
            blocks["clinical"] = list(range(start, start + cx.shape[1]))
        return np.hstack(parts), blocks

    def predict_table(self, table, *, root=None, source=None, contributions: bool = True) -> tuple:
        """Predict every row (patient) of a cohort table; returns ``(predictions, problems)``.

        Parameters
        ----------
        table : str, Path or pandas.DataFrame
            Cohort table with the bundle schema's id column, image columns and clinical
            variables (the group column is not needed).  Any image cell may be empty.
        root : str or Path, optional
            Folder relative image paths start from (default: the table's folder).

        Returns
        -------
        (pandas.DataFrame, pandas.DataFrame)
            ``patient_id, p_<class>..., predicted, contribution_<source>..., missing`` (the
            contributions are exact Shapley values for the predicted class) and the problems,
            one row each: ``row, patient_id, column, problem``.
        """
        from analysis.cohort import parse_variables
        from analysis.readers import read_table
        from fusion.images import load_image

        schema = self.schema
        if isinstance(table, (str, Path)):
            source = source or str(table)
            root = Path(root) if root is not None else Path(table).parent
            table = read_table(table)
        else:
            root = Path(root) if root is not None else Path.cwd()
            source = source or "table"
        table = table.copy()
        table.columns = [" ".join(str(c).split()) for c in table.columns]
        clinical, cell_problems = parse_variables(table, schema, source)
        rows = list(clinical.index)
        problems = [{"row": e.row, "patient_id": None, "column": e.column, "problem": str(e)} for e in cell_problems]
        id_col = schema.id_column
        if id_col not in table.columns:
            raise CohortError(f"no patient id column '{id_col}' (the bundle's schema)", file=source, column=id_col)
        ids = table[id_col].astype(object).to_numpy()
        bad_rows = {e.row for e in cell_problems}
        for r, pid in zip(rows, ids):
            if pid is None or (isinstance(pid, float) and np.isnan(pid)) or not str(pid).strip():
                problems.append({"row": r, "patient_id": None, "column": id_col,
                                 "problem": f"{source}: row {r}, column '{id_col}': no patient id; not predicted"})
                bad_rows.add(r)
        keep = [i for i, r in enumerate(rows) if r not in bad_rows]
        for p in problems:
            if p["patient_id"] is None and p["row"] in rows:
                p["patient_id"] = None if p["column"] == id_col else str(ids[rows.index(p["row"])])
        outputs, present = {}, {}
        for m in self.modalities:
            col = schema.image_columns.get(m)
            ok = np.zeros(len(keep), bool)
            imgs = []
            for j, i in enumerate(keep):
                cell = table[col].iloc[i] if col in table.columns else None
                if cell is None or (isinstance(cell, float) and np.isnan(cell)) or not str(cell).strip():
                    continue
                path = Path(str(cell).replace("\\", "/"))
                path = path if path.is_absolute() else root / path
                try:
                    img = load_image(path, size=self.size, channels=int(self.channels[m]), resize=self.resize,
                                     patient_id=ids[i], modality=m)
                except CohortError as err:
                    problems.append({"row": rows[i], "patient_id": str(ids[i]), "column": col,
                                     "problem": f"{err}; predicted without this {m} image"})
                    continue
                ok[j] = True
                imgs.append(img)
            present[m] = ok
            if self.fusion == "joint":
                outputs[m] = imgs
            else:
                outputs[m] = self._image_outputs(m, torch.stack(imgs)) if imgs else (None, None)
        cols = ["patient_id", *[f"p_{c}" for c in self.classes], "predicted"]
        if not keep:
            return pd.DataFrame(columns=cols), pd.DataFrame(problems, columns=["row", "patient_id", "column",
                                                                               "problem"])
        out = pd.DataFrame({"patient_id": [str(ids[i]) for i in keep]})
        if self.fusion == "joint":
            proba, phi = self._predict_joint(outputs, present, clinical.iloc[keep], contributions)
        else:
            X, blocks = self._features(outputs, present, clinical.iloc[keep])
            proba = _head_predict(self.head, X)
        for k, c in enumerate(self.classes):
            out[f"p_{c}"] = proba[:, k]
        pred = proba.argmax(axis=1)
        out["predicted"] = [self.classes[k] for k in pred]
        if contributions and self.fusion == "joint":
            for b, v in phi.items():
                out[f"contribution_{b}"] = v
        elif contributions:
            from fusion.contributions import shapley_values

            ref = np.asarray(self.meta["reference_input"], dtype=float)

            def value(coalition):
                Z = np.broadcast_to(ref, X.shape).copy()
                for b in coalition:
                    Z[:, blocks[b]] = X[:, blocks[b]]
                return _head_predict(self.head, Z)[np.arange(len(X)), pred]

            phi = shapley_values(value, list(blocks))
            for b in blocks:
                out[f"contribution_{b}"] = phi[b]
        out["missing"] = ["; ".join(m for m in self.modalities if not present[m][j]) for j in range(len(keep))]
        return out, pd.DataFrame(problems, columns=["row", "patient_id", "column", "problem"])


    @torch.no_grad()
    def _predict_joint(self, images: dict, present: dict, clinical: pd.DataFrame, contributions: bool) -> tuple:
        """Probabilities of the joint network and, with ``contributions``, exact Shapley values of
        each source (modalities, clinical) for the predicted class: the network with sources
        switched off, as in training's modality dropout (never a zero image)."""
        from fusion.contributions import shapley_values
        from fusion.joint import JointData, predict_proba
        from fusion.late_fusion import ClinicalEncoder
        from fusion.transforms import build_transform

        net = self._joint_net()
        n = len(clinical)
        tensors = {}
        for m in self.modalities:
            t = torch.zeros((n, int(self.channels[m]), int(self.size), int(self.size)), dtype=torch.uint8)
            if present[m].any():
                t[torch.as_tensor(present[m])] = torch.stack(images[m])
            tensors[m] = t
        mask = np.stack([present[m] for m in self.modalities], axis=1)
        x = (None if self.encoder is None
             else ClinicalEncoder.from_dict(self.encoder).transform(clinical.reset_index(drop=True)))
        data = JointData(tensors, mask, x, np.zeros(n, dtype=np.int64))
        transform = {m: build_transform("none", train=False, channels=int(self.channels[m])) for m in self.modalities}

        def run(source_mask=None):
            return predict_proba(net, data, transform=transform, source_mask=source_mask, device="cpu", amp=False,
                                 channels_last=False)

        proba = run()
        if not contributions:
            return proba, {}
        pred = proba.argmax(axis=1)
        sources = list(net.sources)
        phi = shapley_values(lambda c: run(np.array([s in c for s in sources]))[np.arange(n), pred], sources)
        return proba, phi


class _JointBranchView(torch.nn.Module):
    """One image branch of a joint network as a classifier of that image alone (every other source
    switched off), with the backbone's ``info`` and ``body`` so that Grad-CAM layers resolve as
    for a single-modality CNN (``body.layer4`` ...)."""

    def __init__(self, net, modality: str):
        super().__init__()
        self.net = net
        self.modality = modality
        branch = net.branches[modality]
        self.info, self.body = branch.info, branch.body
        self._slot = list(net.sources).index(modality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the joint network's own forward with every other source masked off (their branches do not run)
        net, n = self.net, x.shape[0]
        images = {m: x for m in net.modalities}  # a masked-off branch never reads its entry
        mask = torch.zeros(n, len(net.sources), dtype=torch.bool, device=x.device)
        mask[:, self._slot] = True
        clinical = None if net.clinical is None else x.new_zeros((n, net.clinical[0].in_features))
        return net({"images": images, "mask": mask, "clinical": clinical})


# ----------------------------------------------------------------------------- loading
def load_bundle(path, schema=None) -> FusionModel:
    """Read a bundle written by :meth:`FusionModel.save` (``torch.load(weights_only=True)``).

    A file that is not a bundle, a bundle of another layout (:data:`BUNDLE_FORMAT`) or one
    trained with another schema than ``schema`` (when given) is refused with one line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("bundle file not found", file=path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise ConfigError(f"not a model bundle of this toolkit ({type(exc).__name__})", file=path) from None
    if not isinstance(data, dict) or "format" not in data or "head" not in data:
        raise ConfigError("not a model bundle of this toolkit (e.g. a training checkpoint: train a bundle with "
                          "python -m fusion.train --final)", file=path)
    if data["format"] != BUNDLE_FORMAT:
        raise ConfigError(f"bundle layout {data['format']} is not the layout {BUNDLE_FORMAT} this toolkit version "
                          f"reads (toolkit {data.get('meta', {}).get('toolkit_version')}); re-train it with this "
                          "version", file=path)
    made_with = str((data.get("meta") or {}).get("toolkit_version", ""))
    here = _toolkit_version()
    if made_with.split(".")[:2] != here.split(".")[:2]:
        raise ConfigError(f"the bundle was written by toolkit version {made_with or 'unknown'} and this is {here}; "
                          "a bundle is read by the same major.minor version (its preprocessing and layers may "
                          f"differ otherwise): install lymphnode-toolkit {made_with or 'of the bundle'} or re-train "
                          "the bundle with this version", file=path)
    missing = [f.name for f in dataclasses.fields(FusionModel) if f.name not in data]
    if missing:
        raise ConfigError(f"damaged model bundle: no '{missing[0]}' entry", file=path)
    model = FusionModel(**{f.name: data[f.name] for f in dataclasses.fields(FusionModel)})
    if schema is not None:
        from analysis.schema import Schema, load_schema

        mine = schema if isinstance(schema, Schema) else load_schema(schema)
        if json.dumps(mine.to_dict(), sort_keys=True, default=str) != json.dumps(model.schema.to_dict(),
                                                                                 sort_keys=True, default=str):
            raise ConfigError("the bundle was trained with another schema (variables, levels or columns differ); "
                              "use the schema stored in the bundle", file=path)
    return model


def _toolkit_version() -> str:
    import importlib.metadata as md

    return md.version("lymphnode-toolkit")


# ----------------------------------------------------------------------------- fitting
def _schema_text(schema) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return schema.to_yaml(Path(tmp) / "schema.yaml").read_text(encoding="utf-8")


def fit(cohort=None, *, fusion: str = "late", cv=None, config=None, out=None, progress: bool = True,
        joint_head: str = "concat", **settings) -> FusionModel:
    """Train the final model of ``fusion`` mode on all patients (see the module docs).

    Parameters
    ----------
    cohort : str or Path
        As for :func:`fusion.api.cross_validate`.
    fusion : {'late', 'embedding', 'joint'}
    joint_head : {'concat', 'gated'}, default 'concat'
        The fusion head of a joint bundle (fixed in advance rather than picked by its
        cross-validated AUC, so that the stored performance is not the best of two).
    cv : fusion.api.CVResult, optional
        The cross-validation of the same recipe (its out-of-fold predictions train the late
        head, its metrics are stored as the bundle's estimated performance); run here when
        not given (with the fusion mode and the texture baseline off).
    config, settings, out, progress
        As for :func:`fusion.api.cross_validate`; the final CNNs go to ``out/final``.

    Returns
    -------
    FusionModel
    """
    from fusion import runtime
    from fusion.api import _cross_validate, make_config
    from fusion.late_fusion import (ClinicalEncoder, _image_features, _variable_types, calibrate_first_level,
                                    class_prior_log, fit_head, patient_index)
    from fusion.splits import Split, inner_validation_split
    from fusion.train import load_dataset, train_unit

    from fusion.heads import FUSION_HEADS

    if fusion not in ("late", "embedding", "joint"):
        raise ConfigError(f"--final: unknown fusion mode {fusion!r} (late, embedding or joint)")
    if fusion == "joint" and joint_head not in FUSION_HEADS:
        raise ConfigError(f"joint_head {joint_head!r} is not one of {', '.join(FUSION_HEADS)}")
    if out is not None:
        settings["out"] = out
    cfg = make_config(cohort, config, **settings)
    cfg = dataclasses.replace(cfg, fusion=[fusion], late_fusion=fusion == "late", nested_fusion=False)
    if cv is None:
        cv = _cross_validate(cfg, progress)
    device = runtime.pick_device(cfg.device)
    runtime.set_threads(cfg.threads)
    dataset, _ = load_dataset(cfg, progress=progress)
    classes = list(dataset.class_names)
    labels = dataset.labels.cpu().numpy()
    ids = np.asarray(dataset.patient_ids, dtype=object)
    train_idx, val_idx = inner_validation_split(np.arange(len(ids)), ids, labels, cfg.inner_val, cfg.seed)
    final = Split(_FINAL_FOLD, np.asarray(train_idx), np.asarray(val_idx), np.zeros(0, dtype=np.int64), "final",
                  "all patients")
    backbone = cfg.backbones[0]
    if fusion == "joint":
        return _fit_joint_bundle(cfg, cv, dataset, final, joint_head, device, progress)
    root = Path(cfg.out) / "final"
    states, temps, embeddings = {}, {}, {}
    from analysis.calibration import fit_temperature

    for m in dataset.modalities:
        unit = root / m / backbone
        train_unit(cfg, dataset, m, backbone, final, None, device, unit, progress)
        states[m] = torch.load(unit / "model.pt", map_location="cpu", weights_only=True)["model"]
        v = pd.read_csv(unit / "validation_predictions.csv", dtype={"patient_id": str})
        y = v["y_true"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
        temps[m] = float(fit_temperature(v[[f"p_{c}" for c in classes]].to_numpy(dtype=float), y))
        blob = torch.load(unit / "embeddings.pt", map_location="cpu", weights_only=True)
        embeddings[m] = (blob["positions"].numpy(), blob["embeddings"].numpy())

    _, patients, first, _, y = patient_index(ids, labels, classes)
    frame = dataset.clinical.reset_index(drop=True).iloc[first].reset_index(drop=True)
    types = _variable_types(frame, dataset.schema)
    blocks, prior_log = {}, []
    if fusion == "late":
        # training features: the CV's out-of-fold CNN probabilities, each fold model temperature-scaled
        oof = cv.predictions[cv.predictions["model"] == backbone]
        oof, _ = calibrate_first_level(oof, cv.validation_predictions, classes)
        train_mask = np.ones(len(patients), bool)
        prior_log = [float(v) for v in class_prior_log(y, len(classes))]
        per_patient = {m: oof[oof["modality"] == m].groupby("patient_id")[[f"p_{c}" for c in classes]].mean()
                       for m in dataset.modalities}
        # in the bundle's modality order, the order FusionModel._features builds a new patient's row in
        parts = [_image_features(per_patient, patients, train_mask, y, len(classes), order=dataset.modalities)]
    else:
        val_p = pd.unique(ids[val_idx].astype(str))
        train_mask = np.isin(patients, val_p)
        parts = []
        from fusion.embedding import N_COMPONENTS, _patient_mean, apply_block, fit_block

        for m in dataset.modalities:
            pos, emb = embeddings[m]
            per = _patient_mean(pos, emb, ids.astype(str))
            params = fit_block(per.reindex(val_p).dropna().to_numpy(dtype=float), N_COMPONENTS)
            parts.append(apply_block(per.reindex(patients).to_numpy(dtype=float), params))
            blocks[m] = {k: torch.as_tensor(v) for k, v in params.items()}
    encoder = ClinicalEncoder(types).fit(frame, train_mask) if types else None
    if encoder is not None:
        parts.append(encoder.transform(frame))
    X = np.hstack(parts)
    head = fit_head(X[train_mask], y[train_mask], len(classes), cfg.seed, "lr")
    model_name = "late_fusion" if fusion == "late" else "embedding_lr"
    meta = _meta(cfg, dataset, cv, model_name, "fusion_images_clinical" if encoder else "fusion_images",
                 n_patients=int(len(patients)), n_head_training_patients=int(train_mask.sum()),
                 reference_input=[float(v) for v in X[train_mask].mean(axis=0)])
    return FusionModel(fusion=fusion, classes=classes, modalities=list(dataset.modalities), backbone=backbone,
                       size=int(cfg.size), channels={m: int(dataset.channels[m]) for m in dataset.modalities},
                       resize=str(dataset.resize), schema_yaml=_schema_text(dataset.schema), cnn_states=states,
                       temperatures=temps, head=_head_to_dict(head),
                       encoder=None if encoder is None else encoder.to_dict(), blocks=blocks, prior_log=prior_log,
                       meta=meta)



def _meta(cfg, dataset, cv, model_name: str, variant: str, **extra) -> dict:
    """The bundle's provenance and the cross-validated performance of ``model_name`` / ``variant``."""
    from fusion.provenance import table_sha256, versions

    perf = cv.metrics()
    chosen = perf[(perf["model"] == model_name) & (perf["modality"] == variant)]
    chosen = chosen[chosen["class"].fillna("").astype(str) == ""]
    return {
        "toolkit_version": _toolkit_version(), "versions": versions(),
        "training_data_sha256": table_sha256(dataset), "config": dataclasses.asdict(cfg), **extra,
        "cv_performance": json.loads(chosen.to_json(orient="records")),
        "cv_model": [model_name, variant],
        "research_use_only": "A research tool, not a diagnostic device.",
    }


def _fit_joint_bundle(cfg, cv, dataset, final, head_name: str, device, progress: bool) -> FusionModel:
    """The joint network trained on all patients (early stopping on the final inner validation
    patients), its clinical encoding stored as a :class:`~fusion.late_fusion.ClinicalEncoder`."""
    from fusion.joint import JointOptions, _unit_seed, fit_joint
    from fusion.late_fusion import ClinicalEncoder, _variable_types

    options = JointOptions.from_config(cfg)
    model = fit_joint(dataset, final, fusion=head_name, clinical=True, options=options, device=device,
                      seed=_unit_seed(cfg.seed, head_name, _FINAL_FOLD), progress=progress)
    net = model.network.cpu()
    frame = dataset.clinical.reset_index(drop=True)
    types = _variable_types(frame, dataset.schema) if frame.shape[1] else {}
    encoder = None
    if types:  # the encoding fit_joint used (encode_clinical), kept so a new patient is encoded alike
        rows = np.zeros(len(frame), dtype=bool)
        rows[np.asarray(final.train_idx, dtype=np.int64)] = True
        encoder = ClinicalEncoder(types).fit(frame, rows)
        if model.data.clinical is None or not np.allclose(encoder.transform(frame), model.data.clinical.numpy(),
                                                          atol=1e-5):
            raise RuntimeError("joint bundle: the stored clinical encoding differs from the one trained on")
    n_clinical = 0 if model.data.clinical is None else int(model.data.clinical.shape[1])
    ids = np.asarray(dataset.patient_ids, dtype=object)
    variant = "fusion_images_clinical" if n_clinical else "fusion_images"
    meta = _meta(cfg, dataset, cv, f"joint_{head_name}", variant, n_patients=int(len(pd.unique(ids))),
                 n_head_training_patients=int(len(pd.unique(ids[final.train_idx]))),
                 best_epoch=int(model.fit_result.best_epoch), reference_input=[])
    head = {"kind": "joint", "fusion": head_name, "n_clinical": n_clinical, "embed_dim": options.embed_dim,
            "hidden": options.hidden, "clinical_hidden": options.clinical_hidden, "dropout": options.dropout,
            "modality_dropout": options.modality_dropout, "n_classes": len(dataset.class_names)}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return FusionModel(fusion="joint", classes=list(dataset.class_names), modalities=list(dataset.modalities),
                       backbone=str(options.backbone), size=int(cfg.size),
                       channels={m: int(dataset.channels[m]) for m in dataset.modalities},
                       resize=str(dataset.resize), schema_yaml=_schema_text(dataset.schema),
                       cnn_states={"joint": state}, temperatures={}, head=head,
                       encoder=None if encoder is None else encoder.to_dict(), blocks={}, prior_log=[], meta=meta)
