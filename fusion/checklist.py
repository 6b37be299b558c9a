"""An auto-filled reporting checklist (TRIPOD+AI and CLAIM) from a run's outputs.

:func:`build_checklist` reads what a run of ``fusion.train`` / :func:`fusion.cross_validate`
wrote (``run_manifest.json``, ``config.yaml``, ``fold_assignments.csv``, ``metrics.csv``,
``metrics_by_fold.csv``, ``image_problems.csv``, ``oof_predictions.csv`` and, when present,
calibration, decision-curve, conformal, per-centre, Grad-CAM and leakage-audit outputs) and
fills, for every item of

* **TRIPOD+AI** (Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance
  for reporting clinical prediction models that use regression or machine learning methods.
  BMJ 2024;385:e078378, doi:10.1136/bmj-2023-078378; 27 items, several with sub-items), and
* **CLAIM** (Mongan J, Moy L, Kahn CE Jr. Checklist for Artificial Intelligence in Medical
  Imaging. Radiol Artif Intell 2020;2:e200029, doi:10.1148/ryai.2020200029; updated by Tejani AS,
  Klontzas ME, Gatti AA, et al. CLAIM 2024 Update. Radiol Artif Intell 2024;6:e240300,
  doi:10.1148/ryai.240300),

what the run did (``from_run``) and what the authors must still write (``authors_must_write``),
with a status: ``'filled'`` (the run answers the item; authors only copy it), ``'partly'`` (the
run gives facts, the authors add context) or ``'authors'`` (nothing in a run can answer it:
title, ethics, funding, ...).

Item topics are paraphrased, not quoted; the official checklists remain the reference. CLAIM
topics carry the numbers of the 2020 checklist (42 items); the 2024 update keeps its
sections but revises wording and adds items, so map the numbers onto the official 2024 form.

``write_checklist(run)`` writes ``reporting_checklist.md`` and ``reporting_checklist.docx``
(python-docx) beside the results; :meth:`fusion.api.CVResult.save` calls it, and so does
``python -m fusion.audit RUN --checklist`` (which adds the leakage audit's verdicts).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["TRIPOD_AI_ITEMS", "CLAIM_ITEMS", "RunFacts", "Checklist", "read_run", "build_checklist",
           "write_checklist"]

STATUSES = ("filled", "partly", "authors")

# (item, section, topic, filler); filler None = nothing a run can answer
TRIPOD_AI_ITEMS = [
    ("1", "Title", "identify the study as developing and/or evaluating a prediction model, the population and outcome", "title"),
    ("2", "Abstract", "structured abstract (TRIPOD+AI for Abstracts)", "abstract"),
    ("3a", "Introduction", "healthcare context, rationale, existing models", None),
    ("3b", "Introduction", "target population and intended use in the care pathway; intended users", None),
    ("3c", "Introduction", "known health inequalities between groups", None),
    ("4", "Introduction", "objectives: development, evaluation or both", "objectives"),
    ("5a", "Methods: data", "sources of data and why chosen; representativeness", "data_source"),
    ("5b", "Methods: data", "dates of data collection (start and end of accrual)", "dates"),
    ("6a", "Methods: participants", "setting; number and location of centres", "centres"),
    ("6b", "Methods: participants", "eligibility criteria", "eligibility"),
    ("6c", "Methods: participants", "treatments received, if relevant", None),
    ("7", "Methods: data preparation", "pre-processing and data quality checks", "preparation"),
    ("8a", "Methods: outcome", "outcome definition and how and when it was assessed", "outcome"),
    ("8b", "Methods: outcome", "qualifications of the outcome assessors, if subjective", None),
    ("8c", "Methods: outcome", "blinding of outcome assessment", None),
    ("9a", "Methods: predictors", "choice of the initial predictors (including images)", "predictors"),
    ("9b", "Methods: predictors", "definition of every predictor and how and when it was measured", "predictors"),
    ("9c", "Methods: predictors", "qualifications of predictor assessors; blinding", None),
    ("10", "Methods: sample size", "how the study size was arrived at", "sample_size"),
    ("11", "Methods: missing data", "how missing data were handled, with reasons for omissions", "missing"),
    ("12a", "Methods: analysis", "how the data were used: partitions and the level at which they were kept apart", "partitions"),
    ("12b", "Methods: analysis", "how predictors were handled (transformations, scaling)", "predictor_handling"),
    ("12c", "Methods: analysis", "model type, building, hyperparameter tuning, internal validation", "model_and_tuning"),
    ("12d", "Methods: analysis", "heterogeneity across centres or clusters", "centre_methods"),
    ("12e", "Methods: analysis", "performance measures (discrimination, calibration, clinical utility) and why", "measures"),
    ("12f", "Methods: analysis", "model updating or recalibration", "updating"),
    ("12g", "Methods: analysis", "for evaluation: how the predictions were calculated", "prediction_calc"),
    ("13", "Methods: class imbalance", "methods for class imbalance, and their rationale", "imbalance"),
    ("14", "Methods: fairness", "approaches to assess and address fairness", "fairness"),
    ("15", "Methods: model output", "model output (probabilities, classes) and any thresholds", "output"),
    ("16", "Methods: training vs evaluation", "differences between development and evaluation data", "train_vs_eval"),
    ("17", "Methods: ethics", "ethical approval and consent", None),
    ("18a", "Open science", "funding and the role of funders", None),
    ("18b", "Open science", "conflicts of interest", None),
    ("18c", "Open science", "where the protocol can be accessed", None),
    ("18d", "Open science", "registration", None),
    ("18e", "Open science", "data availability", "data_sharing"),
    ("18f", "Open science", "code availability", "code_sharing"),
    ("19", "Patient and public involvement", "patient and public involvement", None),
    ("20a", "Results: participants", "flow of participants through the study", "flow"),
    ("20b", "Results: participants", "characteristics of the participants (overall and per partition)", "characteristics"),
    ("20c", "Results: participants", "comparison of development and evaluation data distributions", "train_vs_eval"),
    ("21", "Results: model development", "number of participants and outcome events in each analysis", "events"),
    ("22", "Results: model specification", "full model details or how to access the model", "specification"),
    ("23a", "Results: performance", "performance with confidence intervals (discrimination, calibration, net benefit)", "performance"),
    ("23b", "Results: performance", "heterogeneity of performance across centres or subgroups", "centre_results"),
    ("24", "Results: model updating", "results of model updating", "updating"),
    ("25", "Discussion", "interpretation of the results, including fairness", "interpretation"),
    ("26", "Discussion", "limitations (non-representative sample, sample size, overfitting, missing data)", "limitations"),
    ("27a", "Discussion: usability", "how poor-quality or unavailable input data are handled when the model is used", "usability_inputs"),
    ("27b", "Discussion: usability", "user interaction and expertise needed", None),
    ("27c", "Discussion: usability", "next steps for future research and implementation", None),
]

CLAIM_ITEMS = [
    ("1", "Title / abstract", "identify the AI methodology (e.g. deep learning) in the title or abstract", "title"),
    ("2", "Title / abstract", "structured summary of design, methods, results, conclusions", "abstract"),
    ("3", "Introduction", "scientific and clinical background, intended use and clinical role of the AI", None),
    ("4", "Introduction", "study objectives and hypotheses", "objectives"),
    ("5", "Methods: study design", "prospective or retrospective", "design"),
    ("6", "Methods: study design", "study goal (model creation, exploratory, feasibility, non-inferiority)", "objectives"),
    ("7", "Methods: data", "data sources", "data_source"),
    ("8", "Methods: data", "eligibility criteria; how, where and when participants were identified", "eligibility"),
    ("9", "Methods: data", "data pre-processing steps", "preparation"),
    ("10", "Methods: data", "selection of data subsets", "subsets"),
    ("11", "Methods: data", "definitions of data elements", "predictors"),
    ("12", "Methods: data", "de-identification methods", None),
    ("13", "Methods: data", "how missing data were handled", "missing"),
    ("14", "Methods: ground truth", "definition of the reference standard (ground truth)", "outcome"),
    ("15", "Methods: ground truth", "rationale for the reference standard", None),
    ("16", "Methods: ground truth", "source of annotations; qualifications of annotators", None),
    ("17", "Methods: ground truth", "annotation tools", None),
    ("18", "Methods: ground truth", "inter- and intra-rater variability and how discrepancies were resolved", None),
    ("19", "Methods: data partitions", "intended sample size and how it was determined", "sample_size"),
    ("20", "Methods: data partitions", "how data were assigned to partitions; proportions", "partitions"),
    ("21", "Methods: data partitions", "level at which partitions are disjoint (image, study, patient, institution)", "partitions"),
    ("22", "Methods: model", "detailed model description (inputs, outputs, architecture)", "specification"),
    ("23", "Methods: model", "software libraries, frameworks, packages", "software"),
    ("24", "Methods: model", "initialisation of model parameters (random, transfer learning)", "initialisation"),
    ("25", "Methods: training", "training approach: augmentation, hyperparameters, number of models", "model_and_tuning"),
    ("26", "Methods: training", "method of selecting the final model", "selection"),
    ("27", "Methods: training", "ensembling techniques, if any", "ensembling"),
    ("28", "Methods: evaluation", "metrics of model performance", "measures"),
    ("29", "Methods: evaluation", "statistical measures of significance and uncertainty (e.g. CIs)", "uncertainty"),
    ("30", "Methods: evaluation", "robustness or sensitivity analysis", "robustness"),
    ("31", "Methods: evaluation", "methods for explainability or interpretability and how they were validated", "explainability"),
    ("32", "Methods: evaluation", "validation or testing on external data", "external"),
    ("33", "Results: data", "flow of participants or cases (diagram)", "flow"),
    ("34", "Results: data", "demographic and clinical characteristics in each partition", "characteristics"),
    ("35", "Results: model performance", "performance metrics of the final model(s) on all partitions", "performance"),
    ("36", "Results: model performance", "estimates of diagnostic accuracy and their precision (95 % CI)", "performance"),
    ("37", "Results: model performance", "failure analysis of incorrectly classified cases", "failures"),
    ("38", "Discussion", "limitations: bias, statistical uncertainty, generalisability", "limitations"),
    ("39", "Discussion", "implications for practice, intended use and clinical role", None),
    ("40", "Other information", "registration number and registry", None),
    ("41", "Other information", "where the full protocol can be accessed", None),
    ("42", "Other information", "sources of funding and role of funders", None),
]


# --------------------------------------------------------------------------- facts of a run
@dataclass
class RunFacts:
    """What a run's folder says about it (missing files = None / empty)."""

    run: Path
    config: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    metrics: pd.DataFrame | None = None
    metrics_by_fold: pd.DataFrame | None = None
    assignments: pd.DataFrame | None = None
    problems: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    audit: pd.DataFrame | None = None
    audit_preprocessing: pd.DataFrame | None = None
    files: tuple = ()

    def has(self, *patterns) -> list:
        """Files of the run (relative paths) matching any glob ``pattern``."""
        return sorted({f for p in patterns for f in self.files if Path(f).match(p)})


