"""Writes the notebooks of this folder (no outputs, no absolute paths): edit here, then run
``python notebooks/_make_notebooks.py`` (or ``python notebooks/_make_notebooks.py OUTDIR``).
tests/test_notebooks.py checks that the committed notebooks are what this script writes."""
import json
import sys
from pathlib import Path


def nb(cells):
    out = []
    for i, (kind, src) in enumerate(cells):
        c = {"cell_type": kind, "id": f"cell-{i:02d}", "metadata": {},
             "source": src.strip("\n").splitlines(keepends=True)}
        if kind == "code":
            c["execution_count"] = None; c["outputs"] = []
        out.append(c)
    return {"cells": out, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}

t1 = [
("markdown", """
# Table 1 for a lymph-node cohort

This notebook builds the cohort statistics of `analysis` on the synthetic demo cohort
(586 patients; metastatic / lymphoma / benign) with one call, `analysis.table1(...)`, which
takes a file, a DataFrame or a validated cohort. For your own data:

```python
result = analysis.table1("your_cohort.xlsx", group="diagnosis",
                         group_labels={1: "metastatic", 2: "lymphoma", 3: "benign"},
                         reference="benign")
```

Everything here is what `python -m analysis.table1` does on the command line.
"""),
("code", """
%matplotlib inline
import warnings
import pandas as pd
import analysis

raw = analysis.simulate_cohort(n=586, seed=0)   # or: analysis.read_table("your_cohort.xlsx")
schema = analysis.load_schema()                 # the packaged lymph-node schema (cohort_schema.yaml)
raw.head()
"""),
("markdown", """
## Validation
Bad input stops with one line naming the file, the spreadsheet row and the column:
"""),
("code", """
bad = raw.copy()
bad.loc[bad.index[12], "margin"] = "irregullar"
try:
    analysis.table1(bad, schema=schema)
except analysis.CohortError as err:
    print(err)
"""),
("markdown", "## Table 1, with the test chosen for each variable (the letters name the tests)"),
("code", """
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    result = analysis.table1(raw, schema=schema, seed=0, n_boot=500)
result
"""),
("markdown", """
The same numbers at full precision, one row per variable, and why each test was chosen:
"""),
("code", """
result.stats[["variable", "test", "statistic", "df", "p_value", "q_value",
              "effect_size", "effect_size_name", "ci_low", "ci_high", "n_used", "n_missing"]]
"""),
("code", """
pd.concat([c.to_frame().assign(variable=name) for name, c in result.decisions.items()], ignore_index=True)
"""),
("markdown", """
## Coded groups, types inferred
Without a schema, `group=` names the group column and the variable types are inferred; coded
groups get names with `group_labels`, and the reference group is matched ignoring case.
"""),
("code", """
coded = raw.assign(group=raw["group"].map({"metastatic": 1, "lymphoma": 2, "benign": 3}))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    quick = analysis.table1(coded, group="group", reference="Benign", regression=False, n_boot=200,
                            group_labels={1: "metastatic", 2: "lymphoma", 3: "benign"})
quick
"""),
("markdown", "## Post hoc comparisons (Holm-adjusted within each variable)"),
("code", "result.posthoc.head(10)"),
("markdown", "## Multinomial odds ratios against the benign group"),
("code", """
from analysis.figures import forest_plot, group_distribution_plot
forest_plot(result.regression)
"""),
("code", """
cohort = analysis.validate_cohort(raw, schema, source="demo cohort")
group_distribution_plot(cohort, ["age", "short_axis_mm", "hilum", "cdfi_pattern", "elasticity_score", "shape"])
"""),
("markdown", "## Export (Excel, Word, LaTeX, Markdown, tidy CSV, methods paragraph)"),
("code", """
from pathlib import Path
written = result.write_all(Path("reports") / "notebook_table1")   # or result.to_docx("table1.docx"), ...
print(*written, sep="\\n")
print(result.methods_text[:600], "...")
"""),
]

