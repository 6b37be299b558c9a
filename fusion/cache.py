"""On-disk cache of decoded images, keyed by file content and decoding parameters.

Decoding a few thousand PNG files takes seconds to minutes; the cache makes the second
construction of a :class:`~fusion.dataset.MultimodalDataset` nearly free. An entry's key is
the SHA-1 of the image file's bytes plus ``size``, ``channels``, ``resize`` and a format
version (:data:`CACHE_VERSION`, bumped whenever :mod:`fusion.images` changes its pixels), so
an edited or replaced image is never served stale, and a renamed one is still a hit. Entries
are ``.npy`` files holding the ``uint8`` array ``(C, H, W)``.

Writes go to a temporary file in the cache folder and are then moved into place with
:func:`os.replace` (atomic on POSIX and Windows), so concurrent processes (DDP ranks,
parallel runs) never see half-written entries; two writers of the same key write identical
bytes. An unreadable entry is treated as a miss and rewritten.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from fusion.images import decode_image, read_image_bytes

__all__ = ["CACHE_VERSION", "DEFAULT_CACHE_DIR", "ImageCache", "load_image_cached"]

#: Bumped whenever decoding changes, which invalidates every existing entry.
CACHE_VERSION = 1
#: Default cache folder (relative to the current working directory).
DEFAULT_CACHE_DIR = Path(".cache") / "images"


class ImageCache:
    """A folder of decoded images.

    Parameters
    ----------
    directory : str or Path, default ``.cache/images``
        Created on first write.

    Attributes
    ----------
    hits, misses : int
        Counters since construction (for reporting).
    """

    def __init__(self, directory=DEFAULT_CACHE_DIR):
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"ImageCache({str(self.directory)!r}, hits={self.hits}, misses={self.misses})"

    @staticmethod
    def key(data: bytes, *, size, channels: int, resize: str) -> str:
        """Hex key of file content ``data`` decoded with these parameters."""
        digest = hashlib.sha1(data).hexdigest()
        hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        return f"{digest}_{hw[0]}x{hw[1]}_c{channels}_{resize}_v{CACHE_VERSION}"

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        """The cached tensor, or ``None`` when absent or unreadable."""
        path = self._path(key)
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if arr.dtype != np.uint8 or arr.ndim != 3:
            return None
        return torch.from_numpy(np.array(arr, copy=True))

    def put(self, key: str, image: torch.Tensor) -> Path:
        """Store ``image`` (uint8 ``(C, H, W)``) atomically; returns the entry's path."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, image.numpy(), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return path

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        n = 0
        if self.directory.is_dir():
            for p in self.directory.glob("*/*.npy"):
                p.unlink(missing_ok=True)
                n += 1
        return n


def load_image_cached(path, *, size, channels: int = 1, resize: str = "pad", cache: ImageCache | None = None,
                      patient_id=None, modality=None) -> torch.Tensor:
    """:func:`fusion.images.load_image` through ``cache`` (``None``: no cache).

    The file is read once; its bytes are hashed for the key and decoded only on a miss.
    Errors are the same :class:`~analysis.errors.ImageError` as ``load_image`` raises.
    """
    data = read_image_bytes(path, patient_id=patient_id, modality=modality)
    if cache is None:
        return decode_image(data, size=size, channels=channels, resize=resize, path=os.fspath(path),
                            patient_id=patient_id, modality=modality)
    key = cache.key(data, size=size, channels=channels, resize=resize)
    hit = cache.get(key)
    if hit is not None:
        cache.hits += 1
        return hit
    cache.misses += 1
    image = decode_image(data, size=size, channels=channels, resize=resize, path=os.fspath(path),
                         patient_id=patient_id, modality=modality)
    cache.put(key, image)
    return image
