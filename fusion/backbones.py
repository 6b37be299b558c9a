"""CNN backbones by name: a registry of torchvision models with one common interface.

Every backbone is a :class:`Backbone` module with

* ``forward_features(x) -> (B, D)`` — the penultimate embedding (used by fusion heads),
* ``forward(x) -> (B, num_classes)`` — logits from a fresh linear ``head``,

built by :func:`create_backbone` with weights ``'none'`` (random), ``'imagenet'``
(torchvision weights API), a torchvision state-dict ``.pth`` file, or a checkpoint written
by ``fusion.pretrain`` / ``fusion.train``. Grey images (``in_chans=1``) get a first
convolution whose ImageNet filters are summed over RGB (as timm's ``adapt_input_conv``),
so a pretrained network sees a grey image exactly as it would see that image in RGB.

Registering a new backbone is one decorated builder plus its :class:`BackboneInfo`
(after timm's ``_registry.py``); the tests parametrise over :func:`list_backbones`.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from analysis.errors import ConfigError, did_you_mean

__all__ = [
    "BackboneInfo",
    "Backbone",
    "register_backbone",
    "list_backbones",
    "backbone_info",
    "create_backbone",
    "adapt_input_conv",
    "load_weights",
]


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of the toolkit needs to know about a backbone.

    Attributes
    ----------
    name : str
        Registry name (the torchvision builder of the same name).
    embedding_dim : int
        Size ``D`` of ``forward_features``' output.
    first_conv : str
        Attribute path (inside :class:`Backbone`) of the first convolution.
    classifier : str
        Path of the linear head inside :class:`Backbone` (always ``'head'``).
    gradcam_layer : str
        Path of the last spatial block, the usual Grad-CAM target.
    tv_classifier : str
        Path of the classifier ``nn.Linear`` inside the torchvision model (used to map a
        torchvision state dict's head onto ours).
    """

    name: str
    embedding_dim: int
    first_conv: str
    classifier: str
    gradcam_layer: str
    tv_classifier: str


_REGISTRY: dict[str, tuple[BackboneInfo, Callable[[], nn.Module]]] = {}


def register_backbone(info: BackboneInfo):
    """Decorator: register a zero-argument builder returning the torchvision model."""

    def wrap(builder):
        _REGISTRY[info.name] = (info, builder)
        return builder

    return wrap


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def backbone_info(name: str) -> BackboneInfo:
    """Metadata of a registered backbone; unknown name -> ConfigError with did-you-mean."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r} (available: {', '.join(list_backbones())})"
                          f"{did_you_mean(name, list_backbones())}")
    return _REGISTRY[name][0]


def _tv(name):
    import torchvision

    return lambda: torchvision.models.get_model(name, weights=None)


for _info in (
    BackboneInfo("resnet18", 512, "body.conv1", "head", "body.layer4", "fc"),
    BackboneInfo("resnet34", 512, "body.conv1", "head", "body.layer4", "fc"),
    BackboneInfo("resnet50", 2048, "body.conv1", "head", "body.layer4", "fc"),
    BackboneInfo("densenet121", 1024, "body.features.conv0", "head", "body.features.norm5", "classifier"),
    BackboneInfo("efficientnet_b0", 1280, "body.features.0.0", "head", "body.features.8", "classifier.1"),
    BackboneInfo("vgg16_bn", 4096, "body.features.0", "head", "body.features.42", "classifier.6"),
    BackboneInfo("convnext_tiny", 768, "body.features.0.0", "head", "body.features.7", "classifier.2"),
):
    register_backbone(_info)(_tv(_info.name))


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv weights ``(O, I, k, k)`` made to accept ``in_chans`` channels.

    ``I=3 -> 1``: sum over RGB (a grey image g fed as (g, g, g) gives the same response).
    Otherwise: tile the input filters and rescale by ``I / in_chans``.
    """
    o, i = weight.shape[:2]
    if i == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // i)
    w = weight.repeat(1, reps, 1, 1)[:, :in_chans]
    return w * (i / float(in_chans))


class Backbone(nn.Module):
    """A torchvision body whose classifier is an identity, plus a linear ``head``."""

    def __init__(self, info: BackboneInfo, body: nn.Module, num_classes: int):
        super().__init__()
        self.info = info
        self.body = body
        self.head = nn.Linear(info.embedding_dim, num_classes)
        self.num_classes = num_classes
        self.weights_report: dict = {"source": "none", "skipped": [], "adapted": []}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding ``(B, embedding_dim)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _imagenet_state_dict(name: str) -> dict:
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except Exception as exc:  # pragma: no cover - every registered name has weights
        raise ConfigError(f"no ImageNet weights known for {name} ({exc})") from None
    try:
        # torch.hub uses its cache (~/.cache/torch/hub) and downloads only when needed
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except Exception as exc:  # URLError, OSError, RuntimeError (hash), ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"could not download ImageNet weights for {name} ({type(exc).__name__}: {reason}); "
            "check your internet connection or pass --weights PATH to a local .pth"
        ) from None


