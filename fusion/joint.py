"""Joint fusion: one network over every image modality and the clinical variables, trained end to end.

Where late fusion (:mod:`fusion.late_fusion`) stacks the probabilities of separately trained
CNNs, the joint network learns all of its parts together:

* one **branch per image modality**: a backbone of :mod:`fusion.backbones`
  (:func:`~fusion.backbones.create_backbone`, so it can start from ImageNet weights or from a
  ``fusion.pretrain`` / ``fusion.train`` checkpoint) whose penultimate embedding
  (``forward_features``) is projected to ``embed_dim``;
* a **clinical branch**: a small MLP over the encoded clinical variables (the encoding of
  :mod:`fusion.late_fusion`: continuous and ordinal standardised, categorical and binary
  one-hot, imputed, missing indicators; every statistic from the fold's training rows only);
* a **fusion head** (:mod:`fusion.heads`): concatenation (``'concat'``) or gated attention
  over the sources (``'gated'``).

Missing images. A patient without a modality's image is predicted from its other sources:
the presence mask (``MultimodalDataset.mask``) removes that source before the head (its slot
of the concatenation is zeroed, its attention weight is 0) and the branch never sees the
(absent) image at all -- each backbone runs only on the rows where its image is present, in
training as in prediction, so no zero image ever enters a network or its batch-norm
statistics. The head also receives the mask as 0/1 indicators.

Modality dropout. During training each present source of each row is switched off with
probability ``modality_dropout`` (independently, after Neverova et al.'s ModDrop), so the
network learns to predict from any subset of its sources; a branch left with a single image
in a training batch is switched off for that batch (batch norm cannot train on one image).

Sources can be switched off at prediction time (:func:`predict_proba`, ``source_mask``),
which is what per-patient contributions (e.g. exact Shapley values over the at most four
sources) are computed from.

Training (:func:`fit_joint`) uses :func:`fusion.engine.fit`: AdamW with a cosine schedule,
early stopping on the fold's inner validation rows (``Split.val_idx``, never the test fold),
best epoch restored. :func:`joint_fusion_predictions` trains one network per fold and fusion
head and returns the test rows in the prediction-file format of :mod:`fusion.evaluate`.

References
----------
Neverova N, Wolf C, Taylor G, Nebout F. ModDrop: adaptive multi-modal gesture recognition.
IEEE TPAMI 2016;38(8):1692-1706. doi:10.1109/TPAMI.2015.2461544
Ilse M, Tomczak JM, Welling M. Attention-based deep multiple instance learning. ICML 2018.
arXiv:1802.04712
"""
from __future__ import annotations

import sys
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.errors import AnalysisWarning, ConfigError
from fusion import runtime
from fusion.engine import FitOptions, FitResult, TrainingSetup, adamw_cosine, balanced_class_weights, fit
from fusion.engine import predict_proba as _engine_predict_proba
from fusion.heads import FUSION_HEADS, create_fusion_head

__all__ = ["JOINT_MODELS", "CLINICAL_SOURCE", "JointOptions", "JointData", "JointFusionNet", "JointFusionModel",
           "encode_clinical", "setup_joint", "fit_joint", "predict_proba", "joint_fusion_predictions"]

#: ``model`` value of the prediction rows of each fusion head.
JOINT_MODELS = {name: f"joint_{name}" for name in FUSION_HEADS}
#: Name of the clinical source (after the image modalities) in :attr:`JointFusionNet.sources`.
CLINICAL_SOURCE = "clinical"


