"""Run configurations as dataclasses: defaults <- ``--config run.yaml`` <- command-line flags.

The resolved configuration is a plain dict (``asdict``) saved as ``config.yaml`` beside the
run's outputs and inside every checkpoint (no argparse Namespace anywhere, so checkpoints
load with ``weights_only=True``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from analysis.errors import ConfigError, did_you_mean

__all__ = ["TrainConfig", "PretrainConfig", "load_yaml_config", "resolve_config", "save_config"]


@dataclass
class TrainConfig:
    """Settings of ``python -m fusion.train`` (CPU-sane defaults; see the CLI help)."""

    cohort: str | None = None
    schema: str | None = None
    group: str | None = None                # group column; without a schema file, the schema is inferred
    id_column: str | None = None            # these three override / complete the schema's columns
    hospital_column: str | None = None
    image_columns: dict | None = None       # modality -> column (--image-column MODALITY=COLUMN)
    modalities: list | None = None          # None: every image column of the schema
    backbones: list = field(default_factory=lambda: ["resnet18"])
    weights: str = "none"                   # none | imagenet | PATH
    folds: int = 5
    inner_val: float = 0.2
    holdout_hospital: str | None = None
    external_hospital: bool = False         # leave-one-hospital-out instead of k-fold
    test_fraction: float | None = None
    fold_column: str | None = None          # predefined folds (e.g. BUS-BRA's official_fold) instead of k-fold
    epochs: int = 15
    patience: int | None = None             # None: no early stop (full cosine schedule, best epoch kept)
    min_epochs: int = 5                     # with a patience: early stopping never before this many epochs
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    class_weights: bool = False
    size: int = 64
    augment: str = "light"
    out: str = "runs/train"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    amp: bool | None = None                 # None: bf16 on CUDA, off on CPU
    compile: bool = False
    channels_last: bool = True
    resume: bool = False
    n_boot: int = 2000
    cache: str | None = None
    keep_epochs: bool = False
    late_fusion: bool = False             # stacked fusion of the oof predictions (fusion.late_fusion)
    fusion: list = field(default_factory=list)  # fusion modes: late, embedding, joint (fusion.api)
    recalibrate: bool = False             # temperature-scale each fold CNN on its inner validation patients
    final: bool = False                   # also fit the final model on all patients -> model_bundle.pt
    ablation: bool = False                # every modality subset x clinical x fusion mode (fusion.ablation)
    baseline: bool = True                 # texture-feature baseline per modality (fusion.texture)
    nested_fusion: bool = False           # nested first level for the fusion (K x K more CNN fits)


@dataclass
class PretrainConfig:
    """Settings of ``python -m fusion.pretrain``."""

    data: str = "bus_bra"                   # bus_bra | busi | FOLDER | MANIFEST
    data_root: str | None = None            # default: $LYMPH_SHARED_DATA or ../shared/data
    backbone: str = "resnet18"
    weights: str = "none"
    channels: int = 1
    size: int = 64
    epochs: int = 5
    patience: int = 3
    min_epochs: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: str = "light"
    val_fraction: float = 0.2               # for data without official folds
    out: str = "runs/pretrain"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    amp: bool | None = None
    channels_last: bool = True
    resume: bool = False


def load_yaml_config(path, cls) -> dict:
    """Read a YAML mapping of ``cls`` fields; unknown key -> ConfigError with did-you-mean."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", file=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = None if mark is None else mark.line + 1
        raise ConfigError(f"not valid YAML ({getattr(exc, 'problem', exc)})", file=path, row=row) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of setting: value", file=path)
    names = [f.name for f in fields(cls)]
    for key in data:
        norm = str(key).replace("-", "_")
        if norm not in names:
            raise ConfigError(f"unknown setting {key!r}{did_you_mean(norm, names)}", file=path)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def resolve_config(cls, yaml_path=None, overrides: dict | None = None):
    """``cls()`` defaults, updated by the YAML file, then by ``overrides`` (explicit flags)."""
    values = {}
    if yaml_path:
        values.update(load_yaml_config(yaml_path, cls))
    values.update({k: v for k, v in (overrides or {}).items()})
    try:
        cfg = dataclasses.replace(cls(), **values)
    except TypeError as exc:  # pragma: no cover - keys are validated above
        raise ConfigError(str(exc)) from None
    return cfg


def save_config(cfg, path) -> Path:
    """Write ``asdict(cfg)`` as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(asdict(cfg), sort_keys=False), encoding="utf-8")
    return path
