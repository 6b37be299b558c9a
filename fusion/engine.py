"""The training loop, as plain functions (after torchvision's references/classification).

:func:`fit` takes four objects: a :class:`TrainingSetup` (model, optimiser, scheduler,
shuffling generator, transforms), the data (:class:`ImageData`, or
:class:`fusion.joint.JointData` for the multi-input joint-fusion network), the
:class:`FitOptions` (epochs, patience, batch size, precision, class weights, resume) and an
optional loss ``criterion(logits, target)``. :func:`train_one_epoch`, :func:`evaluate` and
:func:`predict_proba` are the steps it is made of.

Images are held once, decoded, as ``uint8`` tensors ``(N, C, H, W)``. A batch is drawn by
**index** (no per-item ``DataLoader``, no decoding per epoch): the data object's
``inputs(idx, transform, device, channels_last)`` moves the rows to the device and only then
converts and augments them with a batch transform (uint8 -> normalised float). Under DDP each
rank takes a disjoint shard of the shuffled positions, like ``DistributedSampler``;
evaluation and prediction run on every rank in full.

Model selection: :class:`EarlyStopping` watches the loss on the **inner validation**
patients (never the test fold) and keeps a copy of the best epoch's weights, which
:func:`fit` restores at the end. Under DDP the decision is taken once for all ranks (see
:func:`fit`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fusion.runtime import (
    autocast,
    broadcast_buffers,
    get_rank,
    get_world_size,
    is_distributed,
    mean_over_ranks,
    set_rng_state,
    shard_indices,
    unwrap,
)

__all__ = [
    "ImageData",
    "FitOptions",
    "default_criterion",
    "adamw_cosine",
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


class ImageData:
    """One modality's images and labels, drawn in batches by position.

    Parameters
    ----------
    images : torch.Tensor of uint8, (N, C, H, W)
        All images of the modality (CPU or device), decoded once.
    labels : array-like of int, (N,)
        Class index of each row.
    train_idx, val_idx : array-like of int, optional
        Rows :func:`fit` trains on and early-stops on (empty: prediction only).

    Notes
    -----
    Any object with ``labels``, ``train_idx``, ``val_idx`` and :meth:`inputs` can be given to
    :func:`fit`; :class:`fusion.joint.JointData` (several modalities, a presence mask and
    clinical features) is the other one in the toolkit.
    """

    def __init__(self, images: torch.Tensor, labels, train_idx=(), val_idx=()):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.train_idx = np.asarray(train_idx, dtype=np.int64)
        self.val_idx = np.asarray(val_idx, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def inputs(self, idx, transform: Callable, device, channels_last: bool) -> torch.Tensor:
        """The rows ``idx`` on ``device``, transformed (uint8 -> normalised float)."""
        x = self.images[torch.as_tensor(idx, dtype=torch.long)].to(device, non_blocking=True)
        x = transform(x)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


@dataclass
class FitOptions:
    """How :func:`fit` trains (everything but the model, the data and the loss).

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    patience : int or None
        Early-stopping patience in epochs (:class:`EarlyStopping`); None or 0: no early stop,
        every epoch is trained and the epoch with the lowest validation loss is kept.
    batch_size : int
        Images (or patients) per step **per process**; under DDP the global batch is
        ``batch_size * world_size``.
    amp : bool or None
        bf16 autocast (``None``: on for CUDA only, :func:`fusion.runtime.amp_dtype`).
    channels_last : bool
    class_weights : torch.Tensor or None
        Class weights of the default cross-entropy loss and of the validation loss.
    resume : dict or None
        A checkpoint of :mod:`fusion.checkpoint` to continue from (see :func:`fit`).
    min_epochs : int
        Early stopping never ends training before this many epochs (:class:`EarlyStopping`).
    """

    epochs: int
    patience: int | None
    batch_size: int
    amp: bool | None = None
    channels_last: bool = True
    class_weights: torch.Tensor | None = None
    resume: dict | None = None
    min_epochs: int = 0


def default_criterion(class_weights: torch.Tensor | None = None, device=None) -> Callable:
    """Cross-entropy on float32 logits, class-weighted when ``class_weights`` is given."""
    weight = None if class_weights is None else class_weights.to(device)
    return lambda logits, target: F.cross_entropy(logits, target, weight=weight)


def train_one_epoch(model, criterion: Callable, optimizer, data, *, transform: Callable, batch_size: int,
                    device, generator: torch.Generator | None = None, amp: bool | None = None,
                    channels_last: bool = True, progress=None) -> float:
    """One pass over ``data.train_idx`` (shuffled, sharded over DDP ranks).

    Parameters
    ----------
    model : torch.nn.Module
        Possibly DDP-wrapped; put in train mode here.
    criterion : callable
        ``criterion(logits, target) -> loss`` (logits cast to float32), e.g.
        :func:`default_criterion`.
    optimizer : torch.optim.Optimizer
    data : ImageData or fusion.joint.JointData
        ``data.inputs(idx, transform, device, channels_last)`` is the model's input for
        rows ``idx`` and ``data.labels[idx]`` their classes.
    transform : callable
        Training transform handed to ``data.inputs`` (augments).
    batch_size : int
    device : torch.device
    generator : torch.Generator, optional
        Shuffling generator (saved in checkpoints for exact resume).
    amp : bool or None
        bf16 autocast (``None``: on for CUDA only).
    channels_last : bool, default True
    progress : tqdm or None
        Updated by the number of rows per step.

    Returns
    -------
    float
        Mean training loss over every rank's rows.
    """
    model.train()
    labels_t = torch.as_tensor(data.labels)
    total, count = 0.0, 0
    for idx in batch_indices(data.train_idx, batch_size, True, generator, get_rank(), get_world_size(),
                             merge_singleton=True):
        x = data.inputs(idx, transform, device, channels_last)
        y = labels_t[torch.as_tensor(idx)].to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        loss = criterion(logits.float(), y)
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
def predict_proba(model, data, indices=None, *, transform: Callable, batch_size: int = 64, device=None,
                  amp: bool | None = None, channels_last: bool = True) -> np.ndarray:
    """Softmax probabilities ``(len(indices), n_classes)`` (float64) of ``data``'s rows ``indices``.

    ``data`` is an :class:`ImageData` (or a bare uint8 image tensor), or any object with
    :meth:`ImageData.inputs`; ``indices`` default to every row. The unwrapped model is used in
    eval mode, so each row's output does not depend on the other rows of its batch.
    """
    if isinstance(data, torch.Tensor):
        data = ImageData(data, np.zeros(data.shape[0], dtype=np.int64))
    net = unwrap(model)
    device = device or next(net.parameters()).device
    net.eval()
    indices = np.arange(len(data)) if indices is None else np.asarray(indices, dtype=np.int64)
    out = []
    for start in range(0, len(indices), batch_size):
        x = data.inputs(indices[start:start + batch_size], transform, device, channels_last)
        with autocast(device, amp):
            logits = net(x)
        out.append(torch.softmax(logits.float(), dim=1).cpu().double())
    if not out:
        return np.zeros((0, net.num_classes if hasattr(net, "num_classes") else 0))
    return torch.cat(out).numpy()


@torch.no_grad()
def evaluate(model, data, indices, *, transform: Callable, batch_size: int = 64, device=None,
             amp: bool | None = None, channels_last: bool = True,
             class_weights: torch.Tensor | None = None) -> tuple[float, np.ndarray]:
    """Mean (class-weighted) cross-entropy and probabilities on ``data``'s rows ``indices``.

    The loss is computed from the float64 probabilities of :func:`predict_proba` (clamped at
    ``1e-12``): the early-stopping measure, the same whatever training loss was used.

    Returns
    -------
    (loss, proba) : (float, numpy.ndarray of shape (len(indices), n_classes))
        ``loss`` is NaN when ``indices`` is empty.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return math.nan, np.zeros((0, 0))
    proba = predict_proba(model, data, indices, transform=transform, batch_size=batch_size, device=device,
                          amp=amp, channels_last=channels_last)
    y = torch.as_tensor(np.asarray(data.labels)[indices], dtype=torch.long)
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

    Never before ``min_epochs`` epochs have run: the validation loss of the first epochs of a
    freshly initialised network (batch-norm statistics still settling, the learning rate at
    its peak) often jumps (e.g. to 6.6 after epoch 1), and a short patience would end the run
    on that noise and restore a barely trained model.  Keeps a CPU copy of the best epoch's
    weights (``best_state``).
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0, min_epochs: int = 0):
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.min_epochs = int(min_epochs)
        self.best_loss = math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.epochs_seen = 0
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
        self.epochs_seen += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience and self.epochs_seen >= self.min_epochs

    def state_dict(self) -> dict:
        return {"patience": self.patience, "min_delta": self.min_delta, "best_loss": self.best_loss,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "best_state": self.best_state,
                "min_epochs": self.min_epochs, "epochs_seen": self.epochs_seen}

    def load_state_dict(self, state: dict) -> None:
        self.patience = int(state["patience"])
        self.min_delta = float(state["min_delta"])
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.best_state = state["best_state"]
        self.min_epochs = int(state.get("min_epochs", 0))
        self.epochs_seen = int(state.get("epochs_seen", self.best_epoch + 1 + self.bad_epochs))


