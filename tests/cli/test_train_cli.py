"""python -m fusion.train: in-process runs on a tiny cohort, config precedence, errors, a subprocess smoke."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fusion"))
from tiny_training_cohort import TINY_ARGS, write_tiny_cohort  # noqa: E402

from fusion.train import config_from_args, main  # noqa: E402
from analysis.errors import ConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    return write_tiny_cohort(tmp_path_factory.mktemp("tiny"))


def test_train_writes_oof_predictions_metrics_checkpoints_and_manifest(tiny_cohort, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "late_fusion_comparison.csv").write_text("stale, from an earlier run with --late-fusion\n")
    assert main([str(tiny_cohort), *TINY_ARGS, "--modalities", "2d", "--baseline", "--out", str(out)]) == 0
    assert not (out / "late_fusion_comparison.csv").exists()  # no stale output of another run is left
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("wrote: ") and "oof_predictions.csv" in last
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    assert list(oof.columns) == ["patient_id", "fold", "split", "y_true", "model", "modality",
                                 "p_metastatic", "p_lymphoma", "p_benign"]
    cohort = pd.read_csv(tiny_cohort, dtype={"patient_id": str})
    # the CNN and, on the same folds, the texture baseline (on by default)
    assert set(oof["model"]) == {"resnet18", "texture_lr"}
    for _, rows in oof.groupby("model"):
        # every patient predicted exactly once, by the model of the fold that did not train on it
        assert sorted(rows["patient_id"]) == sorted(cohort["patient_id"])
    assert set(oof["split"]) == {"test"} and set(oof["fold"]) == {0, 1}
    assert oof[["p_metastatic", "p_lymphoma", "p_benign"]].sum(axis=1).sub(1).abs().max() < 1e-5
    for fold in (0, 1):
        unit = out / "checkpoints" / "2d" / "resnet18" / f"fold{fold}"
        assert (unit / "latest.pt").is_file() and (unit / "model.pt").is_file()
        from fusion.checkpoint import load_checkpoint

        ckpt = load_checkpoint(unit / "latest.pt")
        assert ckpt["complete"] and ckpt["config"]["size"] == 16 and len(ckpt["history"]) >= 1
        # a finished fold's latest.pt is only its record: the weights are in model.pt, no optimizer state
        assert "model" not in ckpt and "optimizer" not in ckpt and "best_state" not in ckpt["early_stopping"]
        assert (unit / "latest.pt").stat().st_size < (unit / "model.pt").stat().st_size / 10
        from fusion.gradcam import load_gradcam_model

        with pytest.raises(ConfigError, match="holds no model weights; the fold's weights are in .*model.pt"):
            load_gradcam_model(unit / "latest.pt")
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"model", "modality", "split", "metric", "estimate", "ci_low", "ci_high"} <= set(metrics.columns)
    assert "auc" in set(metrics["metric"])
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["config"]["folds"] == 2 and manifest["seed"] == 0
    assert len(manifest["data"]["cohort_file_sha256"]) == 64 and "tensors_2d_sha256" in manifest["data"]
    assert manifest["versions"]["torch"]
    assert manifest["world_size"] == 1 and manifest["global_batch_size"] == manifest["config"]["batch_size"] == 8
    # no test patient was in its fold's training or validation patients
    assert all(s["n_test"] > 0 and s["n_val"] > 0 for s in manifest["splits"])
    assert yaml.safe_load((out / "config.yaml").read_text())["modalities"] == ["2d"]


def test_config_precedence_defaults_then_yaml_then_flags(tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text("size: 32\nepochs: 3\nbackbones: [densenet121]\n")
    cfg = config_from_args(["c.xlsx", "--config", str(run), "--epochs", "7"])
    assert (cfg.size, cfg.epochs, cfg.backbones, cfg.folds) == (32, 7, ["densenet121"], 5)


def test_errors_are_one_line_with_exit_2(tiny_cohort, tmp_path, capsys):
    bad_yaml = tmp_path / "run.yaml"
    bad_yaml.write_text("epoch: 3\n")
    cases = [
        ([str(tiny_cohort), "--backbones", "resnet81"], "did you mean 'resnet18'"),
        ([str(tiny_cohort), "--config", str(bad_yaml)], "did you mean 'epochs'"),
        ([str(tmp_path / "missing.xlsx")], "cohort file not found"),
        ([str(tiny_cohort), *TINY_ARGS, "--holdout-hospital", "Hospital Z", "--out", str(tmp_path / "o")],
         "no such hospital"),
        ([str(tiny_cohort), *TINY_ARGS, "--modalities", "elasto", "--out", str(tmp_path / "o")],
         "did you mean 'elastography'"),
        ([str(tiny_cohort), *TINY_ARGS, "--lr", "-1"], "--lr must be a positive number"),
        ([str(tiny_cohort), *TINY_ARGS, "--inner-val", "1.5"], "--inner-val must lie strictly between 0 and 1"),
        ([str(tiny_cohort), *TINY_ARGS, "--out", str(tiny_cohort)], "is a file, not a folder"),
        ([str(tiny_cohort), *TINY_ARGS, "--folds", "20", "--out", str(tmp_path / "o")], "patients, so some test"),
        ([str(tiny_cohort.parent), *TINY_ARGS], "is " + str(tiny_cohort) + " the cohort table you meant?"),
    ]
    for argv, text in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and text in err[-1], err


def test_holdout_hospital_is_predicted_by_the_mean_of_the_fold_models(tiny_cohort, tmp_path):
    out = tmp_path / "ext"
    args = [str(tiny_cohort), *TINY_ARGS, "--epochs", "1", "--modalities", "2d", "--holdout-hospital",
            "Hospital C", "--baseline", "--out", str(out)]
    assert main(args) == 0
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    cohort = pd.read_csv(tiny_cohort, dtype={"patient_id": str}).set_index("patient_id")
    ext = oof[oof["split"] == "external"]
    test = oof[oof["split"] == "test"]
    assert set(cohort.loc[ext["patient_id"], "hospital"]) == {"Hospital C"}
    assert "Hospital C" not in set(cohort.loc[test["patient_id"], "hospital"])
    assert (ext["fold"] == -1).all()
    assert set(ext["model"]) == {"resnet18", "texture_lr"}  # the texture baseline is predicted the same way
    assert all(rows["patient_id"].is_unique for _, rows in ext.groupby("model"))
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"test", "external"} <= set(metrics["split"])


def test_module_runs_as_a_subprocess():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "fusion.train", "--help"], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=120)
    assert res.returncode == 0 and "--holdout-hospital" in res.stdout and "examples:" in res.stdout


# ----------------------------------------------------------------------------- public data sets
def _png(path: Path, level: int, rng, size=16, channels=1):
    import numpy as np
    from PIL import Image

    arr = np.clip(level + rng.normal(0, 30, (size, size, channels)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if channels == 1 else arr).save(path)


def test_a_manifest_yaml_of_class_folders_trains_image_level_and_says_so(tmp_path, capsys):
    import numpy as np

    from fusion.manifests import ImageLevelWarning

    rng = np.random.default_rng(0)
    for c, level in (("malignant", 200), ("benign", 120), ("normal", 50)):
        for i in range(8):
            _png(tmp_path / "imgs" / c / f"{c} ({i + 1}).png", level, rng, channels=3)
    (tmp_path / "m.yaml").write_text("dataset: folder\nroot: imgs\nclasses: [malignant, benign, normal]\n")
    out = tmp_path / "run"
    with pytest.warns(ImageLevelWarning, match="every image is treated as its own patient"):
        assert main([str(tmp_path / "m.yaml"), *TINY_ARGS, "--epochs", "1", "--out", str(out)]) == 0
    manifest = json.loads((out / "run_manifest.json").read_text())
    src = manifest["data_source"]
    assert src["kind"] == "manifest" and src["unit_of_analysis"] == "image"
    assert src["n_rows"] == src["n_patients"] == manifest["n_images"] == manifest["n_patients"] == 24
    assert "image-level" in src["notes"][0] and src["image_root"] == str(tmp_path / "imgs")
    assert manifest["classes"] == ["malignant", "benign", "normal"]
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert len(oof) == 24 and oof["patient_id"].is_unique
    assert list(oof.columns[-3:]) == ["p_malignant", "p_benign", "p_normal"]


def test_bus_bra_by_name_keeps_every_case_on_one_side(tmp_path, monkeypatch):
    import numpy as np

    rng = np.random.default_rng(1)
    root = tmp_path / "data" / "bus_bra"
    lines = ["ID,Case,Histology,Pathology,BIRADS,Device,Width,Height,Side,BBOX"]
    for case in range(1, 13):
        label = "malignant" if case % 2 else "benign"
        for side in ("l", "r"):
            image_id = f"bus_{case:04d}-{side}"
            _png(root / "images" / f"{image_id}.png", 190 if label == "malignant" else 70, rng)
            lines.append(f"{image_id},{case},x,{label},{4 if case % 2 else 3},GE Logiq 5 @10-12MHz,1,1,"
                         f"{'left' if side == 'l' else 'right'},\"[1,2,3,4]\"")
    (root / "bus_data.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("LYMPH_SHARED_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    assert main(["bus_bra", *TINY_ARGS, "--epochs", "1", "--out", str(out)]) == 0
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["data_source"]["unit_of_analysis"] == "patient" and manifest["data_source"]["notes"] == []
    assert (manifest["n_images"], manifest["n_patients"]) == (24, 12)
    assert "cohort_file_sha256" not in manifest["data"] and len(manifest["data"]["table_sha256"]) == 64
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    assert len(oof) == 24 and (oof.groupby("patient_id")["fold"].nunique() == 1).all()
    # the two images of a case were predicted by the same fold model, i.e. never trained on
    metrics = pd.read_csv(out / "metrics.csv")
    assert (metrics.loc[metrics["metric"] == "auc", "n"] == 24).all()


def test_a_misspelled_public_set_name_gets_a_suggestion(capsys):
    assert main(["bus-bra"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: cohort file not found: bus-bra") and "did you mean 'bus_bra'" in err


@pytest.mark.shared_data
def test_busi_and_bus_bra_resolve_through_the_manifests(shared_data):
    from fusion.manifests import ImageLevelWarning
    from fusion.train import load_table

    with pytest.warns(ImageLevelWarning, match="near-duplicate"):
        table, schema, src = load_table("busi", data_root=shared_data)
    assert (src.kind, src.unit_of_analysis, src.n_rows, src.n_patients) == ("busi", "image", 780, 780)
    assert schema.group_levels == ("malignant", "benign", "normal")
    table, schema, src = load_table("bus_bra", data_root=shared_data)
    assert (src.unit_of_analysis, src.n_rows, src.n_patients) == ("patient", 1875, 1064)
    assert "official_fold" in table.columns


def test_late_fusion_with_a_held_out_hospital(tiny_cohort, tmp_path):
    out = tmp_path / "ext_late"
    args = [str(tiny_cohort), *TINY_ARGS, "--epochs", "1", "--modalities", "2d", "elastography",
            "--holdout-hospital", "Hospital C", "--late-fusion", "--out", str(out)]
    assert main(args) == 0
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    cohort = pd.read_csv(tiny_cohort, dtype={"patient_id": str}).set_index("patient_id")
    late = oof[(oof["model"] == "late_fusion") & (oof["split"] == "external")]
    held = set(cohort.index[cohort["hospital"] == "Hospital C"])
    assert set(late["modality"]) == {"fusion_images", "fusion_images_clinical", "clinical_only"}
    for _, g in late.groupby("modality"):
        assert set(g["patient_id"]) == held and g["patient_id"].is_unique and (g["fold"] == -1).all()
    assert (oof[(oof["model"] == "late_fusion") & (oof["split"] == "test")]["patient_id"].isin(held)).sum() == 0


def test_late_fusion_heldout_never_uses_held_out_labels():
    import numpy as np

    from fusion.late_fusion import late_fusion_heldout
    from fusion.splits import Split

    rng = np.random.default_rng(0)
    n, classes = 60, ["a", "b", "c"]
    ids = np.array([f"P{i}" for i in range(n)], dtype=object)
    y = rng.integers(0, 3, n)
    p = rng.dirichlet(np.ones(3), n) * 0.5 + np.eye(3)[y] * 0.5
    dev, held = np.arange(45), np.arange(45, 60)
    folds = [Split(0, dev[15:], np.zeros(0, dtype=np.int64), dev[:15], "cv"),
             Split(1, np.r_[dev[:15], dev[30:]], np.zeros(0, dtype=np.int64), dev[15:30], "cv"),
             Split(2, dev[:30], np.zeros(0, dtype=np.int64), dev[30:], "cv")]

    def frame(idx, split, fold, labels):
        f = pd.DataFrame({"patient_id": ids[idx], "fold": fold, "split": split,
                          "y_true": np.asarray(classes, dtype=object)[labels[idx]], "model": "cnn", "modality": "2d"})
        for k, c in enumerate(classes):
            f[f"p_{c}"] = p[idx, k]
        return f

    oof = pd.concat([frame(s.test_idx, "test", s.fold, y) for s in folds], ignore_index=True)
    clinical = pd.DataFrame({"age": rng.normal(50, 10, n)})
    base = late_fusion_heldout(oof, frame(held, "external", -1, y), classes, folds, ids, y, clinical=clinical)
    y2 = y.copy()
    y2[held] = (y[held] + 1) % 3
    again = late_fusion_heldout(oof, frame(held, "external", -1, y2), classes, folds, ids, y2, clinical=clinical)
    pcols = [f"p_{c}" for c in classes]
    assert len(base) == 3 * 15 and np.array_equal(base[pcols].to_numpy(), again[pcols].to_numpy())


def test_fold_column_gives_the_test_folds_and_bad_fold_columns_are_one_line(tiny_cohort, tmp_path, capsys):
    cohort = pd.read_csv(tiny_cohort, dtype={"patient_id": str})
    # a site-based fold label, as a published split would give it (not the stratified folds make_splits draws)
    cohort["published_fold"] = ["A" if i % 3 else "B" for i in range(len(cohort))]
    path = tiny_cohort.parent / "with_folds.csv"
    cohort.to_csv(path, index=False)
    schema = str(tiny_cohort.parent / "cohort_schema.yaml")
    out = tmp_path / "run"
    assert main([str(path), "--schema", schema, *TINY_ARGS, "--modalities", "2d", "--fold-column",
                 "published_fold", "--out", str(out)]) == 0
    fa = pd.read_csv(out / "fold_assignments.csv", dtype={"patient_id": str})
    tested = fa[fa["role"] == "test"].set_index("patient_id")["fold"]
    expected = cohort.set_index("patient_id")["published_fold"].map({"A": 0, "B": 1})
    assert tested.sort_index().to_dict() == expected.sort_index().to_dict()
    # the fold labels are not a clinical predictor (an inferred schema would otherwise take them as one)
    from fusion.train import config_from_args, load_dataset

    cfg = config_from_args([str(path), "--group", "group", "--fold-column", "published_fold", "--size", "16"])
    dataset, _ = load_dataset(cfg, progress=False)
    assert "published_fold" not in dataset.clinical.columns and "age" in dataset.clinical.columns
    capsys.readouterr()
    assert main([str(path), "--schema", schema, *TINY_ARGS, "--fold-column", "publishd_fold",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "publishd_fold" in err[0] and "did you mean 'published_fold'" in err[0]
    cohort.loc[4, "published_fold"] = None
    cohort.to_csv(path, index=False)
    assert main([str(path), "--schema", schema, *TINY_ARGS, "--fold-column", "published_fold",
                 "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 6" in err[0] and "published_fold" in err[0] and "empty fold label" in err[0]
    with pytest.raises(SystemExit):  # argparse: not allowed with --external-hospital
        main([str(path), "--schema", schema, *TINY_ARGS, "--fold-column", "published_fold", "--external-hospital"])
    assert "not allowed with argument --fold-column" in capsys.readouterr().err
