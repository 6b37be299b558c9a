"""CNN backbones by name: a registry of torchvision and timm models with one common interface.

Every backbone is a :class:`Backbone` module with

* ``forward_features(x) -> (B, D)`` — the penultimate embedding (used by fusion heads),
* ``forward(x) -> (B, num_classes)`` — logits from a fresh linear ``head``,

built by :func:`create_backbone` with weights ``'none'`` (random), ``'imagenet'`` (the
library's default ImageNet weights, downloaded once into its cache), a local state-dict file
(``.pth``/``.pt``/``.safetensors`` in the library's own key names, as saved by
``torch.save(model.state_dict())``), or a checkpoint written by ``fusion.pretrain`` /
``fusion.train``. Grey images (``in_chans=1``) get a first convolution whose ImageNet filters
are summed over RGB (as timm's ``adapt_input_conv``), so a pretrained network sees a grey
image exactly as it would see that image in RGB.

The study's four backbones (Jiang et al. 2025, doi:10.3389/fonc.2025.1542265) are
``resnet18``, ``efficientnet_b7``, ``convnext_tiny`` (torchvision) and
``vit_small_patch16_224`` (timm, which torchvision lacks; built with a dynamic image size, so
any input size works: the position embeddings are interpolated and inputs padded to a
multiple of 16). Names are matched case-, space- and dash-insensitively and through aliases
(``'ViT-small'``, ``'efficientnet-b7'``, ``'ResNet18'``); :func:`resolve_backbone` gives the
registry name.

Registering a new backbone is one decorated builder plus its :class:`BackboneInfo`
(after timm's ``_registry.py``); the tests parametrise over :func:`list_backbones`.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from analysis.errors import ConfigError

__all__ = [
    "BackboneInfo",
    "Backbone",
    "register_backbone",
    "list_backbones",
    "resolve_backbone",
    "backbone_info",
    "create_backbone",
    "adapt_input_conv",
    "load_weights",
    "weights_recipe",
]


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of the toolkit needs to know about a backbone.

    Attributes
    ----------
    name : str
        Registry name (the torchvision / timm builder of the same name).
    embedding_dim : int
        Size ``D`` of ``forward_features``' output.
    first_conv : str
        Attribute path (inside :class:`Backbone`) of the first convolution (for a ViT, the
        patch embedding's convolution).
    classifier : str
        Path of the linear head inside :class:`Backbone` (always ``'head'``).
    gradcam_layer : str
        Path of the usual Grad-CAM target: the last spatial block of a CNN; for a ViT the
        first norm of the last block, whose patch tokens still reach the class token through
        attention (its ``(B, N, C)`` tokens are arranged on the patch grid by
        :meth:`Backbone.tokens_to_grid`).
    tv_classifier : str
        Path of the classifier ``nn.Linear`` inside the library's model (used to map a
        torchvision or timm state dict's head onto ours).
    library : {'torchvision', 'timm'}, default 'torchvision'
        Where the architecture and its ImageNet weights come from.
    aliases : tuple of str, default ()
        Other names users type (compared without case, spaces, dashes or underscores).
    """

    name: str
    embedding_dim: int
    first_conv: str
    classifier: str
    gradcam_layer: str
    tv_classifier: str
    library: str = "torchvision"
    aliases: tuple = ()


@dataclass(frozen=True)
class _Entry:
    info: BackboneInfo
    builder: Callable[[], nn.Module]
    convert: Callable | None = None  # (library state dict, library model) -> library state dict


_REGISTRY: dict[str, _Entry] = {}


def register_backbone(info: BackboneInfo, convert: Callable | None = None):
    """Decorator: register a zero-argument builder returning the library's model.

    ``convert(state_dict, model)``, if given, adapts a state dict in the library's key names
    to the freshly built model before loading (e.g. timm's ``checkpoint_filter_fn`` for a
    ViT, which resamples position embeddings saved at another image size).
    """

    def wrap(builder):
        _REGISTRY[info.name] = _Entry(info, builder, convert)
        return builder

    return wrap


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).casefold())


