"""fusion.reporting: model x modality tables keep every CI and name the split."""
import numpy as np
import pandas as pd
import pytest

from analysis.errors import CohortError
from fusion.evaluate import evaluate_predictions
from fusion.reporting import model_modality_table, write_model_modality_tables

CLASSES = ["metastatic", "lymphoma", "benign"]


@pytest.fixture(scope="module")
def metrics():
    rng = np.random.default_rng(0)
    frames = []
    for modality, signal in [("2d", 1.0), ("elastography", 3.0)]:
        y = rng.integers(0, 3, 90)
        logits = rng.normal(size=(90, 3)) + signal * np.eye(3)[y]
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        frames.append(pd.DataFrame({
            "patient_id": [f"P{i:03d}" for i in range(90)], "fold": 0, "split": "test",
            "y_true": [CLASSES[k] for k in y], "model": "resnet18", "modality": modality,
            **{f"p_{c}": p[:, i] for i, c in enumerate(CLASSES)}}))
    return evaluate_predictions(pd.concat(frames, ignore_index=True), CLASSES, n_boot=50, seed=0)


def test_one_row_per_model_modality_split_with_ci_in_every_cell(metrics):
    table = model_modality_table(metrics)
    assert list(table["Modality"]) == ["2d", "elastography"]
    assert (table["Split"] == "out-of-fold (CV test folds)").all()
    auc = metrics[(metrics.metric == "auc") & (metrics["class"].fillna("") == "")].set_index("modality")
    for _, row in table.iterrows():
        cell = row["Macro AUC (OvR)"]
        est = auc.loc[row["Modality"], "estimate"]
        assert cell.startswith(f"{est:.3f} (") and "–" in cell


def test_writes_markdown_latex_excel(metrics, tmp_path):
    paths = write_model_modality_tables(metrics, tmp_path, n_boot=50)
    assert [p.name for p in paths] == ["model_modality.md", "model_modality.tex", "model_modality.xlsx"]
    md = paths[0].read_text()
    assert "95% CI" in md and "patient-level" in md and "| elastography |" in md
    tex = paths[1].read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex
    back = pd.read_excel(paths[2], sheet_name=None)
    assert set(back) == {"Model x modality", "All metrics (full precision)"}


def test_missing_column_is_one_clear_error(metrics):
    with pytest.raises(CohortError, match="lacks column"):
        model_modality_table(metrics.drop(columns=["ci_low"]))