@dataclass(frozen=True)
class JointOptions:
    """Architecture and training settings of the joint network.

    Attributes
    ----------
    backbone : str or mapping, default 'resnet18'
        Backbone of every image branch, or modality -> backbone.
    weights : str, path or mapping, default 'none'
        ``'none'``, ``'imagenet'`` or a checkpoint file, as ``fusion.train --weights``; a mapping
        gives each modality its own (e.g. each modality's ``fusion.pretrain`` checkpoint).
    embed_dim : int, default 128
        Size every source is projected to before fusion.
    hidden : int, default 128
        Hidden units of the fusion head's MLP.
    clinical_hidden : int, default 32
        Hidden units of the clinical branch.
    dropout : float, default 0.2
    modality_dropout : float, default 0.25
        Probability that a present source of a training row is switched off for that step.
    epochs, patience, batch_size, lr, weight_decay, augment, amp, channels_last, class_weights
        As in :class:`fusion.config.TrainConfig` (``batch_size`` counts patients; each
        branch sees at most that many images per step).
    """

    backbone: str | Mapping = "resnet18"
    weights: str | Mapping = "none"
    embed_dim: int = 128
    hidden: int = 128
    clinical_hidden: int = 32
    dropout: float = 0.2
    modality_dropout: float = 0.25
    epochs: int = 8
    patience: int | None = 3
    min_epochs: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    augment: str = "light"
    amp: bool | None = None
    channels_last: bool = True
    class_weights: bool = False

    @classmethod
    def from_config(cls, cfg, **changes) -> "JointOptions":
        """The options a :class:`fusion.config.TrainConfig` gives (its first backbone, weights and
        optimisation settings), with ``changes``."""
        kwargs = dict(backbone=cfg.backbones[0], weights=cfg.weights, epochs=cfg.epochs, patience=cfg.patience,
                      min_epochs=cfg.min_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                      weight_decay=cfg.weight_decay, augment=cfg.augment, amp=cfg.amp,
                      channels_last=cfg.channels_last, class_weights=cfg.class_weights)
        kwargs.update(changes)
        return cls(**kwargs)

    def for_modality(self, name: str, modality: str):
        value = getattr(self, name)
        if isinstance(value, Mapping):
            if modality not in value:
                raise ConfigError(f"joint fusion: no {name} given for modality '{modality}' "
                                  f"(given for: {', '.join(map(str, value))})")
            return value[modality]
        return value


# ----------------------------------------------------------------------------- data
class JointData:
    """Every modality's images, the source mask and the clinical matrix, drawn by row.

    Parameters
    ----------
    images : dict
        Modality -> uint8 ``(N, C, H, W)`` (``MultimodalDataset.tensors``).
    mask : bool tensor ``(N, n_modalities)``
        Image presence (``MultimodalDataset.mask``), columns in ``images`` order.
    clinical : float tensor ``(N, F)`` or None
        Encoded clinical variables (:func:`encode_clinical`); None or ``F = 0``: no clinical
        source.
    labels : array-like of int ``(N,)``
    train_idx, val_idx : array-like of int, optional
        Rows to train and early-stop on.

    Attributes
    ----------
    sources : tuple of str
        The modalities, then ``'clinical'`` when there is a clinical source.
    source_mask : bool tensor ``(N, S)``
        Presence of each source (the clinical source is present for every row).
    """

    def __init__(self, images: dict, mask, clinical, labels, train_idx=(), val_idx=()):
        self.images = dict(images)
        self.modalities = tuple(self.images)
        n = len(labels)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.train_idx = np.asarray(train_idx, dtype=np.int64)
        self.val_idx = np.asarray(val_idx, dtype=np.int64)
        mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
        if mask.shape != (n, len(self.modalities)):
            raise ValueError(f"mask must be (N={n}, {len(self.modalities)}), got {tuple(mask.shape)}")
        self.clinical = None if clinical is None or clinical.shape[1] == 0 else torch.as_tensor(
            clinical, dtype=torch.float32)
        self.sources = self.modalities + ((CLINICAL_SOURCE,) if self.clinical is not None else ())
        self.source_mask = mask if self.clinical is None else torch.cat([mask, torch.ones(n, 1, dtype=torch.bool)], 1)

    def __len__(self) -> int:
        return len(self.labels)

    def with_sources(self, source_mask) -> "JointData":
        """The same data with sources switched off where ``source_mask`` is False.

        ``source_mask``: bool ``(S,)`` for every row or ``(N, S)`` per row, in :attr:`sources`
        order. A source absent from the data stays absent. Pixels and values are shared.
        """
        on = torch.as_tensor(np.asarray(source_mask, dtype=bool))
        if on.shape not in ((len(self.sources),), (len(self), len(self.sources))):
            raise ValueError(f"source_mask must have shape ({len(self.sources)},) or ({len(self)}, "
                             f"{len(self.sources)}) for sources {self.sources}, got {tuple(on.shape)}")
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.source_mask = self.source_mask & on
        return out

    def inputs(self, idx, transform, device, channels_last: bool) -> dict:
        """Network input for rows ``idx``: ``images`` {modality: float (B, C, H, W)}, ``mask``
        (B, S) and ``clinical`` (B, F) or None. ``transform`` maps modality -> batch transform."""
        rows = torch.as_tensor(idx, dtype=torch.long)
        images = {}
        for m in self.modalities:
            x = transform[m](self.images[m][rows].to(device, non_blocking=True))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            images[m] = x
        clinical = None if self.clinical is None else self.clinical[rows].to(device, non_blocking=True)
        return {"images": images, "mask": self.source_mask[rows].to(device), "clinical": clinical}


