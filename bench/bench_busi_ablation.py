"""Pre-training ablation on real data: BUSI three-class, from scratch vs pre-trained on BUS-BRA.

The study this toolkit serves reports that pre-training on a public medical image set beat
training from scratch. This benchmark asks the same question on public data, honestly:

* arm ``scratch``: ``fusion.train busi`` (ResNet18, grey input, random initialisation);
* arm ``pretrained_bus_bra``: ``fusion.pretrain --data bus_bra`` (benign / malignant, official
  patient-disjoint fold 1 as its validation set; BUSI is never seen), then ``fusion.train busi
  --weights <that checkpoint>`` (the head is re-initialised for three classes).

Both arms go through the real library entry points (:func:`fusion.pretrain.run_pretraining`,
:func:`fusion.train.run_training`) with the same settings and seed, hence the same folds
(5-fold stratified, from :mod:`fusion.splits`), the same inner validation split for early
stopping and the same per-fold seeds; this script checks that every image has the same fold
in both arms. BUSI has no patient ids: every image is its own "patient", so the
cross-validation is **image-level**, and about one image in five has a near-duplicate
(Pawlowska et al. 2023) -- the absolute AUCs are optimistic; the paired comparison is fair.

Reported: out-of-fold macro one-vs-rest AUC (and per-class AUC, accuracy, balanced accuracy,
macro F1) with image(=patient)-level percentile bootstrap 95 % CIs
(:func:`fusion.evaluate.evaluate_predictions`), and the paired comparison
(:func:`fusion.evaluate.compare_models_delong`: paired bootstrap of the macro AUC difference,
DeLong per class). Output: a markdown table on stdout and in ``--report`` (default
``bench/results/busi_ablation.md``), the numbers in ``<report>.csv`` files, the run folders
under ``--out``.

Run (CPU, two processes of one thread each: the arms run side by side)::

    python bench/bench_busi_ablation.py --quick              # smoke test, < 1 minute
    python bench/bench_busi_ablation.py                      # the full run, 96 px (timings in the report)

Sizing (measured here with 2 folds x 1 epoch at 64 px, both arms side by side on the shared
2-core machine): BUS-BRA decode + one pre-training epoch 31 s; BUSI decode + 2 folds x 1 epoch
11-26 s. The defaults (96 px, <= 15 epochs, <= 10 pre-training epochs, early stopping) were
chosen from that to fit ~25 minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARMS = ("scratch", "pretrained_bus_bra")
CLASSES = ["malignant", "benign", "normal"]

REFERENCE = """\
Published reference points (different tasks and protocols; not directly comparable):

| source | data / task | protocol | model, input | AUC |
|---|---|---|---|---|
| MedMNIST v2 BreastMNIST (Yang et al. 2023, doi:10.1038/s41597-022-01721-8) | BUSI, **binary** (normal+benign vs malignant) | fixed 7:1:2 image split, from scratch | ResNet-18, 28 px | 0.901 |
| MedMNIST v2 BreastMNIST | same | same | best listed (Google AutoML Vision) | 0.919 |
| MedMNIST+ (Doerrich et al. 2024) | BUSI binary | ImageNet-pretrained, fine-tuned | ResNet-18, 224 px / DenseNet-121, 224 px | 0.899 / 0.897 |
| MedMNIST+ | BUSI binary | same | AlexNet, 128 px (best) | 0.940 |
| BUSI three-class studies with duplicate-aware splits (STUDY.md) | BUSI, 3 classes | ImageNet weights | various | ~0.95 macro |
| Jiang et al. 2025 (Front. Oncol., doi:10.3389/fonc.2025.1542265) | cervical lymph nodes, 3 classes | image-level 70/30, metrics on the early-stopping set | pre-trained ResNet, elastography | 0.925 |

