"""Named augmentation pipelines that run on ``uint8`` image batches, on CPU or GPU.

``build_transform(name, train, channels)`` returns a :class:`BatchTransform`: a module that
takes ``uint8`` images ``(B, C, H, W)`` (or one ``(C, H, W)``), augments them when
``train=True`` and returns normalised ``float32`` of the same shape. Images are held decoded
as ``uint8`` (see :mod:`fusion.dataset`), so an epoch costs no file decoding at all.

Pipelines (``name``):

``'none'``   no augmentation (only conversion and normalisation).
``'light'``  random resized crop (area 0.80-1, aspect 0.9-1.1), rotation +-10 deg,
             horizontal flip, brightness / contrast +-0.1.
``'study'``  the augmentation of the study's public code (Jiang et al. 2025, doi
             10.3389/fonc.2025.1542265): random resized crop (torchvision's defaults: area
             0.08-1, aspect 3/4-4/3), rotation +-30 deg, horizontal and vertical flips,
             colour jitter (brightness, contrast, saturation 0.2 -- the study's strengths are
             not reported; 0.2 is our assumption). Saturation acts on 3-channel images only.

Every random parameter is drawn **per sample**. (torchvision's v2 transforms applied to a
batch tensor draw one set of parameters for the whole batch, which is not augmentation in
the usual sense.) Two backends give per-sample randomness:

``'batched'`` (default)  crop, rotation and flips of all samples are composed into one
    affine matrix per sample and applied in one :func:`torch.nn.functional.grid_sample`
    call (bilinear, zero fill; one interpolation instead of two); colour jitter uses
    per-sample factors broadcast over the batch. Where torchvision retries an infeasible
    crop 10 times before a centre crop, this backend clips the crop to the image.
``'loop'``  the torchvision v2 pipeline applied image by image (reference behaviour).

``bench/bench_throughput.py`` times both (last lines of its report). On this project's
shared 2-core CPU, one thread, 3 x 128 x 128, batch 32, 'study' pipeline
(``python bench/bench_throughput.py --quick``): batched 15 ms, loop 75 ms per batch.

Normalisation: 3 channels use the ImageNet mean (0.485, 0.456, 0.406) and std (0.229,
0.224, 0.225); 1 channel uses mean 0.449 (the luma-weighted ImageNet mean, 0.299 R +
0.587 G + 0.114 B) and std 0.226 (the mean of the ImageNet stds), so a grey image fed to an
ImageNet backbone whose first convolution was summed over RGB sees inputs on the scale the
weights were trained for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from analysis.errors import ConfigError, did_you_mean

__all__ = ["AugmentSpec", "PIPELINES", "BatchTransform", "build_transform", "normalization",
           "IMAGENET_MEAN", "IMAGENET_STD", "GREY_MEAN", "GREY_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_MEAN = (0.449,)
GREY_STD = (0.226,)


@dataclass(frozen=True)
class AugmentSpec:
    """Strengths of one augmentation pipeline (``None`` / 0 switches a step off)."""

    crop_scale: tuple | None = None      # area fraction range of the random resized crop
    crop_ratio: tuple = (3 / 4, 4 / 3)   # aspect (w/h) range of the crop
    degrees: float = 0.0                 # rotation uniform in [-degrees, degrees]
    hflip: float = 0.0                   # probability of a horizontal flip
    vflip: float = 0.0                   # probability of a vertical flip
    brightness: float = 0.0              # factor uniform in [1-b, 1+b]
    contrast: float = 0.0
    saturation: float = 0.0

    @property
    def is_identity(self) -> bool:
        return (self.crop_scale is None and self.degrees == 0 and self.hflip == 0 and self.vflip == 0
                and self.brightness == 0 and self.contrast == 0 and self.saturation == 0)


PIPELINES = {
    "none": AugmentSpec(),
    "light": AugmentSpec(crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), degrees=10.0, hflip=0.5,
                         brightness=0.1, contrast=0.1),
    "study": AugmentSpec(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), degrees=30.0, hflip=0.5,
                         vflip=0.5, brightness=0.2, contrast=0.2, saturation=0.2),
}


def normalization(channels: int) -> tuple[tuple, tuple]:
    """``(mean, std)`` used for ``channels`` (1 or 3); see the module docstring."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    if channels == 1:
        return GREY_MEAN, GREY_STD
    raise ValueError(f"channels must be 1 or 3, got {channels!r}")


