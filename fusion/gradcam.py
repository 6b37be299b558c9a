"""Grad-CAM heat maps for the toolkit's backbones, their overlays, and a CLI.

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV, doi:10.1109/ICCV.2017.74): for a target class ``c`` with
logit ``y_c`` and the activations ``A^k`` (channel ``k``) of a spatial layer,

    alpha_k = mean_{i,j} d y_c / d A^k_ij        (channel weights: spatially averaged gradients)
    L_c     = ReLU( sum_k alpha_k A^k )          (the class-discriminative map)

``L_c`` is upsampled bilinearly to the input size and divided by its maximum, so each map
lies in [0, 1] (a map that is zero everywhere stays zero). The layer is the backbone's
registered :attr:`fusion.backbones.BackboneInfo.gradcam_layer` (the last spatial block) unless
another is named. For a vision transformer the layer outputs tokens ``(B, N, C)``: its patch
tokens are put back on their ``h x w`` grid (:meth:`fusion.backbones.Backbone.tokens_to_grid`,
class token dropped) and the same formula applies, as ``pytorch-grad-cam``'s ``reshape_transform``
does; the registered layer is the first norm of the last block (the last block's own patch
outputs never reach the class token that is classified, so their gradients are zero). The study we reproduce (Jiang et al. 2025, doi:10.3389/fonc.2025.1542265)
used the ``pytorch-grad-cam`` package on the last block; this is a small implementation of
the same method with torch hooks (no extra dependency). Gradients are taken with
:func:`torch.autograd.grad`, so no parameter's ``.grad`` is touched, and the hook is removed
even when the forward pass fails.

:func:`cam_inside_mask` is the share of the heat-map mass inside a lesion mask -- the
quantitative check the BUS-BRA masks allow (``masks/mask_<id>.png`` for ``images/bus_<id>.png``).
A value near the lesion's area share means the map is no more concentrated on the lesion
than a uniform map would be.

``python -m fusion.gradcam CHECKPOINT IMAGE [IMAGE ...]`` loads a fold model written by
``fusion.train`` (``checkpoints/<modality>/<backbone>/fold<k>/model.pt``), prepares each image
exactly as training did (:func:`fusion.images.load_image` with the checkpoint's size and
channels, padding to keep the aspect ratio, then the evaluation transform), and writes one
overlay PNG per image, a panel of all images, and ``gradcam.csv``.

``python -m fusion.gradcam --run RUN --modality MOD`` explains *test* patients honestly
(:func:`explain_test_patients`): it picks a few patients per class from the run's
out-of-fold predictions and explains each one with the model of the fold in which it was a
test patient, i.e. a model that never saw it.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from analysis.errors import AnalysisWarning, CohortError, ConfigError, did_you_mean

__all__ = ["grad_cam", "cam_inside_mask", "overlay", "overlay_png", "auto_gradcam_layer", "overlay_panel", "load_gradcam_model",
           "explain_test_patients", "fold_role", "image_patients", "degenerate_reasons", "DegenerateHeatmapWarning",
           "MIN_FEATURE_SIDE", "UNIFORM_RANGE", "build_parser", "main"]

#: A last feature map with a side shorter than this many cells gives a heat map that is a bilinear
#: blow-up of a handful of numbers (ResNet-18 at 64 px: 2 x 2): it cannot localise anything.
MIN_FEATURE_SIDE = 3
#: A normalised map (maximum 1) whose minimum is within this of its maximum is uniform: it says
#: "everywhere", i.e. nothing (the mask share of a uniform map is the mask's area share).
UNIFORM_RANGE = 0.05


class DegenerateHeatmapWarning(AnalysisWarning):
    """A Grad-CAM map that cannot localise: a tiny last feature map, an all-zero or a uniform map."""


def degenerate_reasons(cams, feature_hw) -> list:
    """Why each map is degenerate (``''`` when it is not).

    Parameters
    ----------
    cams : torch.Tensor
        ``(B, H, W)`` maps of :func:`grad_cam` (each divided by its maximum).
    feature_hw : (int, int)
        Height and width of the Grad-CAM layer's feature map.

    Returns
    -------
    list of str
        Per map, ``''`` or a reason: the feature map is smaller than :data:`MIN_FEATURE_SIDE`
        cells on a side; the map is zero everywhere (no positive class evidence); or its
        range (maximum - minimum) is below :data:`UNIFORM_RANGE` (uniform).
    """
    h, w = (int(v) for v in feature_hw)
    small = (f"last feature map is {h} x {w} (fewer than {MIN_FEATURE_SIDE} cells a side): the map is an "
             "interpolation of a few numbers; use larger images or an earlier layer (--layer)"
             if min(h, w) < MIN_FEATURE_SIDE else "")
    out = []
    for cam in cams:
        peak, low = float(cam.max()), float(cam.min())
        if peak <= 0:
            why = "zero map (no positive evidence for the class)"
        elif peak - low < UNIFORM_RANGE:
            why = f"uniform map (range {peak - low:.3f} < {UNIFORM_RANGE})"
        else:
            why = ""
        out.append("; ".join(t for t in (small, why) if t))
    return out


def _warn_degenerate(reasons) -> None:
    bad = [r for r in reasons if r]
    if bad:
        import warnings

        warnings.warn(f"{len(bad)} of {len(reasons)} Grad-CAM map(s) are degenerate ({bad[0]}); they do not show "
                      "where the model looks", DegenerateHeatmapWarning, stacklevel=3)


# --------------------------------------------------------------------------- core


def _resolve_layer(model: nn.Module, layer) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    if layer is None:
        info = getattr(model, "info", None)
        if info is None or not getattr(info, "gradcam_layer", None):
            raise ValueError("model has no registered Grad-CAM layer (model.info.gradcam_layer); pass layer=")
        layer = info.gradcam_layer
    try:
        return model.get_submodule(str(layer))
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(f"no layer {layer!r} in the model{did_you_mean(layer, names)}") from None


def _targets(target_class, logits: torch.Tensor) -> torch.Tensor:
    b, n_classes = logits.shape
    if target_class is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(target_class, dtype=torch.long, device=logits.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise ValueError(f"target_class has {t.numel()} entries for {b} images")
    if bool(((t < 0) | (t >= n_classes)).any()):
        raise ValueError(f"target_class must be in 0..{n_classes - 1}, got {t.tolist()}")
    return t


def _grad_cam(model: nn.Module, images: torch.Tensor, target_class=None, layer=None):
    """Grad-CAM maps ``(B, H, W)`` and the logits ``(B, K)`` of one forward pass."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("images must be a float tensor (B, C, H, W)")
    if not images.is_floating_point():
        raise TypeError("images must be normalised float tensors (apply the evaluation transform, "
                        "fusion.transforms.build_transform('none', train=False, channels=C), first)")
    module = _resolve_layer(model, layer)
    store: dict = {}

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.dim() not in (3, 4):
            raise ValueError(f"Grad-CAM layer must output a (B, C, h, w) map or (B, N, C) tokens, got "
                             f"{type(output).__name__} {tuple(getattr(output, 'shape', ()))}")
        store["act"] = output
        # later in-place ops (e.g. DenseNet's ReLU after norm5) act on a copy, so the
        # activations and their gradients refer to the same values
        return output.clone()

    was_training = model.training
    handle = module.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)  # gradients exist even for frozen weights
            logits = model(x)
            if "act" not in store:
                raise ValueError("the Grad-CAM layer was not used in the forward pass")
            act = store["act"]
            target = _targets(target_class, logits)
            score = logits.gather(1, target[:, None]).sum()  # images do not interact in eval mode
            (grads,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
        model.train(was_training)
    act, grads = act.detach().float(), grads.detach().float()
    if act.dim() == 3:  # a vision transformer's tokens: arrange the patch tokens on their grid
        to_grid = getattr(model, "tokens_to_grid", None)
        if to_grid is None:
            raise ValueError(f"the Grad-CAM layer outputs tokens {tuple(act.shape)} and the model cannot arrange "
                             "them on a patch grid (no tokens_to_grid); pass a spatial layer")
        act, grads = to_grid(act, images.shape[-2:]), to_grid(grads, images.shape[-2:])
    height, width = images.shape[-2:]
    extent = _patch_extent(model, act.shape[-2:], (height, width))
    feature_hw = tuple(act.shape[-2:])
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(dim=1, keepdim=True))
    # upsample over the area the grid covers (a ViT pads the input to a multiple of its patch), then crop
    cam = F.interpolate(cam, size=extent, mode="bilinear", align_corners=False)[:, 0, :height, :width]
    cam = cam.clamp_min(0)
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
    reasons = degenerate_reasons(cam, feature_hw)
    _warn_degenerate(reasons)
    return cam, logits.detach(), reasons