Our numbers are three-class macro one-vs-rest AUCs, out-of-fold over 5 image-level folds,
with early stopping on an inner validation split only, at a low resolution and a short CPU
budget, and no ImageNet weights in either arm.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="BUSI three-class pre-training ablation: scratch vs BUS-BRA pre-trained.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  python bench/bench_busi_ablation.py --quick\n"
                                       "  python bench/bench_busi_ablation.py --size 96 --epochs 15 --jobs 2\n")
    p.add_argument("--quick", action="store_true", help="smoke test: a few images per class, 1 epoch, 2 folds")
    p.add_argument("--size", type=int, default=96, help="image size in pixels (default: 96)")
    p.add_argument("--backbone", default="resnet18", help="backbone (default: resnet18)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over BUSI images (default: 5)")
    p.add_argument("--epochs", type=int, default=15, help="max fine-tuning / scratch epochs (default: 15)")
    p.add_argument("--patience", type=int, default=4, help="early-stopping patience, both arms (default: 4)")
    p.add_argument("--pretrain-epochs", type=int, default=10, help="max BUS-BRA pre-training epochs (default: 10)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate, both arms (default: 1e-3)")
    p.add_argument("--augment", default="light", help="augmentation pipeline (default: light)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                   help="CPU bf16 autocast (default: on)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed: folds, inner split, initialisation (default: 0)")
    p.add_argument("--jobs", type=int, choices=[1, 2], default=2,
                   help="2: the two arms in two processes of one thread each; 1: one after the other")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default: 1)")
    p.add_argument("--out", default=None,
                   help="run folder with checkpoints (default: runs/busi_ablation[_quick], not committed)")
    p.add_argument("--report", default=None, help="markdown report (default: bench/results/busi_ablation[_quick].md)")
    p.add_argument("--report-only", action="store_true",
                   help="recompute the report from the finished runs in --out (no training)")
    p.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # worker mode
    return p


# ----------------------------------------------------------------------------- quick-mode data
def _quick_data(tmp: Path, per_class: int = 12) -> tuple[str, str]:
    """A small BUSI class-folder copy (symlinks) and a small BUS-BRA pre-training CSV."""
    import pandas as pd

    from fusion.manifests import bus_bra_manifest, busi_manifest

    busi, _ = busi_manifest(warn=False)
    root = Path(busi.attrs["image_root"])
    for c in CLASSES:
        (tmp / "busi" / c).mkdir(parents=True, exist_ok=True)
        for rel in busi.loc[busi["group"] == c, "image_2d"].head(per_class):
            dst = tmp / "busi" / rel
            if not dst.exists():
                os.symlink(root / rel, dst)
    bra, _ = bus_bra_manifest()
    small = pd.concat([bra[bra["group"] == g].head(40) for g in ("malignant", "benign")])
    pd.DataFrame({"path": [str(Path(bra.attrs["image_root"]) / p) for p in small["image_2d"]],
                  "label": small["group"].to_numpy(), "patient_id": small["patient_id"].to_numpy(),
                  "fold": small["official_fold"].to_numpy()}).to_csv(tmp / "bus_bra_small.csv", index=False)
    return str(tmp / "busi"), str(tmp / "bus_bra_small.csv")


# ----------------------------------------------------------------------------- one arm
def run_arm(arm: str, args, out: Path, busi: str, bus_bra: str) -> dict:
    """Train one arm through the library entry points; returns timings."""
    from fusion.config import PretrainConfig, TrainConfig
    from fusion.pretrain import run_pretraining
    from fusion.train import run_training

    common = dict(size=args.size, batch_size=args.batch_size, lr=args.lr, augment=args.augment, seed=args.seed,
                  device="cpu", threads=args.threads, amp=args.amp)
    timing = {"arm": arm}
    weights = "none"
    if arm == "pretrained_bus_bra":
        t0 = time.perf_counter()
        pcfg = PretrainConfig(data=bus_bra, backbone=args.backbone, channels=1, epochs=args.pretrain_epochs,
                              patience=args.patience, out=str(out / "pretrain_bus_bra"), **common)
        written = run_pretraining(pcfg, progress=False)
        weights = str([p for p in written if p.name.startswith("pretrained_")][0])
        timing["pretrain_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tcfg = TrainConfig(cohort=busi, backbones=[args.backbone], weights=weights, folds=args.folds,
                       epochs=args.epochs, patience=args.patience, n_boot=args.n_boot, out=str(out / arm), **common)
    run_training(tcfg, progress=False)
    timing["train_s"] = time.perf_counter() - t0
    (out / arm / "bench_timing.json").write_text(json.dumps(timing, indent=2))
    return timing