def resolve_backbone(name: str) -> str:
    """The registry name of ``name``, an exact name, a spelling variant or an alias.

    ``'ResNet18'``, ``'efficientnet-b7'``, ``'ConvNeXt tiny'``, ``'ViT-small'`` and
    ``'vit_small'`` resolve to ``resnet18``, ``efficientnet_b7``, ``convnext_tiny`` and
    ``vit_small_patch16_224``: case, spaces, dashes and underscores are ignored.

    Raises
    ------
    ConfigError
        Unknown name: one line listing the available names, with a did-you-mean.
    """
    if name in _REGISTRY:
        return name
    lookup = {}
    for reg, entry in _REGISTRY.items():
        for alias in (reg, *entry.info.aliases):
            lookup.setdefault(_key(alias), reg)
    hit = lookup.get(_key(name))
    if hit is not None:
        return hit
    close = difflib.get_close_matches(_key(name), list(lookup), n=1, cutoff=0.6)
    hint = f"; did you mean '{lookup[close[0]]}'?" if close else ""
    raise ConfigError(f"unknown backbone {name!r} (available: {', '.join(list_backbones())}){hint}")


def backbone_info(name: str) -> BackboneInfo:
    """Metadata of a registered backbone (name or alias); unknown name -> ConfigError with did-you-mean."""
    return _REGISTRY[resolve_backbone(name)].info


def _tv(name):
    def build():
        import torchvision

        return torchvision.models.get_model(name, weights=None)

    return build


def _timm(name, **kwargs):
    def build():
        timm = _import_timm(name)
        return timm.create_model(name, pretrained=False, **kwargs)

    return build


def _import_timm(name):
    try:
        import timm
    except ImportError:
        raise ConfigError(f"backbone {name} needs the timm package: pip install timm") from None
    return timm


def _vit_filter(state: dict, model: nn.Module) -> dict:
    from timm.models.vision_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(state, model)


for _info in (
    BackboneInfo("resnet18", 512, "body.conv1", "head", "body.layer4", "fc", aliases=("resnet-18",)),
    BackboneInfo("resnet34", 512, "body.conv1", "head", "body.layer4", "fc"),
    BackboneInfo("resnet50", 2048, "body.conv1", "head", "body.layer4", "fc"),
    BackboneInfo("densenet121", 1024, "body.features.conv0", "head", "body.features.norm5", "classifier"),
    BackboneInfo("efficientnet_b0", 1280, "body.features.0.0", "head", "body.features.8", "classifier.1"),
    BackboneInfo("efficientnet_b7", 2560, "body.features.0.0", "head", "body.features.8", "classifier.1",
                 aliases=("effnet_b7", "effnetb7")),
    BackboneInfo("vgg16_bn", 4096, "body.features.0", "head", "body.features.42", "classifier.6"),
    BackboneInfo("convnext_tiny", 768, "body.features.0.0", "head", "body.features.7", "classifier.2"),
):
    register_backbone(_info)(_tv(_info.name))

# ViT-S/16 (Dosovitskiy et al. 2021, arXiv:2010.11929) from timm: built for 224 px like its
# ImageNet weights, with a dynamic image size (position embeddings interpolated to the input's
# patch grid, inputs padded to a multiple of 16), so the toolkit's 64 px default works too.
register_backbone(
    BackboneInfo("vit_small_patch16_224", 384, "body.patch_embed.proj", "head", "body.blocks.11.norm1", "head",
                 library="timm", aliases=("vit_small", "vit_s", "vit_s16", "vit_small_patch16")),
    convert=_vit_filter,
)(_timm("vit_small_patch16_224", dynamic_img_size=True, dynamic_img_pad=True))


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
    """A torchvision or timm body whose classifier is an identity, plus a linear ``head``."""

    def __init__(self, info: BackboneInfo, body: nn.Module, num_classes: int):
        super().__init__()
        self.info = info
        self.body = body
        self.head = nn.Linear(info.embedding_dim, num_classes)
        self.num_classes = num_classes
        self.weights_report: dict = {"source": "none", "skipped": [], "adapted": []}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding ``(B, embedding_dim)`` (for a ViT: the class token after the final norm)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def tokens_to_grid(self, tokens: torch.Tensor, image_size) -> torch.Tensor:
        """Arrange a transformer layer's tokens ``(B, N, C)`` on the patch grid ``(B, C, h, w)``.

        The prefix tokens (class / register tokens) are dropped; ``h, w`` is the patch grid
        of an input of ``image_size = (H, W)`` (padded to a multiple of the patch size, as the
        dynamic-size ViT does). A ``(B, C, h, w)`` map is returned unchanged.

        Raises
        ------
        ConfigError
            The tensor is neither a map nor tokens of this backbone's patch grid.
        """
        if tokens.dim() == 4:
            return tokens
        patch_embed = getattr(self.body, "patch_embed", None)
        if tokens.dim() != 3 or patch_embed is None:
            raise ConfigError(f"backbone {self.info.name}: a layer output of shape {tuple(tokens.shape)} is neither "
                              "a (B, C, h, w) map nor the (B, N, C) tokens of a vision transformer; choose a "
                              f"spatial layer (default: {self.info.gradcam_layer})")
        h, w = (int(v) for v in image_size[-2:])
        if hasattr(patch_embed, "dynamic_feat_size"):
            gh, gw = patch_embed.dynamic_feat_size((h, w))
        else:  # pragma: no cover - timm's PatchEmbed has dynamic_feat_size
            ph, pw = patch_embed.patch_size
            gh, gw = h // ph, w // pw
        prefix = int(getattr(self.body, "num_prefix_tokens", 0))
        b, n, c = tokens.shape
        if n - prefix != gh * gw:
            raise ConfigError(f"backbone {self.info.name}: {n} tokens do not match a {gh} x {gw} patch grid plus "
                              f"{prefix} prefix token(s) for a {h} x {w} image")
        return tokens[:, prefix:].reshape(b, gh, gw, c).permute(0, 3, 1, 2)