def _patch_extent(model: nn.Module, grid, image_size) -> tuple:
    """Pixels covered by a transformer's patch grid (input padded to a multiple of the patch
    size), else the image size."""
    patch = getattr(getattr(getattr(model, "body", None), "patch_embed", None), "patch_size", None)
    if patch is None:
        return tuple(int(v) for v in image_size)
    extent = (int(grid[0]) * int(patch[0]), int(grid[1]) * int(patch[1]))
    if extent[0] < image_size[0] or extent[1] < image_size[1]:  # a grid that drops edge pixels
        return tuple(int(v) for v in image_size)
    return extent


def grad_cam(model: nn.Module, images: torch.Tensor, target_class=None, layer=None) -> torch.Tensor:
    """Grad-CAM heat maps (Selvaraju et al. 2017, doi:10.1109/ICCV.2017.74).

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``(B, K)``; a :class:`fusion.backbones.Backbone` knows its
        Grad-CAM layer. It is run in eval mode (its previous mode is restored afterwards); its
        parameters and their ``.grad`` are left unchanged.
    images : torch.Tensor
        Normalised float images ``(B, C, H, W)`` (the output of the evaluation transform), on
        the model's device.
    target_class : int or sequence of int, optional
        Class whose logit is explained, one for all images or one per image; default: each
        image's predicted (arg-max) class.
    layer : str or torch.nn.Module, optional
        Module (or its path in ``model``, e.g. ``'body.layer3'``) whose activations are used;
        default ``model.info.gradcam_layer``.

    Returns
    -------
    torch.Tensor
        ``(B, H, W)`` float32 maps in [0, 1] on the images' device: ``ReLU(sum_k alpha_k A^k)``
        upsampled bilinearly to ``(H, W)`` and divided by its maximum; a map that is zero
        everywhere stays zero.

    Raises
    ------
    ValueError
        Unknown layer (with did-you-mean), a layer that is not spatial or not used, a target
        class out of range.
    TypeError
        ``uint8`` images (not yet normalised).

    Warns
    -----
    DegenerateHeatmapWarning
        A map that cannot localise (:func:`degenerate_reasons`): the layer's feature map has
        fewer than :data:`MIN_FEATURE_SIDE` cells a side (ResNet-18's last block at 64 px is
        2 x 2), or the map is zero or uniform.

    Notes
    -----
    Same method as ``pytorch-grad-cam``'s ``GradCAM`` (which the study used), except the
    final scaling: that package subtracts each map's minimum before dividing by the maximum;
    we only divide by the maximum so that the share of the mass in a region
    (:func:`cam_inside_mask`) keeps its meaning.

    Examples
    --------
    >>> import torch
    >>> from fusion.backbones import create_backbone
    >>> model = create_backbone("resnet18", "none", in_chans=1, num_classes=3)
    >>> grad_cam(model, torch.randn(2, 1, 128, 128)).shape
    torch.Size([2, 128, 128])
    """
    return _grad_cam(model, images, target_class, layer)[0]


