"""fusion.engine: batches by index, a learning step, evaluate/predict, early stopping, exact resume."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from fusion.engine import (
    EarlyStopping,
    FitOptions,
    ImageData,
    TrainingSetup,
    balanced_class_weights,
    batch_indices,
    evaluate,
    fit,
    predict_proba,
    train_one_epoch,
)
from fusion.runtime import set_seed

torch.set_num_threads(1)
DEVICE = torch.device("cpu")


def to_float(x):
    return x.float() / 255.0


class TinyNet(nn.Module):
    def __init__(self, n_classes=2):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, n_classes)
        self.num_classes = n_classes

    def forward(self, x):
        return self.head(self.conv(x).relu().mean((2, 3)))


def separable_images(n=40, size=8, seed=0):
    """Class 1 images are bright, class 0 dark: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    base = torch.where(y[:, None, None, None] == 1, 180, 60)
    noise = torch.randint(-40, 40, (n, 1, size, size), generator=g)
    return (base + noise).clamp(0, 255).to(torch.uint8), y.numpy()


def test_batch_indices_cover_every_index_once_and_shard_evenly():
    idx = np.arange(10, 33)
    batches = batch_indices(idx, 5, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert sorted(np.concatenate(batches).tolist()) == idx.tolist()
    shards = [np.concatenate(batch_indices(idx, 4, True, torch.Generator().manual_seed(0), r, 2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 12  # 23 padded to 24
    assert set(shards[0]) | set(shards[1]) == set(idx)
    assert len(set(shards[0]) & set(shards[1])) <= 1  # only the wrap-around pad repeats


def test_training_lowers_the_loss_and_predict_proba_sums_to_one():
    set_seed(0)
    images, y = separable_images()
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    idx = np.arange(len(y))
    data = ImageData(images, y, train_idx=idx)
    before, _ = evaluate(model, data, idx, transform=to_float, device=DEVICE)
    for _ in range(15):
        train_one_epoch(model, nn.functional.cross_entropy, opt, data, transform=to_float, batch_size=8,
                        device=DEVICE, generator=torch.Generator().manual_seed(1))
    after, proba = evaluate(model, data, idx, transform=to_float, device=DEVICE)
    assert after < before * 0.8
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert (proba.argmax(1) == y).mean() > 0.8
    np.testing.assert_allclose(predict_proba(model, images, transform=to_float, batch_size=7), proba, rtol=1e-6)


def test_evaluate_loss_matches_cross_entropy_by_hand():
    set_seed(0)
    images, y = separable_images(10)
    model = TinyNet().eval()
    data = ImageData(images, y)
    loss, proba = evaluate(model, data, np.arange(10), transform=to_float, device=DEVICE)
    with torch.no_grad():
        ref = nn.functional.cross_entropy(model(to_float(images)), torch.as_tensor(y))
    assert loss == pytest.approx(float(ref), rel=1e-5)
    assert math.isnan(evaluate(model, data, [], transform=to_float, device=DEVICE)[0])


def test_balanced_class_weights_as_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 1, 2, 2])
    np.testing.assert_allclose(balanced_class_weights(y, 3).numpy(),
                               compute_class_weight("balanced", classes=np.arange(3), y=y), rtol=1e-6)


def test_early_stopping_keeps_the_best_weights_and_counts_patience():
    model = TinyNet()
    stop = EarlyStopping(patience=2)
    assert not stop.step(1.0, 0, model)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.head.bias += 1
    assert not stop.step(1.5, 1, model)
    assert stop.step(1.2, 2, model)
    assert stop.best_epoch == 0
    torch.testing.assert_close(stop.best_state["head.bias"], best["head.bias"])


def _setup(epochs):
    set_seed(0)
    model = TinyNet()
    opt = torch.optim.AdamW(model.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(5)
    return TrainingSetup(model, opt, sched, gen, lambda x: to_float(x) + 0.05 * torch.randn(x.shape), to_float)


def _fit(images, y, epochs, resume=None, on_epoch_end=None):
    setup = _setup(epochs)
    res = fit(setup, ImageData(images, y, np.arange(30), np.arange(30, 40)),
              FitOptions(epochs=epochs, patience=10, batch_size=8, resume=resume), on_epoch_end=on_epoch_end)
    return setup.model, setup.optimizer, setup.scheduler, setup.generator, res


def test_fit_resumed_from_a_checkpoint_equals_an_uninterrupted_fit(tmp_path):
    from fusion.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint

    images, y = separable_images()
    full, *_ = _fit(images, y, 4)

    class Killed(Exception):
        pass

    holder = {}

    def save_then_kill(epoch, stopper, history):
        ckpt = make_checkpoint(holder["model"], holder["opt"], holder["sched"], epoch=epoch,
                               early_stopping=stopper.state_dict(), generator=holder["gen"], history=history)
        save_checkpoint(ckpt, tmp_path)
        if epoch == 1:
            raise Killed

    import fusion.engine as engine

    real_fit = engine.fit

    def capturing_fit(setup, *a, **k):
        holder.update(model=setup.model, opt=setup.optimizer, sched=setup.scheduler, gen=setup.generator)
        return real_fit(setup, *a, **k)

    engine_fit, engine.fit = engine.fit, capturing_fit
    try:
        with pytest.raises(Killed):
            engine.fit(_setup(4), ImageData(images, y, np.arange(30), np.arange(30, 40)),
                       FitOptions(epochs=4, patience=10, batch_size=8), on_epoch_end=save_then_kill)
    finally:
        engine.fit = engine_fit
    set_seed(123)  # a fresh process would not share the killed run's RNG state
    resumed, _, _, _, res = _fit(images, y, 4, resume=load_checkpoint(tmp_path / "latest.pt"))
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    assert res.epochs_run == 4


def test_fit_trains_with_an_injected_loss_and_early_stops_on_the_cross_entropy():
    images, y = separable_images()
    seen = []

    def smoothed(logits, target):
        seen.append((logits.dtype, tuple(logits.shape), target.dtype))
        return nn.functional.cross_entropy(logits, target, label_smoothing=0.3)

    default, smooth = _setup(3), _setup(3)
    data = ImageData(images, y, np.arange(30), np.arange(30, 40))
    res_default = fit(default, data, FitOptions(epochs=3, patience=10, batch_size=8))
    res_smooth = fit(smooth, data, FitOptions(epochs=3, patience=10, batch_size=8), smoothed)
    assert len(seen) == 3 * 4 and all(s == (torch.float32, s[1], torch.int64) for s in seen)
    assert not torch.equal(default.model.head.weight, smooth.model.head.weight)
    # the validation loss is evaluate()'s cross-entropy whatever the training loss
    val, _ = evaluate(smooth.model, data, data.val_idx, transform=to_float, device=DEVICE)
    assert res_smooth.history[res_smooth.best_epoch]["val_loss"] == pytest.approx(val, rel=1e-12)
    assert res_default.epochs_run == res_smooth.epochs_run == 3


def test_early_stopping_never_ends_training_before_min_epochs():
    import torch

    from fusion.engine import EarlyStopping

    net = torch.nn.Linear(2, 2)
    # a fresh network's validation loss: good at epoch 0, a jump to 6.6, then slow improvement
    losses = [1.10, 6.6, 3.0, 1.6, 1.2, 1.05, 0.9, 0.8]
    plain = EarlyStopping(patience=3)
    for e, v in enumerate(losses):
        if plain.step(v, e, net):
            break
    assert e == 3 and plain.best_epoch == 0        # would stop at epoch 3 and keep the epoch-0 model
    guarded = EarlyStopping(patience=3, min_epochs=6)
    stopped = [guarded.step(v, e, net) for e, v in enumerate(losses)]
    assert True not in stopped and guarded.best_epoch == 7
    # the state survives a checkpoint round trip (resume), also from checkpoints written before min_epochs
    again = EarlyStopping()
    again.load_state_dict(guarded.state_dict())
    assert again.min_epochs == 6 and again.epochs_seen == 8
    old = {k: v for k, v in plain.state_dict().items() if k not in ("min_epochs", "epochs_seen")}
    again.load_state_dict(old)
    assert again.min_epochs == 0 and again.epochs_seen == 4 and again.should_stop


def test_without_patience_every_epoch_is_trained_and_the_lowest_loss_epoch_kept():
    """The training default (TrainConfig.patience None): no early stop; the returned model is the epoch
    with the lowest validation loss, not the last one."""
    images, y = separable_images()
    epochs = 6
    setup = _setup(epochs)
    seen = {}

    def remember(epoch, stopper, history):
        seen[epoch] = {k: v.clone() for k, v in setup.model.state_dict().items()}

    res = fit(setup, ImageData(images, y, np.arange(30), np.arange(30, 40)),
              FitOptions(epochs=epochs, patience=None, batch_size=8), on_epoch_end=remember)
    losses = [h["val_loss"] for h in res.history]
    assert len(losses) == epochs and res.best_epoch == int(np.argmin(losses))
    torch.testing.assert_close(setup.model.state_dict()["head.bias"], seen[res.best_epoch]["head.bias"])
    from fusion.config import TrainConfig

    assert TrainConfig().patience is None
