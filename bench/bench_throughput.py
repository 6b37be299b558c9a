"""Training throughput on BUSI: a naive per-item pipeline (like the study's) against ours.

Same model (torchvision ResNet18, random init, 3 classes), image size (128 px), batch (32),
optimiser (Adam, lr 8e-4) and augmentation strengths (the study's: random resized crop,
rotation +-30 deg, horizontal + vertical flips, colour jitter 0.2) in every setting:

(a) naive   torchvision ``ImageFolder`` over a temporary symlink tree of BUSI; PIL decode
            and v1 transforms per item, every epoch; ``DataLoader(num_workers=0)``; fp32.
(b) ours    images decoded once into uint8 tensors (:class:`fusion.dataset.MultimodalDataset`,
            3 channels so the model is the same), per-sample batch augmentation on tensors
            (:func:`fusion.transforms.build_transform`, 'batched' backend), channels_last,
            CPU bf16 autocast.
(c) model   the bare training step on one fixed, pre-normalised batch: fp32 (the naive
            pipeline's ceiling) and channels_last + bf16 (ours's ceiling).

Reported: images/s of each; pipeline efficiency = model-only step time / real step time (goal
>= 0.9), speed-up (b)/(a) (goal >= 3x); the one-off decode time of (b); and the time per
batch of the two augmentation backends. torch runs with ONE thread
(``torch.set_num_threads(1)``, ``--threads`` changes it) so that the numbers describe the
pipeline, not how many idle cores the machine had. Timings exclude warm-up steps.

Examples
--------
    python bench/bench_throughput.py --quick            # smoke run (a few steps, 64 images)
    python bench/bench_throughput.py                    # full run (about 10 minutes on 1 core)
    python bench/bench_throughput.py --steps 40 --threads 2 --json throughput.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torchvision import transforms as T

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fusion.dataset import MultimodalDataset  # noqa: E402
from fusion.manifests import busi_manifest, resolve_data_root  # noqa: E402
from fusion.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform  # noqa: E402


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Training throughput on BUSI: naive per-item pipeline vs decoded-once uint8 tensors.",
        formatter_class=argparse.RawDescriptionHelpFormatter, add_help=add_help,
        epilog=__doc__.split("Examples\n--------\n", 1)[1])
    p.add_argument("--size", type=int, default=128, help="image size in px (default: 128)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per setting (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds (default: 4)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--n-images", type=int, default=None, help="use only the first N BUSI images (default: all)")
    p.add_argument("--data-root", default=None, help="BUSI folder (default: $LYMPH_SHARED_DATA/busi)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quick", action="store_true", help="smoke run: 64 images, 2 timed steps, 1 warm-up")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    return p


def _model(seed: int, channels_last: bool):
    torch.manual_seed(seed)
    m = torchvision.models.resnet18(weights=None, num_classes=3)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m.train()


def _step(model, opt, x, y, bf16: bool):
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def _timed(step_fn, steps: int, warmup: int) -> float:
    """Mean seconds per step over ``steps`` after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step_fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    return (time.perf_counter() - t0) / steps