def _as_2d(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D (H, W), got shape {a.shape}")
    return a


def cam_inside_mask(cam, mask) -> float:
    """Share of the heat-map mass inside a binary mask.

    ``sum(cam * [mask > 0]) / sum(cam)``: 1 when all the heat lies in the mask, 0 when none
    does, and the mask's area share for a uniform map.

    Parameters
    ----------
    cam : torch.Tensor or numpy.ndarray
        A non-negative map ``(H, W)`` (or ``(1, H, W)``), e.g. one row of :func:`grad_cam`.
    mask : torch.Tensor or numpy.ndarray
        Lesion mask of the same size; non-zero = inside (``bool``, 0/1 or 0/255).

    Returns
    -------
    float
        In [0, 1]; NaN when the map has no mass at all (nothing to attribute).

    Raises
    ------
    ValueError
        Shapes differ, or the map has negative or non-finite values.
    """
    c = _as_2d(cam, "cam").astype(np.float64)
    m = _as_2d(mask, "mask") > 0
    if c.shape != m.shape:
        raise ValueError(f"cam {c.shape} and mask {m.shape} differ in size; resize the mask as the image "
                         "(fusion.images.load_image(mask, size=..., channels=1))")
    if not np.isfinite(c).all() or (c < 0).any():
        raise ValueError("cam must be finite and non-negative")
    total = c.sum()
    if total <= 0:
        return float("nan")
    return float(min(1.0, c[m].sum() / total))


# --------------------------------------------------------------------------- figures


def _display_image(image) -> tuple[np.ndarray, str | None]:
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return a, "gray"
    if a.ndim == 3 and a.shape[-1] == 3:
        return a, None
    raise ValueError(f"image must be (H, W), (C, H, W) or (H, W, C) with 1 or 3 channels, got {a.shape}")


def _draw(ax, image, cam, mask=None, alpha: float = 0.45):
    img, cmap = _display_image(image)
    c = _as_2d(cam, "cam")
    if c.shape != img.shape[:2]:
        raise ValueError(f"cam {c.shape} and image {img.shape[:2]} differ in size")
    ax.imshow(img, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    im = ax.imshow(c, cmap="jet", vmin=0, vmax=1, alpha=alpha, interpolation="bilinear")
    if mask is not None:
        m = _as_2d(mask, "mask") > 0
        if m.any():
            ax.contour(m.astype(float), levels=[0.5], colors="white", linewidths=1.0)
    ax.set_axis_off()
    return im


def _colour_bar(fig, ax, **kw):
    """Colour bar of the jet scale drawn opaque (the overlay itself is translucent)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap="jet"), ax=ax, **kw)
    bar.set_label("Grad-CAM (relative)")
    bar.set_ticks([0, 0.5, 1])
    bar.outline.set_linewidth(0.6)
    return bar


def overlay(image_uint8, cam, path=None, *, mask=None, title: str | None = None, alpha: float = 0.45):
    """One image with its Grad-CAM map (jet, ``alpha`` opaque) and a colour bar.

    Parameters
    ----------
    image_uint8 : torch.Tensor or numpy.ndarray
        ``uint8`` image ``(C, H, W)``, ``(H, W, C)`` or ``(H, W)`` (as loaded, not normalised).
    cam : torch.Tensor or numpy.ndarray
        Map ``(H, W)`` in [0, 1] (one row of :func:`grad_cam`).
    path : str or Path, optional
        Save there (png, svg, pdf) with :func:`analysis.figures.save_figure`.
    mask : array, optional
        Lesion mask of the same size, drawn as a white outline.
    title : str, optional
    alpha : float, default 0.45
        Opacity of the heat map.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from analysis.figures import _finish, figure_style, new_figure

    with figure_style():
        fig = new_figure(3.6, 3.0)
        ax = fig.add_subplot()
        _draw(ax, image_uint8, cam, mask, alpha)
        if title:
            ax.set_title(title, fontweight="normal")
        _colour_bar(fig, ax, fraction=0.046, pad=0.03)
    return _finish(fig, path)


def overlay_panel(images, cams, path=None, *, true_class: Sequence | None = None,
                  predicted_class: Sequence | None = None, probability: Sequence | None = None,
                  masks: Sequence | None = None, ncols: int = 4, alpha: float = 0.45,
                  labels: Sequence | None = None):
    """Several images with their Grad-CAM maps, titled with true / predicted class and probability.

    Parameters
    ----------
    images : sequence of uint8 images (or a ``(B, C, H, W)`` tensor)
    cams : sequence of maps (or a ``(B, H, W)`` tensor) in [0, 1]
    path : str or Path, optional
        Save there with :func:`analysis.figures.save_figure`.
    true_class, predicted_class : sequence of str, optional
        Shown per image (``None`` entries are left out).
    probability : sequence of float, optional
        Probability of the predicted class, shown as ``(p = 0.87)``.
    masks : sequence of masks or None, optional
        Lesion outlines (white).
    ncols : int, default 4
    labels : sequence of str, optional
        A first title line per image (e.g. ``'P0004, fold 0'``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from analysis.figures import _finish, figure_style, new_figure

    n = len(images)
    if len(cams) != n:
        raise ValueError(f"{n} images but {len(cams)} maps")
    for name, seq in (("true_class", true_class), ("predicted_class", predicted_class),
                      ("probability", probability), ("masks", masks), ("labels", labels)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} images")
    ncols = max(1, min(int(ncols), n))
    nrows = -(-n // ncols)
    with figure_style():
        fig = new_figure(1.9 * ncols + 0.7, 2.15 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        im = None
        for i, ax in enumerate(axes.flat):
            if i >= n:
                ax.set_axis_off()
                continue
            im = _draw(ax, images[i], cams[i], None if masks is None else masks[i], alpha)
            lines = [] if labels is None or labels[i] is None else [str(labels[i])]
            if true_class is not None and true_class[i] is not None:
                lines.append(f"true: {true_class[i]}")
            if predicted_class is not None and predicted_class[i] is not None:
                p = "" if probability is None or probability[i] is None else f" (p = {float(probability[i]):.2f})"
                lines.append(f"pred: {predicted_class[i]}{p}")
            if lines:
                ax.set_title("\n".join(lines), fontsize=8, fontweight="normal")
        if im is not None:
            _colour_bar(fig, axes.ravel().tolist(), fraction=0.03, pad=0.02)
    return _finish(fig, path)


# --------------------------------------------------------------------------- checkpoint + CLI


def load_gradcam_model(path):
    """Rebuild a fold model from a ``model.pt`` written by ``fusion.train``.

    Returns
    -------
    (Backbone, dict)
        The model (eval mode, CPU) and ``{'backbone', 'classes', 'in_chans', 'size', 'modality', 'fold'}``.

    Raises
    ------
    ConfigError
        Missing, unreadable or foreign file; weights that do not fit the named backbone.
    """
    from fusion.backbones import backbone_info, create_backbone
    from fusion.checkpoint import load_checkpoint

    path = Path(path)
    ckpt = load_checkpoint(path)
    if ckpt.get("model") is None:
        hint = (f"; the fold's weights are in {path.with_name('model.pt')}" if ckpt.get("complete") else "")
        raise ConfigError(f"checkpoint {path}: holds no model weights{hint}")
    state = ckpt["model"]
    missing = [k for k in ("backbone", "classes") if k not in ckpt]
    if missing:
        raise ConfigError(f"checkpoint {path}: no {missing[0]!r} entry (expected a model.pt written by "
                          "fusion.train)")
    backbone = str(ckpt["backbone"])
    info = backbone_info(backbone)
    classes = [str(c) for c in ckpt["classes"]]
    in_chans = ckpt.get("in_chans")
    if in_chans is None:  # latest.pt: infer from the first convolution
        w = state.get(info.first_conv + ".weight")
        if w is None:
            raise ConfigError(f"checkpoint {path}: cannot tell the input channels (no 'in_chans')")
        in_chans = int(w.shape[1])
    size = ckpt.get("size", (ckpt.get("config") or {}).get("size"))
    if size is None:
        raise ConfigError(f"checkpoint {path}: no image 'size' recorded")
    model = create_backbone(backbone, "none", in_chans=int(in_chans), num_classes=len(classes))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"checkpoint {path}: weights do not fit backbone {backbone} ({first[:200]})") from None
    model.eval()
    meta = {"backbone": backbone, "classes": classes, "in_chans": int(in_chans), "size": size,
            "modality": ckpt.get("modality"), "fold": ckpt.get("fold")}
    return model, meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fusion.gradcam",
        description="Grad-CAM heat maps of a trained fold model for one or more images.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  # explain the predicted class of two elastography images with fold 0's ResNet-18
  python -m fusion.gradcam runs/demo/checkpoints/elastography/resnet18/fold0/model.pt \\
      images/elastography/P0001.png images/elastography/P0002.png --out gradcam

  # two test patients per class of a run, each explained by the fold model that never saw it
  python -m fusion.gradcam --run runs/cv --modality elastography --per-class 2

  # explain class 'benign' and measure the heat inside BUS-BRA lesion masks
  python -m fusion.gradcam runs/busbra/checkpoints/2d/resnet18/fold0/model.pt \\
      ../shared/data/bus_bra/images/bus_0001-l.png --target benign \\
      --mask ../shared/data/bus_bra/masks/mask_0001-l.png --out gradcam_busbra

writes <out>/<image>_gradcam.png per image, <out>/gradcam_panel.png and <out>/gradcam.csv
(image, patient_in_fold, heatmap_note, predicted_class, p_<class>..., target_class[, cam_inside_mask],
overlay); patient_in_fold comes from the cohort table (--cohort, default the run's config.yaml).
""")
    p.add_argument("checkpoint", nargs="?", help="model.pt written by fusion.train "
                   "(checkpoints/<modality>/<backbone>/fold<k>/); or use --run")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image file(s) of the checkpoint's modality")
    r = p.add_argument_group("test patients of a run (instead of CHECKPOINT IMAGE...)")
    r.add_argument("--run", default=None, help="output folder of fusion.train: explain test patients, each with "
                   "the fold model that never saw it")
    r.add_argument("--modality", default=None, help="with --run: the modality to explain")
    r.add_argument("--per-class", type=int, default=2, help="with --run: patients per true class (default: 2)")
    r.add_argument("--patients", nargs="+", default=None, help="with --run: these patient ids instead")
    p.add_argument("--cohort", default=None, help="the cohort table that maps images to patients (default: the "
                   "run's config.yaml); with CHECKPOINT, tells whether the fold model saw each image's patient")
    p.add_argument("--out", default="gradcam", help="output folder (default: gradcam)")
    p.add_argument("--target", metavar="CLASS", default=None,
                   help="class to explain (a class name of the checkpoint); default: each image's predicted class")
    p.add_argument("--mask", nargs="+", metavar="MASK", default=None,
                   help="lesion mask per image, in the same order (non-zero = lesion): adds cam_inside_mask")
    p.add_argument("--layer", default=None, help="module path of the Grad-CAM layer (default: the backbone's "
                   "registered last spatial block)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps or auto (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    return p


def _overlay_names(paths) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}_gradcam.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}_gradcam.png")
    return names