def weights_recipe(name: str) -> str:
    """A one-line shell command that saves ``name``'s ImageNet weights to a local file.

    Run it on a machine with internet access, copy the file, and pass it as
    ``--weights FILE`` (:func:`create_backbone` reads the library's own key names).
    """
    info = backbone_info(name)
    out = f"{info.name}_imagenet.pth"
    if info.library == "timm":
        return (f"python -c \"import timm, torch; torch.save(timm.create_model('{info.name}', pretrained=True)"
                f".state_dict(), '{out}')\"")
    return (f"python -c \"import torch, torchvision; torch.save(torchvision.models.get_model('{info.name}', "
            f"weights='DEFAULT').state_dict(), '{out}')\"")


def _offline_error(name: str, exc: BaseException) -> ConfigError:
    text = str(exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return ConfigError(
        f"could not download ImageNet weights for {name} ({type(exc).__name__}: {reason}); check your internet "
        f"connection or pass --weights PATH to a local file, made on a machine with internet by: "
        f"{weights_recipe(name)}"
    )


def _host_reachable(host: str) -> bool:
    """Whether ``host`` resolves (no network, no DNS: False), without downloading anything."""
    import socket

    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


@contextmanager
def _quiet(logger_name: str):
    """Silence a library's retry warnings (one error line is reported instead)."""
    import logging

    log = logging.getLogger(logger_name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _timm_imagenet_state_dict(name: str) -> dict:
    """timm's default pretrained weights: the Hugging Face hub cache first, then the hub.

    Offline and not cached, one ConfigError at once (the hub client would otherwise retry
    for about a minute, printing each retry).
    """
    timm = _import_timm(name)
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):  # pragma: no cover - registered names have weights
        raise ConfigError(f"no ImageNet weights known for {name}")
    if not cfg.hf_hub_id:  # pragma: no cover - timm serves its ViT weights from the hub
        try:
            return torch.hub.load_state_dict_from_url(cfg.url, map_location="cpu", progress=False)
        except Exception as exc:
            raise _offline_error(name, exc) from None
    import huggingface_hub

    repo, _, revision = cfg.hf_hub_id.partition("@")
    filename = getattr(cfg, "hf_hub_filename", None)
    for candidate in ([filename] if filename else ["model.safetensors", "pytorch_model.bin"]):
        cached = huggingface_hub.try_to_load_from_cache(repo, candidate, revision=revision or None)
        if isinstance(cached, (str, os.PathLike)) and Path(cached).is_file():
            return _read_weights_file(Path(cached))[0]
    from huggingface_hub import constants

    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    if not _host_reachable(host):
        raise _offline_error(name, OSError(f"{host} cannot be reached and the weights are not in the local "
                                           "Hugging Face cache"))
    try:
        with _quiet("huggingface_hub"):
            return timm.models.load_state_dict_from_hf(*((cfg.hf_hub_id, filename) if filename else (cfg.hf_hub_id,)))
    except Exception as exc:  # connection, hash, ...
        raise _offline_error(name, exc) from None


def _imagenet_state_dict(name: str) -> dict:
    """The library's default ImageNet state dict (its own key names), from its cache or downloaded."""
    info = backbone_info(name)
    if info.library == "timm":
        return _timm_imagenet_state_dict(name)
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except Exception as exc:  # pragma: no cover - every registered name has weights
        raise ConfigError(f"no ImageNet weights known for {name} ({exc})") from None
    try:
        # torch.hub uses its cache (~/.cache/torch/hub) and downloads only when needed
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except Exception as exc:  # URLError, OSError, RuntimeError (hash), ...
        raise _offline_error(name, exc) from None


def _library_to_ours(state: dict, info: BackboneInfo) -> dict:
    """torchvision / timm keys -> ``body.*`` / ``head.*`` keys."""
    out = {}
    prefix = info.tv_classifier + "."
    for k, v in state.items():
        out[("head." + k[len(prefix):]) if k.startswith(prefix) else "body." + k] = v
    return out


_torchvision_to_ours = _library_to_ours  # former name


def _convert_body(model: Backbone, state: dict) -> dict:
    convert = _REGISTRY[model.info.name].convert
    if convert is None:
        return state
    body = {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}
    rest = {k: v for k, v in state.items() if not k.startswith("body.")}
    body = convert(body, model.body)
    return {**{"body." + k: v for k, v in body.items()}, **rest}


def load_weights(model: Backbone, state: dict, source: str) -> dict:
    """Load a state dict (ours, or torchvision's / timm's own) into ``model``; returns the load report.

    A state dict without ``body.*`` keys is read in the library's key names (its classifier
    becomes our ``head``). The first convolution is adapted to the model's input channels;
    head tensors whose shape differs (another number of classes) are skipped and listed in
    the report. Anything else that does not fit raises :class:`ConfigError` (wrong backbone).
    """
    info = model.info
    if not any(str(k).startswith("body.") for k in state):
        state = _library_to_ours(state, info)
    state = _convert_body(model, state)
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
            f"(e.g. {example!r}); were they saved from another backbone? A file for {info.name} holds "
            f"{info.library}'s {info.name} state dict (made by: {weights_recipe(info.name)}) or a fusion checkpoint"
        )
    missing_head = [k for k in own if k.startswith("head.") and k not in filtered]
    model.load_state_dict(filtered, strict=False)
    if missing_head and not report["skipped"]:
        report["skipped"].extend(f"{k} (not in file)" for k in missing_head)
    model.weights_report = report
    return report