def encode_clinical(clinical: pd.DataFrame, schema, train_idx) -> np.ndarray:
    """Clinical design matrix ``(N, F)``, every statistic estimated on the rows ``train_idx``.

    The encoding of :mod:`fusion.late_fusion` (``_variable_types`` / ``_clinical_features``):
    continuous and ordinal (level scores) imputed with the training mean and standardised
    with the training mean / SD; categorical and binary imputed with the training mode and
    one-hot against the first level; a missing indicator for every variable with a missing
    value in the table. ``F = 0`` when no variable is usable.
    """
    from fusion.late_fusion import _clinical_features, _variable_types

    frame = clinical.reset_index(drop=True)
    types = _variable_types(frame, schema) if frame.shape[1] else {}
    if not types:
        return np.zeros((len(frame), 0))
    train_mask = np.zeros(len(frame), dtype=bool)
    train_mask[np.asarray(train_idx, dtype=np.int64)] = True
    return _clinical_features(frame, types, train_mask)


# ----------------------------------------------------------------------------- network
class JointFusionNet(nn.Module):
    """A branch per image modality, an optional clinical branch and a fusion head.

    Parameters
    ----------
    branches : dict
        Modality -> :class:`fusion.backbones.Backbone` (its ``forward_features`` is used).
    n_clinical : int
        Columns of the clinical matrix (0: no clinical branch).
    num_classes : int
    fusion : {'concat', 'gated'}
    embed_dim, hidden, clinical_hidden, dropout, modality_dropout
        See :class:`JointOptions`.

    Notes
    -----
    ``forward(inputs)`` takes the dict of :meth:`JointData.inputs` and returns logits
    ``(B, num_classes)``. See the module docstring for how absent sources are excluded.
    """

    def __init__(self, branches: dict, n_clinical: int, num_classes: int, *, fusion: str = "concat",
                 embed_dim: int = 128, hidden: int = 128, clinical_hidden: int = 32, dropout: float = 0.2,
                 modality_dropout: float = 0.25):
        super().__init__()
        self.modalities = tuple(branches)
        self.sources = self.modalities + ((CLINICAL_SOURCE,) if n_clinical else ())
        self.num_classes = int(num_classes)
        self.fusion = fusion
        self.embed_dim = int(embed_dim)
        self.modality_dropout = float(modality_dropout)
        self.branches = nn.ModuleDict(branches)
        for b in self.branches.values():
            b.head = nn.Identity()  # only the embedding is used; no unused parameters
        self.projections = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(b.info.embedding_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
            for m, b in self.branches.items()})
        self.clinical = None
        if n_clinical:
            self.clinical = nn.Sequential(nn.Linear(n_clinical, clinical_hidden), nn.ReLU(),
                                          nn.Linear(clinical_hidden, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.head = create_fusion_head(fusion, len(self.sources), embed_dim, num_classes, hidden=hidden,
                                       dropout=dropout)

    def _training_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Modality dropout, then no branch with a single image in the batch (see module docs)."""
        if self.modality_dropout > 0:
            mask = mask & (torch.rand(mask.shape, device=mask.device) >= self.modality_dropout)
        single = mask[:, :len(self.modalities)].sum(0) == 1
        if bool(single.any()):
            mask = mask.clone()
            mask[:, :len(self.modalities)] &= ~single
        return mask

    def forward(self, inputs: dict) -> torch.Tensor:
        mask = inputs["mask"].bool()
        if self.training:
            mask = self._training_mask(mask)
        feats = []
        for j, m in enumerate(self.modalities):
            x = inputs["images"][m]
            rows = mask[:, j].nonzero().squeeze(1)
            h = torch.zeros(x.shape[0], self.embed_dim, device=x.device)
            if len(rows):
                xs = x.index_select(0, rows)
                if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                    xs = xs.contiguous(memory_format=torch.channels_last)
                emb = self.projections[m](self.branches[m].forward_features(xs))
                h = h.index_copy(0, rows, emb.float())
            feats.append(h)
        if self.clinical is not None:
            feats.append(self.clinical(inputs["clinical"]).float())
        return self.head(torch.stack(feats, dim=1), mask)


def setup_joint(modalities, channels: Mapping, n_clinical: int, num_classes: int, *, fusion: str,
                options: JointOptions, device, seed: int) -> TrainingSetup:
    """Seeded :class:`JointFusionNet` on ``device`` with AdamW + cosine, shuffling generator and
    one training / evaluation transform per modality (global seed ``seed``, generator ``seed + 1``)."""
    from fusion.backbones import create_backbone
    from fusion.transforms import build_transform

    runtime.set_seed(seed)
    branches = {m: create_backbone(options.for_modality("backbone", m), options.for_modality("weights", m),
                                   in_chans=int(channels[m]), num_classes=num_classes) for m in modalities}
    net = JointFusionNet(branches, n_clinical, num_classes, fusion=fusion, embed_dim=options.embed_dim,
                         hidden=options.hidden, clinical_hidden=options.clinical_hidden, dropout=options.dropout,
                         modality_dropout=options.modality_dropout).to(device)
    if options.channels_last:
        net = runtime.to_channels_last(net)
    optimizer, scheduler = adamw_cosine(net, lr=options.lr, weight_decay=options.weight_decay, epochs=options.epochs)
    t_train = {m: build_transform(options.augment, train=True, channels=int(channels[m])).to(device)
               for m in modalities}
    t_eval = {m: build_transform("none", train=False, channels=int(channels[m])).to(device) for m in modalities}
    return TrainingSetup(net, optimizer, scheduler, torch.Generator().manual_seed(seed + 1), t_train, t_eval,
                         torch.device(device))


@torch.no_grad()
def predict_proba(network: JointFusionNet, data: JointData, indices=None, *, transform: Mapping,
                  source_mask=None, batch_size: int = 64, device=None, amp: bool | None = None,
                  channels_last: bool = True) -> np.ndarray:
    """Class probabilities ``(len(indices), n_classes)`` of rows ``indices``, some sources switched off.

    Parameters
    ----------
    network : JointFusionNet
    data : JointData
    indices : array-like of int, optional
        Rows to predict (default: all).
    transform : mapping
        Modality -> evaluation transform (``TrainingSetup.transform_eval``).
    source_mask : array-like of bool, optional
        ``(S,)`` for every row, or ``(len(indices), S)`` per predicted row, in
        ``network.sources`` order; False switches a source off (as if absent). None: every
        present source.
    batch_size, device, amp, channels_last
        As :func:`fusion.engine.predict_proba`.

    Notes
    -----
    A switched-off source reaches the output in no way: its branch does not run on the row
    and the head sees a zero slot / zero attention weight and a 0 indicator. Rows do not
    influence each other (eval mode), so the output of a row depends only on its own inputs.
    """
    indices = np.arange(len(data)) if indices is None else np.asarray(indices, dtype=np.int64)
    if source_mask is not None:
        on = np.asarray(source_mask, dtype=bool)
        if on.ndim == 2:
            if on.shape[0] != len(indices) or len(np.unique(indices)) != len(indices):
                raise ValueError(f"a per-row source_mask needs one row per (distinct) index: {len(indices)} "
                                 f"indices, {on.shape[0]} mask rows")
            full = np.ones((len(data), on.shape[1]), dtype=bool)
            full[indices] = on
            on = full
        data = data.with_sources(on)
    return _engine_predict_proba(network, data, indices, transform=transform, batch_size=batch_size, device=device,
                                 amp=amp, channels_last=channels_last)


@dataclass
class JointFusionModel:
    """A trained joint network with what it needs to predict rows of its data.

    Attributes
    ----------
    network : JointFusionNet
    data : JointData
        The fold's data (rows of the dataset it was trained from, clinical matrix encoded with
        the fold's training statistics).
    transform : dict
        Modality -> evaluation transform.
    fit_result : FitResult
        Best epoch, its validation loss and the per-epoch history.
    options : JointOptions
    device : torch.device
    """

    network: JointFusionNet
    data: JointData
    transform: dict
    fit_result: FitResult
    options: JointOptions
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def sources(self) -> tuple:
        """Source names in ``source_mask`` order: the modalities, then ``'clinical'`` if used."""
        return self.network.sources

    def predict_proba(self, indices=None, source_mask=None) -> np.ndarray:
        """:func:`predict_proba` of rows ``indices`` of :attr:`data` (see there for ``source_mask``)."""
        return predict_proba(self.network, self.data, indices, transform=self.transform, source_mask=source_mask,
                             batch_size=self.options.batch_size, device=self.device, amp=self.options.amp,
                             channels_last=self.options.channels_last)


def _unit_seed(seed: int, fusion: str, fold) -> int:
    return (int(seed) + zlib.crc32(f"joint/{fusion}/{fold}".encode())) % (2**31)


def fit_joint(dataset, split, *, fusion: str = "concat", clinical: bool = True, options: JointOptions | None = None,
              device="cpu", seed: int = 0, progress: bool = False) -> JointFusionModel:
    """Train one joint network on ``split.train_idx``, early-stopping on ``split.val_idx``.

    Parameters
    ----------
    dataset : fusion.dataset.MultimodalDataset
    split : fusion.splits.Split
        Positions into ``dataset``; ``val_idx`` (inner validation) must not be empty.
    fusion : {'concat', 'gated'}
    clinical : bool, default True
        Add the clinical branch (when the dataset has usable clinical variables).
    options : JointOptions, optional
    device : str or torch.device, default 'cpu'
    seed : int
        Seed of this network (initialisation, modality dropout, augmentation, shuffling).
    progress : bool
        A tqdm bar over epochs on stderr.

    Returns
    -------
    JointFusionModel

    Raises
    ------
    ConfigError
        Unknown fusion head, no inner validation rows, or a modality without a training image.
    """
    options = options or JointOptions()
    if fusion not in FUSION_HEADS:
        create_fusion_head(fusion, 1, 1, 1)  # raises the ConfigError with did-you-mean
    device = torch.device(device)
    labels = dataset.labels.cpu().numpy()
    train_idx = np.asarray(split.train_idx, dtype=np.int64)
    val_idx = np.asarray(split.val_idx, dtype=np.int64)
    if not len(val_idx):
        raise ConfigError(f"joint fusion, fold {split.fold}: no inner validation patients for early stopping "
                          "(fusion.splits.with_inner_validation)")
    mask = dataset.mask.cpu()
    for j, m in enumerate(dataset.modalities):
        if not bool(mask[train_idx, j].any()):
            raise ConfigError(f"joint fusion, fold {split.fold}: no training image of modality '{m}'")
    x_clin = encode_clinical(dataset.clinical, dataset.schema, train_idx) if clinical else None
    data = JointData({m: dataset.tensors(m) for m in dataset.modalities}, mask, x_clin, labels)
    # rows with no source at all (no image, no clinical branch) carry nothing to learn from
    usable = data.source_mask.any(1).numpy()
    data.train_idx, data.val_idx = train_idx[usable[train_idx]], val_idx[usable[val_idx]]
    if not len(data.val_idx):
        raise ConfigError(f"joint fusion, fold {split.fold}: no inner validation patient has an image")
    n_clinical = 0 if data.clinical is None else int(data.clinical.shape[1])
    setup = setup_joint(dataset.modalities, dataset.channels, n_clinical, len(dataset.class_names), fusion=fusion,
                        options=options, device=device, seed=seed)
    weights = balanced_class_weights(labels[data.train_idx], len(dataset.class_names)) if options.class_weights \
        else None
    fit_options = FitOptions(epochs=options.epochs, patience=options.patience, min_epochs=options.min_epochs,
                             batch_size=options.batch_size,
                             amp=options.amp, channels_last=options.channels_last, class_weights=weights)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=options.epochs, desc=f"joint_{fusion}/" + ("final" if split.kind == "final" else f"fold{split.fold}"), unit="epoch", file=sys.stderr,
                   leave=False)

    def on_epoch_end(epoch, stopper, history):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(train=f"{history[-1]['train_loss']:.3f}", val=f"{history[-1]['val_loss']:.3f}")

    result = fit(setup, data, fit_options, on_epoch_end=on_epoch_end)
    if bar is not None:
        bar.close()
    return JointFusionModel(setup.model, data, setup.transform_eval, result, options, device)


def joint_fusion_predictions(dataset, splits, *, fusion=("concat", "gated"), clinical: bool = True,
                             options: JointOptions | None = None, device="cpu", seed: int = 0,
                             progress: bool = False, on_model: Callable | None = None) -> pd.DataFrame:
    """Out-of-fold predictions of the joint network, one network per fold and fusion head.

    Parameters
    ----------
    dataset : fusion.dataset.MultimodalDataset
    splits : list of fusion.splits.Split
        With inner validation (``val_idx``); each fold's network is trained on ``train_idx``,
        early-stopped on ``val_idx`` and predicts ``test_idx``.
    fusion : str or sequence of {'concat', 'gated'}
    clinical : bool, default True
        With the clinical branch (``modality = 'fusion_images_clinical'``) or without
        (``'fusion_images'``). Without usable clinical variables in the dataset the images
        alone are used and an :class:`~analysis.errors.AnalysisWarning` says so.
    options : JointOptions, optional
    device : str or torch.device, default 'cpu'
    seed : int, default 0
        Fold ``k`` of head ``f`` is seeded from ``seed``, ``f`` and ``k`` (independent of
        which other networks ran before).
    progress : bool
        tqdm bars on stderr.
    on_model : callable, optional
        ``on_model(split, fusion, model)`` with each trained :class:`JointFusionModel` (e.g. to
        compute per-patient contributions with ``model.predict_proba(idx, source_mask)``).

    Returns
    -------
    pandas.DataFrame
        One row per test row per head: ``patient_id, fold, split`` (``'test'``, or
        ``'external'`` for ``Split.kind == 'hospital'``), ``y_true`` (class name), ``model``
        (``'joint_concat'`` / ``'joint_gated'``), ``modality`` (``'fusion_images_clinical'``
        or ``'fusion_images'``), ``p_<class>`` for every class; RangeIndex.

    Raises
    ------
    ConfigError
        See :func:`fit_joint`.
    """
    options = options or JointOptions()
    heads = (fusion,) if isinstance(fusion, str) else tuple(fusion)
    for name in heads:
        if name not in FUSION_HEADS:
            create_fusion_head(name, 1, 1, 1)
    use_clinical = bool(clinical)
    if use_clinical and encode_clinical(dataset.clinical, dataset.schema, []).shape[1] == 0:
        warnings.warn("joint fusion: the dataset has no usable clinical variable; the images alone are fused "
                      "(modality 'fusion_images')", AnalysisWarning, stacklevel=2)
        use_clinical = False
    variant = "fusion_images_clinical" if use_clinical else "fusion_images"
    classes = list(dataset.class_names)
    ids = np.asarray(dataset.patient_ids, dtype=object)
    labels = dataset.labels.cpu().numpy()
    frames = []
    for name in heads:
        for split in splits:
            model = fit_joint(dataset, split, fusion=name, clinical=use_clinical, options=options, device=device,
                              seed=_unit_seed(seed, name, split.fold), progress=progress)
            if on_model is not None:
                on_model(split, name, model)
            test_idx = np.asarray(split.test_idx, dtype=np.int64)
            proba = model.predict_proba(test_idx)
            frame = pd.DataFrame({"patient_id": ids[test_idx], "fold": split.fold,
                                  "split": "external" if split.kind == "hospital" else "test",
                                  "y_true": np.asarray(classes, dtype=object)[labels[test_idx]],
                                  "model": JOINT_MODELS[name], "modality": variant})
            for k, c in enumerate(classes):
                frame[f"p_{c}"] = proba[:, k]
            frames.append(frame)
    cols = ["patient_id", "fold", "split", "y_true", "model", "modality", *[f"p_{c}" for c in classes]]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