def _run_of(checkpoint):
    """``(run folder, fold)`` of a ``RUN/checkpoints/<modality>/<backbone>/fold<k>/model.pt``, or None."""
    ckpt = Path(checkpoint).resolve()
    try:
        return ckpt.parents[4], int(ckpt.parent.name.removeprefix("fold"))
    except (IndexError, ValueError):
        return None


def image_patients(images, cohort, schema=None, data_root=None) -> list:
    """The patient id of each image file, looked up in the cohort table's image columns.

    Parameters
    ----------
    images : sequence of str or Path
        Image files (any working directory; compared as resolved absolute paths).
    cohort : str or Path
        What ``fusion.train`` accepts (a cohort table, ``busi``, ``bus_bra``, a manifest, a folder).
    schema, data_root : optional

    Returns
    -------
    list
        The patient id (str) of each image, or None where no image cell of the table points to
        the file. The file name is never used as an id: ``P0001_elasto.png`` is found as
        patient ``P0001`` because the table says so, and ``P0002.png`` listed in patient
        ``P0001``'s row is ``P0001``'s.
    """
    import warnings

    from fusion.audit import image_table
    from fusion.manifests import ImageLevelWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageLevelWarning)
        table, _ = image_table(cohort, schema, data_root=data_root)
    lookup = {}
    for path, pid in zip(table["path"], table["patient_id"]):
        lookup.setdefault(str(Path(path).resolve()), str(pid))
    return [lookup.get(str(Path(p).resolve())) for p in images]


