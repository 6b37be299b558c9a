"""Prediction with a model bundle: latency per patient, batch throughput, app memory under load.

Measured on a bundle and the cohort it should predict (e.g. the 586-patient demo cohort and a
bundle from a short ``fusion.train --final`` run):

* **latency per patient**: one patient (three images + the clinical values of the cohort's
  first row) predicted ``--reps`` times through :func:`fusion.predict.predict` (images read
  from disk) and through the app's JSON API in-process (``POST /api/predict``, with and without
  Grad-CAM overlays); median and 90th percentile, after ``--warmup`` calls;
* **batch throughput**: :meth:`fusion.bundle.FusionModel.predict_table` on the whole cohort
  (with the Shapley contributions, as ``fusion.predict`` writes them), patients per second,
  best of ``--batch-reps``;
* **app memory under load**: ``python -m fusion.serve`` on 127.0.0.1, ``--workers`` concurrent
  clients for ``--rounds`` rounds (three images + Grad-CAM each); the server's resident memory
  (``VmRSS``) after a warm-up round, after the last round, and its peak (``VmHWM``).

Run (CPU, one thread)::

    python -m analysis.simulate --out demo_data && python -m fusion.synthetic demo_data/cohort.xlsx
    python -m fusion.train demo_data/cohort.xlsx --final --size 64 --folds 2 --epochs 1 --out runs/bench
    OMP_NUM_THREADS=1 python bench/bench_serve.py runs/bench/model_bundle.pt demo_data/cohort.xlsx

Prints a JSON object (and writes it to ``--out``, default ``bench/results/serve.json``).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _stats(times) -> dict:
    """Wall-clock median / p90 and process-CPU median (ms): on a shared machine the CPU time is the
    load-independent figure (one thread: CPU time ~ wall time on an idle machine)."""
    wall = np.asarray([w for w, _ in times]) * 1000
    cpu = np.asarray([c for _, c in times]) * 1000
    return {"median_ms": round(float(np.median(wall)), 1), "p90_ms": round(float(np.percentile(wall, 90)), 1),
            "cpu_median_ms": round(float(np.median(cpu)), 1), "n": int(len(wall))}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_kib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("cohort")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-reps", type=int, default=2)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "serve.json"))
    args = p.parse_args(argv)

    import torch
    from fastapi.testclient import TestClient

    from analysis.readers import read_table
    from fusion.bundle import load_bundle
    from fusion.predict import predict
    from fusion.serve import create_app

    torch.set_num_threads(args.threads)
    cohort = Path(args.cohort)
    model = load_bundle(args.bundle)
    schema = model.schema
    table = read_table(cohort)
    first = table.iloc[0]
    images = {m: cohort.parent / str(first[c]) for m, c in schema.image_columns.items()
              if m in model.modalities and isinstance(first[c], str)}
    clinical = {v.name: str(first[v.name]) for v in schema.variables
                if v.name in table.columns and pd.notna(first[v.name])}
    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "cpus": os.cpu_count(), "threads": args.threads,
                          "load_average_start": os.getloadavg()[0]},
              "model": model.summary(), "size": model.size, "backbone": model.backbone,
              "n_cohort": int(len(table))}

    def timed(fn, reps, warmup):
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            out.append((time.perf_counter() - t0, time.process_time() - c0))
        return out

    result["latency_predict_one_patient"] = _stats(timed(lambda: predict(model, images=images, clinical=clinical),
                                                         args.reps, args.warmup))
    client = TestClient(create_app(model))
    files = {f"image_{m}": (f"{m}.png", path.read_bytes(), "application/octet-stream") for m, path in images.items()}

    def api(gradcam):
        r = client.post("/api/predict", files=files, data={**clinical, "gradcam": str(gradcam).lower()})
        assert r.status_code == 200, r.text

    result["latency_api_no_gradcam"] = _stats(timed(lambda: api(False), args.reps, args.warmup))
    result["latency_api_with_gradcam"] = _stats(timed(lambda: api(True), args.reps, args.warmup))

    best = best_cpu = None
    for _ in range(args.batch_reps):
        t0, c0 = time.perf_counter(), time.process_time()
        preds, problems = model.predict_table(cohort)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        best = dt if best is None else min(best, dt)
        best_cpu = dc if best_cpu is None else min(best_cpu, dc)
    result["batch_predict_table"] = {"patients": int(len(preds)), "problems": int(len(problems)),
                                     "seconds": round(best, 2), "patients_per_s": round(len(preds) / best, 1),
                                     "cpu_seconds": round(best_cpu, 2),
                                     "patients_per_cpu_s": round(len(preds) / best_cpu, 1)}

    # ---------------------------------------------------------------- the app under load
    import httpx

    from fusion.serve import serve_in_background

    with serve_in_background(args.bundle, threads=args.threads) as (url, proc):
        rss_idle = _proc_kib(proc.pid, "VmRSS")

        def one(_):
            with httpx.Client(timeout=120) as c:
                return c.post(url + "/api/predict", files=files, data=clinical).status_code

        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            warm = list(pool.map(one, range(args.workers)))
            rss_warm = _proc_kib(proc.pid, "VmRSS")
            t0, c0 = time.perf_counter(), _cpu_s(proc.pid)
            statuses = []
            rss_rounds = []
            for _ in range(args.rounds):
                statuses += list(pool.map(one, range(args.workers)))
                rss_rounds.append(round(_proc_kib(proc.pid, "VmRSS"), 1))
            dt, dc = time.perf_counter() - t0, _cpu_s(proc.pid) - c0
        result["app_under_load"] = {
            "concurrent_clients": args.workers, "requests": len(statuses),
            "all_200": all(s == 200 for s in warm + statuses),
            "seconds": round(dt, 1), "requests_per_s": round(len(statuses) / dt, 2),
            "server_cpu_s_per_request": round(dc / len(statuses), 3),
            "rss_idle_mib": round(rss_idle, 1), "rss_after_warmup_mib": round(rss_warm, 1),
            "rss_after_each_round_mib": rss_rounds, "rss_peak_mib": round(_proc_kib(proc.pid, "VmHWM"), 1)}
    result["machine"]["load_average_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
