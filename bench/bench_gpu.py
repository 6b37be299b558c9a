"""GPU training throughput and correctness check (ResNet18, GPU-resident uint8 data, bf16).

Goal (issue 3): >= 8,000 training images/s for ResNet18 at 224 px on one H100 with the data
held on the GPU as uint8, per-sample augmentation done on the GPU in batches, channels_last
and bf16 autocast.  The script also checks correctness, so a fast number cannot hide a wrong
computation:

1. fp32 forward on the GPU (TF32 off) agrees with the CPU forward of the same weights;
2. bf16-autocast logits agree with fp32 logits within bf16 precision;
3. a short run on a learnable synthetic task (the class is written into the image
   brightness) brings the training loss well below log(3) and accuracy above chance.

It needs only torch and torchvision (no ``analysis`` import), so it runs on a bare GPU image.

Examples
--------
    python bench/bench_gpu.py                       # full run on the first CUDA device
    python bench/bench_gpu.py --compile             # also time torch.compile
    python bench/bench_gpu.py --device cpu --quick  # smoke test on a CPU-only machine
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="ResNet18 training throughput with GPU-resident uint8 data and bf16.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples\n--------\n", 1)[1],
    )
    p.add_argument("--device", default="cuda", help="device (default: cuda)")
    p.add_argument("--size", type=int, default=224, help="training size in px (default: 224)")
    p.add_argument("--stored-size", type=int, default=256, help="stored uint8 image size (default: 256)")
    p.add_argument("--n-images", type=int, default=8192, help="images held on the device (default: 8192)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512], help="(default: 256 512)")
    p.add_argument("--steps", type=int, default=40, help="timed steps per setting (default: 40)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default: 10)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a CPU smoke test")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    return p


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_augment(batch_u8: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random resized crop + horizontal flip on the device, then normalise.

    One ``affine_grid``/``grid_sample`` call warps every image with its own random scale,
    translation and flip, so the whole batch is augmented in two kernels.
    """
    b = batch_u8.shape[0]
    dev = batch_u8.device
    x = batch_u8.float()
    scale = torch.empty(b, device=dev).uniform_(0.6, 1.0, generator=gen)  # side fraction kept
    tx = (torch.rand(b, device=dev, generator=gen) * 2 - 1) * (1 - scale)
    ty = (torch.rand(b, device=dev, generator=gen) * 2 - 1) * (1 - scale)
    flip = torch.where(torch.rand(b, device=dev, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = scale * flip
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = (x - MEAN.to(dev)) / STD.to(dev)
    return x.contiguous(memory_format=torch.channels_last)


def make_data(n, stored, device, seed=0):
    """uint8 images whose class (0..2) sets the brightness of a central square, plus noise."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    imgs = torch.randint(0, 96, (n, 3, stored, stored), generator=g, dtype=torch.uint8)
    c0, c1 = stored // 4, 3 * stored // 4
    bright = (labels * 70 + 40).to(torch.uint8).view(n, 1, 1, 1)
    imgs[:, :, c0:c1, c0:c1] = torch.clamp(imgs[:, :, c0:c1, c0:c1].int() + bright.int(), 0, 255).to(torch.uint8)
    return imgs.to(device), labels.to(device)


def time_training(model, data, labels, batch, size, steps, warmup, device, amp, augment=True, fixed=False):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator(device=device).manual_seed(0)
    n = data.shape[0]
    fixed_x = gpu_augment(data[:batch], size, gen)
    fixed_y = labels[:batch]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def step():
        if fixed:
            x, y = fixed_x, fixed_y
        else:
            idx = torch.randint(0, n, (batch,), device=device, generator=gen)
            x = gpu_augment(data[idx], size, gen) if augment else data[idx].float()
            y = labels[idx]
        with autocast:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    dt = time.perf_counter() - t0
    return steps * batch / dt, loss.item()


def correctness(device, size):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(8, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        dev_model = model.to(device)
        out32 = dev_model(x.to(device)).cpu()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out16 = dev_model(x.to(device).contiguous(memory_format=torch.channels_last)).float().cpu()
    scale = ref.abs().max().item()
    return {
        "fp32_device_vs_cpu_max_abs_diff": (out32 - ref).abs().max().item(),
        "bf16_vs_fp32_max_rel_diff": (out16 - ref).abs().max().item() / scale,
        "bf16_argmax_agreement": (out16.argmax(1) == ref.argmax(1)).float().mean().item(),
    }


def learnability(device, size, n=2048, steps=150, batch=128):
    torch.manual_seed(0)
    data, labels = make_data(n, size + size // 8, device, seed=1)
    model = torchvision.models.resnet18(num_classes=3).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator(device=device).manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), device=device, generator=gen)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(gpu_augment(data[idx], size, gen)), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        test, ytest = make_data(512, size + size // 8, device, seed=2)
        x = F.interpolate(test.float(), size=(size, size), mode="bilinear", antialias=True)
        x = ((x - MEAN.to(device)) / STD.to(device)).contiguous(memory_format=torch.channels_last)
        acc = (model(x).argmax(1) == ytest).float().mean().item()
    return {"final_train_loss": loss.item(), "log3": math.log(3), "heldout_accuracy": acc}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.size, args.stored_size, args.n_images = 64, 72, 256
        args.batch_sizes, args.steps, args.warmup = [32], 3, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device is available; use --device cpu --quick for a smoke test", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    info = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "command": "python bench/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(json.dumps(info), flush=True)
    results = {"info": info, "correctness": correctness(device, args.size if not args.quick else 64)}
    print("correctness:", json.dumps(results["correctness"]), flush=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    data, labels = make_data(args.n_images, args.stored_size, device)
    rows = []
    variants = [("eager", False)] + ([("compiled", True)] if args.compile else [])
    for name, comp in variants:
        for bs in args.batch_sizes:
            for amp in ([True, False] if name == "eager" else [True]):
                torch.manual_seed(0)
                model = torchvision.models.resnet18(num_classes=3).to(device).to(memory_format=torch.channels_last)
                run_model = torch.compile(model) if comp else model
                real, loss = time_training(run_model, data, labels, bs, args.size, args.steps, args.warmup, device, amp)
                bare, _ = time_training(run_model, data, labels, bs, args.size, args.steps, args.warmup, device, amp, fixed=True)
                row = {
                    "mode": name, "batch": bs, "precision": "bf16 autocast" if amp else "fp32/tf32",
                    "img_per_s": round(real, 1), "model_only_img_per_s": round(bare, 1),
                    "pipeline_efficiency": round(real / bare, 3), "last_loss": round(loss, 4),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    results["throughput"] = rows
    results["learnability"] = learnability(device, args.size if not args.quick else 64, steps=150 if not args.quick else 5)
    print("learnability:", json.dumps(results["learnability"]), flush=True)
    if device.type == "cuda":
        results["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    print("\n| mode | batch | precision | img/s | model-only img/s | efficiency |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['batch']} | {r['precision']} | {r['img_per_s']:.0f} | "
              f"{r['model_only_img_per_s']:.0f} | {r['pipeline_efficiency']:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