def _torchvision_to_ours(state: dict, info: BackboneInfo) -> dict:
    """torchvision keys -> ``body.*`` / ``head.*`` keys."""
    out = {}
    prefix = info.tv_classifier + "."
    for k, v in state.items():
        out[("head." + k[len(prefix):]) if k.startswith(prefix) else "body." + k] = v
    return out


def load_weights(model: Backbone, state: dict, source: str) -> dict:
    """Load a state dict (ours or torchvision's) into ``model``; returns the load report.

    The first convolution is adapted to the model's input channels; head tensors whose
    shape differs (another number of classes) are skipped and listed in the report.
    Anything else that does not fit raises :class:`ConfigError` (wrong backbone).
    """
    info = model.info
    if not any(k.startswith(("body.", "head.")) for k in state):
        state = _torchvision_to_ours(state, info)
    own = model.state_dict()
    conv_key = info.first_conv + ".weight"
    report = {"source": source, "skipped": [], "adapted": []}
    filtered = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            continue
        if k == conv_key and k in own and v.shape != own[k].shape and v.dim() == 4:
            v = adapt_input_conv(v.float(), own[k].shape[1]).to(own[k].dtype)
            report["adapted"].append(f"{k}: {tuple(state[k].shape)} -> {tuple(v.shape)}")
        if k.startswith("head.") and (k not in own or own[k].shape != v.shape):
            report["skipped"].append(f"{k} {tuple(v.shape)}")
            continue
        filtered[k] = v
    missing = [k for k in own if k not in filtered and not k.startswith("head.")]
    unexpected = [k for k in filtered if k not in own]
    bad_shape = [k for k in filtered if k in own and own[k].shape != filtered[k].shape]
    if missing or unexpected or bad_shape:
        example = (missing or unexpected or bad_shape)[0]
        raise ConfigError(
            f"weights {source} do not fit backbone {info.name}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(bad_shape)} wrongly shaped tensor(s) "
            f"(e.g. {example!r}); were they saved from another backbone?"
        )
    missing_head = [k for k in own if k.startswith("head.") and k not in filtered]
    model.load_state_dict(filtered, strict=False)
    if missing_head and not report["skipped"]:
        report["skipped"].extend(f"{k} (not in file)" for k in missing_head)
    model.weights_report = report
    return report


def _read_weights_file(path: Path) -> tuple[dict, str | None]:
    if not path.is_file():
        raise ConfigError(f"--weights {path}: file not found (expected none, imagenet or a .pt/.pth file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from fusion.checkpoint import unreadable_reason

        raise ConfigError(f"--weights {path}: {unreadable_reason(path, exc)}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], obj.get("backbone")
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    raise ConfigError(f"--weights {path}: expected a state dict or a fusion checkpoint with a 'model' entry")


def create_backbone(name: str, weights: str | os.PathLike | None = "none", in_chans: int = 3,
                    num_classes: int = 3) -> Backbone:
    """Build a registered backbone.

    Parameters
    ----------
    name : str
        One of :func:`list_backbones` (unknown -> ConfigError with did-you-mean).
    weights : {'none', 'imagenet'} or path, default 'none'
        ``'imagenet'`` downloads torchvision's default weights (a clear ConfigError when
        offline); a path loads a torchvision state dict or a fusion checkpoint with
        ``torch.load(weights_only=True)``; a head of another size is skipped (reported in
        ``model.weights_report``).
    in_chans : {1, 3}, default 3
        Input channels; the first convolution is adapted.
    num_classes : int, default 3

    Returns
    -------
    Backbone
    """
    info = backbone_info(name)
    if int(in_chans) < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}")
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    body = _REGISTRY[name][1]()
    model_classifier = body.get_submodule(info.tv_classifier)
    if not isinstance(model_classifier, nn.Linear):  # pragma: no cover - registry sanity
        raise ConfigError(f"backbone {name}: {info.tv_classifier} is not a Linear layer")
    _set_module(body, info.tv_classifier, nn.Identity())
    model = Backbone(info, body, int(num_classes))
    conv_path = info.first_conv
    conv = model.get_submodule(conv_path)
    if conv.in_channels != in_chans:
        new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
        _set_module(model, conv_path, new)
    w = "none" if weights is None else weights
    if isinstance(w, str) and w.lower() == "none":
        return model
    if isinstance(w, str) and w.lower() == "imagenet":
        load_weights(model, _imagenet_state_dict(name), "imagenet")
        return model
    state, saved_name = _read_weights_file(Path(w))
    if saved_name is not None and saved_name != name:
        raise ConfigError(f"--weights {w}: checkpoint is for backbone {saved_name!r}, not {name!r}")
    load_weights(model, state, str(w))
    return model