# ----------------------------------------------------------------------------- report
def _fmt(x, nd=3):
    import math

    return "NaN" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _reading(args, row, macro, per_class, adjusted, classes) -> str:
    """A plain-language reading of the numbers (generated, so it cannot drift from them)."""
    diff = -float(macro.difference)
    better = "pre-trained" if diff > 0 else "from-scratch"
    sig = "significant" if macro.p_value < 0.05 else "not significant"
    parts = [f"Reading: the {better} arm has the higher out-of-fold macro AUC (difference {diff:+.3f}, paired "
             f"bootstrap p = {_fmt(macro.p_value, 3)}: {sig} at 0.05)."]
    for c in classes:
        if adjusted[c] < 0.05:
            d = -float(per_class.loc[c].difference)
            parts.append(f"Per class, {c}-vs-rest differs after Holm adjustment ({d:+.3f}, p_Holm = "
                         f"{_fmt(adjusted[c], 4)}).")
    if "malignant" in classes:
        m0, m1 = row(ARMS[0], "auc", "malignant").estimate, row(ARMS[1], "auc", "malignant").estimate
        parts.append(f"The task closest to MedMNIST's BreastMNIST (binary: malignant vs normal+benign) is our "
                     f"malignant-vs-rest AUC: {m0:.3f} from scratch, {m1:.3f} pre-trained, against 0.901 for "
                     f"ResNet-18 at 28 px from scratch there -- a different protocol (one fixed image split, "
                     f"test set of 156 images, no CIs), so only the order of magnitude compares.")
    parts.append(f"One seed and one resolution ({args.size} px); the BUSI near-duplicates make both arms' "
                 f"absolute AUCs optimistic, but they affect both arms alike (same folds), so the paired "
                 f"difference is the informative number.")
    return " ".join(parts)