@dataclass
class FitResult:
    """Outcome of :func:`fit`: best epoch (0-based), its validation loss, per-epoch history."""

    best_epoch: int
    best_loss: float
    epochs_run: int
    history: list = field(default_factory=list)


@dataclass
class TrainingSetup:
    """What :func:`fit` trains: model, optimiser, schedule, shuffling generator and transforms.

    ``model`` may be wrapped (DDP, ``torch.compile``); ``device`` defaults to the device of
    the model's parameters. ``transform_train`` / ``transform_eval`` are handed to the
    data's ``inputs`` (one :class:`~fusion.transforms.BatchTransform` for :class:`ImageData`,
    one per modality for :class:`fusion.joint.JointData`).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    generator: torch.Generator
    transform_train: Callable
    transform_eval: Callable
    device: torch.device | None = None


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
    optimizer, scheduler = adamw_cosine(model, lr=lr, weight_decay=weight_decay, epochs=epochs)
    generator = torch.Generator().manual_seed(seed + 1)
    return TrainingSetup(model, optimizer, scheduler, generator,
                         build_transform(augment, train=True, channels=in_chans).to(device),
                         build_transform("none", train=False, channels=in_chans).to(device), torch.device(device))


def adamw_cosine(model: torch.nn.Module, *, lr: float, weight_decay: float, epochs: int):
    """AdamW over every parameter and a cosine learning-rate decay over ``epochs`` (stepped per epoch)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)