def _read_weights_file(path: Path) -> tuple[dict, str | None]:
    if not path.is_file():
        raise ConfigError(f"--weights {path}: file not found (expected none, imagenet or a .pt/.pth/.safetensors "
                          "file)")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:  # pragma: no cover - installed with timm
            raise ConfigError(f"--weights {path}: reading .safetensors needs the safetensors package: "
                              "pip install safetensors") from None
        try:
            return load_file(str(path), device="cpu"), None
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"--weights {path}: not a readable safetensors file ({reason})") from None
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
        One of :func:`list_backbones` or an alias (:func:`resolve_backbone`; unknown ->
        ConfigError with did-you-mean).
    weights : {'none', 'imagenet'} or path, default 'none'
        ``'imagenet'``: the library's default ImageNet weights (torchvision's, or timm's from
        the Hugging Face hub), from the local cache or downloaded; offline, a one-line
        ConfigError says how to make a local file (:func:`weights_recipe`). A path loads a
        torchvision or timm state dict (``.pth``/``.pt`` with ``torch.load(weights_only=True)``,
        or ``.safetensors``) or a fusion checkpoint; a head of another size is skipped
        (reported in ``model.weights_report``).
    in_chans : {1, 3}, default 3
        Input channels; the first convolution is adapted.
    num_classes : int, default 3

    Returns
    -------
    Backbone
        ``model.info.name`` is the registry name.

    Examples
    --------
    >>> import torch
    >>> model = create_backbone("ViT-small", in_chans=1, num_classes=3).eval()
    >>> model.info.name, model.forward_features(torch.rand(2, 1, 48, 48)).shape
    ('vit_small_patch16_224', torch.Size([2, 384]))
    """
    name = resolve_backbone(name)
    info = backbone_info(name)
    if int(in_chans) < 1:
        raise ConfigError(f"in_chans must be >= 1, got {in_chans}")
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    w = "none" if weights is None else weights
    imagenet = isinstance(w, str) and w.lower() == "imagenet"
    state = _imagenet_state_dict(name) if imagenet else None  # offline: fail before the (slow) build
    body = _REGISTRY[name].builder()
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
    if isinstance(w, str) and w.lower() == "none":
        return model
    if imagenet:
        load_weights(model, state, "imagenet")
        return model
    state, saved_name = _read_weights_file(Path(w))
    if saved_name is not None:
        try:
            saved = resolve_backbone(saved_name)
        except ConfigError:
            saved = saved_name
        if saved != name:
            raise ConfigError(f"--weights {w}: checkpoint is for backbone {saved_name!r}, not {name!r}")
    load_weights(model, state, str(w))
    return model
