"""Two CPU processes on the gloo backend (torchrun) train the tiny config and write the outputs."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tiny_training_cohort import TINY_ARGS, write_tiny_cohort

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run_trains_and_writes_outputs(tmp_path):
    cohort = write_tiny_cohort(tmp_path / "data", n=20)
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "fusion.train", str(cohort), *TINY_ARGS, "--epochs", "1", "--modalities", "2d",
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wrote: " in res.stdout and res.stdout.count("wrote: ") == 1  # rank 0 only
    oof = pd.read_csv(out / "oof_predictions.csv", dtype={"patient_id": str})
    assert sorted(oof["patient_id"]) == sorted(pd.read_csv(cohort, dtype={"patient_id": str})["patient_id"])
    import json

    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["world_size"] == 2
    # --batch-size 8 is per process: reported as the global batch it gives
    assert manifest["config"]["batch_size"] == 8 and manifest["global_batch_size"] == 16
    assert "2 processes x --batch-size 8 per process = global batch 16" in res.stderr
    assert (out / "metrics.csv").is_file()


@pytest.mark.slow
def test_ranks_whose_own_buffers_disagree_stop_at_the_same_epoch(tmp_path):
    """Early stopping is decided once for all ranks (see tests/fusion/ddp_fit_worker.py)."""
    import json

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(REPO / "tests" / "fusion" / "ddp_fit_worker.py"), str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["epochs_run"] == ranks[1]["epochs_run"]
    assert ranks[0]["best_epoch"] == ranks[1]["best_epoch"]
    assert ranks[0]["val_loss"] == ranks[1]["val_loss"]
    # the loss was rank 0's: its buffer made it fall every epoch, so no rank stopped early
    assert ranks[0]["epochs_run"] == 4 and ranks[0]["val_loss"] == sorted(ranks[0]["val_loss"], reverse=True)
