"""fusion.checkpoint: plain dicts, weights_only loading, atomic rolling latest.pt."""
import random

import numpy as np
import pytest
import torch

from analysis.errors import ConfigError
from fusion.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from fusion.runtime import set_rng_state, set_seed

torch.set_num_threads(1)


def _parts():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 5)
    sched.step()
    return model, opt, sched


def test_checkpoint_round_trips_with_weights_only(tmp_path):
    model, opt, sched = _parts()
    gen = torch.Generator().manual_seed(3)
    ckpt = make_checkpoint(model, opt, sched, epoch=2, best_metric=0.5,
                           early_stopping={"best_loss": 0.5, "best_state": model.state_dict()},
                           config={"size": 64, "modalities": ["2d"], "amp": None}, generator=gen)
    path = save_checkpoint(ckpt, tmp_path, keep_epochs=True)
    assert path == tmp_path / "latest.pt" and (tmp_path / "epoch_002.pt").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    back = load_checkpoint(path)  # weights_only=True inside
    assert back["epoch"] == 2 and back["config"] == {"size": 64, "modalities": ["2d"], "amp": None}
    torch.testing.assert_close(back["model"]["weight"], model.weight)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    opt2.load_state_dict(back["optimizer"])
    assert torch.equal(back["generator"], gen.get_state())


def test_rng_states_restore_python_numpy_and_torch(tmp_path):
    set_seed(7)
    model, opt, sched = _parts()
    save_checkpoint(make_checkpoint(model, opt, sched, epoch=0), tmp_path)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(99)
    set_rng_state(load_checkpoint(tmp_path / "latest.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a PyTorch file"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError, match="no 'model' entry"):
        load_checkpoint(tmp_path / "foreign.pt")