def fit(setup: TrainingSetup, data, options: FitOptions, criterion: Callable | None = None, *,
        on_epoch_end: Callable | None = None, progress: Callable | None = None) -> FitResult:
    """Train for up to ``options.epochs`` with early stopping on ``data.val_idx``; restore the best weights.

    Parameters
    ----------
    setup : TrainingSetup
        Model (possibly DDP-wrapped), optimiser, scheduler (stepped once per epoch, may be
        None), shuffling generator and the training / evaluation transforms.
    data : ImageData or fusion.joint.JointData
        Rows to train on (``train_idx``) and to early-stop on (``val_idx``, the inner
        validation patients, never the test fold).
    options : FitOptions
        Epochs, patience, batch size, precision, class weights, and ``resume``: a checkpoint
        from :mod:`fusion.checkpoint` whose model, optimizer, scheduler, early stopping, RNG and
        generator states are restored; training continues at ``resume['epoch'] + 1``, and on
        CPU the result is identical to an uninterrupted run.
    criterion : callable, optional
        Training loss ``criterion(logits, target)``; default :func:`default_criterion` with
        ``options.class_weights``. Early stopping always watches :func:`evaluate`'s
        (class-weighted) cross-entropy, so runs with different losses select epochs alike.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, stopper, history)`` after each epoch (used to checkpoint).
    progress : callable, optional
        ``progress(epoch) -> tqdm-like`` bar for that epoch (or None).

    Returns
    -------
    FitResult

    Notes
    -----
    Under DDP every rank trains on its shard and then evaluates the whole validation set.
    Before that evaluation the buffers (batch-norm running statistics, which each rank
    updated on its own shard) are broadcast from rank 0, and the validation loss is averaged
    over the ranks (:func:`fusion.runtime.mean_over_ranks`), so every rank sees the same loss,
    keeps the same best epoch and stops at the same epoch (a rank that stopped alone would
    leave the others waiting in their next all-reduce).
    """
    model, optimizer, scheduler, generator = setup.model, setup.optimizer, setup.scheduler, setup.generator
    device = setup.device if setup.device is not None else next(unwrap(model).parameters()).device
    if criterion is None:
        criterion = default_criterion(options.class_weights, device)
    # no patience: a patience longer than the run, so training never stops early but the best epoch is kept
    stopper = EarlyStopping(options.patience or options.epochs + 1, min_epochs=options.min_epochs)
    history: list = []
    start = 0
    resume = options.resume
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
    if not len(data.val_idx):
        raise ValueError("fit needs a non-empty inner validation set for early stopping")
    for epoch in range(start, options.epochs):
        if stopper.should_stop:
            break
        bar = progress(epoch) if progress is not None else None
        train_loss = train_one_epoch(model, criterion, optimizer, data, transform=setup.transform_train,
                                     batch_size=options.batch_size, device=device, generator=generator,
                                     amp=options.amp, channels_last=options.channels_last, progress=bar)
        if bar is not None:
            bar.close()
        broadcast_buffers(model)
        val_loss, _ = evaluate(model, data, data.val_idx, transform=setup.transform_eval,
                               batch_size=options.batch_size, device=device, amp=options.amp,
                               channels_last=options.channels_last, class_weights=options.class_weights)
        val_loss = mean_over_ranks(val_loss, device)
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