def fold_role(checkpoint, images, cohort=None, schema=None) -> list:
    """For each image, whether this fold model saw its patient -- by patient id, not file name.

    The image's patient comes from the cohort table (``cohort``, else the run's
    ``config.yaml``; :func:`image_patients`); the patient's role in the checkpoint's fold comes
    from the run's ``fold_assignments.csv`` (else ``oof_predictions.csv``), the run being
    ``RUN`` of ``RUN/checkpoints/<modality>/<backbone>/fold<k>/model.pt``.

    Returns
    -------
    list of str
        Per image: ``'test'`` (the fold model never saw the patient: an honest explanation),
        ``'validation (early stopping)'`` (not trained on, but it chose the model's epoch),
        ``'training (test fold j)'`` (the model was trained on it), ``'held out'`` (a held-out
        patient, which no fold model saw), or ``'unknown: <reason>'`` (not a run's checkpoint,
        no cohort table, the image is not in it, or the patient is in no fold).
    """
    import pandas as pd
    import yaml

    n = len(images)
    where = _run_of(checkpoint)
    if where is None:
        return ["unknown: the checkpoint is not in a run's checkpoints/<modality>/<backbone>/fold<k>/ folder"] * n
    run, fold = where
    if cohort is None and (run / "config.yaml").is_file():
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        cohort, schema = cfg.get("cohort"), schema or cfg.get("schema")
    if not cohort:
        return [f"unknown: no cohort table to map images to patients ({run / 'config.yaml'} missing; pass "
                "--cohort)"] * n
    try:
        patients = image_patients(images, cohort, schema)
    except CohortError as exc:
        return [f"unknown: cohort table {cohort} could not be read ({exc})"] * n
    fa_path, oof = run / "fold_assignments.csv", run / "oof_predictions.csv"
    role_of: dict = {}
    if fa_path.is_file():
        fa = pd.read_csv(fa_path, dtype={"patient_id": str})
        mine = fa[fa["fold"] == fold]
        test_fold = fa[fa["role"] == "test"].drop_duplicates("patient_id").set_index("patient_id")["fold"]
        for pid, roles in mine.groupby("patient_id")["role"]:
            roles = set(roles)
            if "test" in roles:
                role_of[pid] = "test"
            elif "heldout" in roles:
                role_of[pid] = "held out"
            elif "train" in roles:
                k = test_fold.get(pid)
                role_of[pid] = "training" if k is None else f"training (test fold {int(k)})"
            elif "validation" in roles:
                role_of[pid] = "validation (early stopping)"
        source = fa_path
    elif oof.is_file():
        pred = pd.read_csv(oof, dtype={"patient_id": str}, usecols=["patient_id", "fold", "model"])
        pred = pred[pred["model"] != "late_fusion"]
        for pid, k in pred.drop_duplicates("patient_id").set_index("patient_id")["fold"].items():
            role_of[pid] = ("test" if int(k) == fold else "held out" if int(k) < 0
                            else f"training (test fold {int(k)})")
        source = oof
    else:
        return [f"unknown: no fold_assignments.csv or oof_predictions.csv in {run}"] * n
    out = []
    for img, pid in zip(images, patients):
        if pid is None:
            out.append(f"unknown: {Path(img).name} is not an image of the cohort table {cohort}")
        else:
            out.append(role_of.get(pid, f"unknown: patient {pid} is in no fold of {source.name}"))
    return out


