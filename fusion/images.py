"""Decode one image file of any common PIL mode into a ``torch.uint8`` tensor ``(C, H, W)``.

Every decoding decision is made here, once, so that the dataset, the cache, the synthetic
demo and the benchmark all see the same pixels.

Mode handling (the PIL mode of the opened file -> 8-bit ``L`` or ``RGB``):

============  ===========================================================================
``1``         bi-level -> ``L`` (0 / 255)
``L``         kept
``I;16*``,    16-bit or 32-bit integer grey: divided by the image's own maximum and
``I``         scaled to 0..255 (``round(v * 255 / max)``, negatives clipped to 0). The
              actual range is used, not the nominal 65535, because ultrasound exports often
              use 10-12 of the 16 bits; a black image (max 0) stays black.
``F``         32-bit float grey: same as ``I`` (NaN -> :class:`~analysis.errors.ImageError`)
``LA``        grey + alpha: composited on black (``L * alpha / 255``)
``RGB``       kept
``RGBA``      composited on black (``RGB * alpha / 255``): transparent parts become
              background, as the black surround of an ultrasound frame
``P``, ``PA`` palette: expanded through the palette (to ``RGBA`` when it has
              transparency, then composited on black as ``RGBA``)
``CMYK``,     converted to ``RGB`` by PIL
``YCbCr``,
``LAB``,
``HSV``
============  ===========================================================================

Then the channel count requested by the caller is produced: ``channels=1`` turns colour
into grey with PIL's ITU-R 601-2 luma (``L = 0.299 R + 0.587 G + 0.114 B``); ``channels=3``
repeats a grey image into three equal channels. B-mode ("2d") is grey (1 channel);
CDFI and elastography carry their information in colour (3 channels), see
:data:`MODALITY_CHANNELS`.

Resizing (``resize=``): ``'pad'`` (default) keeps the aspect ratio, scales the longer side
to ``size`` and pads the shorter one symmetrically with black; ``'stretch'`` resizes to
``size`` x ``size`` ignoring the aspect ratio; ``'crop'`` scales the shorter side to
``size`` and crops the centre. All use PIL's bicubic filter, which is antialiased when
shrinking (the filter support grows with the scale factor).

Every failure (missing file, not a file, unreadable, truncated, unsupported mode) raises
:class:`analysis.errors.ImageError` whose one-line message names the path, the patient and
the modality.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from analysis.errors import ImageError

__all__ = [
    "MODALITY_CHANNELS",
    "RESIZE_MODES",
    "default_channels",
    "read_image_bytes",
    "decode_image",
    "load_image",
]

#: Channels per modality: B-mode is grey, CDFI and elastography are colour images.
MODALITY_CHANNELS = {"2d": 1, "cdfi": 3, "elastography": 3}
#: Accepted values of ``resize=``.
RESIZE_MODES = ("pad", "stretch", "crop")

_GREY_INT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;16BS", "I;16LS", "I")
_TO_RGB_MODES = ("CMYK", "YCbCr", "LAB", "HSV")


def default_channels(modality: str | None) -> int:
    """Channels used for ``modality`` when the caller does not say: 1 for '2d', else 3."""
    return MODALITY_CHANNELS.get(modality, 3)


def _who(patient_id, modality) -> str:
    parts = []
    if patient_id is not None:
        parts.append(f"patient {patient_id}")
    if modality is not None:
        parts.append(f"modality '{modality}'")
    return (", ".join(parts) + ": ") if parts else ""


def _error(message: str, path, patient_id=None, modality=None) -> ImageError:
    err = ImageError(_who(patient_id, modality) + message, file=path)
    err.patient_id = patient_id
    err.modality = modality
    err.path = None if path is None else str(path)
    return err


def read_image_bytes(path, *, patient_id=None, modality=None) -> bytes:
    """Read a file's bytes, raising :class:`ImageError` (not ``OSError``) on failure."""
    p = Path(path)
    if not p.exists():
        raise _error("image file not found", p, patient_id, modality)
    if not p.is_file():
        raise _error("image path is not a file", p, patient_id, modality)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise _error(f"cannot read image file ({exc.strerror or exc})", p, patient_id, modality) from None
    if not data:
        raise _error("image file is empty (0 bytes)", p, patient_id, modality)
    return data


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _scale_to_uint8(arr: np.ndarray, path, patient_id, modality) -> np.ndarray:
    a = arr.astype(np.float64)
    if np.isnan(a).any():
        raise _error("image contains NaN pixel values", path, patient_id, modality)
    a = np.clip(a, 0, None)
    top = a.max() if a.size else 0.0
    if top <= 0:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint(a * (255.0 / top)).astype(np.uint8)


