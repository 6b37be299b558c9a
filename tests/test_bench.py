"""Smoke runs of the benchmark scripts, so that they keep working between benchmark sessions.

Only that they run and write well-formed results: the timings themselves live in
BENCHMARKS.md, never in assertions.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_bench_runs_its_checks_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--device", "cpu", "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["correctness"]["fp32_device_vs_cpu_max_abs_diff"] == 0.0  # same device: identical
    assert res["correctness"]["bf16_argmax_agreement"] >= 0.5
    assert {r["precision"] for r in res["throughput"]} == {"bf16 autocast", "fp32/tf32"}
    assert all(r["img_per_s"] > 0 and 0 < r["pipeline_efficiency"] for r in res["throughput"])


def test_fisher_bench_prints_a_row_per_cell():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_fisher.py"), "--reps", "1",
                           "--ks", "2,3", "--ns", "50"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split("|")[1].strip() for r in rows] == ["2", "3"]
    assert all(r.split("|")[6].strip() == "1 / 0" for r in rows)  # exact, no fallback


def test_throughput_bench_reports_the_cpu_bf16_instructions():
    info = _load("bench_throughput").cpu_info()
    assert set(info) == {"model", "bf16", "flags"}
    assert info["bf16"] in {"AMX", "AVX-512 BF16 (no AMX)", "none", "unknown"}


@pytest.mark.shared_data
@pytest.mark.slow
def test_gradcam_mask_bench_writes_its_table(tmp_path, shared_data):
    import os

    out = tmp_path / "gc"
    env = {**os.environ, "LYMPH_SHARED_DATA": str(shared_data), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_gradcam_masks.py"), "--size", "32",
                           "--epochs", "1", "--max-train", "48", "--limit", "24", "--n-boot", "20",
                           "--layers", "body.layer4", "body.layer2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (tmp_path / "gc.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| body.")]
    assert [r.split("|")[1].strip() for r in rows] == ["body.layer4 (1 x 1)", "body.layer2 (4 x 4)"]
    assert rows[0].split("|")[-2].strip() == "24"  # every 1 x 1 map is flagged degenerate
    import pandas as pd

    images = pd.read_csv(tmp_path / "gc_images.csv")
    assert len(images) == 48 and images["area"].between(0, 1).all()


def test_joint_fusion_throughput_bench_runs_on_the_cpu(tmp_path):
    out = tmp_path / "joint.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_joint.py"), "--throughput", "--device", "cpu",
                           "--quick", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert [r["fusion"] for r in res["throughput"]["rows"]] == ["concat", "gated"]
    assert all(r["patients_per_s"] > 0 and r["images_per_s"] > r["patients_per_s"] for r in res["throughput"]["rows"])


def test_run_summary_and_cnn_vs_texture_read_a_finished_run(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "fusion"))
    from tiny_training_cohort import TINY_ARGS, write_tiny_cohort

    from fusion.train import main

    cohort = write_tiny_cohort(tmp_path / "tiny", n=30)
    run = tmp_path / "run"
    args = [a for a in TINY_ARGS if a != "--no-baseline"]
    assert main([str(cohort), *args, "--modalities", "2d", "--fusion", "late", "--out", str(run)]) == 0
    text = _load("summarise_run").compact(run)
    assert "| CNN, one modality | resnet18" in text and "texture_lr" in text and "Stage times" in text
    paired = _load("bench_cnn_vs_texture").compare(run, n_boot=20)
    assert list(paired["modality"]) == ["2d"] and paired["patients"].iloc[0] == 30
    assert abs(paired["CNN - texture"].iloc[0] - (paired["CNN"].iloc[0] - paired["texture"].iloc[0])) < 2e-3