t2 = [
("markdown", """
# Per-modality CNNs and their fusion, with honest, patient-level evaluation

A small version of the demo's deep-learning half, through the Python API (`fusion.cross_validate`):
synthetic B-mode, CDFI and elastography images for a subset of the demo cohort, one ResNet18 per
modality, a texture-feature baseline per modality, and two fusions of the three modalities with the
clinical variables (late: stacked probabilities; embedding: the CNNs' embeddings), all on the same
patient-grouped folds with an inner validation split (training patients only) for early stopping.
Every AUC carries its patient-level bootstrap 95 % CI, pooled and per fold.
The sizes are tiny so that it runs on a laptop CPU in a few minutes; raise `N`, `SIZE`,
`EPOCHS` and `FOLDS` for real work.
"""),
("code", """
from pathlib import Path
import pandas as pd
import torch
from analysis import simulate_cohort
from analysis.simulate import write_cohort
from analysis.schema import default_schema_path
from fusion import cross_validate, synthetic

torch.set_num_threads(1)
N, SIZE, EPOCHS, FOLDS = 90, 32, 2, 3
data = Path("reports/notebook_cnn/data"); data.mkdir(parents=True, exist_ok=True)
cohort = simulate_cohort(n=586, seed=0).groupby("group", observed=True).head(N // 3)
write_cohort(cohort, data / "cohort.csv")
synthetic.write_synthetic_images(cohort, root=data, size=64, progress=False)
"""),
("code", """
result = cross_validate(data / "cohort.csv", schema=str(default_schema_path()), fusion=("late", "embedding"),
                        folds=FOLDS, epochs=EPOCHS, size=SIZE, n_boot=200, out="reports/notebook_cnn/cv",
                        progress=False)
result.results_table()
"""),
("markdown", "## Paired comparisons against the best single modality (Holm-adjusted)"),
("code", """
cmp = result.compare()
cmp[cmp["class"] == ""][["model_a", "modality_a", "model_b", "modality_b", "auc_a", "auc_b", "p_value", "p_holm"]]
"""),
("markdown", "## How much each source moved each patient's fused prediction (exact Shapley values)"),
("code", """
c = result.contributions
c = c[(c["model"] == "late_fusion") & (c["modality"] == "fusion_images_clinical")]
c.assign(size=c["contribution"].abs()).groupby("source")["size"].mean().sort_values()
"""),
("markdown", "## No patient on both sides of a split: the fold assignments say so"),
("code", """
from fusion.provenance import check_fold_assignments
assert check_fold_assignments(result.fold_assignments).empty
result.fold_assignments.groupby(["fold", "role"])["patient_id"].nunique().unstack()
"""),
("code", """
from fusion.figures import roc_curves
fig = roc_curves(result.predictions, result.classes, metrics=result.metrics())
fig
"""),
("code", """
written = result.save("reports/notebook_cnn/cv")
print(len(written), "files written, e.g.", *[p.name for p in written[:6]])
"""),
]
t3 = [
("markdown", """
# Fusion, explanations and prediction for new patients

The end of the pipeline, through the Python APIs: cross-validate the per-modality CNNs and their
late fusion with the clinical variables, explain test patients with Grad-CAM (each by the fold
model that never saw it), train the final model on all patients, save it as one bundle, and
predict "new" patients from a table (one with a bad value, one without an elastography image).
Tiny sizes so that it runs on a laptop CPU in a few minutes.
"""),
("code", """
%matplotlib inline
from pathlib import Path
import pandas as pd
import torch
from IPython.display import Image, display
from analysis import simulate_cohort
from analysis.simulate import write_cohort
from analysis.schema import default_schema_path
from fusion import cross_validate, synthetic

torch.set_num_threads(1)
data = Path("reports/notebook_fusion/data"); data.mkdir(parents=True, exist_ok=True)
cohort = simulate_cohort(n=586, seed=1).groupby("group", observed=True).head(30)
write_cohort(cohort, data / "cohort.csv")
synthetic.write_synthetic_images(cohort, root=data, size=64, progress=False)
run = Path("reports/notebook_fusion/cv")
result = cross_validate(data / "cohort.csv", schema=str(default_schema_path()), fusion=("late",), folds=3,
                        epochs=2, size=32, n_boot=200, out=run, progress=False)
result.save(run)
result.results_table()[["Kind", "Model", "Modality", "Pooled macro AUC (95% CI)", "p (Holm)"]]
"""),
("markdown", "## Grad-CAM of test patients, each explained by the fold model that never saw it"),
("code", """
from fusion.gradcam import explain_test_patients
explained, files = explain_test_patients(run, "elastography", per_class=1, cohort=data / "cohort.csv",
                                         out=run / "gradcam", layer="body.layer2")
display(Image(filename=str([f for f in files if str(f).endswith(".png")][0])))
explained
"""),
("markdown", "## The final model on all patients, saved as one bundle, predicting new patients"),
("code", """
from fusion.bundle import fit, load_bundle
model = fit(data / "cohort.csv", schema=str(default_schema_path()), fusion="late", cv=result, folds=3, epochs=2,
            size=32, out=run, progress=False)
path = model.save(run / "model_bundle.pt")
print(load_bundle(path).summary())
new = pd.read_csv(data / "cohort.csv", dtype=str).drop(columns=["group"]).head(4)
new.loc[1, "margin"] = "irreglar"                 # a typo: reported, that patient left out
new.loc[2, "image_elastography"] = None           # no elastography: predicted from the rest
new.to_csv(data / "new_patients.csv", index=False)
predictions, problems = load_bundle(path).predict_table(data / "new_patients.csv")
display(problems)
predictions
"""),
]


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for name, cells in (("01_table1.ipynb", t1), ("02_cnn_cross_validation.ipynb", t2),
                        ("03_fusion_explain_predict.ipynb", t3)):
        text = json.dumps(nb(cells), indent=1, ensure_ascii=False) + "\n"
        (out / name).write_text(text, encoding="utf-8")

