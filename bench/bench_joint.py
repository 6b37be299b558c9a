"""Cost of joint-fusion training against the single-modality training it builds on.

Two measurements:

``--demo`` (default)
    On the demo cohort (``analysis.simulate`` + ``fusion.synthetic``, written to a temporary
    folder and read back through ``fusion.train.load_table`` and ``MultimodalDataset``), fold 0
    of a patient-level 5-fold split with its inner validation patients: wall time of
    :func:`fusion.engine.fit` per epoch (training pass + validation pass, model construction
    excluded; median of interleaved rounds) for a ResNet18 on each modality alone (``fusion.train``'s set-up) and for the
    joint network (three ResNet18 branches + clinical branch, concatenation and gated
    attention heads; ``fusion.joint``'s set-up).
``--throughput``
    Joint-network training throughput on synthetic data held on the device (uint8, all three
    modalities, 10 % of the elastography images absent, 24 clinical features): patients and
    images per second of :func:`fusion.engine.train_one_epoch` (augmentation on the device,
    channels_last, bf16 autocast with ``--amp``). On CUDA at 224 px this is the GPU check of
    ``bench/run_gpu_checks.sh``; ``--device cpu --quick`` is its smoke test.

Examples
--------
    python bench/bench_joint.py --size 64 --rounds 3 --threads 1 --json bench/results/joint_cpu.json
    python bench/bench_joint.py --throughput --device cuda --size 224 --amp --batch-size 128
    python bench/bench_joint.py --throughput --device cpu --quick
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODALITIES = ("2d", "cdfi", "elastography")
CHANNELS = {"2d": 1, "cdfi": 3, "elastography": 3}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Joint-fusion training cost vs single-modality training.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("Examples\n--------\n", 1)[1])
    p.add_argument("--throughput", action="store_true", help="synthetic-data throughput instead of the demo cohort")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--size", type=int, default=64, help="image size in px (default: 64)")
    p.add_argument("--n", type=int, default=586, help="demo patients (default: 586)")
    p.add_argument("--epochs", type=int, default=1, help="demo: epochs per timed fit (default: 1)")
    p.add_argument("--rounds", type=int, default=3, help="demo: interleaved rounds, median reported (default: 3)")
    p.add_argument("--batch-size", type=int, default=32, help="patients per step (default: 32)")
    p.add_argument("--steps", type=int, default=30, help="throughput: timed steps (default: 30)")
    p.add_argument("--warmup", type=int, default=5, help="throughput: untimed steps first (default: 5)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (default: off)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    return p


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def demo_cost(args, device) -> dict:
    """Seconds per epoch of fit() for each single modality and each joint head (see module docs)."""
    from analysis import simulate
    from fusion import synthetic
    from fusion.dataset import MultimodalDataset
    from fusion.engine import FitOptions, ImageData, fit, setup_training
    from fusion.joint import JointData, JointOptions, encode_clinical, setup_joint
    from fusion.splits import patient_folds, with_inner_validation
    from fusion.train import load_table

    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):
            simulate.main(["--out", tmp, "--n", str(args.n), "--seed", "0", "--overwrite"])
            synthetic.main([str(Path(tmp) / "cohort.xlsx"), "--seed", "0", "--overwrite", "--size", str(args.size),
                            "--no-progress"])
        table, schema, _ = load_table(Path(tmp) / "cohort.xlsx")
        ds = MultimodalDataset(table, schema, size=args.size, progress=False)
    y = ds.labels.numpy()
    split = with_inner_validation(patient_folds(ds.patient_ids, y, 5, 0), ds.patient_ids, y, 0.2, 0)[0]
    options = FitOptions(epochs=args.epochs, patience=args.epochs + 1, batch_size=args.batch_size, amp=args.amp)
    x_clin = encode_clinical(ds.clinical, ds.schema, split.train_idx)
    joint_data = JointData({m: ds.tensors(m) for m in ds.modalities}, ds.mask, x_clin, y, split.train_idx,
                           split.val_idx)

    def single(m):
        j = ds.modalities.index(m)
        present = ds.mask[:, j].numpy()
        tr, va = split.train_idx[present[split.train_idx]], split.val_idx[present[split.val_idx]]
        setup = setup_training("resnet18", "none", in_chans=ds.channels[m], num_classes=3, device=device, seed=0,
                               lr=1e-3, weight_decay=1e-4, epochs=args.epochs, channels_last=True, augment="light")
        return setup, ImageData(ds.tensors(m), y, tr, va)

    def joint_head(head):
        setup = setup_joint(ds.modalities, ds.channels, x_clin.shape[1], 3, fusion=head,
                            options=JointOptions(epochs=args.epochs, batch_size=args.batch_size), device=device,
                            seed=0)
        return setup, joint_data

    models = {("resnet18", m): (lambda m=m: single(m)) for m in ds.modalities}
    models.update({(f"joint_{h}", "fusion_images_clinical"): (lambda h=h: joint_head(h)) for h in ("concat", "gated")})
    times = {key: [] for key in models}
    keys = list(models)
    for r in range(args.rounds):  # interleaved rounds, order rotated: machine noise hits every model alike
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            setup, data = models[key]()
            t0 = time.perf_counter()
            result = fit(setup, data, options)
            _sync(device)
            times[key].append((time.perf_counter() - t0) / result.epochs_run)
    rows = []
    for (model, modality), secs in times.items():
        sec = float(np.median(secs))
        rows.append({"model": model, "modality": modality, "s_per_epoch": sec, "s_per_epoch_rounds": secs})
    counts = {("resnet18", m): int(ds.mask[split.train_idx, j].sum()) for j, m in enumerate(ds.modalities)}
    for r in rows:
        if r["model"] == "resnet18":
            r["train_patients"] = r["train_images"] = counts[(r["model"], r["modality"])]
        else:
            r["train_patients"], r["train_images"] = int(len(split.train_idx)), int(ds.mask[split.train_idx].sum())
        r["train_images_per_s"] = r["train_images"] / r["s_per_epoch"]
    total_single = sum(r["s_per_epoch"] for r in rows if r["model"] == "resnet18")
    for r in rows:
        r["ratio_to_sum_of_single_modalities"] = r["s_per_epoch"] / total_single
    return {"n_patients": int(len(ds)), "present": {m: int(ds.mask[:, j].sum()) for j, m in enumerate(ds.modalities)},
            "clinical_features": int(x_clin.shape[1]), "rounds": args.rounds, "epochs_per_round": args.epochs,
            "rows": rows}


def throughput(args, device) -> dict:
    """Joint-network training throughput on synthetic device-resident data."""
    from fusion.engine import default_criterion, train_one_epoch
    from fusion.joint import JointData, JointOptions, setup_joint

    b = args.batch_size
    n = b * (args.steps + args.warmup)
    g = torch.Generator().manual_seed(0)
    images = {m: torch.randint(0, 256, (n, CHANNELS[m], args.size, args.size), dtype=torch.uint8, generator=g)
              .to(device) for m in MODALITIES}
    mask = torch.ones(n, 3, dtype=torch.bool)
    mask[torch.rand(n, generator=g) < 0.1, 2] = False
    clinical = torch.randn(n, 24, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g).numpy()
    out = []
    for head in ("concat", "gated"):
        setup = setup_joint(MODALITIES, CHANNELS, 24, 3, fusion=head,
                            options=JointOptions(batch_size=b, amp=args.amp), device=device, seed=0)
        data = JointData(images, mask, clinical, labels)
        criterion = default_criterion(None, device)
        kw = dict(transform=setup.transform_train, batch_size=b, device=device, generator=setup.generator,
                  amp=args.amp, channels_last=True)
        data.train_idx = np.arange(b * args.warmup)
        train_one_epoch(setup.model, criterion, setup.optimizer, data, **kw)
        data.train_idx = np.arange(b * args.warmup, n)
        _sync(device)
        t0 = time.perf_counter()
        train_one_epoch(setup.model, criterion, setup.optimizer, data, **kw)
        _sync(device)
        sec = time.perf_counter() - t0
        n_patients = len(data.train_idx)
        n_images = int(mask[data.train_idx].sum())
        out.append({"fusion": head, "patients_per_s": n_patients / sec, "images_per_s": n_images / sec,
                    "step_ms": 1000 * sec / args.steps})
        del setup
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"batch_size": b, "steps": args.steps, "rows": out}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.size, args.n, args.epochs, args.rounds, args.batch_size, args.steps, args.warmup = 32, 40, 1, 1, 8, 2, 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    res = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "size": args.size, "amp": bool(args.amp),
           "command": " ".join(["python bench/bench_joint.py", *(argv if argv is not None else sys.argv[1:])])}
    if args.throughput:
        res["throughput"] = throughput(args, device)
        for r in res["throughput"]["rows"]:
            print(f"joint_{r['fusion']:<7} {args.size} px  batch {args.batch_size}  {r['patients_per_s']:9.1f} "
                  f"patients/s  {r['images_per_s']:9.1f} images/s  {r['step_ms']:8.1f} ms/step")
    else:
        res["demo"] = demo_cost(args, device)
        print("| model | modality | train patients | s / epoch | train images / s | x sum of single modalities |")
        print("|---|---|---:|---:|---:|---:|")
        for r in res["demo"]["rows"]:
            print(f"| {r['model']} | {r['modality']} | {r['train_patients']} | {r['s_per_epoch']:.1f} | "
                  f"{r['train_images_per_s']:.1f} | {r['ratio_to_sum_of_single_modalities']:.2f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
