"""The training loop, as plain functions (after torchvision's references/classification).

Images are held once, decoded, as a ``uint8`` tensor ``(N, C, H, W)``. A batch is drawn by
**index** from that tensor (no per-item ``DataLoader``, no decoding per epoch), moved to
the device, and only then converted and augmented by a batch transform (uint8 -> normalised
float). Under DDP each rank takes a disjoint shard of the shuffled positions, like
``DistributedSampler``; evaluation and prediction run on every rank in full (identical
results, no gather needed).

Model selection: :class:`EarlyStopping` watches the loss on the **inner validation**
patients (never the test fold) and keeps a copy of the best epoch's weights, which
:func:`fit` restores at the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fusion.runtime import autocast, get_rank, get_world_size, is_distributed, set_rng_state, shard_indices, unwrap

__all__ = [
    "batch_indices",
    "train_one_epoch",
    "evaluate",
    "predict_proba",
    "balanced_class_weights",
    "EarlyStopping",
    "FitResult",
    "fit",
    "TrainingSetup",
    "setup_training",
]


def batch_indices(indices, batch_size: int, shuffle: bool, generator: torch.Generator | None = None,
                  rank: int = 0, world_size: int = 1, drop_last: bool = False,
                  merge_singleton: bool = False) -> list[np.ndarray]:
    """Split ``indices`` into batches for this rank.

    The permutation is drawn from ``generator`` (same seed on every rank -> same order),
    then sharded with :func:`fusion.runtime.shard_indices` so every rank gets as many
    batches as the others. ``merge_singleton`` appends a last batch of one image to the
    previous batch (batch norm cannot train on a single image).
    """
    indices = np.asarray(indices, dtype=np.int64)
    if shuffle:
        order = torch.randperm(len(indices), generator=generator).numpy()
        indices = indices[order]
    indices = indices[shard_indices(len(indices), rank, world_size)]
    n = len(indices)
    stop = (n // batch_size) * batch_size if drop_last and n >= batch_size else n
    batches = [indices[i:i + batch_size] for i in range(0, stop, batch_size)]
    if merge_singleton and len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def _prepare(images: torch.Tensor, idx, transform, device, channels_last: bool) -> torch.Tensor:
    x = images[torch.as_tensor(idx, dtype=torch.long)].to(device, non_blocking=True)
    x = transform(x)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def train_one_epoch(model, optimizer, images: torch.Tensor, labels, indices, *, transform: Callable,
                    batch_size: int, device, generator: torch.Generator | None = None, amp: bool | None = None,
                    channels_last: bool = True, class_weights: torch.Tensor | None = None,
                    progress=None) -> float:
    """One pass over the (shuffled, sharded) training ``indices``.

    Parameters
    ----------
    model : torch.nn.Module
        Possibly DDP-wrapped; put in train mode here.
    optimizer : torch.optim.Optimizer
    images : torch.Tensor of uint8, (N, C, H, W)
        All images of one modality (CPU or device).
    labels : array-like of int, (N,)
    indices : array-like of int
        Rows to train on (e.g. ``Split.train_idx``).
    transform : callable
        uint8 batch -> normalised float batch (augmenting when training).
    batch_size : int
    device : torch.device
    generator : torch.Generator, optional
        Shuffling generator (saved in checkpoints for exact resume).
    amp : bool or None
        bf16 autocast (``None``: on for CUDA only).
    channels_last : bool, default True
    class_weights : torch.Tensor, optional
        Cross-entropy class weights.
    progress : tqdm or None
        Updated by the number of images per step.

    Returns
    -------
    float
        Mean training loss over this rank's images.
    """
    model.train()
    labels_t = torch.as_tensor(np.array(labels, dtype=np.int64))
    weight = None if class_weights is None else class_weights.to(device)
    total, count = 0.0, 0
    for idx in batch_indices(indices, batch_size, True, generator, get_rank(), get_world_size(),
                             merge_singleton=True):
        x = _prepare(images, idx, transform, device, channels_last)
        y = labels_t[torch.as_tensor(idx)].to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
        if progress is not None:
            progress.update(len(idx))
            progress.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
    if is_distributed():
        import torch.distributed as dist

        t = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        total, count = float(t[0]), float(t[1])
    return total / max(count, 1)


@torch.no_grad()
def predict_proba(model, images: torch.Tensor, transform: Callable, batch_size: int = 64, device=None,
                  amp: bool | None = None, channels_last: bool = True) -> np.ndarray:
    """Softmax probabilities ``(N, n_classes)`` (float64) for every image in ``images``."""
    net = unwrap(model)
    device = device or next(net.parameters()).device
    net.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = _prepare(images, np.arange(start, min(start + batch_size, images.shape[0])), transform, device,
                     channels_last)
        with autocast(device, amp):
            logits = net(x)
        out.append(torch.softmax(logits.float(), dim=1).cpu().double())
    if not out:
        return np.zeros((0, net.num_classes if hasattr(net, "num_classes") else 0))
    return torch.cat(out).numpy()


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels, indices, *, transform: Callable, batch_size: int = 64,
             device=None, amp: bool | None = None, channels_last: bool = True,
             class_weights: torch.Tensor | None = None) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and probabilities on ``images[indices]``.

    Returns
    -------
    (loss, proba) : (float, numpy.ndarray of shape (len(indices), n_classes))
        ``loss`` is NaN when ``indices`` is empty.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return math.nan, np.zeros((0, 0))
    sub = images[torch.as_tensor(indices)]
    proba = predict_proba(model, sub, transform, batch_size, device, amp, channels_last)
    y = torch.as_tensor(np.asarray(labels)[indices], dtype=torch.long)
    p = torch.as_tensor(proba).clamp_min(1e-12)
    w = None if class_weights is None else class_weights.double().cpu()
    loss = F.nll_loss(p.log(), y, weight=w)
    return float(loss), proba


def balanced_class_weights(labels, n_classes: int) -> torch.Tensor:
    """``n / (n_classes * count_k)`` per class (scikit-learn's 'balanced'); absent class -> 0."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(float)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs.

    Keeps a CPU copy of the best epoch's weights (``best_state``).
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0):
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best_loss = math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.best_state: dict | None = None

    def step(self, loss: float, epoch: int, model) -> bool:
        """Record an epoch; returns True when training should stop."""
        if not math.isnan(loss) and loss < self.best_loss - self.min_delta:
            self.best_loss = float(loss)
            self.best_epoch = int(epoch)
            self.bad_epochs = 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"patience": self.patience, "min_delta": self.min_delta, "best_loss": self.best_loss,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.patience = int(state["patience"])
        self.min_delta = float(state["min_delta"])
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.best_state = state["best_state"]


