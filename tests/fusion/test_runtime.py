"""fusion.runtime: seeds, threads, device parsing, autocast, sharding, unwrap."""
import random

import numpy as np
import pytest
import torch

from analysis.errors import ConfigError
from fusion.runtime import (
    amp_dtype,
    autocast,
    init_distributed,
    is_main_process,
    pick_device,
    set_seed,
    set_threads,
    shard_indices,
    to_channels_last,
    unwrap,
)


def test_same_seed_same_draws():
    set_seed(3)
    a = (random.random(), np.random.rand(), torch.rand(2))
    set_seed(3)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_threads_default_to_one():
    assert set_threads(None) == 1
    assert set_threads(2) == 2
    assert set_threads(1) == 1
    with pytest.raises(ConfigError):
        set_threads(-1)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ConfigError, match="did you mean 'cuda'"):
        pick_device("cdua")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda:1")


def test_autocast_is_bf16_on_request_and_off_by_default_on_cpu():
    cpu = torch.device("cpu")
    assert amp_dtype(cpu, None) is None and amp_dtype(cpu, True) is torch.bfloat16
    lin = torch.nn.Linear(4, 4)
    with autocast(cpu, True):
        assert lin(torch.ones(1, 4)).dtype == torch.bfloat16
    with autocast(cpu, None):
        assert lin(torch.ones(1, 4)).dtype == torch.float32


def test_shards_are_equal_sized_and_cover_everything():
    parts = [shard_indices(10, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]
    assert set(np.concatenate(parts)) == set(range(10))
    assert np.array_equal(shard_indices(5, 0, 1), np.arange(5))


def test_single_process_defaults(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not init_distributed().distributed
    assert is_main_process()


def test_channels_last_and_unwrap():
    x = to_channels_last(torch.zeros(2, 3, 4, 4))
    assert x.is_contiguous(memory_format=torch.channels_last)
    m = torch.nn.Conv2d(3, 3, 1)
    assert unwrap(m) is m


def test_gpu_is_read_as_cuda():
    import torch

    from analysis.errors import ConfigError
    from fusion.runtime import pick_device

    if torch.cuda.is_available():
        assert pick_device("gpu").type == "cuda"
    else:
        with pytest.raises(ConfigError, match="--device cuda: CUDA is not available"):
            pick_device("gpu")
