"""fusion.checklist: TRIPOD+AI / CLAIM filled from a run's outputs, as markdown and docx."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real (tiny) run: cross_validate + save, which writes the checklist itself."""
    from tiny_training_cohort import write_tiny_cohort

    from fusion import cross_validate

    folder = tmp_path_factory.mktemp("checklist")
    cohort = write_tiny_cohort(folder / "tiny", n=24)
    result = cross_validate(cohort, modalities=["2d"], baseline=False, out=folder / "run", size=16, folds=2,
                            epochs=1, patience=5, batch_size=8, n_boot=20, device="cpu", threads=1, progress=False)
    written = result.save(folder / "run")
    return folder / "run", written


@pytest.mark.slow
def test_a_tiny_run_writes_a_checklist_with_patient_level_partitions_and_a_ci(tiny_run):
    from fusion.checklist import build_checklist

    run, written = tiny_run
    names = {Path(p).name for p in written}
    assert {"reporting_checklist.md", "reporting_checklist.docx", "reporting_checklist.csv"} <= names
    cl = build_checklist(run)
    part = cl.item("TRIPOD+AI", "12a")
    assert part["status"] == "filled" and "patient-level" in part["from_run"]
    assert "no patient is in two partitions" in part["from_run"]
    assert cl.item("CLAIM", "21")["from_run"] == part["from_run"]
    perf = cl.item("TRIPOD+AI", "23a")["from_run"]
    metrics = pd.read_csv(run / "metrics.csv")
    auc = metrics[(metrics["metric"] == "auc") & metrics["class"].isna()].iloc[0]
    assert f"macro AUC {auc['estimate']:.3f} (95 % CI {auc['ci_low']:.3f} to {auc['ci_high']:.3f})" in perf
    left = cl.left_to_authors()
    tripod_left = set(left.loc[left["guideline"] == "TRIPOD+AI", "item"])
    assert {"1", "3a", "5b", "17", "18a", "19", "25"} <= tripod_left  # title, context, dates, ethics, funding, PPI
    assert "12a" not in tripod_left
    # every TRIPOD+AI item 1..27 is there
    assert {str(i) for i in range(1, 28)} == {i.rstrip("abcdefg") for i in cl.frame.loc[
        cl.frame["guideline"] == "TRIPOD+AI", "item"]}
    md = (run / "reporting_checklist.md").read_text(encoding="utf-8")
    assert "| 12a | Methods: analysis |" in md
    from docx import Document

    doc = Document(run / "reporting_checklist.docx")
    texts = {c.text for t in doc.tables for row in t.rows for c in row.cells}
    assert part["from_run"] in texts and len(doc.tables) == 2


def _fake_run(tmp_path, unit="image", overlap=False):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("cohort: busi\nfolds: 2\ninner_val: 0.2\nseed: 0\nbackbones: [resnet18]\n"
                                     "size: 64\naugment: light\nweights: none\nn_boot: 200\n", encoding="utf-8")
    manifest = {"classes": ["malignant", "benign"], "n_patients": 4, "n_images": 4, "modalities": ["2d"],
                "data_source": {"kind": "busi", "path": "busi", "unit_of_analysis": unit, "n_rows": 4,
                                "n_patients": 4, "notes": []},
                "splits": [{"fold": 0, "n_train": 1, "n_val": 1, "n_test": 2}], "versions": {"torch": "x"}}
    (run / "run_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    roles = ["train", "validation", "test", "test"]
    fa = pd.DataFrame({"fold": 0, "kind": "cv", "name": "", "patient_id": ["a", "b", "c", "d"],
                       "image_id": ["0", "1", "2", "3"], "role": roles})
    if overlap:
        fa.loc[len(fa)] = [0, "cv", "", "c", "9", "train"]
    fa.to_csv(run / "fold_assignments.csv", index=False)
    pd.DataFrame([{"model": "resnet18", "modality": "2d", "split": "test", "metric": "auc", "class": None,
                   "estimate": 0.8, "ci_low": 0.7, "ci_high": 0.9, "ci_level": 0.95}]).to_csv(run / "metrics.csv",
                                                                                            index=False)
    return run


def test_image_level_data_and_a_crossing_patient_are_reported_not_hidden(tmp_path):
    from fusion.checklist import build_checklist

    cl = build_checklist(_fake_run(tmp_path, overlap=True))
    part = cl.item("TRIPOD+AI", "12a")
    assert "image-level" in part["from_run"] and "FAILED" in part["from_run"] and part["status"] == "partly"
    assert "image-level analysis" in cl.item("TRIPOD+AI", "26")["from_run"]
    assert "macro AUC 0.800 (95 % CI 0.700 to 0.900)" in cl.item("CLAIM", "36")["from_run"]
    assert cl.item("TRIPOD+AI", "23a")["status"] == "partly"  # no calibration statistics in metrics.csv


def test_audit_verdicts_reach_the_checklist_and_cli_writes_both(tmp_path, capsys):
    from fusion.audit import main

    run = _fake_run(tmp_path, unit="patient")
    assert main([str(run), "--no-hashes", "--checklist"]) == 0
    assert (run / "audit" / "audit_summary.csv").is_file() and (run / "reporting_checklist.docx").is_file()
    md = (run / "reporting_checklist.md").read_text(encoding="utf-8")
    assert "leakage audit: nothing fitted outside the training folds" in md
    assert "wrote:" in capsys.readouterr().out


def test_not_a_run_is_one_clear_error(tmp_path):
    from analysis.errors import ConfigError
    from fusion.checklist import build_checklist

    with pytest.raises(ConfigError, match="no run_manifest.json"):
        build_checklist(tmp_path)
