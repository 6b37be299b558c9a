"""fusion.reporting: model x modality tables keep every CI and name the split."""
import numpy as np
import pandas as pd
import pytest

from analysis.errors import CohortError
from fusion.evaluate import evaluate_predictions
from fusion.reporting import model_modality_table, table_caption, write_model_modality_tables

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


def _predictions(n=60, seed=1, split="test", fold=0, models=(("resnet18", "2d", 1.0),)):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    frames = []
    for model, modality, signal in models:
        logits = rng.normal(size=(n, 3)) + signal * np.eye(3)[y]
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        frames.append(pd.DataFrame({
            "patient_id": [f"P{i:03d}" for i in range(n)], "fold": fold, "split": split,
            "y_true": [CLASSES[k] for k in y], "model": model, "modality": modality,
            **{f"p_{c}": p[:, i] for i, c in enumerate(CLASSES)}}))
    return pd.concat(frames, ignore_index=True)


def test_patients_column_counts_patients_not_images():
    one = _predictions()
    two_images = pd.concat([one, one], ignore_index=True)            # two images per patient
    table = model_modality_table(evaluate_predictions(two_images, CLASSES, n_boot=0))
    assert list(table.columns[:4]) == ["Model", "Modality", "Split", "Patients"] and "n" not in table
    assert table["Patients"].tolist() == [60]
    old = evaluate_predictions(two_images, CLASSES, n_boot=0).drop(columns="n_patients")   # older metrics.csv
    table = model_modality_table(old)
    assert "Patients" not in table and table["Predictions"].tolist() == [120]


def test_caption_gives_the_actual_ci_level(tmp_path):
    m90 = evaluate_predictions(_predictions(), CLASSES, n_boot=20, ci=0.9)
    md = write_model_modality_tables(m90, tmp_path / "a", n_boot=20)[0].read_text()
    assert "estimate (90% CI)" in md and "95%" not in md
    assert "90% CI" in table_caption(m90.drop(columns="ci_level"), ci=0.9)
    assert "%" not in table_caption(m90.drop(columns="ci_level"))
    with pytest.raises(CohortError, match="level"):
        table_caption(m90, ci=0.95)


def test_caption_says_rows_can_differ_in_patients_and_comparisons_are_paired(metrics):
    assert "rows can differ in their patients" in table_caption(metrics)
    assert "late_fusion_comparison.csv" not in table_caption(metrics)
    preds = _predictions(models=(("resnet18", "elastography", 1.0), ("late_fusion", "fusion_images", 2.0)))
    preds = preds[~((preds.modality == "elastography") & preds.patient_id.isin(["P000", "P001", "P002"]))]
    m = evaluate_predictions(preds, CLASSES, n_boot=0)
    assert model_modality_table(m)["Patients"].tolist() == [57, 60]
    caption = table_caption(m)
    assert ("rows can differ in their patients" in caption and "late_fusion_comparison.csv use only the patients "
            "common to both models" in caption)


def test_external_rows_pooled_over_hospitals_are_labelled_and_per_hospital_sheet_written(tmp_path):
    from fusion.evaluate import evaluate_by_fold

    preds = _predictions(split="external")
    preds["fold"] = preds["patient_id"].str[1:].astype(int) // 20     # leave-one-hospital-out, 3 hospitals
    m = evaluate_predictions(preds, CLASSES, n_boot=0)
    by_fold = evaluate_by_fold(preds, CLASSES, n_boot=0)
    assert model_modality_table(m)["Split"].tolist() == ["external (held-out hospital)"]
    assert model_modality_table(m, by_fold=by_fold)["Split"].tolist() == [
        "external (pooled over 3 held-out hospitals)"]
    paths = write_model_modality_tables(m, tmp_path, by_fold=by_fold)
    md = paths[0].read_text()
    assert "pooled over 3 held-out hospitals" in md and "metrics_by_fold.csv" in md
    back = pd.read_excel(paths[2], sheet_name=None)
    assert set(back) == {"Model x modality", "All metrics (full precision)", "Per held-out fold"}
    assert sorted(back["Per held-out fold"]["fold"].unique()) == [0, 1, 2]
    # one held-out hospital (fold-model ensemble, fold -1): not pooled, no per-fold rows
    single = evaluate_by_fold(preds.assign(fold=-1), CLASSES, n_boot=0)
    assert model_modality_table(m, by_fold=single)["Split"].tolist() == ["external (held-out hospital)"]
    assert "metrics_by_fold.csv" not in table_caption(m, by_fold=single)


def test_results_table_shows_images_where_a_model_has_several_per_patient(tmp_path):
    """A CNN with two images per patient next to a one-row-per-patient fusion: the AUCs of the CNN row are
    over images, its comparison is on patient means; the table says both."""
    from fusion.evaluate import compare_models_delong
    from fusion.reporting import results_table, write_results_table

    one = _predictions()
    cnn = pd.concat([one, one.assign(**{f"p_{c}": one[f"p_{c}"][::-1].to_numpy() for c in CLASSES})],
                    ignore_index=True)                                   # two different images per patient
    fused = one.assign(model="late_fusion", modality="fusion_images")
    preds = pd.concat([cnn, fused], ignore_index=True)
    m = evaluate_predictions(preds, CLASSES, n_boot=0)
    comp = compare_models_delong(preds, CLASSES, n_boot=20)
    table = results_table(m, None, comp, ("resnet18", "2d"), single=pd.DataFrame({"model": ["resnet18"],
                                                                                   "modality": ["2d"]}))
    assert list(table.columns[4:6]) == ["Patients", "Images"]
    row = table.set_index("Model").loc["resnet18"]
    assert (row["Patients"], row["Images"]) == (60, 120)
    assert table.set_index("Model").loc["late_fusion", "Images"] == 60
    write_results_table(table, tmp_path)
    assert "per-patient mean probabilities" in (tmp_path / "results.md").read_text()
    # one image per patient everywhere: no Images column
    plain = results_table(evaluate_predictions(pd.concat([one, fused]), CLASSES, n_boot=0), None, None, None)
    assert "Images" not in plain.columns