def _explain(model, meta, raw, target_idx, layer, dev):
    """Grad-CAM maps (CPU) and class probabilities of images prepared as in training (uint8 ``raw``)."""
    from fusion.transforms import build_transform

    t_eval = build_transform("none", train=False, channels=meta["in_chans"]).to(dev)
    cams, logits, reasons = _grad_cam(model, t_eval(torch.stack(raw).to(dev)), target_idx, layer)
    return cams.cpu(), torch.softmax(logits.float(), dim=1).cpu().numpy().astype(np.float64), reasons


def _cohort_images(cohort, schema, modality: str, columns=None) -> tuple[dict, Path]:
    """patient_id -> image path (relative to the returned root) of ``modality`` in a run's cohort
    (``columns``: the run's ``group``, ``id_column``, ``hospital_column``, ``image_columns``)."""
    from fusion.train import load_table

    table, schema, source = load_table(cohort, schema, **(columns or {}))
    if hasattr(table, "data") and hasattr(table, "schema"):
        frame, root = table.data, Path(getattr(table, "source", None) or cohort).parent
    else:
        frame, root = table, Path(table.attrs.get("image_root") or Path(str(cohort)).parent)
    col = schema.image_columns.get(modality)
    if col is None:
        raise ConfigError(f"--modality {modality!r}: not an image column of the run's schema "
                          f"({', '.join(schema.image_columns)}){did_you_mean(modality, schema.image_columns)}")
    ids = frame[schema.id_column].astype(str) if schema.id_column else frame.index.astype(str)
    paths = {}
    for i, p in zip(ids, frame[col]):
        if isinstance(p, str) and p.strip():
            paths.setdefault(i, p.strip())  # a patient's first image of the modality
    return paths, root


