"""python -m fusion.gradcam on a fold model written by fusion.train (tiny cohort), and its errors."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fusion"))
from tiny_training_cohort import TINY_ARGS, write_tiny_cohort  # noqa: E402

from fusion.gradcam import build_parser, main  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from fusion.train import main as train_main

    folder = tmp_path_factory.mktemp("gradcam_tiny")
    cohort = write_tiny_cohort(folder)
    out = folder / "run"
    assert train_main([str(cohort), *TINY_ARGS, "--modalities", "2d", "--out", str(out)]) == 0
    table = pd.read_csv(cohort, dtype={"patient_id": str})
    images = [folder / p for p in table["image_2d"].dropna().head(2)]
    return out / "checkpoints" / "2d" / "resnet18" / "fold0" / "model.pt", images


def test_writes_overlays_panel_and_csv(trained, tmp_path, capsys):
    ckpt, images = trained
    mask = np.zeros((40, 40), dtype=np.uint8)  # another size than the images: resized like them
    mask[:20, :20] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    out = tmp_path / "cams"
    argv = [str(ckpt), *map(str, images), "--out", str(out), "--mask", str(mask_path), str(mask_path),
            "--threads", "1"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("wrote: ") and "gradcam.csv" in last
    frame = pd.read_csv(out / "gradcam.csv")
    assert list(frame.columns) == ["image", "patient_in_fold", "heatmap_note", "predicted_class", "p_metastatic",
                                   "p_lymphoma",
                                   "p_benign", "target_class", "mask", "cam_inside_mask", "mask_area_share", "overlay"]
    fa = pd.read_csv(ckpt.parents[4] / "fold_assignments.csv", dtype={"patient_id": str})
    fold_of = fa[fa["role"] == "test"].set_index("patient_id")["fold"]
    role0 = fa[fa["fold"] == 0].set_index("patient_id")["role"]
    expected = ["test" if fold_of[p.stem] == 0 else "validation (early stopping)" if role0[p.stem] == "validation"
                else f"training (test fold {fold_of[p.stem]})" for p in images]
    assert frame["patient_in_fold"].tolist() == expected
    assert frame["heatmap_note"].str.contains("last feature map is 1 x 1").all()  # 16 px: ResNet-18 cannot localise
    assert len(frame) == 2
    assert frame[["p_metastatic", "p_lymphoma", "p_benign"]].sum(axis=1).sub(1).abs().max() < 1e-6
    assert (frame["predicted_class"] == frame["target_class"]).all()
    assert frame["cam_inside_mask"].between(0, 1).all()
    assert frame["mask_area_share"].eq(0.25).all()  # 16 px image, top-left quadrant
    for path in frame["overlay"]:
        assert Path(path).is_file() and Path(path).stat().st_size > 1000
    assert (out / "gradcam_panel.png").is_file()


def test_target_class_is_explained(trained, tmp_path):
    ckpt, images = trained
    out = tmp_path / "cams"
    assert main([str(ckpt), str(images[0]), "--out", str(out), "--target", "benign"]) == 0
    frame = pd.read_csv(out / "gradcam.csv")
    assert frame["target_class"].tolist() == ["benign"] and "cam_inside_mask" not in frame


def test_errors_are_one_line_with_exit_2(trained, tmp_path, capsys):
    ckpt, images = trained
    not_image = tmp_path / "x.png"
    not_image.write_text("hello")
    not_ckpt = tmp_path / "model.pt"
    not_ckpt.write_text("not a checkpoint")
    cases = [
        ([str(tmp_path / "missing.pt"), str(images[0])], "file not found"),
        ([str(not_ckpt), str(images[0])], "not a PyTorch file"),
        ([str(ckpt), str(tmp_path / "missing.png")], "missing.png"),
        ([str(ckpt), str(not_image)], "not a readable image"),
        ([str(ckpt), str(images[0]), "--target", "benig"], "did you mean 'benign'"),
        ([str(ckpt), str(images[0]), "--mask", str(images[0]), str(images[1])], "2 mask(s) for 1 image(s)"),
        ([str(ckpt), str(images[0]), "--layer", "body.layer5"], "did you mean"),
    ]
    for argv, text in cases:
        assert main([*argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and text in err[0], err


def test_parser_has_examples():
    parser = build_parser()
    assert "python -m fusion.gradcam" in parser.epilog and "--mask" in parser.epilog


def test_warns_when_the_fold_model_was_trained_on_the_patient(trained, tmp_path):
    from analysis.errors import AnalysisWarning
    from fusion.gradcam import run_gradcam

    ckpt, images = trained
    oof = pd.read_csv(ckpt.parents[4] / "oof_predictions.csv", dtype={"patient_id": str})
    other = oof.loc[oof["fold"] != 0, "patient_id"].iloc[0]
    seen = images[0].with_name(f"{other}.png")
    with pytest.warns(AnalysisWarning, match="this fold model was trained on"):
        run_gradcam(ckpt, [seen], out=tmp_path / "cams")


def test_run_mode_explains_each_test_patient_with_its_own_fold_model(trained, tmp_path, capsys):
    ckpt, images = trained
    run, cohort = ckpt.parents[4], images[0].parents[2] / "cohort.csv"
    out = tmp_path / "tp"
    assert main(["--run", str(run), "--modality", "2d", "--per-class", "2", "--cohort", str(cohort),
                 "--out", str(out)]) == 0
    got = pd.read_csv(out / "gradcam_test_patients.csv", dtype={"patient_id": str})
    oof = pd.read_csv(run / "oof_predictions.csv", dtype={"patient_id": str})
    oof = oof[(oof["model"] == "resnet18") & (oof["modality"] == "2d")].set_index("patient_id")
    assert got.groupby("true_class").size().eq(2).all() and len(got) == 6
    assert set(got["fold"]) == {0, 1}  # both fold models are used, one per patient's test fold
    assert (got["fold"].to_numpy() == oof.loc[got["patient_id"], "fold"].to_numpy()).all()
    pcols = ["p_metastatic", "p_lymphoma", "p_benign"]
    np.testing.assert_allclose(got[pcols].to_numpy(), oof.loc[got["patient_id"], pcols].to_numpy(), atol=1e-5)
    assert (out / "gradcam_test_patients.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["--run", str(run), "--cohort", str(cohort)]) == 2
    assert "--run needs --modality" in capsys.readouterr().err
    assert main(["--run", str(run), "--modality", "elasto", "--cohort", str(cohort)]) == 2
    assert "no out-of-fold predictions for modality 'elasto'" in capsys.readouterr().err
    assert main([]) == 2
    assert "give CHECKPOINT and at least one IMAGE" in capsys.readouterr().err


def test_fold_role_without_a_cohort_table_is_unknown_with_the_reason(tmp_path):
    from fusion.gradcam import fold_role

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"patient_id": ["P1"], "fold": [0], "split": ["test"], "model": "resnet18"}).to_csv(
        run / "oof_predictions.csv", index=False)
    ckpt = run / "checkpoints" / "2d" / "resnet18" / "fold0" / "model.pt"
    # the file is called P1.png, but a file name is not a patient id
    assert fold_role(ckpt, [tmp_path / "P1.png"]) == [
        f"unknown: no cohort table to map images to patients ({run / 'config.yaml'} missing; pass --cohort)"]
    assert fold_role(tmp_path / "model.pt", [tmp_path / "P1.png"])[0].startswith("unknown: the checkpoint is not")


def test_fold_role_finds_the_patient_through_the_cohort_table_not_the_file_name(tmp_path, monkeypatch):
    from fusion.config import TrainConfig, save_config
    from fusion.gradcam import fold_role

    cohort = write_tiny_cohort(tmp_path / "tiny", n=24)
    table = pd.read_csv(cohort, dtype={"patient_id": str})
    folder = cohort.parent
    # P0001's elastography image is called P0001_elasto.png; P0002's B-mode file is called P0003.png
    # (P0003's own file moves to P0003_2d.png): only the table says whose image is whose
    first = table.index[table["patient_id"] == "P0001"][0]
    (folder / table.loc[first, "image_elastography"]).rename(folder / "images/elastography/P0001_elasto.png")
    table.loc[first, "image_elastography"] = "images/elastography/P0001_elasto.png"
    i2, i3 = (table.index[table["patient_id"] == p][0] for p in ("P0002", "P0003"))
    (folder / "images/2d/P0003.png").rename(folder / "images/2d/P0003_2d.png")
    (folder / "images/2d/P0002.png").rename(folder / "images/2d/P0003.png")
    table.loc[i2, "image_2d"], table.loc[i3, "image_2d"] = "images/2d/P0003.png", "images/2d/P0003_2d.png"
    table.to_csv(cohort, index=False)
    run = tmp_path / "run"
    save_config(TrainConfig(cohort=str(cohort)), run / "config.yaml")
    rows = [(0, "P0001", "test"), (0, "P0002", "train"), (0, "P0003", "validation"), (0, "P0004", "heldout"),
            (1, "P0001", "train"), (1, "P0002", "test"), (1, "P0003", "train"), (1, "P0004", "heldout")]
    pd.DataFrame([{"fold": f, "kind": "kfold", "name": f"fold {f}", "patient_id": p, "image_id": p, "role": r}
                  for f, p, r in rows]).to_csv(run / "fold_assignments.csv", index=False)
    stray = tmp_path / "P0001.png"
    stray.write_bytes(b"")
    monkeypatch.chdir(folder)
    images = ["images/elastography/P0001_elasto.png", folder / "images/2d/P0003.png",
              folder / "images/2d/P0003_2d.png", folder / table.loc[table["patient_id"] == "P0004", "image_2d"].iloc[0],
              stray, folder / table.loc[table["patient_id"] == "P0005", "image_2d"].iloc[0]]
    ckpt = run / "checkpoints" / "elastography" / "resnet18" / "fold0" / "model.pt"
    roles = fold_role(ckpt, images)
    assert roles[:4] == ["test", "training (test fold 1)", "validation (early stopping)", "held out"]
    assert roles[4] == f"unknown: P0001.png is not an image of the cohort table {cohort}"
    assert roles[5] == "unknown: patient P0005 is in no fold of fold_assignments.csv"