def _csv(path: Path, **kw):
    return pd.read_csv(path, **kw) if path.is_file() else None


def read_run(run, audit=None) -> RunFacts:
    """Everything :func:`build_checklist` needs from a run folder (``audit``: an
    :class:`fusion.audit.AuditResult`, else ``RUN/audit/audit_summary.csv`` if present)."""
    import yaml

    from analysis.errors import ConfigError

    run = Path(run)
    if not (run / "run_manifest.json").is_file():
        raise ConfigError(f"{run}: no run_manifest.json (expected the --out folder of fusion.train)")
    manifest = json.loads((run / "run_manifest.json").read_text(encoding="utf-8"))
    cfg_path = run / "config.yaml"
    config = (yaml.safe_load(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else None) or \
        dict(manifest.get("config") or {})
    ids = {"patient_id": str}
    files = tuple(sorted(p.relative_to(run).as_posix() for p in run.rglob("*")
                         if p.is_file() and "checkpoints" not in p.relative_to(run).parts))
    summary = pre = None
    if audit is not None:
        summary, pre = audit.summary, audit.preprocessing
    elif (run / "audit" / "audit_summary.csv").is_file():
        summary = pd.read_csv(run / "audit" / "audit_summary.csv")
        pre = _csv(run / "audit" / "audit_preprocessing.csv")
    return RunFacts(run=run, config=config, manifest=manifest, metrics=_csv(run / "metrics.csv"),
                    metrics_by_fold=_csv(run / "metrics_by_fold.csv"),
                    assignments=_csv(run / "fold_assignments.csv", dtype=ids),
                    problems=_csv(run / "image_problems.csv", dtype=ids),
                    predictions=_csv(run / "oof_predictions.csv", dtype=ids),
                    audit=summary, audit_preprocessing=pre, files=files)


# --------------------------------------------------------------------------- fillers
def _n(x) -> str:
    try:
        return f"{int(x):,}"
    except (TypeError, ValueError):
        return "an unrecorded number of"


def _ci(est, lo, hi, level=0.95) -> str:
    return f"{est:.3f} ({int(round(100 * level))} % CI {lo:.3f} to {hi:.3f})"


def _unit(f: RunFacts) -> str:
    src = f.manifest.get("data_source") or {}
    if src.get("unit_of_analysis") == "image":
        return "image"
    if f.config.get("external_hospital"):
        return "hospital"
    return "patient"


def _class_counts(f: RunFacts) -> dict:
    p = f.predictions
    if p is None or p.empty:
        return {}
    per = p.drop_duplicates("patient_id")
    return per["y_true"].astype(str).value_counts().reindex(f.manifest.get("classes") or per["y_true"].unique()) \
        .dropna().astype(int).to_dict()


def _main_split(f: RunFacts) -> str | None:
    if f.metrics is None or f.metrics.empty:
        return None
    for s in ("test", "external", "holdout"):
        if s in set(f.metrics["split"]):
            return s
    return str(f.metrics["split"].iloc[0])


def _macro_auc(f: RunFacts) -> pd.DataFrame:
    m, split = f.metrics, _main_split(f)
    if split is None:
        return pd.DataFrame()
    macro = (m["class"].isna() | (m["class"].astype(str).str.strip() == "")) if "class" in m.columns else True
    return m[(m["metric"] == "auc") & macro & (m["split"] == split)]


def _overlap_text(f: RunFacts) -> tuple[str, bool]:
    from analysis.errors import CohortError
    from fusion.provenance import check_fold_assignments

    if f.assignments is None or f.assignments.empty:
        return "no fold_assignments.csv: partitions cannot be checked from the outputs", False
    try:
        crossing = check_fold_assignments(f.assignments)
    except CohortError as exc:
        return f"fold_assignments.csv check FAILED: {exc.message}", False
    if len(crossing):
        return (f"fold_assignments.csv check FAILED: {crossing['patient_id'].nunique()} patient(s) in two roles of a "
                "fold"), False
    return "checked from fold_assignments.csv: no patient is in two partitions of any fold", True


def _fill(key: str, f: RunFacts) -> tuple[str, str, str]:
    """(status, from_run, authors_must_write) for one filler key."""
    cfg, man = f.config, f.manifest
    src = man.get("data_source") or {}
    classes = man.get("classes") or []
    mods = man.get("modalities") or cfg.get("modalities") or []
    backbones = cfg.get("backbones") or []
    modes = list(cfg.get("fusion") or []) + (["late"] if cfg.get("late_fusion") and "late" not in (cfg.get("fusion") or []) else [])
    unit = _unit(f)
    n_pat, n_img = man.get("n_patients"), man.get("n_images")
    if key == "title":
        return ("authors", f"deep learning (CNN: {', '.join(backbones)}) on {', '.join(mods)} images; outcome classes "
                f"{', '.join(classes)}", "the title naming the population, the outcome and the model type")
    if key == "abstract":
        auc = _macro_auc(f)
        best = "" if auc.empty else "; best pooled macro AUC " + _ci(*auc.sort_values("estimate").iloc[-1][
            ["estimate", "ci_low", "ci_high", "ci_level"]].to_numpy())
        return "authors", f"{_n(n_pat)} patients, {_n(n_img)} images{best}", "the structured abstract"
    if key == "objectives":
        return ("partly", "model development with internal validation (cross-validation)"
                + ("; external validation by leave-one-hospital-out" if cfg.get("external_hospital") else "")
                + ("; held-out test set" if man.get("holdout") else ""), "the objectives and hypotheses")
    if key == "design":
        return "authors", "retrospective analysis of an existing table and images (as run)", \
            "whether data collection was planned before the index test (prospective) or not"
    if key == "data_source":
        notes = "; ".join(src.get("notes") or [])
        return ("partly", f"{src.get('kind', 'cohort')} '{src.get('path', cfg.get('cohort'))}': {_n(src.get('n_rows', n_img))} "
                f"rows, {_n(src.get('n_patients', n_pat))} patients; unit of analysis: {unit}; table SHA-256 "
                f"{(man.get('data') or {}).get('table_sha256', '')[:12]}…" + (f"; notes: {notes}" if notes else ""),
                "why these data, where they come from, and how representative they are")
    if key == "dates":
        return "authors", "the run records no acquisition dates", "start and end dates of data collection"
    if key == "centres":
        folds = man.get("splits") or []
        if cfg.get("external_hospital"):
            names = [s.get("name") for s in folds]
            return "partly", f"{len(names)} centres: {', '.join(map(str, names))}", "the setting (care level) and locations"
        if cfg.get("holdout_hospital"):
            return "partly", f"held-out centre: {cfg.get('holdout_hospital')}", "the setting and number of centres"
        return "authors", "no centre information used by the run", "the setting and the number and location of centres"
    if key == "eligibility":
        return ("partly", f"{_n(n_pat)} patients analysed (rows without a valid outcome are excluded by the cohort "
                "validation, analysis.cohort)", "inclusion and exclusion criteria and how patients were identified")
    if key == "preparation":
        pre = f.audit_preprocessing
        leak = ""
        if pre is not None and len(pre):
            bad = pre[pre["leaks"].astype(str) != "no"]
            leak = ("; leakage audit: nothing fitted outside the training folds" if bad.empty else
                    "; leakage audit flags: " + "; ".join(bad["step"].astype(str)))
        return ("filled", f"images decoded once, resized to {cfg.get('size')} px keeping the aspect ratio (padding); "
                "intensities normalised with fixed ImageNet constants (nothing estimated from the data); "
                f"augmentation '{cfg.get('augment')}' on training batches only{leak}",
                "data quality checks done before the run (e.g. image review)")
    if key == "outcome":
        counts = _class_counts(f)
        text = ", ".join(f"{c} {_n(k)}" for c, k in counts.items()) or ", ".join(classes)
        return "partly", f"outcome classes (patients): {text}", "how the outcome (reference standard) was defined and assessed"
    if key == "predictors":
        present = man.get("present_per_modality") or {}
        pm = ", ".join(f"{m} ({_n(present.get(m, 0))} of {_n(n_img)} present)" for m in mods)
        clin = "; clinical variables of the schema in the fusion" if modes else ""
        return "partly", f"image modalities: {pm}{clin}", "why these predictors; how and when each was acquired"
    if key == "sample_size":
        counts = _class_counts(f)
        return ("partly", f"{_n(n_pat)} patients, {_n(n_img)} images; per class: "
                + (", ".join(f"{c} {_n(k)}" for c, k in counts.items()) or "unknown"),
                "how the sample size was arrived at (e.g. all eligible patients; precision of the AUC)")
    if key == "missing":
        probs = f.problems
        n_prob = 0 if probs is None else len(probs)
        by = "" if not n_prob else " (" + ", ".join(f"{m}: {k}" for m, k in probs.groupby("modality").size().items()) + ")"
        notes = [n for n in (src.get("notes") or []) if "missing" in str(n)]
        text = (f"{n_prob} missing or unreadable image(s){by} kept as masked (zero) images, patients kept"
                + ("; the late fusion fills a missing modality with the training patients' class prior plus an "
                   "indicator, and imputes clinical variables with training-fold means / modes plus indicators"
                   if modes else "")
                + (f"; clinical: {'; '.join(notes)}" if notes else ""))
        return "filled", text, "reasons data are missing, if known"
    if key == "partitions":
        folds, holdout = man.get("splits") or [], man.get("holdout")
        check, ok = _overlap_text(f)
        level = {"image": "image-level (the data have no patient ids: each image is its own patient)",
                 "hospital": "hospital-level (leave-one-hospital-out), patient-level within",
                 "patient": "patient-level (all images of a patient in one partition)"}[unit]
        text = (f"{len(folds)}-fold {'leave-one-hospital-out' if cfg.get('external_hospital') else 'stratified cross-validation'}; "
                f"inner validation split of {cfg.get('inner_val')} of each fold's training patients for early stopping; "
                + (f"held-out test set '{holdout.get('name')}' ({_n(holdout.get('n_test'))} rows); " if holdout else "")
                + f"partitions kept apart at the {level}; {check}; seed {cfg.get('seed')}")
        return ("filled" if ok else "partly"), text, "" if ok else "explain how partitions were checked"
    if key == "subsets":
        return "partly", f"all {_n(n_img)} images of the table; modalities used: {', '.join(mods)}", \
            "any selection of data subsets before the run"
    if key == "predictor_handling":
        return ("filled", "images: resize + fixed normalisation; clinical variables (fusion only): continuous and ordinal "
                "standardised with training-fold mean / SD, categorical one-hot, missing indicators", "")
    if key in ("model_and_tuning",):
        n_models = len(mods) * len(backbones) * len(man.get("splits") or [])
        return ("filled", f"{', '.join(backbones)} (weights: {cfg.get('weights')}); up to {cfg.get('epochs')} epochs, "
                + (f"early stopping (patience {cfg.get('patience')}) on the inner validation loss; " if cfg.get("patience")
                 else "every epoch trained, the epoch with the lowest inner validation loss kept; ") +
                f"AdamW lr {cfg.get('lr')}, "
                f"weight decay {cfg.get('weight_decay')}, batch {cfg.get('batch_size')}, cosine schedule; augmentation "
                f"'{cfg.get('augment')}'; class weights {'on' if cfg.get('class_weights') else 'off'}; {n_models} CNNs "
                f"(modalities x backbones x folds)" + (f"; fusion: {', '.join(modes)} (L2 strength by inner CV on "
                                                      "training folds)" if modes else "")
                + "; no hyperparameter search on the test folds", "")
    if key == "initialisation":
        w = str(cfg.get("weights", "none"))
        return "filled", {"none": "random initialisation (seeded)", "imagenet": "ImageNet weights (torchvision)"}.get(
            w, f"pre-trained weights from {w}"), "" if w in ("none", "imagenet") else "the pre-training data"
    if key == "selection":
        return "filled", "the epoch with the lowest inner-validation loss of each fold model; no selection on test data", ""
    if key == "ensembling":
        text = ("late fusion: stacked logistic regression over the modalities' out-of-fold probabilities" if "late" in modes
                else "none")
        if man.get("holdout"):
            text += "; held-out predictions = mean of the fold models"
        return "filled", text, ""
    if key == "centre_methods":
        if cfg.get("external_hospital") or f.has("*per_hospital*", "*meta_analysis*", "*forest*"):
            return "partly", "per-centre evaluation in the run outputs (" + ", ".join(
                f.has("metrics_by_fold.csv", "*per_hospital*", "*meta_analysis*")) + ")", "how heterogeneity was assessed"
        return "authors", "the run did not evaluate centres separately", "heterogeneity across centres, or why not assessed"
    if key == "measures":
        m = f.metrics
        names = sorted(set(m["metric"])) if m is not None else []
        comp = f.has("comparison_vs_best_single.csv", "late_fusion_comparison.csv")
        return ("filled", f"{', '.join(names)}; every metric with a patient-level bootstrap CI "
                f"({cfg.get('n_boot')} resamples)"
                + (f"; paired DeLong / bootstrap comparisons, Holm-adjusted ({', '.join(comp)})" if comp else ""),
                "why these measures")
    if key == "uncertainty":
        comp = f.has("comparison_vs_best_single.csv", "late_fusion_comparison.csv")
        return "filled", (f"95 % CIs by patient-level (cluster) bootstrap, {cfg.get('n_boot')} resamples"
                          + ("; paired DeLong / bootstrap tests of AUC differences, Holm-adjusted" if comp else "")), ""
    if key == "updating":
        temp = f.has("calibration_temperatures.csv")
        return ("partly" if temp else "authors",
                "first-level CNN probabilities temperature-scaled on each fold's inner validation patients"
                if temp else "no model updating or recalibration", "any updating of an existing model")
    if key == "prediction_calc":
        return "filled", "each test patient predicted by the fold model that never saw it (out-of-fold predictions)", ""
    if key == "imbalance":
        counts = _class_counts(f)
        return ("filled", f"class counts {counts}; balanced class weights in the loss: "
                f"{'yes' if cfg.get('class_weights') else 'no'}; stratified folds", "the rationale")
    if key == "fairness":
        return "authors", "no subgroup (sex, age, device) performance computed by the run", \
            "how fairness was assessed (subgroup performance) or why not"
    if key == "output":
        return ("filled", f"a probability per class ({', '.join(classes)}) from a softmax; the predicted class is the "
                "arg-max; no clinical threshold chosen", "any threshold used clinically")
    if key == "train_vs_eval":
        if cfg.get("external_hospital") or man.get("holdout"):
            return "partly", "external / held-out evaluation data present", "how development and evaluation data differ"
        return "partly", "internal cross-validation: development and evaluation data come from the same source", \
            "any differences between development and evaluation data"
    if key == "data_sharing":
        return "partly", f"data hashes recorded in run_manifest.json ({', '.join((man.get('data') or {}).keys())})", \
            "where and how the data can be obtained"
    if key == "code_sharing":
        return ("partly", f"lymphnode-toolkit, git commit {man.get('git_commit') or 'unknown'}; command: "
                f"{man.get('command', '')}; config.yaml beside the results", "the public repository address")
    if key == "software":
        v = man.get("versions") or {}
        return "filled", ", ".join(f"{k} {val}" for k, val in v.items() if val), ""
    if key == "flow":
        folds = man.get("splits") or []
        per = "; ".join(f"fold {s.get('fold')}: train {s.get('n_train')}, validation {s.get('n_val')}, test "
                        f"{s.get('n_test')}" for s in folds)
        return "partly", f"{_n(n_pat)} patients / {_n(n_img)} images analysed; {per} (rows)", \
            "the flow diagram from eligible to analysed patients, with exclusions"
    if key == "characteristics":
        return "partly", "see Table 1 (python -m analysis.table1 on the cohort)", \
            "patient characteristics overall and per partition"
    if key == "events":
        counts = _class_counts(f)
        folds = man.get("splits") or []
        return ("filled", f"{_n(n_pat)} patients; events per class {counts}; per fold (rows): "
                + "; ".join(f"{s.get('fold')}: {s.get('n_train')}/{s.get('n_val')}/{s.get('n_test')}" for s in folds),
                "")
    if key == "specification":
        return ("filled", f"{', '.join(backbones)} with a {len(classes)}-class head, {cfg.get('size')} px input; fold "
                "checkpoints in checkpoints/<modality>/<backbone>/fold<k>/model.pt; config.yaml", "how to access the model")
    if key == "performance":
        auc = _macro_auc(f)
        if auc.empty:
            return "authors", "no metrics.csv in the run", "performance with CIs"
        rows = [f"{r.model} / {r.modality}: macro AUC {_ci(r.estimate, r.ci_low, r.ci_high, r.ci_level)}"
                for r in auc.itertuples(index=False)]
        calib = _calibration_text(f)
        nb = f.has("*decision_curve*", "*net_benefit*")
        return ("filled" if calib[0] else "partly",
                f"split '{_main_split(f)}', patient-level bootstrap: " + "; ".join(rows) + f"; calibration: {calib[1]}"
                + (f"; net benefit: {', '.join(nb)}" if nb else "; net benefit: not computed by this run"),
                "" if calib[0] else "calibration statistics (metrics.csv has none)")
    if key == "centre_results":
        if f.metrics_by_fold is not None and "held_out" in f.metrics_by_fold.columns:
            return "filled", "per-centre metrics with CIs in metrics_by_fold.csv", ""
        extra = f.has("*per_hospital*", "*meta_analysis*", "*forest*")
        if extra:
            return "filled", "per-centre results: " + ", ".join(extra), ""
        return "authors", "no per-centre or subgroup results in this run", "heterogeneity across centres / subgroups"
    if key == "robustness":
        extra = f.has("ablation*.csv", "ablation.md", "metrics_by_fold.csv")
        return ("partly" if extra else "authors", "per-fold results" + (f" and ablation ({', '.join(extra)})" if extra else ""),
                "sensitivity analyses")
    if key == "explainability":
        cams = f.has("gradcam/*", "gradcam/*/*")
        return ("partly" if cams else "authors",
                ("Grad-CAM of test patients, each with the fold model that never saw it (" + ", ".join(cams[:3]) + ")")
                if cams else "no explainability output in this run (python -m fusion.gradcam --run RUN --modality M)",
                "how the maps were validated (e.g. share of heat inside lesion masks, bench/bench_gradcam_masks.py)")
    if key == "external":
        if cfg.get("external_hospital") or man.get("holdout"):
            return "partly", "external or held-out evaluation in the run", "describe the external data"
        return "authors", "no external test data: internal cross-validation only", "external validation, or why not"
    if key == "failures":
        return "authors", "out-of-fold predictions per patient in oof_predictions.csv", "failure analysis of misclassified cases"
    if key == "interpretation":
        return "authors", "", "interpretation of the results"
    if key == "limitations":
        lim = []
        if unit == "image":
            lim.append("image-level analysis (no patient ids; near-duplicates can cross folds)")
        if not (cfg.get("external_hospital") or man.get("holdout")):
            lim.append("no external validation")
        if n_pat is not None and n_pat < 500:
            lim.append(f"small sample ({n_pat} patients)")
        if "late" in modes and not cfg.get("nested_fusion"):
            lim.append("stacked fusion on shared folds (not nested)")
        if f.audit is not None:
            bad = f.audit[f.audit["status"].isin(["fail", "check"])]
            lim += [f"leakage audit: {r.check} -> {r.status}" for r in bad.itertuples(index=False)]
        return "partly", "; ".join(lim) or "none flagged by the run", "the limitations in full"
    if key == "usability_inputs":
        return "partly", "a missing modality is masked (fusion uses the class prior + indicator)", \
            "how poor-quality or missing inputs are handled in use"
    raise KeyError(key)


def _calibration_text(f: RunFacts) -> tuple[bool, str]:
    m = f.metrics
    if m is not None:
        cal = m[m["metric"].astype(str).str.contains("brier|calibration|ece", case=False, regex=True)]
        if len(cal):
            split = _main_split(f)
            cal = cal[cal["split"] == split] if split in set(cal["split"]) else cal
            parts = [f"{r.model} / {r.modality} {r.metric} {_ci(r.estimate, r.ci_low, r.ci_high)}"
                     for r in cal.head(6).itertuples(index=False)]
            return True, "; ".join(parts) + (" …" if len(cal) > 6 else "")
    figs = f.has("figures/calibration*")
    return False, ("calibration plot " + ", ".join(figs)) if figs else "not assessed"


# --------------------------------------------------------------------------- the checklist
@dataclass
class Checklist:
    """The filled checklist: ``frame`` has ``guideline, item, section, topic, status, from_run,
    authors_must_write`` (one row per item, TRIPOD+AI first, then CLAIM)."""

    frame: pd.DataFrame
    run: str

    def left_to_authors(self) -> pd.DataFrame:
        """Items that still need the authors (status ``'partly'`` or ``'authors'``)."""
        return self.frame[self.frame["status"] != "filled"].reset_index(drop=True)

    def item(self, guideline: str, item: str) -> pd.Series:
        f = self.frame
        return f[(f["guideline"] == guideline) & (f["item"] == item)].iloc[0]

    def to_markdown(self) -> str:
        lines = [f"# Reporting checklist: {self.run}", "",
                 "Auto-filled from the run's outputs by fusion.checklist. Status: **filled** = the run answers the "
                 "item; **partly** = facts from the run, context from the authors; **authors** = only the authors "
                 "can write it. Topics paraphrase TRIPOD+AI (Collins et al., BMJ 2024;385:e078378) and CLAIM "
                 "(Mongan et al. 2020; 2024 update, Tejani et al., Radiol Artif Intell 2024); CLAIM numbers follow "
                 "the 2020 list -- map them onto the official 2024 form.", ""]
        for guide, g in self.frame.groupby("guideline", sort=False):
            counts = g["status"].value_counts().reindex(STATUSES, fill_value=0)
            lines += [f"## {guide} ({', '.join(f'{k} {v}' for k, v in counts.items())})", "",
                      "| item | section | topic | status | from the run | authors must write |",
                      "|---|---|---|---|---|---|"]
            for r in g.itertuples(index=False):
                cells = [r.item, r.section, r.topic, r.status, r.from_run, r.authors_must_write]
                lines.append("| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in cells) + " |")
            lines.append("")
        return "\n".join(lines)

    def to_docx(self, path) -> Path:
        from docx import Document
        from docx.shared import Pt

        doc = Document()
        doc.add_heading("Reporting checklist", level=1)
        doc.add_paragraph(f"Run: {self.run}. Auto-filled by fusion.checklist; 'partly' and 'authors' items need the "
                          "authors. TRIPOD+AI: Collins et al., BMJ 2024;385:e078378. CLAIM: Mongan et al. 2020; 2024 "
                          "update, Tejani et al. (CLAIM numbers follow the 2020 list).")
        for guide, g in self.frame.groupby("guideline", sort=False):
            doc.add_heading(guide, level=2)
            table = doc.add_table(rows=1, cols=5)
            table.style = "Table Grid"
            for cell, text in zip(table.rows[0].cells, ("Item", "Topic", "Status", "From the run", "Authors must write")):
                cell.text = text
            for r in g.itertuples(index=False):
                cells = table.add_row().cells
                for cell, text in zip(cells, (r.item, f"{r.section}: {r.topic}", r.status, r.from_run,
                                              r.authors_must_write)):
                    cell.text = str(text)
            for row in table.rows:
                for cell in row.cells:
                    for par in cell.paragraphs:
                        for run in par.runs:
                            run.font.size = Pt(8)
        path = Path(path)
        doc.save(path)
        return path


def build_checklist(run, audit=None) -> Checklist:
    """The TRIPOD+AI and CLAIM checklist of a run folder (see the module docstring).

    Parameters
    ----------
    run : str or Path
        Output folder of ``fusion.train`` / :meth:`fusion.api.CVResult.save`.
    audit : fusion.audit.AuditResult, optional
        Leakage-audit verdicts to include (default: ``RUN/audit/`` if present).

    Returns
    -------
    Checklist
    """
    facts = read_run(run, audit)
    rows = []
    for guide, items in (("TRIPOD+AI", TRIPOD_AI_ITEMS), ("CLAIM", CLAIM_ITEMS)):
        for item, section, topic, key in items:
            if key is None:
                status, from_run, todo = "authors", "", topic
            else:
                status, from_run, todo = _fill(key, facts)
                if status != "filled" and not todo:
                    todo = topic
            rows.append({"guideline": guide, "item": item, "section": section, "topic": topic, "status": status,
                         "from_run": from_run, "authors_must_write": todo})
    return Checklist(pd.DataFrame(rows), str(run))


def write_checklist(run, audit=None, out=None) -> list:
    """Write ``reporting_checklist.md``, ``.csv`` and ``.docx`` into ``out`` (default: ``run``)."""
    cl = build_checklist(run, audit)
    out = Path(out) if out is not None else Path(run)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "reporting_checklist.md"
    md.write_text(cl.to_markdown() + "\n", encoding="utf-8")
    csv = out / "reporting_checklist.csv"
    cl.frame.to_csv(csv, index=False)
    return [md, csv, cl.to_docx(out / "reporting_checklist.docx")]