def explain_test_patients(run, modality: str, *, per_class: int = 2, patients=None, backbone=None,
                          cohort=None, out=None, layer=None, device="cpu"):
    """Grad-CAM of test patients, each explained by the fold model that never saw it.

    Parameters
    ----------
    run : str or Path
        Output folder of ``fusion.train`` (``oof_predictions.csv``, ``config.yaml``,
        ``checkpoints/<modality>/<backbone>/fold<k>/model.pt``).
    modality : str
    per_class : int, default 2
        Patients per true class (the first ones of the prediction file), when ``patients`` is
        not given.
    patients : sequence of str, optional
        Patient ids to explain instead.
    backbone : str, optional
        Default: the run's first backbone with predictions for ``modality``.
    cohort : str or Path, optional
        The cohort table (default: the run's ``config.yaml`` ``cohort``, relative to the
        working directory as when training).
    out : str or Path, optional
        Default ``RUN/gradcam/<modality>``; gets ``gradcam_test_patients.png`` and ``.csv``.
    layer : str, optional
        Grad-CAM layer (default: the backbone's registered one).

    Returns
    -------
    (pandas.DataFrame, list of Path)
        One row per patient (``patient_id, fold, true_class, predicted_class, p_<class>...``)
        and the files.  Each patient's first image of the modality is explained; with one image
        per patient the recomputed probabilities equal the run's out-of-fold ones.
    """
    import pandas as pd
    import yaml

    from fusion import runtime
    from fusion.images import load_image

    run = Path(run)
    oof_path = run / "oof_predictions.csv"
    if not oof_path.is_file():
        raise ConfigError(f"--run {run}: no oof_predictions.csv (expected the --out folder of fusion.train)")
    oof = pd.read_csv(oof_path, dtype={"patient_id": str})
    # out-of-fold rows: 'test' (k-fold) or 'external' (leave-one-hospital-out), each from the fold
    # model that never saw the patient (not the fold-ensemble rows of a held-out set, fold -1)
    first = oof[(oof["model"] != "late_fusion") & (oof["modality"] == modality)
                & oof["split"].isin(["test", "external"]) & (oof["fold"] >= 0)]
    if backbone is not None:
        from fusion.backbones import resolve_backbone

        backbone = resolve_backbone(backbone)  # 'ViT-small' -> the name the run's files use
        first = first[first["model"] == backbone]
    if first.empty:
        mods = sorted(set(oof.loc[oof["model"] != "late_fusion", "modality"]))
        raise ConfigError(f"--run {run}: no out-of-fold predictions for modality {modality!r}"
                          f"{'' if backbone is None else f' and backbone {backbone!r}'} (modalities: "
                          f"{', '.join(mods)}){did_you_mean(modality, mods)}")
    backbone = str(first["model"].iloc[0])
    first = first[first["model"] == backbone].drop_duplicates("patient_id")
    if patients is not None:
        unknown = [p for p in patients if p not in set(first["patient_id"])]
        if unknown:
            raise ConfigError(f"--patients: {unknown[0]!r} has no out-of-fold {modality} prediction in {oof_path}")
        chosen = first.set_index("patient_id").loc[list(patients)].reset_index()
    else:
        # per class, one patient of each fold in turn: every fold model gets explained
        spread = first.assign(_k=first.groupby(["y_true", "fold"]).cumcount()).sort_values(["_k", "fold"],
                                                                                          kind="stable")
        chosen = spread.groupby("y_true", sort=False).head(int(per_class)).drop(columns="_k")
        order = {c: i for i, c in enumerate(pd.unique(first["y_true"]))}
        chosen = chosen.sort_values("y_true", key=lambda s: s.map(order), kind="stable")
    if int(per_class) < 1:
        raise ConfigError(f"--per-class must be at least 1, got {per_class}")
    has_cfg = (run / "config.yaml").is_file()
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) if has_cfg else {}
    cohort = cohort or cfg.get("cohort")
    if not cohort:
        raise ConfigError(f"--run {run}: {'no cohort in config.yaml' if has_cfg else 'no config.yaml'}; "
                          "pass --cohort")
    columns = {k: cfg.get(k) for k in ("group", "id_column", "hospital_column", "image_columns")}
    paths, root = _cohort_images(cohort, cfg.get("schema"), modality, columns)
    dev = runtime.pick_device(device)
    done = {}  # patient -> (table row, image, map); one batch per fold model
    for fold, group in chosen.groupby("fold", sort=True):
        ckpt = run / "checkpoints" / modality / backbone / f"fold{int(fold)}" / "model.pt"
        model, meta = load_gradcam_model(ckpt)
        model.to(dev)
        module = None if layer is None else _resolve_layer_or_config(model, layer)
        raw = []
        for pid in group["patient_id"]:
            if pid not in paths:
                raise ConfigError(f"patient {pid!r}: no {modality} image in {cohort}")
            raw.append(load_image(root / paths[pid], size=meta["size"], channels=meta["in_chans"]))
        cams, proba, _ = _explain(model, meta, raw, None, module, dev)
        for i, (pid, y) in enumerate(zip(group["patient_id"], group["y_true"])):
            row = {"patient_id": pid, "fold": int(fold), "true_class": y,
                   "predicted_class": meta["classes"][int(proba[i].argmax())]}
            row.update({f"p_{c}": proba[i, j] for j, c in enumerate(meta["classes"])})
            done[pid] = (row, raw[i], cams[i])
    rows, raws, cams = zip(*(done[p] for p in chosen["patient_id"]))  # the order of `chosen`
    table = pd.DataFrame(list(rows))
    out = Path(out) if out is not None else run / "gradcam" / modality
    out.mkdir(parents=True, exist_ok=True)
    fig = overlay_panel(raws, cams, out / "gradcam_test_patients.png", true_class=list(table["true_class"]),
                        predicted_class=list(table["predicted_class"]),
                        probability=[table.loc[i, f"p_{c}"] for i, c in enumerate(table["predicted_class"])],
                        labels=[f"{p}, fold {k} model" for p, k in zip(table["patient_id"], table["fold"])],
                        ncols=max(2, int(per_class)) if patients is None else 4)
    fig.clear()
    table.to_csv(out / "gradcam_test_patients.csv", index=False)
    return table, [out / "gradcam_test_patients.png", out / "gradcam_test_patients.csv"]