@dataclass
class FitResult:
    """Outcome of :func:`fit`: best epoch (0-based), its validation loss, per-epoch history."""

    best_epoch: int
    best_loss: float
    epochs_run: int
    history: list = field(default_factory=list)


@dataclass
class TrainingSetup:
    """What :func:`fit` needs besides the data: model, optimiser, schedule, shuffling and transforms."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    generator: torch.Generator
    transform_train: Callable
    transform_eval: Callable


def setup_training(backbone: str, weights, *, in_chans: int, num_classes: int, device, seed: int,
                   lr: float, weight_decay: float, epochs: int, channels_last: bool,
                   augment: str) -> TrainingSetup:
    """Seeded model (on ``device``), AdamW + cosine schedule, shuffling generator and transforms.

    The global seed is ``seed`` (set before the model's random initialisation) and the
    shuffling generator's seed ``seed + 1``, as used by ``fusion.train`` and ``fusion.pretrain``.
    """
    from fusion import runtime
    from fusion.backbones import create_backbone
    from fusion.transforms import build_transform

    runtime.set_seed(seed)
    model = create_backbone(backbone, weights, in_chans=in_chans, num_classes=num_classes).to(device)
    if channels_last:
        model = runtime.to_channels_last(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator().manual_seed(seed + 1)
    return TrainingSetup(model, optimizer, scheduler, generator,
                         build_transform(augment, train=True, channels=in_chans).to(device),
                         build_transform("none", train=False, channels=in_chans).to(device))


def fit(model, optimizer, scheduler, images: torch.Tensor, labels, train_idx, val_idx, *, epochs: int,
        patience: int, transform_train: Callable, transform_eval: Callable, batch_size: int, device,
        generator: torch.Generator, amp: bool | None = None, channels_last: bool = True,
        class_weights: torch.Tensor | None = None, resume: dict | None = None,
        on_epoch_end: Callable | None = None, progress: Callable | None = None) -> FitResult:
    """Train for up to ``epochs`` with early stopping on ``val_idx``; restore the best weights.

    Parameters
    ----------
    resume : dict, optional
        A checkpoint from :mod:`fusion.checkpoint`: model, optimizer, scheduler, early
        stopping, RNG and generator states are restored and training continues at
        ``resume['epoch'] + 1`` — on CPU the result is identical to an uninterrupted run.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, stopper, history)`` after each epoch (used to checkpoint).
    progress : callable, optional
        ``progress(epoch) -> tqdm-like`` bar for that epoch (or None).

    Returns
    -------
    FitResult
    """
    stopper = EarlyStopping(patience)
    history: list = []
    start = 0
    if resume is not None:
        unwrap(model).load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("scheduler") is not None:
            scheduler.load_state_dict(resume["scheduler"])
        stopper.load_state_dict(resume["early_stopping"])
        history = list(resume.get("history") or [])
        set_rng_state(resume["rng"])
        if resume.get("generator") is not None:
            generator.set_state(resume["generator"])
        start = int(resume["epoch"]) + 1
    if not len(val_idx):
        raise ValueError("fit needs a non-empty inner validation set for early stopping")
    for epoch in range(start, epochs):
        if stopper.should_stop:
            break
        bar = progress(epoch) if progress is not None else None
        train_loss = train_one_epoch(model, optimizer, images, labels, train_idx, transform=transform_train,
                                     batch_size=batch_size, device=device, generator=generator, amp=amp,
                                     channels_last=channels_last, class_weights=class_weights, progress=bar)
        if bar is not None:
            bar.close()
        val_loss, _ = evaluate(model, images, labels, val_idx, transform=transform_eval, batch_size=batch_size,
                               device=device, amp=amp, channels_last=channels_last, class_weights=class_weights)
        if scheduler is not None:
            scheduler.step()
        stopper.step(val_loss, epoch, model)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "lr": float(optimizer.param_groups[0]["lr"])})
        if on_epoch_end is not None:
            on_epoch_end(epoch, stopper, history)
    if stopper.best_state is not None:
        unwrap(model).load_state_dict(stopper.best_state)
    return FitResult(stopper.best_epoch, stopper.best_loss, len(history), history)
