"""The training, pre-training and Grad-CAM paths on a CUDA device (skipped without one).

CI has no GPU; these run in the prepared GPU session (``bench/run_gpu_checks.sh``), where they
caught a transform whose normalisation buffers stayed on the CPU while the batches were on the GPU.
"""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tiny_training_cohort import TINY_ARGS, write_class_folders, write_tiny_cohort

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _on(device, args):
    args = list(args)
    args[args.index("--device") + 1] = device
    return args


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    from fusion.train import main

    folder = tmp_path_factory.mktemp("cuda_tiny")
    cohort = write_tiny_cohort(folder)
    out = folder / "run"
    assert main([str(cohort), *_on("cuda", TINY_ARGS), "--late-fusion", "--out", str(out)]) == 0
    return folder, cohort, out


def test_train_with_late_fusion_on_cuda(cuda_run):
    _, _, out = cuda_run
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["device"].startswith("cuda")
    metrics = pd.read_csv(out / "metrics.csv")
    auc = metrics[(metrics["metric"] == "auc") & metrics["class"].isna()]  # macro one-vs-rest
    assert set(auc["modality"]) >= {"2d", "cdfi", "elastography"}
    assert "late_fusion" in set(auc["model"])
    assert auc["estimate"].between(0, 1).all() and (auc["ci_low"] <= auc["ci_high"]).all()
    oof = pd.read_csv(out / "oof_predictions.csv")
    p = oof.filter(like="p_")
    assert np.isfinite(p.to_numpy()).all() and (p.sum(axis=1) - 1).abs().max() < 1e-5


def test_a_cuda_checkpoint_predicts_the_same_on_the_cpu(cuda_run, tmp_path):
    from fusion.gradcam import run_gradcam

    folder, cohort, out = cuda_run
    table = pd.read_csv(cohort, dtype={"patient_id": str})
    images = [folder / p for p in table["image_2d"].dropna().head(4)]
    ckpt = out / "checkpoints" / "2d" / "resnet18" / "fold0" / "model.pt"
    frames = {}
    for dev in ("cuda", "cpu"):
        run_gradcam(ckpt, images, out=tmp_path / dev, device=dev)
        frames[dev] = pd.read_csv(tmp_path / dev / "gradcam.csv")
    cols = ["p_metastatic", "p_lymphoma", "p_benign"]
    np.testing.assert_allclose(frames["cuda"][cols].to_numpy(), frames["cpu"][cols].to_numpy(), atol=2e-3)


def test_pretrain_on_cuda(tmp_path):
    from fusion.checkpoint import load_checkpoint
    from fusion.pretrain import main

    write_class_folders(tmp_path / "public")
    out = tmp_path / "pre"
    args = ["--data", str(tmp_path / "public"), "--size", "16", "--epochs", "1", "--batch-size", "8",
            "--device", "cuda", "--out", str(out)]
    assert main(args) == 0
    ckpt = load_checkpoint(out / "pretrained_resnet18.pt")  # mapped to the CPU: usable without a GPU
    assert ckpt["backbone"] == "resnet18" and ckpt["n_train"] + ckpt["n_val"] == 20


def test_compiled_training_on_cuda(cuda_run, tmp_path):
    from fusion.train import main

    _, cohort, _ = cuda_run
    out = tmp_path / "compiled"
    args = [str(cohort), *_on("cuda", TINY_ARGS), "--modalities", "2d", "--epochs", "1", "--compile"]
    assert main([*args, "--out", str(out)]) == 0
    oof = pd.read_csv(out / "oof_predictions.csv")
    assert np.isfinite(oof.filter(like="p_").to_numpy()).all()