def _interleaved(step_fns: dict, steps: int, warmup: int, rounds: int) -> dict:
    """Seconds per step of each setting: the median over ``rounds`` rounds, each round timing
    every setting in turn for ``steps // rounds`` steps, so that a slow spell of the machine
    hits all settings alike instead of whichever happened to run then."""
    for fn in step_fns.values():
        for _ in range(warmup):
            fn()
    per = max(1, steps // rounds)
    times = {k: [] for k in step_fns}
    for _ in range(rounds):
        for k, fn in step_fns.items():
            times[k].append(_timed(fn, per, 0))
    return {k: float(statistics.median(v)) for k, v in times.items()}


def naive(df, busi_root: Path, args) -> float:
    """(a) ImageFolder + v1 transforms per item, DataLoader(num_workers=0), fp32."""
    tmp = tempfile.TemporaryDirectory(prefix="busi_tree_")
    tree = Path(tmp.name)
    for rel in df["image_2d"]:
        target = tree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(busi_root / rel, target)
    tf = T.Compose([T.RandomResizedCrop(args.size), T.RandomRotation(30), T.RandomHorizontalFlip(),
                    T.RandomVerticalFlip(), T.ColorJitter(0.2, 0.2, 0.2), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ds = torchvision.datasets.ImageFolder(str(tree), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=0,
                                         drop_last=True, generator=torch.Generator().manual_seed(args.seed))
    model = _model(args.seed, channels_last=False)
    opt = torch.optim.Adam(model.parameters(), lr=8e-4)
    it = iter(loader)

    def step():
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        _step(model, opt, x, y, bf16=False)
    step.tmp = tmp  # keeps the symlink tree alive while the step is used
    return step


def ours(ds: MultimodalDataset, args) -> float:
    """(b) uint8 tensors in RAM, batched per-sample augmentation, channels_last, bf16."""
    transform = build_transform("study", train=True, channels=3,
                                generator=torch.Generator().manual_seed(args.seed))
    model = _model(args.seed, channels_last=True)
    opt = torch.optim.Adam(model.parameters(), lr=8e-4)
    g = torch.Generator().manual_seed(args.seed)
    state = {"perm": torch.randperm(len(ds), generator=g), "pos": 0}

    def step():
        if state["pos"] + args.batch_size > len(ds):
            state["perm"], state["pos"] = torch.randperm(len(ds), generator=g), 0
        idx = state["perm"][state["pos"]:state["pos"] + args.batch_size]
        state["pos"] += args.batch_size
        batch = ds.batch(idx)
        x = transform(batch["images"]["2d"]).contiguous(memory_format=torch.channels_last)
        _step(model, opt, x, batch["label"], bf16=True)
    return step


def model_only(args, bf16: bool) -> float:
    """(c) the bare training step on one fixed batch."""
    model = _model(args.seed, channels_last=bf16)
    opt = torch.optim.Adam(model.parameters(), lr=8e-4)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, 3, args.size, args.size, generator=g)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (args.batch_size,), generator=g)
    return lambda: _step(model, opt, x, y, bf16=bf16)


def augmentation_ms(ds: MultimodalDataset, args) -> dict:
    x = ds.batch(torch.arange(min(args.batch_size, len(ds))))["images"]["2d"]
    out = {}
    for backend in ("batched", "loop"):
        t = build_transform("study", train=True, channels=3, backend=backend)
        out[backend] = 1000 * _timed(lambda: t(x), max(3, args.steps), 1)
    return out


def cpu_info() -> dict:
    """CPU model and its bf16 instructions (from /proc/cpuinfo; Linux only).

    CPU bf16 training speed depends on them: Intel AMX tiles (``amx_bf16``) run bf16 matrix
    products several times faster than the AVX-512 ``avx512_bf16`` dot-product instructions.
    """
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": model, "bf16": "unknown", "flags": []}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    found = sorted(f for f in flags if f.startswith("amx") or f in {"avx512_bf16", "avx512_vnni", "avx_vnni"})
    bf16 = "AMX" if "amx_bf16" in flags else ("AVX-512 BF16 (no AMX)" if "avx512_bf16" in flags else "none")
    return {"model": model, "bf16": bf16, "flags": found}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.rounds, args.n_images = 2, 1, 1, args.n_images or 64
    torch.set_num_threads(args.threads)
    busi_root = resolve_data_root(args.data_root, "busi")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the image-level caveat does not matter for timing
        df, schema = busi_manifest(busi_root if args.data_root else None)
    if args.n_images:
        df = df.iloc[torch.randperm(len(df), generator=torch.Generator().manual_seed(args.seed))[:args.n_images]
                     .sort().values.numpy()]
    n_batches = len(df) // args.batch_size
    if n_batches < 1:
        print(f"error: need at least {args.batch_size} images, got {len(df)}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    ds = MultimodalDataset(df, schema, root=busi_root, size=args.size, channels={"2d": 3}, progress=True)
    decode_s = time.perf_counter() - t0

    fns = {"naive_fp32": naive(df, busi_root, args), "ours_bf16": ours(ds, args),
           "model_fp32": model_only(args, bf16=False), "model_bf16": model_only(args, bf16=True)}
    res = _interleaved(fns, args.steps, args.warmup, args.rounds)
    fns["naive_fp32"].tmp.cleanup()
    aug = augmentation_ms(ds, args)
    ips = {k: args.batch_size / v for k, v in res.items()}
    eff_ours = res["model_bf16"] / res["ours_bf16"]
    eff_naive = res["model_fp32"] / res["naive_fp32"]
    speedup = ips["ours_bf16"] / ips["naive_fp32"]

    cpu = cpu_info()
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO)] + list(argv or sys.argv[1:]))
    lines = [
        f"Training throughput, ResNet18 (3 classes), {args.size} px, batch {args.batch_size}, "
        f"{len(df)} BUSI images, torch threads {args.threads}, {args.steps} timed steps per setting "
        f"in {args.rounds} interleaved rounds, median of round means (+{args.warmup} warm-up)" + (" -- QUICK SMOKE RUN, numbers not meaningful" if args.quick else ""),
        "",
        "| setting | ms / step | images/s | pipeline efficiency |",
        "|---|---:|---:|---:|",
        f"| (a) naive: ImageFolder + PIL + v1 transforms per item, fp32 | {1000 * res['naive_fp32']:.0f} | "
        f"{ips['naive_fp32']:.1f} | {eff_naive:.2f} |",
        f"| (b) ours: uint8 tensors + batched augmentation, channels_last, bf16 | {1000 * res['ours_bf16']:.0f} | "
        f"{ips['ours_bf16']:.1f} | {eff_ours:.2f} |",
        f"| (c) model step only, fp32 | {1000 * res['model_fp32']:.0f} | {ips['model_fp32']:.1f} | |",
        f"| (c) model step only, channels_last + bf16 | {1000 * res['model_bf16']:.0f} | {ips['model_bf16']:.1f} | |",
        "",
        f"- speed-up (b)/(a): **{speedup:.2f}x** (goal >= 3x); pipeline efficiency of (b): **{eff_ours:.2f}** "
        "(goal >= 0.9; model-only bf16 step time / real step time)",
        f"- one-off decode of {len(df)} images into uint8 tensors: {decode_s:.1f} s",
        f"- 'study' augmentation of one batch on CPU: batched backend {aug['batched']:.1f} ms, "
        f"per-sample v2 loop {aug['loop']:.1f} ms",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}",
        f"- CPU: {cpu['model']}; bf16 hardware: {cpu['bf16']}; torch CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}",
        "",
        f"command: `{cmd}`",
    ]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": cmd, "args": vars(args), "seconds_per_step": res, "images_per_s": ips,
            "pipeline_efficiency_ours": eff_ours, "pipeline_efficiency_naive": eff_naive,
            "speedup": speedup, "decode_s": decode_s, "augmentation_ms": aug,
            "torch": torch.__version__, "torchvision": torchvision.__version__, "cpu": cpu}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
