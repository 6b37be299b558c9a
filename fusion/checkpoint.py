"""Checkpoints: one plain dict per epoch, a rolling ``latest.pt``, atomic writes, rank 0 only.

A checkpoint holds only tensors, dicts, lists, numbers, strings and ``None`` (the config
as a plain dict, never an argparse Namespace), so :func:`load_checkpoint` can use
``torch.load(weights_only=True)`` — loading never runs code from the file.

Keys: ``model`` (unwrapped state dict), ``optimizer``, ``scheduler``, ``scaler`` (or
``None``), ``epoch`` (last finished, 0-based), ``best_metric``, ``early_stopping`` (its
state incl. best weights), ``rng`` (python/numpy/torch states), ``generator`` (the batch
shuffling generator's state), ``config``, ``backbone``, ``classes``, ``complete``.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from analysis.errors import ConfigError
from fusion.runtime import is_main_process, rng_state, unwrap

__all__ = ["make_checkpoint", "save_checkpoint", "load_checkpoint", "atomic_save"]


def make_checkpoint(model, optimizer=None, scheduler=None, scaler=None, *, epoch: int,
                    best_metric: float | None = None, early_stopping: dict | None = None,
                    config: dict | None = None, generator: torch.Generator | None = None,
                    complete: bool = False, **extra) -> dict:
    """The checkpoint dict (see module docstring); ``extra`` adds plain entries."""
    ckpt = {
        "model": unwrap(model).state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "epoch": int(epoch),
        "best_metric": None if best_metric is None else float(best_metric),
        "early_stopping": early_stopping,
        "rng": rng_state(),
        "generator": None if generator is None else generator.get_state(),
        "config": dict(config or {}),
        "complete": bool(complete),
    }
    ckpt.update(extra)
    return ckpt


def atomic_save(obj, path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_checkpoint(ckpt: dict, folder, keep_epochs: bool = False) -> Path | None:
    """Write ``folder/latest.pt`` (and ``epoch_NNN.pt`` when ``keep_epochs``) on rank 0.

    Returns the path of ``latest.pt`` on rank 0, ``None`` on other ranks.
    """
    if not is_main_process():
        return None
    folder = Path(folder)
    latest = atomic_save(ckpt, folder / "latest.pt")
    if keep_epochs:
        atomic_save(ckpt, folder / f"epoch_{int(ckpt['epoch']):03d}.pt")
    return latest


_TRAINING_STATE = ("model", "optimizer", "scheduler", "scaler", "rng", "generator")


def completion_marker(ckpt: dict) -> dict:
    """A finished unit's ``latest.pt``: the checkpoint without its training state.

    Once a fold's ``model.pt`` is written, the weights, optimizer moments and the early-stopping copy of
    the best weights in ``latest.pt`` are only needed to resume an *unfinished* fold; keeping them would
    cost about four times the model's size per fold and modality (179 MB for a ResNet18). What stays:
    ``complete``, ``epoch``, ``config``, ``history`` and the other plain entries.
    """
    marker = {k: v for k, v in ckpt.items() if k not in _TRAINING_STATE}
    stopping = marker.get("early_stopping")
    if isinstance(stopping, dict):
        marker["early_stopping"] = {k: v for k, v in stopping.items() if k != "best_state"}
    marker["complete"] = True
    return marker


def unreadable_reason(path, exc: BaseException) -> str:
    """Why ``torch.load`` failed, in words: 'not a PyTorch file' unless it is one (then torch's reason)."""
    import zipfile

    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive since PyTorch 1.6
        return "not a PyTorch file (expected a .pt/.pth file written by torch.save, e.g. by fusion.train)"
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"a PyTorch file that cannot be read safely ({first[:200]})"


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Raises
    ------
    ConfigError
        Missing, truncated or foreign file (one line naming the path).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path}: file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ConfigError(f"checkpoint {path}: {unreadable_reason(path, exc)}") from None
    if not isinstance(obj, dict) or ("model" not in obj and obj.get("complete") is not True):  # or a marker
        raise ConfigError(f"checkpoint {path}: not a fusion checkpoint (no 'model' entry)")
    return obj
