"""The Python face of ``fusion``: cross-validate CNNs and their fusions, then look at the result.

>>> from fusion import cross_validate
>>> result = cross_validate("demo_data/cohort.xlsx", fusion=("late", "embedding"), out="runs/cv",
...                         epochs=4, folds=3)                                     # doctest: +SKIP
>>> result.results_table()        # one row per model x modality: pooled + per-fold AUC with CIs
>>> result.compare()              # paired tests against the best single modality, Holm-adjusted
>>> result.figures("runs/cv")     # ROC, confusion, calibration, metrics, learning curves
>>> result.save("runs/cv")        # every table and figure, as python -m fusion.train writes them

Computing is separate from writing: :func:`cross_validate` trains (checkpoints go to ``out``,
so that a killed run can resume and Grad-CAM can find the fold models) and returns a
:class:`CVResult` of tidy frames; nothing else is written until :meth:`CVResult.save`.

What runs, on the same patient folds (:func:`fusion.splits.make_splits`, the only place folds
are made):

* one CNN per modality x backbone x fold (early stopping on the fold's inner validation
  patients), predicting the fold's test patients;
* ``baseline=True``: a classical texture model per modality (:mod:`fusion.texture`);
* ``fusion`` modes: ``'late'`` (stacked probabilities, :mod:`fusion.late_fusion`, each fold
  CNN temperature-scaled on its inner validation patients first), ``'embedding'`` (CNN
  embeddings + clinical variables, :mod:`fusion.embedding`) and ``'joint'`` (one network
  trained end to end, :mod:`fusion.joint`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from analysis.errors import ConfigError, did_you_mean

__all__ = ["FUSION_MODES", "CVResult", "cross_validate", "make_config"]

#: Fusion modes of :func:`cross_validate`.
FUSION_MODES = ("late", "embedding", "joint")


def make_config(cohort=None, config=None, **overrides):
    """A checked :class:`fusion.config.TrainConfig` from a config (object, dict or YAML path) + keyword overrides."""
    from fusion.config import TrainConfig, resolve_config
    from fusion.train import _check_config

    if isinstance(config, TrainConfig):
        base = dataclasses.asdict(config)
    elif isinstance(config, dict):
        base = dict(config)
    elif config is not None:
        from fusion.config import load_yaml_config

        base = load_yaml_config(config, TrainConfig)
    else:
        base = {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in overrides:
        if key not in names:
            raise ConfigError(f"unknown setting {key!r}{did_you_mean(key, sorted(names))}")
    base.update({k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in overrides.items()})
    if cohort is not None:
        base["cohort"] = str(cohort)
    cfg = resolve_config(TrainConfig, None, base)
    if isinstance(cfg.fusion, str):
        cfg = dataclasses.replace(cfg, fusion=[cfg.fusion])
    modes = list(cfg.fusion or [])
    if cfg.late_fusion and "late" not in modes:
        modes.insert(0, "late")
    for m in modes:
        if m not in FUSION_MODES:
            raise ConfigError(f"--fusion: unknown mode {m!r} (expected: {', '.join(FUSION_MODES)})"
                              f"{did_you_mean(m, FUSION_MODES)}")
    cfg = dataclasses.replace(cfg, fusion=[m for m in FUSION_MODES if m in modes], late_fusion="late" in modes)
    _check_config(cfg)
    return cfg


@dataclass
class CVResult:
    """Everything :func:`cross_validate` computed, as tidy frames.

    Attributes
    ----------
    predictions : pandas.DataFrame
        Out-of-fold (and held-out) prediction rows of every model: ``patient_id[, image_id],
        fold, split, y_true, model, modality, p_<class>...``.  CNN rows have ``model`` = the
        backbone and ``modality`` = the modality; texture baselines ``model = 'texture_lr'``;
        fusion rows ``model`` in ``late_fusion, embedding_lr, embedding_mlp, joint_concat,
        joint_gated`` with ``modality`` the variant (``fusion_images``,
        ``fusion_images_clinical``, ``clinical_only``).
    classes : list of str
    splits : list of fusion.splits.Split
    fold_assignments : pandas.DataFrame
        ``fold, kind, name, patient_id, image_id, role``: the role (train / validation / test /
        heldout) of every patient's every image in every fold.
    validation_predictions : pandas.DataFrame
        Each fold CNN's predictions for its inner validation patients (split ``'validation'``).
    fusion_models : dict
        ``'late_fusion'`` / ``'embedding'`` / ``'texture'`` / ``'joint'`` -> tidy frame of what
        was fitted per fold (chosen strength, n, features, ...).
    contributions : pandas.DataFrame or None
        Exact Shapley contributions of each source to each fused prediction
        (:mod:`fusion.contributions`).
    history : pandas.DataFrame or None
        Learning curves of the outer fold CNNs.
    manifest : dict
        ``run_manifest.json``.
    config : fusion.config.TrainConfig
    problems : pandas.DataFrame
        Masked (missing or unreadable) images.
    nested_predictions, temperatures : pandas.DataFrame or None
    ablation : pandas.DataFrame or None
        With ``ablation=True``: late / embedding fusion of every modality subset x with /
        without clinical variables (:mod:`fusion.ablation`).
    hospitals : pandas.DataFrame or None
        ``patient_id, hospital`` of every patient when the schema has a hospital column
        (``patient_hospitals.csv``): per-hospital metrics and the meta-analysis across
        hospitals for every run, k-fold included (:meth:`by_hospital`, :meth:`meta_analysis`).
    """

    predictions: pd.DataFrame
    classes: list
    splits: list
    fold_assignments: pd.DataFrame
    validation_predictions: pd.DataFrame
    config: object
    manifest: dict
    problems: pd.DataFrame
    fusion_models: dict = field(default_factory=dict)
    contributions: pd.DataFrame | None = None
    history: pd.DataFrame | None = None
    nested_predictions: pd.DataFrame | None = None
    temperatures: pd.DataFrame | None = None
    ablation: pd.DataFrame | None = None
    hospitals: pd.DataFrame | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ statistics
    @property
    def n_boot(self) -> int:
        return int(self.config.n_boot)

    def metrics(self) -> pd.DataFrame:
        """Pooled metrics per model x modality x split with patient-level bootstrap CIs."""
        if "metrics" not in self._cache:
            from fusion.evaluate import evaluate_predictions

            self._cache["metrics"] = evaluate_predictions(self.predictions, self.classes, n_boot=self.n_boot,
                                                          seed=self.config.seed, source="oof_predictions.csv")
        return self._cache["metrics"]

    def metrics_by_fold(self) -> pd.DataFrame:
        """The same metrics for each test fold (each held-out hospital) on its own, column ``held_out``."""
        if "by_fold" not in self._cache:
            from fusion.evaluate import evaluate_by_fold

            by_fold = evaluate_by_fold(self.predictions, self.classes, n_boot=self.n_boot, seed=self.config.seed,
                                       source="oof_predictions.csv", splits=("test", "external"))
            if len(by_fold):
                by_fold.insert(4, "held_out", by_fold["fold"].map({s.fold: s.name for s in self.splits}))
            self._cache["by_fold"] = by_fold
        return self._cache["by_fold"]

    def single_modality_rows(self) -> pd.DataFrame:
        """``model, modality`` pairs that use one modality (CNNs and texture baselines)."""
        mods = set(self.manifest.get("modalities", []))
        keys = self.predictions[["model", "modality"]].drop_duplicates()
        return keys[keys["modality"].isin(mods)].reset_index(drop=True)

    def best_single(self, split: str | None = None) -> tuple | None:
        """The single-modality ``(model, modality)`` with the highest pooled macro AUC."""
        m = self.metrics()
        split = split or self._main_split()
        single = self.single_modality_rows()
        auc = m[(m["metric"] == "auc") & (m["class"].fillna("").astype(str) == "") & (m["split"] == split)]
        auc = auc.merge(single, on=["model", "modality"])
        if auc.empty:
            return None
        row = auc.sort_values(["estimate", "model", "modality"], ascending=[False, True, True]).iloc[0]
        return str(row["model"]), str(row["modality"])

    def _main_split(self) -> str:
        splits = list(pd.unique(self.predictions["split"]))
        for s in ("test", "external", "holdout"):
            if s in splits:
                return s
        return splits[0]

    def compare(self) -> pd.DataFrame:
        """Paired comparisons of every model x modality against the best single modality.

        :func:`fusion.evaluate.compare_models_delong` on the patients common to both: the
        macro AUC by paired patient bootstrap, each class by DeLong; ``p_holm`` is Holm-adjusted
        within each split x class family.  Also the fusion pairs of
        :func:`fusion.late_fusion.fusion_comparison` when late fusion ran.
        """
        if "compare" not in self._cache:
            from fusion.evaluate import compare_models_delong

            best = self.best_single()
            if best is None:
                self._cache["compare"] = pd.DataFrame()
            else:
                self._cache["compare"] = compare_models_delong(
                    self.predictions, self.classes, n_boot=self.n_boot, seed=self.config.seed,
                    source="oof_predictions.csv", pairs=lambda a, b: best in (a, b))
        return self._cache["compare"]

    def results_table(self) -> pd.DataFrame:
        """One row per model x modality x split: pooled and per-fold macro AUC (95 % CI), p against
        the best single modality (raw and Holm); see :func:`fusion.reporting.results_table`."""
        from fusion.reporting import results_table

        return results_table(self.metrics(), self.metrics_by_fold(), self.compare(), self.best_single(),
                             single=self.single_modality_rows())

    def ablation_table(self) -> pd.DataFrame:
        """Every modality subset x clinical x fusion mode against the best single modality
        (:func:`fusion.ablation.ablation_table`); empty without ``ablation=True``."""
        from fusion.ablation import ablation_table

        best = self.best_single()
        if self.ablation is None or best is None:
            return pd.DataFrame()
        if "ablation" not in self._cache:
            self._cache["ablation"] = ablation_table(self.ablation, self.predictions, self.classes, best,
                                                     n_boot=self.n_boot, seed=self.config.seed)
        return self._cache["ablation"]

    # ------------------------------------------------------------------ beyond the AUC
    def decision_curves(self, binary=None) -> pd.DataFrame:
        """Net benefit vs treat-all / treat-none per one-vs-rest class and binary question, patient-bootstrap bands.

        ``binary``: e.g. ``'malignant=metastatic,lymphoma'`` (default: "malignant = every class
        but benign" when there is a ``benign`` class and >= 3 classes;
        :func:`fusion.evaluate.decision_curves`).
        """
        from fusion.evaluate import decision_curves, default_binary_questions

        binary = default_binary_questions(self.classes) if binary is None else binary
        key = ("decision_curves", repr(binary))
        if key not in self._cache:
            self._cache[key] = decision_curves(self.predictions, self.classes, binary=binary, n_boot=self.n_boot,
                                               seed=self.config.seed, source="oof_predictions.csv")
        return self._cache[key]

    def conformal(self, alpha: float = 0.1):
        """Class-conditional conformal sets per patient (``.sets``) and coverage per class (``.coverage``).

        CNN rows are calibrated fold by fold on the fold model's inner validation patients
        (``validation_predictions``), fusion rows on the other folds' patients
        (:func:`fusion.evaluate.conformal_predictions`).
        """
        from fusion.evaluate import conformal_predictions

        key = ("conformal", float(alpha))
        if key not in self._cache:
            self._cache[key] = conformal_predictions(self.predictions, self.classes, alpha=alpha,
                                                     calibration=self.validation_predictions,
                                                     source="oof_predictions.csv")
        return self._cache[key]

    def _hospital_rows(self):
        """Hospital of each prediction row (None where the patient has none), or None without hospitals."""
        if self.hospitals is None or not len(self.hospitals):
            return None
        lookup = dict(zip(self.hospitals["patient_id"].astype(str), self.hospitals["hospital"].astype(str)))
        return self.predictions["patient_id"].astype(str).map(lookup).to_numpy(dtype=object)

    def by_hospital(self) -> pd.DataFrame:
        """The metrics of ``metrics.csv`` per hospital of the patients (empty without hospitals)."""
        from fusion.evaluate import evaluate_by_hospital

        if "by_hospital" not in self._cache:
            h = self._hospital_rows()
            self._cache["by_hospital"] = pd.DataFrame() if h is None else evaluate_by_hospital(
                self.predictions, self.classes, h, n_boot=self.n_boot, seed=self.config.seed,
                source="oof_predictions.csv")
        return self._cache["by_hospital"]

    def meta_analysis(self, method: str = "REML"):
        """Per-hospital AUCs (``.centres``) and their random-effects meta-analysis (``.pooled``), or None."""
        from fusion.evaluate import hospital_meta_analysis

        key = ("meta", method)
        if key not in self._cache:
            h = self._hospital_rows()
            self._cache[key] = None if h is None else hospital_meta_analysis(
                self.predictions, self.classes, h, method=method, n_boot=self.n_boot, seed=self.config.seed,
                source="oof_predictions.csv")
        return self._cache[key]

    def figures(self, out) -> list:
        """ROC, confusion, calibration, metrics and learning-curve figures under ``out/figures``."""
        from fusion.figures import save_report_figures

        return save_report_figures(self.predictions, self.metrics(), self.classes, Path(out), history=self.history)

    # ------------------------------------------------------------------ writing
    def save(self, out) -> list:
        """Write every table and figure to ``out``; returns the paths written."""
        from fusion.config import save_config
        from fusion.reporting import _markdown, write_model_modality_tables, write_results_table

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = [save_config(self.config, out / "config.yaml")]

        def csv(frame, name):
            if frame is not None and len(frame):
                frame.to_csv(out / name, index=False)
                written.append(out / name)

        (out / "run_manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str), encoding="utf-8")
        written.append(out / "run_manifest.json")
        csv(self.problems, "image_problems.csv")
        csv(self.fold_assignments, "fold_assignments.csv")
        csv(self.nested_predictions, "nested_predictions.csv")
        self.predictions.to_csv(out / "oof_predictions.csv", index=False)
        written.append(out / "oof_predictions.csv")
        csv(self.validation_predictions, "validation_predictions.csv")
        csv(self.metrics(), "metrics.csv")
        csv(self.metrics_by_fold(), "metrics_by_fold.csv")
        late = self.fusion_models.get("late_fusion")
        if late is not None:
            from fusion.late_fusion import fusion_comparison

            csv(late, "late_fusion_models.csv")
            csv(fusion_comparison(self.predictions, self.classes, n_boot=self.n_boot, seed=self.config.seed,
                                  source="oof_predictions.csv"), "late_fusion_comparison.csv")
        for key, name in (("embedding", "embedding_fusion_models.csv"), ("texture", "texture_models.csv"),
                          ("joint", "joint_fusion_models.csv")):
            csv(self.fusion_models.get(key), name)
        csv(self.temperatures, "calibration_temperatures.csv")
        csv(self.contributions, "fusion_contributions.csv")
        if self.best_single() is not None and (self.predictions["modality"].nunique() > 1):
            csv(self.compare(), "comparison_vs_best_single.csv")
        csv(self.history, "training_history.csv")
        curves, conf, meta = self.decision_curves(), self.conformal(), self.meta_analysis()
        csv(curves, "decision_curves.csv")
        csv(conf.sets, "conformal_sets.csv")
        csv(conf.coverage, "conformal_coverage.csv")
        csv(self.hospitals, "patient_hospitals.csv")
        csv(self.by_hospital(), "metrics_by_hospital.csv")
        if meta is not None:
            csv(meta.centres, "hospital_auc.csv")
            csv(meta.pooled, "hospital_meta_analysis.csv")
        from fusion.evaluate import write_utility_figures

        written.extend(write_utility_figures(out, curves, meta))
        written.extend(self.figures(out))
        written.extend(write_model_modality_tables(self.metrics(), out, n_boot=self.n_boot,
                                                   by_fold=self.metrics_by_fold()))
        written.extend(write_results_table(self.results_table(), out, n_boot=self.n_boot))
        if self.ablation is not None and len(self.ablation):
            csv(self.ablation, "ablation_predictions.csv")
            table = self.ablation_table()
            if len(table):
                (out / "ablation.md").write_text(
                    "Fusion of every modality subset, with and without the clinical variables, on the same folds: "
                    "pooled out-of-fold macro AUC (95% CI, patient bootstrap) and the paired comparison with the "
                    "best single modality (p (Holm) over all rows of a split).\n\n"
                    + _markdown(table, left=len(table.columns)) + "\n",
                    encoding="utf-8")
                written.append(out / "ablation.md")
                csv(table, "ablation.csv")
        from fusion.checklist import write_checklist  # TRIPOD+AI / CLAIM, from the files just written

        written.extend(write_checklist(out))
        if (out / "checkpoints").is_dir():
            written.append(out / "checkpoints")
        return written


#: Outputs that only some runs write (removed at the start of a run into the same --out).
OPTIONAL_OUTPUTS = ("image_problems.csv", "metrics_by_fold.csv", "nested_predictions.csv",
                    "late_fusion_models.csv", "late_fusion_comparison.csv", "embedding_fusion_models.csv",
                    "texture_models.csv", "joint_fusion_models.csv", "calibration_temperatures.csv",
                    "fusion_contributions.csv", "comparison_vs_best_single.csv", "validation_predictions.csv",
                    "fold_assignments.csv", "ablation_predictions.csv", "ablation.md", "ablation.csv",
                    "conformal_sets.csv", "conformal_coverage.csv", "patient_hospitals.csv",
                    "metrics_by_hospital.csv", "hospital_auc.csv", "hospital_meta_analysis.csv")


def cross_validate(cohort=None, *, modalities=None, fusion=None, baseline=None, config=None, out=None,
                   progress: bool = True, **settings) -> CVResult | None:
    """Patient-level cross-validation of per-modality CNNs, a texture baseline and the fusions.

    Parameters
    ----------
    cohort : str, Path, optional
        A cohort table (``.xlsx``/``.csv`` + schema), ``busi``, ``bus_bra``, a manifest YAML or
        a folder of class folders (see :func:`fusion.train.load_table`); or ``cohort`` in
        ``config``.
    modalities : sequence of str, optional
        Default: every image column of the schema.
    fusion : sequence of {'late', 'embedding', 'joint'}, optional
        Fusion modes (default: none, or the config's ``fusion``).
    baseline : bool, optional
        Also fit the texture baseline per modality (default: the config's, True).
    config : TrainConfig, dict or YAML path, optional
        Settings (``python -m fusion.train --help`` lists them); ``settings`` override them.
    out : str or Path, optional
        Folder for the checkpoints (default: the config's ``out``).
    progress : bool
        tqdm progress bars on stderr.

    Returns
    -------
    CVResult or None
        None on DDP ranks other than 0.
    """
    for key, value in (("modalities", modalities), ("fusion", fusion), ("baseline", baseline), ("out", out)):
        if value is not None:
            settings[key] = list(value) if key in ("modalities", "fusion") and not isinstance(value, str) else value
    cfg = make_config(cohort, config, **settings)
    return _cross_validate(cfg, progress)


def _read_unit(unit_dir: Path):
    return (pd.read_csv(unit_dir / "predictions.csv", dtype={"patient_id": str}),
            pd.read_csv(unit_dir / "validation_predictions.csv", dtype={"patient_id": str}))


def _unit_done(unit_dir: Path) -> bool:
    from fusion.train import _unit_complete

    return all((unit_dir / f).is_file() for f in ("predictions.csv", "validation_predictions.csv",
                                                   "embeddings.pt")) and _unit_complete(unit_dir)


def _cross_validate(cfg, progress: bool = True) -> CVResult | None:
    from fusion import runtime
    from fusion.provenance import fold_assignments, run_manifest
    from fusion.splits import make_splits, nested_splits
    from fusion.train import _check_resume_compatible, _heldout_ensemble, image_ids, load_dataset, train_unit

    dist = runtime.init_distributed(cfg.device)
    try:
        runtime.set_threads(cfg.threads)
        device = runtime.pick_device(cfg.device)
        if dist.distributed and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
        main_proc = runtime.is_main_process()
        if dist.distributed and main_proc:
            print(f"DDP: {dist.world_size} processes x --batch-size {cfg.batch_size} per process = global batch "
                  f"{cfg.batch_size * dist.world_size}", file=sys.stderr)
        out = Path(cfg.out)
        if main_proc:
            out.mkdir(parents=True, exist_ok=True)
            if cfg.resume and (out / "config.yaml").is_file():
                _check_resume_compatible(cfg, out / "config.yaml")
            for name in OPTIONAL_OUTPUTS:  # written again when they apply; never left stale
                (out / name).unlink(missing_ok=True)
        runtime.barrier()
        dataset, source = load_dataset(cfg, progress=progress and main_proc)
        classes = list(dataset.class_names)
        labels = dataset.labels.cpu().numpy()
        folds, holdout = make_splits(cfg, dataset.patient_ids, labels, dataset.hospital,
                                     getattr(dataset, "fold_labels", None))
        manifest = None
        if main_proc:
            from fusion.config import save_config

            save_config(cfg, out / "config.yaml")  # early: --resume checks it
            manifest = run_manifest(cfg, dataset, folds, holdout, dist.world_size, device, source)
            (out / "run_manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        show = progress and main_proc

        def run_unit(modality, backbone, split, unit_dir, outer_fold=None):
            if cfg.resume and _unit_done(unit_dir):
                return _read_unit(unit_dir)
            train_unit(cfg, dataset, modality, backbone, split, holdout, device, unit_dir, show,
                       outer_fold=outer_fold)
            return _read_unit(unit_dir)

        # every inner split first: a cohort too small for them fails now, not after hours of training
        inner_of = {s.fold: nested_splits(cfg, s, dataset.patient_ids, labels, dataset.hospital, classes)
                    for s in folds} if cfg.nested_fusion else {}
        frames, val_frames, inner_frames, inner_val = [], [], [], []
        timings = {}
        clock = time.perf_counter()
        for modality in dataset.modalities:
            for backbone in cfg.backbones:
                for split in folds:
                    fold_dir = out / "checkpoints" / modality / backbone / f"fold{split.fold}"
                    p, v = run_unit(modality, backbone, split, fold_dir)
                    frames.append(p)
                    val_frames.append(v)
                    if cfg.nested_fusion:
                        for inner in inner_of[split.fold]:
                            p, v = run_unit(modality, backbone, inner, fold_dir / f"inner{inner.fold}",
                                            outer_fold=split.fold)
                            inner_frames.append(p)
                            inner_val.append(v)
        timings["cnn"] = time.perf_counter() - clock
        if not main_proc:
            return None
        preds = _concat(frames)
        parts = [preds[preds["split"] != "_heldout"]]
        if holdout is not None:
            parts.append(_heldout_ensemble(preds, classes, holdout))
        oof = pd.concat(parts, ignore_index=True)
        validation = _concat(val_frames)
        if cfg.recalibrate and len(validation):
            from fusion.late_fusion import calibrate_first_level

            # every fold CNN temperature-scaled on its own inner validation patients (never a test patient);
            # the validation rows too, so that late fusion's own scaling finds nothing left to do (T = 1)
            oof, recal = calibrate_first_level(oof, validation, classes)
            validation, _ = calibrate_first_level(validation, validation, classes)
            manifest["recalibrated"] = json.loads(recal.to_json(orient="records"))
        ids = dataset.patient_ids
        models, contrib, extra = {}, [], []
        temperatures = nested = None
        clock = time.perf_counter()
        if cfg.baseline:
            from fusion.texture import texture_baseline

            tex = texture_baseline(dataset, folds, holdout=holdout, seed=cfg.seed, progress=show)
            tex_rows = tex.predictions
            if holdout is not None and len(tex_rows):
                tex_rows = pd.concat([tex_rows[tex_rows["split"] != "_heldout"],
                                      _heldout_ensemble(tex_rows, classes, holdout)], ignore_index=True)
            extra.append(tex_rows)
            models["texture"] = tex.models
            timings["texture"] = time.perf_counter() - clock
            clock = time.perf_counter()
        if "late" in cfg.fusion:
            from fusion.late_fusion import late_fusion_predictions

            if cfg.nested_fusion:
                nested = _concat(inner_frames)
            late = late_fusion_predictions(oof, classes, folds, ids, labels, clinical=dataset.clinical,
                                           schema=dataset.schema, seed=cfg.seed, inner=nested,
                                           calibration=validation,
                                           inner_calibration=_concat(inner_val) if cfg.nested_fusion else None)
            extra.append(late.predictions)
            if holdout is not None:  # the held-out set: one second level fitted on every development patient
                from fusion.late_fusion import late_fusion_heldout

                held = oof[oof["split"].isin(["external", "holdout"]) & (oof["fold"] == -1)]
                extra.append(late_fusion_heldout(oof, held, classes, folds, ids, labels, clinical=dataset.clinical,
                                                 schema=dataset.schema, seed=cfg.seed, calibration=validation))
            models["late_fusion"] = late.models
            temperatures = late.temperatures
            if late.contributions is not None:
                contrib.append(late.contributions)
            timings["late"] = time.perf_counter() - clock
            clock = time.perf_counter()
        emb = None
        if "embedding" in cfg.fusion or cfg.ablation:
            from fusion.embedding import load_run_embeddings

            emb = load_run_embeddings(out / "checkpoints", [s.fold for s in folds], dataset.modalities, cfg.backbones)
        if "embedding" in cfg.fusion:
            from fusion.embedding import embedding_fusion_predictions

            res = embedding_fusion_predictions(emb, classes, folds, ids, labels, clinical=dataset.clinical,
                                               schema=dataset.schema, seed=cfg.seed)
            extra.append(res.predictions)
            models["embedding"] = res.models
            if res.contributions is not None:
                contrib.append(res.contributions)
            timings["embedding"] = time.perf_counter() - clock
            clock = time.perf_counter()
        if "joint" in cfg.fusion:
            joint_rows, joint_contrib = _joint(cfg, dataset, folds, device, show)
            extra.append(joint_rows)
            contrib.append(joint_contrib)
            timings["joint"] = time.perf_counter() - clock
            clock = time.perf_counter()
        ablation = None
        if cfg.ablation:
            from fusion.ablation import ablation_predictions

            modes = [m for m in ("late", "embedding") if m in cfg.fusion] or ["late"]
            ablation = ablation_predictions(oof, classes, folds, ids, labels, dataset.modalities,
                                            clinical=dataset.clinical, schema=dataset.schema, validation=validation,
                                            embeddings=emb, modes=modes, seed=cfg.seed)
            timings["ablation"] = time.perf_counter() - clock
        manifest["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        oof = pd.concat([oof, *[e for e in extra if len(e)]], ignore_index=True)
        histories = [pd.read_csv(p) for p in sorted((out / "checkpoints").glob("*/*/fold*/history.csv"))]
        return CVResult(
            predictions=oof, classes=classes, splits=folds,
            fold_assignments=fold_assignments(folds, ids, holdout, image_ids(dataset)),
            validation_predictions=validation, config=cfg, manifest=manifest, problems=dataset.problems,
            fusion_models=models, contributions=pd.concat(contrib, ignore_index=True) if contrib else None,
            history=pd.concat(histories, ignore_index=True) if histories else None,
            nested_predictions=nested, temperatures=temperatures, ablation=ablation,
            hospitals=None if dataset.hospital is None else pd.DataFrame(
                {"patient_id": pd.Series(ids, dtype=object).astype(str), "hospital": dataset.hospital}
            ).dropna().drop_duplicates().reset_index(drop=True))
    finally:
        runtime.cleanup_distributed()


def _joint(cfg, dataset, folds, device, progress):
    """Joint-fusion rows (concatenation and gated-attention heads) and their exact Shapley contributions."""
    import numpy as np

    from fusion.contributions import CONTRIBUTION_COLUMNS, shapley_values
    from fusion.joint import JointOptions, joint_fusion_predictions

    opts = JointOptions.from_config(cfg)
    ids = pd.Series(np.asarray(dataset.patient_ids, dtype=object)).astype(str).to_numpy()
    classes = list(dataset.class_names)
    frames = []

    def on_model(split, fusion, model):
        idx = np.asarray(split.test_idx, dtype=np.int64)
        if not len(idx):
            return
        sources = list(model.sources)
        phi = shapley_values(lambda c: model.predict_proba(idx, np.array([s in c for s in sources])), sources)
        full = model.predict_proba(idx, np.ones(len(sources), bool))
        base = model.predict_proba(idx, np.zeros(len(sources), bool))
        for src in sources:
            for k, c in enumerate(classes):
                frames.append(pd.DataFrame({
                    "patient_id": ids[idx], "fold": split.fold,
                    "split": "external" if split.kind == "hospital" else "test", "model": f"joint_{fusion}",
                    "modality": "fusion_images_clinical" if "clinical" in sources else "fusion_images",
                    "source": src, "class": c, "contribution": phi[src][:, k], "reference": base[:, k],
                    "prediction": full[:, k]}))

    rows = joint_fusion_predictions(dataset, folds, fusion=("concat", "gated"), clinical=True, options=opts,
                                    device=device, seed=cfg.seed, progress=progress, on_model=on_model)
    contrib = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CONTRIBUTION_COLUMNS)
    return rows, contrib


def _concat(frames) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["patient_id"] = out["patient_id"].astype(str)
    return out