def _uniform(lo, hi, n, device, generator):
    return lo + (hi - lo) * torch.rand(n, device=device, generator=generator)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma ``(B, 1, H, W)`` of RGB ``x`` (a new tensor; ``x`` if grey)."""
    if x.shape[1] == 1:
        return x
    out = x[:, 0:1] * 0.299
    out.add_(x[:, 1:2], alpha=0.587).add_(x[:, 2:3], alpha=0.114)
    return out


def _grey_mean(x: torch.Tensor) -> torch.Tensor:
    """Per-sample mean luma ``(B, 1, 1, 1)`` (from channel means: no full-size temporary)."""
    m = x.mean(dim=(2, 3))
    if x.shape[1] == 3:
        m = m @ torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(3, 1)
    return m.view(-1, 1, 1, 1)


class BatchTransform(torch.nn.Module):
    """uint8 ``(B, C, H, W)`` -> augmented (if ``train``), normalised float32 ``(B, C, H, W)``.

    Parameters
    ----------
    spec : AugmentSpec
        Augmentation strengths (ignored when ``train`` is False).
    channels : {1, 3}
        Expected channel count (chooses the normalisation).
    train : bool
        Augment (True) or only normalise (False).
    backend : {'batched', 'loop'}
        Per-sample random parameters via one batched affine warp, or torchvision v2 per image.
    generator : torch.Generator, optional
        Source of randomness (on the images' device); default: torch's global generator.
    """

    def __init__(self, spec: AugmentSpec, channels: int, *, train: bool = True, backend: str = "batched",
                 generator: torch.Generator | None = None, name: str = ""):
        super().__init__()
        if backend not in ("batched", "loop"):
            raise ValueError(f"backend must be 'batched' or 'loop', got {backend!r}")
        self.spec, self.channels, self.train_mode, self.backend = spec, channels, train, backend
        self.name = name
        self.generator = generator
        mean, std = normalization(channels)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self._v2 = self._build_v2(spec, channels) if backend == "loop" else None

    def extra_repr(self) -> str:
        return f"name={self.name!r}, channels={self.channels}, train={self.train_mode}, backend={self.backend!r}"

    @staticmethod
    def _build_v2(spec: AugmentSpec, channels: int):
        steps = []
        if spec.crop_scale is not None:
            steps.append(_SameSizeRRC(spec.crop_scale, spec.crop_ratio))
        if spec.degrees:
            steps.append(v2.RandomRotation(spec.degrees, interpolation=v2.InterpolationMode.BILINEAR))
        if spec.hflip:
            steps.append(v2.RandomHorizontalFlip(spec.hflip))
        if spec.vflip:
            steps.append(v2.RandomVerticalFlip(spec.vflip))
        sat = spec.saturation if channels == 3 else 0
        if spec.brightness or spec.contrast or sat:
            steps.append(v2.ColorJitter(brightness=spec.brightness or None, contrast=spec.contrast or None,
                                        saturation=sat or None))
        return v2.Compose(steps) if steps else v2.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.ndim == 3
        if single:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected images (B, {self.channels}, H, W), got shape {tuple(x.shape)}")
        if self.train_mode and not self.spec.is_identity:
            if self.backend == "loop":
                x = torch.stack([self._v2(img) for img in x])
                out = x.float().div_(255)
            else:
                out = self._augment_batched(x.float().div_(255))
        else:
            out = x.float().div_(255)
        out.sub_(self.mean).div_(self.std)
        return out[0] if single else out

    # ------------------------------------------------------------------ batched backend
    def _augment_batched(self, x: torch.Tensor) -> torch.Tensor:
        s, g, dev = self.spec, self.generator, x.device
        b, _, h, w = x.shape
        if s.crop_scale is not None or s.degrees or s.hflip or s.vflip:
            if s.crop_scale is not None:
                area = _uniform(s.crop_scale[0], s.crop_scale[1], b, dev, g)
                logr = _uniform(math.log(s.crop_ratio[0]), math.log(s.crop_ratio[1]), b, dev, g)
                ratio = torch.exp(logr)  # width / height in pixels
                cw = torch.sqrt(area * ratio * h / w).clamp(max=1.0)  # fractions of width / height
                ch = torch.sqrt(area / ratio * w / h).clamp(max=1.0)
                cx = (torch.rand(b, device=dev, generator=g) * 2 - 1) * (1 - cw)
                cy = (torch.rand(b, device=dev, generator=g) * 2 - 1) * (1 - ch)
            else:
                cw = ch = torch.ones(b, device=dev)
                cx = cy = torch.zeros(b, device=dev)
            angle = _uniform(-s.degrees, s.degrees, b, dev, g) * (math.pi / 180)
            fx = torch.where(torch.rand(b, device=dev, generator=g) < s.hflip, -1.0, 1.0)
            fy = torch.where(torch.rand(b, device=dev, generator=g) < s.vflip, -1.0, 1.0)
            # output (u, v) in [-1, 1] -> input: c + S^-1 R S diag(cw fx, ch fy) (u, v),
            # S = diag(w/2, h/2) converts normalised to pixel units so rotation is rigid.
            cos, sin = torch.cos(angle), torch.sin(angle)
            sx, sy = cw * fx, ch * fy
            theta = torch.stack([
                torch.stack([cos * sx, -sin * (h / w) * sy, cx], dim=1),
                torch.stack([sin * (w / h) * sx, cos * sy, cy], dim=1),
            ], dim=1)
            grid = torch.bmm(self._base_grid(h, w, dev).expand(b, -1, -1), theta.transpose(1, 2))
            grid = grid.view(b, h, w, 2)  # same as F.affine_grid(theta, x.shape), cheaper on CPU
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        shape = (b, 1, 1, 1)
        # colour jitter in place (large temporaries are slow on CPU: page faults)
        if s.brightness:
            x.mul_(_uniform(1 - s.brightness, 1 + s.brightness, b, dev, g).view(shape)).clamp_(0, 1)
        if s.contrast:
            m = _grey_mean(x)
            c = _uniform(1 - s.contrast, 1 + s.contrast, b, dev, g).view(shape)
            x.mul_(c).add_(m * (1 - c)).clamp_(0, 1)
        if s.saturation and x.shape[1] == 3:
            f = _uniform(1 - s.saturation, 1 + s.saturation, b, dev, g).view(shape)
            gr = _grey(x).mul_(1 - f)
            x.mul_(f).add_(gr).clamp_(0, 1)
        return x

    def _base_grid(self, h: int, w: int, device) -> torch.Tensor:
        key = (h, w, str(device))
        cache = self.__dict__.setdefault("_grids", {})
        if key not in cache:
            ys = (torch.arange(h, device=device, dtype=torch.float32) * 2 + 1) / h - 1
            xs = (torch.arange(w, device=device, dtype=torch.float32) * 2 + 1) / w - 1
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            cache[key] = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(1, h * w, 3)
        return cache[key]


class _SameSizeRRC(torch.nn.Module):
    """v2.RandomResizedCrop whose output size is the input size (for the 'loop' backend)."""

    def __init__(self, scale, ratio):
        super().__init__()
        self.scale, self.ratio = scale, ratio

    def forward(self, img):
        size = list(img.shape[-2:])
        return v2.RandomResizedCrop(size, scale=self.scale, ratio=self.ratio, antialias=True)(img)


def build_transform(name: str, train: bool, channels: int, *, backend: str = "batched",
                    generator: torch.Generator | None = None) -> BatchTransform:
    """The named pipeline as a :class:`BatchTransform`.

    Parameters
    ----------
    name : {'none', 'light', 'study'}
        Pipeline (see the module docstring).
    train : bool
        Augment (training) or only normalise (validation, test, prediction).
    channels : {1, 3}
        Channels of the images (1 for B-mode, 3 for CDFI / elastography).
    backend : {'batched', 'loop'}, default 'batched'
    generator : torch.Generator, optional

    Raises
    ------
    ConfigError
        Unknown pipeline name (with a did-you-mean suggestion).

    Examples
    --------
    >>> import torch
    >>> t = build_transform("study", train=True, channels=3)
    >>> t(torch.zeros(4, 3, 32, 32, dtype=torch.uint8)).shape
    torch.Size([4, 3, 32, 32])
    """
    if name not in PIPELINES:
        raise ConfigError(f"--augment: unknown augmentation '{name}' (expected: {', '.join(PIPELINES)})"
                          f"{did_you_mean(name, PIPELINES)}")
    return BatchTransform(PIPELINES[name], channels, train=train, backend=backend, generator=generator, name=name)
