"""fusion.transforms: per-sample random batch augmentation on uint8 tensors."""
import pytest
import torch

from analysis.errors import ConfigError
from fusion.transforms import (IMAGENET_MEAN, IMAGENET_STD, AugmentSpec, BatchTransform, build_transform,
                               normalization)


def _images(b=6, c=3, h=24, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("name", ["none", "light", "study"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("backend", ["batched", "loop"])
def test_output_is_float_of_same_shape(name, channels, backend):
    x = _images(c=channels)
    y = build_transform(name, train=True, channels=channels, backend=backend)(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(x, _images(c=channels))  # input not modified


@pytest.mark.parametrize("channels", [1, 3])
def test_eval_mode_only_normalises(channels):
    x = _images(c=channels)
    mean, std = normalization(channels)
    expected = (x.float() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    y = build_transform("study", train=False, channels=channels)(x)
    torch.testing.assert_close(y, expected)
    assert normalization(3) == (IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("backend", ["batched", "loop"])
def test_random_parameters_are_drawn_per_sample(backend):
    one = _images(b=1)
    x = one.repeat(8, 1, 1, 1)
    y = build_transform("study", train=True, channels=3, backend=backend)(x)
    distinct = {tuple(y[i].flatten()[:4000].tolist()) for i in range(8)}
    assert len(distinct) == 8


def test_identity_geometry_reproduces_pixels_exactly_and_flips_are_flips():
    x = _images()
    base = BatchTransform(AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(32 / 24, 32 / 24)), 3)(x)
    torch.testing.assert_close(base, BatchTransform(AugmentSpec(), 3)(x), atol=1e-5, rtol=0)
    h = BatchTransform(AugmentSpec(hflip=1.0), 3)(x)
    torch.testing.assert_close(h, torch.flip(base, dims=[3]), atol=1e-5, rtol=0)
    v = BatchTransform(AugmentSpec(vflip=1.0), 3)(x)
    torch.testing.assert_close(v, torch.flip(base, dims=[2]), atol=1e-5, rtol=0)


def test_rotation_keeps_the_centre_and_blackens_corners():
    x = torch.full((4, 1, 33, 33), 255, dtype=torch.uint8)
    t = BatchTransform(AugmentSpec(degrees=45.0), 1, generator=torch.Generator().manual_seed(1))
    y = t(x) * 0.226 + 0.449  # undo normalisation -> [0, 1]
    assert torch.allclose(y[:, 0, 16, 16], torch.ones(4), atol=1e-4)
    angles_nonzero = (y[:, 0, 0, 0] < 0.5).sum()  # a corner leaves the rotated frame
    assert angles_nonzero >= 3


def test_same_generator_seed_gives_same_augmentation():
    x = _images()
    a = build_transform("study", True, 3, generator=torch.Generator().manual_seed(5))(x)
    b = build_transform("study", True, 3, generator=torch.Generator().manual_seed(5))(x)
    c = build_transform("study", True, 3, generator=torch.Generator().manual_seed(6))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_single_image_and_wrong_channels():
    t = build_transform("light", True, 1)
    assert t(_images(b=1, c=1)[0]).shape == (1, 24, 32)
    with pytest.raises(ValueError, match=r"expected images \(B, 1, H, W\)"):
        t(_images(c=3))


def test_unknown_pipeline_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown augmentation 'studdy'.*did you mean 'study'"):
        build_transform("studdy", True, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_gpu():
    x = _images().cuda()
    y = build_transform("study", True, 3).cuda()(x)
    assert y.is_cuda and y.shape == x.shape
