"""fusion.images: every PIL mode -> uint8 (C,H,W); clear ImageError for bad files."""
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.errors import ImageError
from fusion.images import decode_image, default_channels, load_image

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "images"


@pytest.mark.parametrize("name", ["grey8.png", "grey16.png", "rgb.png", "rgba.png", "palette.png",
                                  "bilevel.png", "grey_alpha.png", "cmyk.jpg", "float.tif",
                                  "busi_benign_1.png", "bus_bra_0001-l.png"])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_supported_mode_gives_uint8_chw(name, channels):
    x = load_image(FIX / name, size=16, channels=channels)
    assert x.dtype == torch.uint8
    assert tuple(x.shape) == (channels, 16, 16)
    assert x.is_contiguous()


def test_16bit_grey_is_scaled_by_its_own_maximum():
    x = load_image(FIX / "grey16.png", size=(24, 32), channels=1, resize="stretch")
    ref = load_image(FIX / "grey8.png", size=(24, 32), channels=1, resize="stretch")
    assert int(x.max()) == 255
    assert int((x.int() - ref.int()).abs().max()) <= 1  # same gradient, full 8-bit range


def test_float_image_is_scaled_like_integer_grey():
    x = load_image(FIX / "float.tif", size=(24, 32), channels=1, resize="stretch")
    ref = load_image(FIX / "grey8.png", size=(24, 32), channels=1, resize="stretch")
    assert int((x.int() - ref.int()).abs().max()) <= 1


def test_rgba_is_composited_on_black():
    x = load_image(FIX / "rgba.png", size=(24, 32), channels=3, resize="stretch")
    assert (x[:, :, :15] == 255).all()  # opaque white
    assert (x[:, :, 17:] == 0).all()  # transparent -> black


def test_palette_is_expanded_through_its_colours():
    x = load_image(FIX / "palette.png", size=(24, 32), channels=3, resize="stretch")
    assert x[:, 5, 3].tolist() == [255, 0, 0]
    assert x[:, 5, 28].tolist() == [0, 0, 255]


def test_grey_to_three_channels_repeats_and_colour_to_grey_uses_luma():
    g = load_image(FIX / "grey8.png", size=16, channels=3)
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    rgb = load_image(FIX / "palette.png", size=(24, 32), channels=1, resize="stretch")
    assert abs(int(rgb[0, 5, 3]) - round(0.299 * 255)) <= 1  # pure red -> 76


def test_pad_keeps_aspect_and_pads_with_black():
    x = load_image(FIX / "rgba.png", size=32, channels=1)  # 32x24 -> 32x24 centred in 32x32
    assert (x[:, :4, :] == 0).all() and (x[:, -4:, :] == 0).all()
    assert (x[:, 4:28, :14] == 255).all()
    assert tuple(load_image(FIX / "grey8.png", size=(10, 20), resize="crop").shape) == (1, 10, 20)


def test_downscaling_is_antialiased():
    # a 1-px checkerboard averages to mid-grey when antialiased; nearest would alias to 0/255
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(board, mode="L").save(buf, format="PNG")
    x = decode_image(buf.getvalue(), size=8, channels=1)
    assert x.float().std() < 10 and abs(x.float().mean() - 127.5) < 10


@pytest.mark.parametrize("name, text", [
    ("corrupt.png", "corrupt"),
    ("truncated.png", "truncated"),
    ("empty.png", "empty"),
    ("not_an_image.png", "not a readable image"),
    ("does_not_exist.png", "not found"),
])
def test_bad_files_raise_one_line_error_naming_patient_modality_and_path(name, text):
    with pytest.raises(ImageError) as info:
        load_image(FIX / name, size=16, channels=3, patient_id="P0042", modality="cdfi")
    msg = str(info.value)
    assert "\n" not in msg
    assert text in msg
    assert "patient P0042" in msg and "modality 'cdfi'" in msg and name in msg
    assert info.value.patient_id == "P0042" and info.value.modality == "cdfi"


def test_directory_instead_of_file_is_an_image_error():
    with pytest.raises(ImageError, match="not a file"):
        load_image(FIX, size=8)


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="channels"):
        load_image(FIX / "grey8.png", size=8, channels=2)
    with pytest.raises(ValueError, match="resize"):
        load_image(FIX / "grey8.png", size=8, resize="squash")


def test_default_channels_per_modality():
    assert (default_channels("2d"), default_channels("cdfi"), default_channels("elastography")) == (1, 3, 3)
