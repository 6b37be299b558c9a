import json
def nb(cells):
    out = []
    for kind, src in cells:
        c = {"cell_type": kind, "metadata": {}, "source": src.strip("\n").splitlines(keepends=True)}
        if kind == "code":
            c["execution_count"] = None; c["outputs"] = []
        out.append(c)
    return {"cells": out, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}

t1 = [
("markdown", """
# Table 1 for a lymph-node cohort

This notebook builds the cohort statistics of `analysis` step by step on the synthetic demo
cohort (586 patients; metastatic / lymphoma / benign). Replace `simulate_cohort()` with
`read_table("your_cohort.xlsx")` and the schema with your own `cohort_schema.yaml`.
Everything here is what `python -m analysis.table1` does in one command.
"""),
("code", """
import warnings
import pandas as pd
from analysis import (load_schema, simulate_cohort, validate_cohort, build_table1,
                      write_all, methods_text)

schema = load_schema()            # the packaged lymph-node schema (cohort_schema.yaml)
raw = simulate_cohort(n=586, seed=0)
cohort = validate_cohort(raw, schema, source="demo cohort")
print(cohort.summary())
"""),
("markdown", """
## Validation
Bad input stops with one line naming the file, the spreadsheet row and the column:
"""),
("code", """
from analysis import CohortError
bad = raw.copy()
bad.loc[bad.index[12], "margin"] = "irregullar"
try:
    validate_cohort(bad, schema, source="cohort.xlsx")
except CohortError as err:
    print(err)
"""),
("markdown", "## Table 1, with the test chosen for each variable and why"),
("code", """
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    result = build_table1(cohort, seed=0, n_boot=500)
result.display.head(12)
"""),
("code", """
result.stats[["variable", "test", "statistic", "df", "p_value", "q_value",
              "effect_size", "effect_size_name", "ci_low", "ci_high", "n_used", "n_missing"]]
"""),
("code", """
pd.concat([c.to_frame().assign(variable=name) for name, c in result.decisions.items()], ignore_index=True)
"""),
("markdown", "## Post hoc comparisons (Holm-adjusted within each variable)"),
("code", "result.posthoc.head(10)"),
("markdown", "## Multinomial odds ratios against the benign group"),
("code", """
from analysis.figures import forest_plot, group_distribution_plot
fig = forest_plot(result.regression)
fig
"""),
("code", """
fig = group_distribution_plot(cohort, ["age", "short_axis_mm", "hilum", "cdfi_pattern", "elasticity_score", "shape"])
fig
"""),
("markdown", "## Export (Excel, LaTeX, Markdown, tidy CSV, methods paragraph)"),
("code", """
from pathlib import Path
written = write_all(result, Path("reports") / "notebook_table1")
print(*written, sep="\\n")
print(methods_text(result)[:600], "...")
"""),
]

t2 = [
("markdown", """
# Per-modality CNNs with honest, patient-level evaluation

A small version of the demo's deep-learning half: synthetic B-mode, CDFI and elastography
images for a subset of the demo cohort, one ResNet18 per modality, patient-grouped stratified
cross-validation with an inner validation split (training patients only) for early stopping,
out-of-fold predictions, and metrics with patient-level bootstrap 95 % CIs.
The sizes are tiny so that it runs on a laptop CPU in about a minute; raise `N`, `SIZE`,
`EPOCHS` and `FOLDS` for real work.
"""),
("code", """
from pathlib import Path
import pandas as pd
import torch
from analysis import simulate_cohort, load_schema
from analysis.simulate import write_cohort
from analysis.schema import default_schema_path
from fusion import synthetic, train

torch.set_num_threads(1)
N, SIZE, EPOCHS, FOLDS = 90, 32, 2, 3
data = Path("reports/notebook_cnn/data"); data.mkdir(parents=True, exist_ok=True)
cohort = simulate_cohort(n=586, seed=0).groupby("group", observed=True).head(N // 3)
write_cohort(cohort, data / "cohort.csv")
synthetic.main([str(data / "cohort.csv"), "--size", "64", "--no-progress"])
"""),
("code", """
out = Path("reports/notebook_cnn/cv")
train.main([str(data / "cohort.csv"), "--schema", str(default_schema_path()),
            "--folds", str(FOLDS), "--epochs", str(EPOCHS), "--size", str(SIZE),
            "--n-boot", "200", "--out", str(out)])
"""),
("markdown", "## Out-of-fold metrics (every estimate with its patient-level bootstrap 95 % CI)"),
("code", """
metrics = pd.read_csv(out / "metrics.csv")
metrics[metrics["metric"].isin(["auc", "balanced_accuracy"]) & metrics["class"].isna()]
"""),
("markdown", "## Do the modalities differ? Paired DeLong / bootstrap comparisons on the same patients"),
("code", """
from fusion.evaluate import compare_models_delong
pred = pd.read_csv(out / "oof_predictions.csv")
classes = ["metastatic", "lymphoma", "benign"]
compare_models_delong(pred, classes, n_boot=200)[["split", "modality_a", "modality_b", "class", "auc_a", "auc_b", "p_value"]]
"""),
("code", """
from fusion.figures import roc_curves
roc_curves(pred, classes, metrics=metrics)
"""),
]
json.dump(nb(t1), open("/work/main/notebooks/01_table1.ipynb", "w"), indent=1)
json.dump(nb(t2), open("/work/main/notebooks/02_cnn_cross_validation.ipynb", "w"), indent=1)
