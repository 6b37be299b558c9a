"""python -m fusion.pretrain: tiny folder / manifest runs, checkpoint used by fusion.train, BUS-BRA table."""
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fusion"))
from tiny_training_cohort import TINY_ARGS, write_class_folders, write_tiny_cohort  # noqa: E402

from fusion.checkpoint import load_checkpoint  # noqa: E402
from fusion.pretrain import main, pretraining_table  # noqa: E402

TINY = ["--size", "16", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--threads", "1"]


def test_pretrain_on_a_folder_writes_a_checkpoint_that_train_fine_tunes_from(tmp_path, capsys):
    data = write_class_folders(tmp_path / "public")
    out = tmp_path / "pre"
    assert main(["--data", str(data), *TINY, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("wrote: ")
    ckpt_path = out / "pretrained_resnet18.pt"
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["backbone"] == "resnet18" and ckpt["classes"] == ["benign", "malignant"]
    assert ckpt["n_train"] + ckpt["n_val"] == 20 and ckpt["n_val"] > 0
    # read by fusion.manifests.folder_manifest: no patient ids, so the validation split is over images
    assert ckpt["data_source"]["kind"] == "folder" and ckpt["data_source"]["unit_of_analysis"] == "image"
    assert "image-level validation split" in ckpt["source"]

    from fusion.backbones import create_backbone

    model = create_backbone("resnet18", weights=ckpt_path, in_chans=1, num_classes=3)
    assert [s.split()[0] for s in model.weights_report["skipped"]] == ["head.weight", "head.bias"]
    torch.testing.assert_close(model.body.layer4[1].conv2.weight, ckpt["model"]["body.layer4.1.conv2.weight"])

    cohort = write_tiny_cohort(tmp_path / "cohort", n=16)
    from fusion.train import main as train_main

    args = [str(cohort), *TINY_ARGS, "--epochs", "1", "--modalities", "2d", "cdfi",
            "--weights", str(ckpt_path), "--out", str(tmp_path / "ft")]
    assert train_main(args) == 0
    assert (tmp_path / "ft" / "metrics.csv").is_file()


def test_pretrain_manifest_and_errors(tmp_path, capsys):
    data = write_class_folders(tmp_path / "public", n_per_class=6)
    rows = [{"path": str(p.relative_to(tmp_path)), "label": p.parent.name, "patient_id": p.stem[:-2] + str(i // 2)}
            for i, p in enumerate(sorted(data.rglob("*.png")))]
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    table, _ = pretraining_table(str(manifest))
    assert len(table) == 12 and Path(table["path"][0]).is_file()
    assert main(["--data", str(manifest), *TINY, "--out", str(tmp_path / "m")]) == 0
    pd.DataFrame({"file": ["a.png"], "label": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["--data", str(tmp_path / "bad.csv"), *TINY]) == 2
    assert "column 'path'" in capsys.readouterr().err
    assert main(["--data", "bus_bar", *TINY]) == 2
    assert "did you mean 'bus_bra'" in capsys.readouterr().err
    assert main(["--data", str(data), "--backbone", "resnet", *TINY]) == 2


@pytest.mark.shared_data
def test_bus_bra_pretraining_validation_is_official_fold_1_and_patient_disjoint(shared_data):
    from fusion.splits import predefined_folds

    table, source = pretraining_table("bus_bra", shared_data)
    assert len(table) == 1875 and set(table["label"]) == {"benign", "malignant"}
    assert Path(table["path"].iloc[0]).is_file()
    val = [s for s in predefined_folds(table["fold"], table["patient_id"]) if s.name == "1"][0]
    assert not set(table["patient_id"][val.train_idx]) & set(table["patient_id"][val.test_idx])
    assert 300 < len(val.test_idx) < 450
    assert source == "BUS-BRA (official fold 1 = validation)"


def test_pretrain_reads_a_manifest_yaml(tmp_path):
    data = write_class_folders(tmp_path / "public", n_per_class=4)
    (tmp_path / "m.yaml").write_text(f"dataset: folder\nroot: {data.name}\n")
    table, source = pretraining_table(str(tmp_path / "m.yaml"))
    assert len(table) == 8 and set(table["label"]) == {"benign", "malignant"} and table["fold"].isna().all()
    assert all(Path(p).is_file() for p in table["path"]) and "image-level" in source