def run_gradcam(checkpoint, images, out="gradcam", target=None, masks=None, layer=None, device="cpu", cohort=None):
    """What the CLI does; returns the list of files written (``cohort``: the table that maps each
    image to its patient, default the run's ``config.yaml``; see :func:`fold_role`)."""
    import pandas as pd

    from fusion import runtime
    from fusion.images import load_image

    model, meta = load_gradcam_model(checkpoint)
    classes, size, chans = meta["classes"], meta["size"], meta["in_chans"]
    roles = fold_role(checkpoint, images, cohort)
    seen = [(Path(p).name, r) for p, r in zip(images, roles) if r.startswith("training")]
    if seen:
        import warnings

        from analysis.errors import AnalysisWarning

        warnings.warn(f"{len(seen)} image(s) are of patients this fold model was trained on (e.g. {seen[0][0]}: "
                      f"{seen[0][1]}): their heat maps show what it learned, not how it generalises; use the "
                      "model of each patient's test fold", AnalysisWarning, stacklevel=2)
    if masks is not None and len(masks) != len(images):
        raise ConfigError(f"--mask: {len(masks)} mask(s) for {len(images)} image(s); give one mask per image, "
                          "in the same order")
    target_idx = None
    if target is not None:
        if target not in classes:
            raise ConfigError(f"--target {target!r}: not a class of this checkpoint (classes: "
                              f"{', '.join(classes)}){did_you_mean(target, classes)}")
        target_idx = classes.index(target)
    if layer is not None:
        layer = _resolve_layer_or_config(model, layer)  # the module: a bad name fails before any work
    dev = runtime.pick_device(device)
    model.to(dev)
    raw = [load_image(p, size=size, channels=chans) for p in images]
    mask_t = None if masks is None else [load_image(m, size=size, channels=1)[0] > 127 for m in masks]
    cams, proba, reasons = _explain(model, meta, raw, target_idx, layer, dev)
    pred = proba.argmax(axis=1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, rows = [], []
    for i, (img_path, name) in enumerate(zip(images, _overlay_names(images))):
        tgt = classes[target_idx if target_idx is not None else pred[i]]
        row = {"image": str(img_path), "patient_in_fold": roles[i], "heatmap_note": reasons[i],
               "predicted_class": classes[pred[i]]}
        row.update({f"p_{c}": proba[i, k] for k, c in enumerate(classes)})
        row["target_class"] = tgt
        if mask_t is not None:
            row["mask"] = str(masks[i])
            row["cam_inside_mask"] = cam_inside_mask(cams[i], mask_t[i])
            row["mask_area_share"] = float(mask_t[i].float().mean())
        title = f"pred: {classes[pred[i]]} (p = {proba[i, pred[i]]:.2f})"
        if target_idx is not None:
            title += f"\nmap for: {tgt}"
        fig = overlay(raw[i], cams[i], out / name, mask=None if mask_t is None else mask_t[i], title=title)
        fig.clear()
        row["overlay"] = str(out / name)
        rows.append(row)
        written.append(out / name)
    panel = overlay_panel(raw, cams, out / "gradcam_panel.png",
                          predicted_class=[classes[k] for k in pred],
                          probability=[proba[i, k] for i, k in enumerate(pred)],
                          true_class=None, masks=mask_t)
    panel.clear()
    written.append(out / "gradcam_panel.png")
    csv = out / "gradcam.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    written.append(csv)
    return written


def _resolve_layer_or_config(model, layer):
    try:
        return _resolve_layer(model, layer)
    except ValueError as exc:
        raise ConfigError(f"--layer: {exc}") from None


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    from analysis.errors import run_cli

    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args))


def _run(args) -> list:
    """What the CLI does after parsing; returns the files written."""
    from fusion import runtime

    runtime.set_threads(args.threads)
    if args.run is not None:
        if args.checkpoint or args.images or args.mask or args.target:
            raise ConfigError("--run explains a run's test patients: give no CHECKPOINT, IMAGE, --mask or "
                              "--target with it")
        if not args.modality:
            raise ConfigError("--run needs --modality (e.g. --modality elastography)")
        out = None if args.out == "gradcam" else args.out
        return explain_test_patients(args.run, args.modality, per_class=args.per_class, patients=args.patients,
                                     cohort=args.cohort, out=out, layer=args.layer, device=args.device)[1]
    if not args.checkpoint or not args.images:
        raise ConfigError("give CHECKPOINT and at least one IMAGE, or --run RUN --modality MOD")
    return run_gradcam(args.checkpoint, args.images, out=args.out, target=args.target, masks=args.mask,
                       layer=args.layer, device=args.device, cohort=args.cohort)


def auto_gradcam_layer(net, size: int, channels: int, min_cells: int = 3) -> str:
    """The deepest Grad-CAM layer whose feature map is at least ``min_cells`` a side at ``size`` px.

    Candidates: the backbone's own Grad-CAM layer, then (ResNets) ``body.layer3`` and
    ``body.layer2``; the last candidate when none is large enough.
    """
    candidates = [net.info.gradcam_layer]
    if hasattr(net.body, "layer3"):
        candidates += ["body.layer3", "body.layer2"]
    shapes = {}
    hooks = [_resolve_layer(net, name).register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))) for name in candidates]
    try:
        was = net.training
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, channels, size, size))
        net.train(was)
    finally:
        for h in hooks:
            h.remove()
    for name in candidates:
        shape = shapes.get(name, ())
        if len(shape) == 4 and min(shape[-2:]) >= min_cells:
            return name
    return candidates[-1]


def overlay_png(image, cam, *, min_px: int = 256, alpha: float = 0.45) -> bytes:
    """PNG bytes of a Grad-CAM map over the image as the network saw it.

    Drawn as :func:`overlay` draws it (jet colour map, ``alpha`` opaque, bilinear map), enlarged
    (nearest neighbour) so that the longer side is at least ``min_px`` pixels; composed with PIL
    rather than a matplotlib figure (about 100 times faster; no colour bar: the page or report
    shows the scale, low = blue, high = red).

    Parameters
    ----------
    image : uint8 tensor or array ``(C, H, W)``, C = 1 or 3
    cam : array ``(H, W)`` in [0, 1]
    """
    from matplotlib import colormaps
    from PIL import Image

    cam = np.asarray(cam, dtype=np.float32)
    h, w = cam.shape
    scale = max(1, -(-int(min_px) // max(h, w)))
    big = (w * scale, h * scale)
    arr = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    base = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)).convert("RGB")
    base = np.asarray(base.resize(big, Image.Resampling.NEAREST), dtype=float)
    heat = np.asarray(Image.fromarray(cam, mode="F").resize(big, Image.Resampling.BILINEAR))
    colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    out = np.clip((1 - alpha) * base + alpha * colour, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="PNG")
    return buf.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