def _composite_on_black(img: Image.Image) -> Image.Image:
    """``RGBA``/``LA`` -> ``RGB``/``L`` by multiplying colour with alpha (black background)."""
    arr = np.asarray(img, dtype=np.uint16)
    colour, alpha = arr[..., :-1], arr[..., -1:]
    out = ((colour * alpha + 127) // 255).astype(np.uint8)
    if out.shape[-1] == 1:
        return Image.fromarray(out[..., 0], mode="L")
    return Image.fromarray(out, mode="RGB")


def _to_8bit(img: Image.Image, path, patient_id, modality) -> Image.Image:
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in _GREY_INT_MODES or mode == "F":
        return Image.fromarray(_scale_to_uint8(np.asarray(img), path, patient_id, modality), mode="L")
    if mode in ("RGBA", "LA"):
        return _composite_on_black(img)
    if mode == "RGBa":
        return img.convert("RGB")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        if has_alpha:
            return _composite_on_black(img.convert("RGBA"))
        return img.convert("RGB")
    if mode in _TO_RGB_MODES:
        return img.convert("RGB")
    raise _error(f"unsupported image mode '{mode}' (supported: 1, L, I;16, I, F, LA, RGB, RGBA, "
                 "P, PA, CMYK, YCbCr, LAB, HSV)", path, patient_id, modality)


def _resize(img: Image.Image, hw: tuple[int, int], resize: str) -> Image.Image:
    h, w = hw
    src_w, src_h = img.size
    if (src_h, src_w) == (h, w):
        return img
    if resize == "stretch":
        return img.resize((w, h), Image.Resampling.BICUBIC)
    if resize == "pad":
        scale = min(w / src_w, h / src_h)
        new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        small = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
        canvas = Image.new(img.mode, (w, h), 0)
        canvas.paste(small, ((w - new_w) // 2, (h - new_h) // 2))
        return canvas
    # crop: cover the target, then take the centre
    scale = max(w / src_w, h / src_h)
    new_w, new_h = max(w, round(src_w * scale)), max(h, round(src_h * scale))
    big = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - w) // 2, (new_h - h) // 2
    return big.crop((left, top, left + w, top + h))


def decode_image(data: bytes, *, size, channels: int = 1, resize: str = "pad", path=None,
                 patient_id=None, modality=None) -> torch.Tensor:
    """Decode image file bytes to a ``torch.uint8`` tensor ``(channels, H, W)``.

    Parameters
    ----------
    data : bytes
        The whole file content (PNG, JPEG, TIFF, BMP, ... anything PIL opens).
    size : int or (int, int)
        Output size: ``size`` x ``size`` or ``(height, width)``.
    channels : {1, 3}, default 1
        1 = grey (colour is converted with ITU-R 601-2 luma), 3 = RGB (grey is repeated).
    resize : {'pad', 'stretch', 'crop'}, default 'pad'
        See the module docstring.
    path, patient_id, modality : optional
        Only used to name the image in error messages.

    Returns
    -------
    torch.Tensor
        Contiguous ``uint8`` tensor of shape ``(channels, H, W)``.

    Raises
    ------
    ImageError
        Unreadable, truncated or unsupported image.
    ValueError
        Invalid ``size``, ``channels`` or ``resize`` (a programming error, not user data).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    hw = _check_size(size)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except UnidentifiedImageError:
        raise _error("not a readable image file (unknown or corrupt format)", path, patient_id, modality) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower():
            text = "image file is truncated"
        raise _error(f"cannot decode image ({text})", path, patient_id, modality) from None
    except Image.DecompressionBombError as exc:
        raise _error(f"image too large to decode safely ({exc})", path, patient_id, modality) from None
    img = _to_8bit(img, path, patient_id, modality)
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    img = _resize(img, hw, resize)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[None, :, :]
    else:
        arr = arr.transpose(2, 0, 1)
    if channels == 3 and arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return torch.from_numpy(np.array(arr, dtype=np.uint8, order="C", copy=True))


def load_image(path, *, size, channels: int = 1, resize: str = "pad", patient_id=None,
               modality=None) -> torch.Tensor:
    """Read and decode one image file to ``torch.uint8`` ``(channels, H, W)``.

    Parameters
    ----------
    path : str or os.PathLike
        Image file.
    size : int or (int, int)
        Output size (square ``size`` or ``(height, width)``).
    channels : {1, 3}, default 1
        Output channels (see :data:`MODALITY_CHANNELS` for the per-modality choice).
    resize : {'pad', 'stretch', 'crop'}, default 'pad'
        Keep aspect and pad with black (default), plain resize, or cover and centre-crop.
    patient_id, modality : optional
        Named in error messages.

    Returns
    -------
    torch.Tensor
        ``uint8`` tensor ``(channels, H, W)``.

    Raises
    ------
    ImageError
        ``"<path>: patient P0007, modality 'cdfi': image file not found"`` and likewise for
        an empty, corrupt, truncated or unsupported file.

    Examples
    --------
    >>> from fusion.images import load_image
    >>> x = load_image("tests/fixtures/images/rgba.png", size=32, channels=3)
    >>> tuple(x.shape), x.dtype
    ((3, 32, 32), torch.uint8)
    """
    data = read_image_bytes(path, patient_id=patient_id, modality=modality)
    return decode_image(data, size=size, channels=channels, resize=resize, path=os.fspath(path),
                        patient_id=patient_id, modality=modality)
