"""Run-time plumbing: seeds, CPU threads, device, mixed precision, DDP and rank 0.

Everything that depends on *where* the code runs lives here, so that the training loop
(:mod:`fusion.engine`) and the CLIs read the same on a laptop CPU, one GPU, or several
processes started by ``torchrun``.

Threads
-------
PyTorch starts one intra-op thread per core by default. On a small shared machine that is
a trap: on the 2-core development machine, a training step with 2 intra-op threads while
the other core was busy with another process ran about 8x slower than with 1 thread
(the threads spin-wait on each other and get descheduled). :func:`set_threads` therefore
defaults to **one intra-op thread per process**; ask for more with ``--threads N`` when
the cores are yours.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from analysis.errors import ConfigError, did_you_mean

__all__ = [
    "set_seed",
    "rng_state",
    "set_rng_state",
    "set_threads",
    "pick_device",
    "autocast",
    "amp_dtype",
    "to_channels_last",
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "barrier",
    "unwrap",
    "shard_indices",
    "broadcast_buffers",
    "mean_over_ranks",
]


# ----------------------------------------------------------------------------- seeds
def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as plain lists/tensors (``weights_only``-loadable)."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    keys = npst[1].numpy().astype(np.uint32) if isinstance(npst[1], torch.Tensor) else np.asarray(npst[1], np.uint32)
    np.random.set_state((npst[0], keys, int(npst[2]), int(npst[3]), float(npst[4])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- threads
def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op CPU threads deliberately; default **1** per process.

    Parameters
    ----------
    n : int or None
        Threads per process. ``None`` or ``0`` -> 1 (see the module notes: 2 threads on a
        busy 2-core machine measured ~8x slower than 1).

    Returns
    -------
    int
        The number of threads now in effect.
    """
    n = 1 if not n else int(n)
    if n < 1:
        raise ConfigError(f"--threads must be a positive integer, got {n}")
    torch.set_num_threads(n)
    return torch.get_num_threads()


# ----------------------------------------------------------------------------- device
def pick_device(spec: str = "auto") -> torch.device:
    """``'auto'`` (CUDA if available, else CPU), ``'cpu'``, ``'cuda'`` or ``'cuda:K'``.

    Under DDP on GPUs ``'auto'``/``'cuda'`` resolve to ``cuda:LOCAL_RANK``.

    Raises
    ------
    ConfigError
        Unknown spelling, or CUDA requested but not available / index out of range.
    """
    spec = str(spec or "auto").strip().lower()
    if spec == "gpu" or spec.startswith("gpu:"):
        spec = "cuda" + spec[3:]  # the common name for it
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
        if spec == "cuda":
            index = local_rank if is_distributed() else torch.cuda.current_device()
        else:
            try:
                index = int(spec.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"--device {spec}: expected cuda:<index>, e.g. cuda:0") from None
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device("cuda", index)
    raise ConfigError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:<index>"
                      f"{did_you_mean(spec, ['auto', 'cpu', 'cuda'])}")


# ----------------------------------------------------------------------------- precision
def amp_dtype(device: torch.device, amp: bool | None) -> torch.dtype | None:
    """bf16 when mixed precision is on for ``device``; ``None`` when off.

    ``amp=None`` means the default: on for CUDA, off for CPU (CPU bf16 autocast is faster
    on CPUs with AVX512-BF16/AMX but changes results slightly; opt in with ``--amp``).
    """
    if amp is None:
        amp = device.type == "cuda"
    return torch.bfloat16 if amp else None


def autocast(device: torch.device, amp: bool | None = None):
    """Context manager: bf16 autocast on ``device`` when enabled, else a no-op."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_channels_last(x):
    """Module or 4-D tensor in ``torch.channels_last`` memory format (others unchanged)."""
    if isinstance(x, torch.nn.Module):
        return x.to(memory_format=torch.channels_last)
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


# ----------------------------------------------------------------------------- DDP
@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank``, ``world_size``, ``local_rank``, ``backend``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Join the process group when started by ``torchrun`` (``RANK``/``WORLD_SIZE`` set).

    Backend: ``nccl`` when the run uses CUDA, ``gloo`` on CPU. Without the torchrun
    variables this is a no-op returning a single-process :class:`DistInfo`.
    """
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    world = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistInfo(rank=0, world_size=1, local_rank=local)
    use_cuda = str(device_spec).startswith("cuda") or (device_spec == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, backend=backend)


def cleanup_distributed() -> None:
    """Leave the process group if one was joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in any non-distributed run): the only rank that writes files."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model under ``DistributedDataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def shard_indices(n: int, rank: int, world_size: int) -> np.ndarray:
    """Positions ``0..n-1`` this rank handles, as ``DistributedSampler(shuffle=False)`` does.

    The list is padded by wrapping around so every rank gets ``ceil(n / world_size)``
    positions (equal step counts keep DDP's all-reduce in lock-step).
    """
    if world_size <= 1:
        return np.arange(n)
    per_rank = -(-n // world_size)
    total = per_rank * world_size
    padded = np.concatenate([np.arange(n), np.arange(total - n) % max(n, 1)]) if n else np.arange(0)
    return padded[rank:total:world_size]


def broadcast_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. batch-norm running statistics) to every rank.

    Each DDP rank updates its buffers on its own shard during training, so without this the
    ranks would evaluate different models. No-op when not distributed.
    """
    if not is_distributed():
        return
    import torch.distributed as dist

    for buf in unwrap(model).buffers():
        dist.broadcast(buf, src)


def mean_over_ranks(value: float, device=None) -> float:
    """``value`` averaged over all ranks (the same float on every rank); ``value`` itself when
    not distributed. A NaN on any rank gives NaN everywhere."""
    if not is_distributed():
        return value
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]) / get_world_size()
