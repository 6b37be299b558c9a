"""fusion.train --compile (torch.compile, inductor on the CPU): same predictions as eager, plain checkpoints."""
import json

import numpy as np
import pandas as pd

from fusion.checkpoint import load_checkpoint
from fusion.train import main
from tiny_training_cohort import TINY_ARGS, write_tiny_cohort


def test_compiled_training_matches_eager_and_saves_plain_weights(tmp_path):
    cohort = write_tiny_cohort(tmp_path / "data")
    args = [str(cohort), *TINY_ARGS, "--modalities", "2d", "--epochs", "1"]
    assert main([*args, "--out", str(tmp_path / "eager")]) == 0
    assert main([*args, "--compile", "--out", str(tmp_path / "compiled")]) == 0
    assert json.loads((tmp_path / "compiled" / "run_manifest.json").read_text())["config"]["compile"] is True
    eager = pd.read_csv(tmp_path / "eager" / "oof_predictions.csv")
    comp = pd.read_csv(tmp_path / "compiled" / "oof_predictions.csv")
    assert eager["patient_id"].tolist() == comp["patient_id"].tolist()
    # measured 2e-5 after one epoch (inductor's kernels round differently from eager ones)
    np.testing.assert_allclose(comp.filter(like="p_").to_numpy(), eager.filter(like="p_").to_numpy(), atol=1e-3)
    ckpt = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "2d" / "resnet18" / "fold0" / "model.pt")
    assert not any(k.startswith("_orig_mod") for k in ckpt["model"])  # loadable by an eager model