def compare(args, out: Path, command: str, timings: dict, report: Path) -> str:
    import pandas as pd

    from fusion.checkpoint import load_checkpoint
    from fusion.evaluate import compare_models_delong, evaluate_predictions

    frames = []
    for arm in ARMS:
        f = pd.read_csv(out / arm / "oof_predictions.csv", dtype={"patient_id": str})
        f["model"] = arm
        frames.append(f)
    a, b = (f.set_index("patient_id")["fold"] for f in frames)
    same_folds = bool(a.sort_index().equals(b.sort_index()))
    if not same_folds:
        raise SystemExit("error: the two arms did not use the same folds; the comparison would not be paired")
    oof = pd.concat(frames, ignore_index=True)
    classes = [c[2:] for c in oof.columns if c.startswith("p_")]
    metrics = evaluate_predictions(oof, classes, n_boot=args.n_boot, seed=args.seed)
    comp = compare_models_delong(oof, classes, n_boot=args.n_boot, seed=args.seed)
    stem = report.with_suffix("")
    metrics.to_csv(f"{stem}_metrics.csv", index=False)
    comp.to_csv(f"{stem}_comparison.csv", index=False)

    manifest = json.loads((out / ARMS[0] / "run_manifest.json").read_text())
    src = manifest.get("data_source") or {}
    epochs = {}
    for arm in ARMS:
        best = [int(load_checkpoint(p)["best_epoch"]) + 1
                for p in sorted((out / arm / "checkpoints").rglob("model.pt"))]
        epochs[arm] = best
    pre = None
    pre_path = out / "pretrain_bus_bra" / f"pretrained_{args.backbone}.pt"
    if pre_path.is_file():
        pre = load_checkpoint(pre_path)

    def row(arm, metric, cls=""):
        m = metrics[(metrics["model"] == arm) & (metrics["metric"] == metric) & (metrics["class"] == cls)].iloc[0]
        return m

    lines = []
    kind = "QUICK SMOKE TEST, not a result" if args.quick else "full run"
    lines.append(f"# BUSI three-class pre-training ablation ({kind})\n")
    lines.append("Command:\n\n```\n" + command + "\n```\n")
    lines.append(f"- Data: {src.get('path', 'busi')} -- {src.get('n_rows')} images, "
                 f"{src.get('n_patients')} 'patients' (unit of analysis: **{src.get('unit_of_analysis')}**).")
    if src.get("notes"):
        lines.append(f"- Note: {src['notes'][0]}.")
    lines.append(f"- Split: {args.folds}-fold stratified cross-validation over images ({manifest['splits'][0]['kind']} "
                 f"folds from fusion.splits, seed {args.seed}); early stopping (patience {args.patience}, max "
                 f"{args.epochs} epochs) on an inner validation split of each fold's training images; every image "
                 f"predicted once, out of fold. Both arms: identical folds (checked), seeds and settings.")
    lines.append(f"- Model: {args.backbone}, 1-channel {args.size} px input, AdamW lr {args.lr}, batch "
                 f"{args.batch_size}, augmentation '{args.augment}', CPU {'bf16 autocast' if args.amp else 'fp32'}, "
                 f"{args.threads} thread(s) per process, {args.jobs} process(es).")
    if pre is not None:
        lines.append(f"- Pre-training: BUS-BRA only (benign/malignant; {pre['source']}), {pre['n_train']} train / "
                     f"{pre['n_val']} validation images, best epoch {pre['best_epoch'] + 1} of max "
                     f"{args.pretrain_epochs}, validation accuracy {pre['val_accuracy']:.3f}. BUSI is never seen.")
    lines.append("- Best epochs per fold: " + "; ".join(f"{k}: {v}" for k, v in epochs.items()) + ".")
    lines.append("- Wall time: " + "; ".join(f"{k}: " + ", ".join(f"{n} {v / 60:.1f} min" for n, v in t.items()
                                                                       if n != "arm") for k, t in timings.items())
                 + ".\n")

    lines.append("| arm | macro AUC (95% CI) | " + " | ".join(f"AUC {c}" for c in classes)
                 + " | accuracy | balanced acc. | macro F1 |")
    lines.append("|---" * (5 + len(classes)) + "|")
    for arm in ARMS:
        m = row(arm, "auc")
        cells = [f"{_fmt(m.estimate)} ({_fmt(m.ci_low)}-{_fmt(m.ci_high)})"]
        for c in classes:
            r = row(arm, "auc", c)
            cells.append(f"{_fmt(r.estimate)} ({_fmt(r.ci_low)}-{_fmt(r.ci_high)})")
        for metric in ("accuracy", "balanced_accuracy", "f1"):
            r = row(arm, metric)
            cells.append(f"{_fmt(r.estimate)} ({_fmt(r.ci_low)}-{_fmt(r.ci_high)})")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines.append("")
    macro = comp[(comp["split"] == "test") & (comp["class"] == "")].iloc[0]
    lines.append(f"Paired comparison (same {int(macro.n)} images, split 'test' = out-of-fold): "
                 f"macro AUC {macro.model_b} - {macro.model_a} = {_fmt(-macro.difference)} "
                 f"({macro.method}: z = {_fmt(-macro.statistic, 2)}, p = {_fmt(macro.p_value, 4)}).")
    lines.append("Per class (DeLong paired test, one vs rest):\n")
    from analysis.multiplicity import holm

    per_class = comp[(comp["split"] == "test") & (comp["class"] != "")].set_index("class").loc[classes]
    adjusted = dict(zip(classes, holm(per_class["p_value"].to_numpy(dtype=float))))
    lines.append("| class | AUC scratch | AUC pre-trained | difference | p | p (Holm, 3 classes) |")
    lines.append("|---|---|---|---|---|---|")
    for c in classes:
        r = per_class.loc[c]
        lines.append(f"| {c} | {_fmt(r.auc_a)} | {_fmt(r.auc_b)} | {_fmt(-r.difference)} | {_fmt(r.p_value, 4)} "
                     f"| {_fmt(adjusted[c], 4)} |")
    lines.append("")
    lines.append(_reading(args, row, macro, per_class, adjusted, classes))
    lines.append("")
    lines.append("CIs: percentile bootstrap over images (= patients here), "
                 f"{args.n_boot} resamples, seed {args.seed} (fusion.evaluate.evaluate_predictions). "
                 "Files: " + f"{stem.name}_metrics.csv, {stem.name}_comparison.csv; runs in {out}.\n")
    lines.append(REFERENCE.replace("over 5 image-level folds", f"over {args.folds} image-level folds"))
    text = "\n".join(lines)
    report.write_text(text + "\n", encoding="utf-8")
    return text


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    suffix = "_quick" if args.quick else ""
    out = Path(args.out or REPO / "runs" / f"busi_ablation{suffix}")
    report = Path(args.report or REPO / "bench" / "results" / f"busi_ablation{suffix}.md")
    if args.quick:
        args.epochs, args.pretrain_epochs, args.folds, args.n_boot = 1, 1, 2, 200
        args.size = min(args.size, 32)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "_quick_data"
    if args.quick:
        busi, bus_bra = _quick_data(data_dir)
    else:
        busi, bus_bra = "busi", "bus_bra"

    if args.arm:  # worker
        import torch

        torch.set_num_threads(args.threads)
        run_arm(args.arm, args, out, busi, bus_bra)
        return 0

    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(__file__).relative_to(REPO)),
                                                              *(sys.argv[1:] if argv is None else argv)])
    if args.report_only:
        saved = out / "bench_command.txt"
        command = saved.read_text().strip() if saved.is_file() else command
        timings = {arm: json.loads((out / arm / "bench_timing.json").read_text()) for arm in ARMS}
        print(compare(args, out, command, timings, report))
        print(f"wrote: {report}, {report.with_suffix('')}_metrics.csv, {report.with_suffix('')}_comparison.csv")
        return 0
    (out / "bench_command.txt").write_text(command + "\n")
    t0 = time.perf_counter()
    timings = {}
    if args.jobs == 2:
        procs = {}
        for arm in ARMS:
            argv_arm = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv),
                        "--arm", arm, "--out", str(out), "--report", str(report)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
            log = open(out / f"{arm}.log", "w")
            procs[arm] = (subprocess.Popen(argv_arm, env=env, stdout=log, stderr=subprocess.STDOUT), log)
        failed = []
        for arm, (proc, log) in procs.items():
            if proc.wait() != 0:
                failed.append(arm)
            log.close()
        if failed:
            print(f"error: arm(s) {', '.join(failed)} failed; see {out}/<arm>.log", file=sys.stderr)
            return 1
        for arm in ARMS:
            timings[arm] = json.loads((out / arm / "bench_timing.json").read_text())
    else:
        import torch

        torch.set_num_threads(args.threads)
        for arm in ARMS:
            timings[arm] = run_arm(arm, args, out, busi, bus_bra)
    total = time.perf_counter() - t0
    text = compare(args, out, command, timings, report)
    print(text)
    print(f"\ntotal wall time {total / 60:.1f} min")
    print(f"wrote: {report}, {report.with_suffix('')}_metrics.csv, {report.with_suffix('')}_comparison.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
