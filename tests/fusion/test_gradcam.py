"""fusion.gradcam: localisation on a task with a known answer, side effects, every backbone, mask share."""
import numpy as np
import pytest
import torch
from torch import nn

from fusion.backbones import create_backbone, list_backbones
from fusion.gradcam import cam_inside_mask, grad_cam, overlay, overlay_panel

SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _blob_task(n, gen):
    """Class 1 <=> a bright blob somewhere in the top-left quadrant; nothing else differs.

    Background level and noise are drawn independently of the class, so the blob is the
    only evidence; the blob's position inside the quadrant varies.
    """
    y = torch.randint(0, 2, (n,), generator=gen)
    base = 0.2 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    x = base + 0.1 * torch.randn(n, 1, SIZE, SIZE, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    half = SIZE // 2
    for i in torch.nonzero(y).flatten().tolist():
        cy, cx = torch.randint(3, half - 3, (2,), generator=gen).tolist()
        x[i, 0] += 1.0 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0 ** 2))
    return x, y


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def test_grad_cam_finds_the_only_evidence_in_a_known_quadrant():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(100):
        x, y = _blob_task(32, gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    x, y = _blob_task(64, gen)
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert (pred == y).float().mean() > 0.85  # the task was learnt
    keep = (y == 1) & (pred == 1)
    assert keep.sum() >= 10
    import warnings

    from fusion.gradcam import DegenerateHeatmapWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateHeatmapWarning)  # learnt, 8 x 8 layer: not degenerate
        cams = grad_cam(model, x[keep], layer="features.7")
    quadrant = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    quadrant[: SIZE // 2, : SIZE // 2] = True
    share = np.array([cam_inside_mask(c, quadrant) for c in cams])
    # chance (a uniform map) is 0.25
    assert np.median(share) > 0.6 and share.mean() > 0.5, share


def test_model_is_left_as_it_was_and_hooks_are_removed():
    model = create_backbone("resnet18", "none", in_chans=1, num_classes=3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layer = model.get_submodule(model.info.gradcam_layer)
    x = torch.randn(2, 1, SIZE, SIZE)
    x_copy = x.clone()
    cam = grad_cam(model, x)
    assert model.training  # mode restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BatchNorm running stats
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_copy) and x.grad is None
    assert not layer._forward_hooks and not layer._backward_hooks
    with pytest.raises(ValueError, match="target_class"):
        grad_cam(model, x, target_class=7)
    assert not layer._forward_hooks  # removed after a failure too
    assert cam.shape == (2, SIZE, SIZE)


def test_target_class_changes_the_map_and_validates():
    torch.manual_seed(1)
    model = create_backbone("resnet18", "none", in_chans=1, num_classes=3)
    x = torch.randn(1, 1, 64, 64)
    maps = [grad_cam(model, x, target_class=k) for k in range(3)]
    assert not torch.allclose(maps[0], maps[1])
    assert torch.equal(grad_cam(model, x, target_class=[2]), maps[2])
    with pytest.raises(ValueError, match="entries"):
        grad_cam(model, x, target_class=[0, 1])
    with pytest.raises(ValueError, match="no layer"):
        grad_cam(model, x, layer="body.layer9")
    with pytest.raises(TypeError, match="normalised"):
        grad_cam(model, torch.zeros(1, 1, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_gives_maps_of_the_input_size_in_unit_range(name):
    torch.manual_seed(0)
    model = create_backbone(name, "none", in_chans=3, num_classes=3)
    cam = grad_cam(model, torch.randn(1, 3, SIZE, SIZE))
    assert cam.shape == (1, SIZE, SIZE) and cam.dtype == torch.float32
    assert torch.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    assert cam.max() == 1 or cam.max() == 0


def test_zero_map_stays_zero_without_nan():
    class Dead(nn.Module):  # activations are all zero -> the map is zero
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.conv(x).mean(dim=(2, 3)))

    cam = grad_cam(Dead(), torch.randn(2, 1, 8, 8), layer="conv")
    assert torch.equal(cam, torch.zeros(2, 8, 8))
    assert np.isnan(cam_inside_mask(cam[0], np.ones((8, 8))))


def test_cam_inside_mask_on_hand_made_maps():
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[2:5, 3:8] = 255  # 15 of 100 pixels
    inside = np.zeros((10, 10))
    inside[3, 4], inside[2, 7] = 1.0, 0.3
    outside = np.zeros((10, 10))
    outside[9, 9], outside[0, 0] = 0.5, 1.0
    assert cam_inside_mask(inside, mask) == 1.0
    assert cam_inside_mask(outside, mask) == 0.0
    assert cam_inside_mask(np.full((10, 10), 0.7), mask) == pytest.approx(0.15)
    assert cam_inside_mask(inside + outside, mask) == pytest.approx(1.3 / 2.8)
    assert cam_inside_mask(torch.ones(1, 10, 10), torch.from_numpy(mask > 0)) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="differ"):
        cam_inside_mask(np.ones((10, 10)), np.ones((8, 8)))
    with pytest.raises(ValueError, match="non-negative"):
        cam_inside_mask(-inside, mask)


def test_overlay_and_panel_draw_and_save(tmp_path):
    img = torch.randint(0, 256, (1, 24, 24), dtype=torch.uint8)
    cam = torch.rand(24, 24)
    fig = overlay(img, cam, tmp_path / "one.png", mask=cam > 0.5, title="pred: benign")
    assert (tmp_path / "one.png").stat().st_size > 0 and len(fig.axes) == 2  # image + colour bar
    rgb = torch.randint(0, 256, (3, 3, 24, 24), dtype=torch.uint8)
    fig = overlay_panel(rgb, torch.rand(3, 24, 24), tmp_path / "panel.png", true_class=["a", "b", "c"],
                        predicted_class=["a", "c", "c"], probability=[0.9, 0.5, 0.7], ncols=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[1] == "true: b\npred: c (p = 0.50)"
    with pytest.raises(ValueError, match="differ in size"):
        overlay(img, torch.rand(10, 10))


@pytest.mark.shared_data
def test_bus_bra_masks_align_with_images_and_give_a_share(shared_data):
    from fusion.images import load_image
    from fusion.transforms import build_transform

    root = shared_data / "bus_bra"
    ids = ["0001-l", "0002-l", "0003-r"]
    imgs = [load_image(root / "images" / f"bus_{i}.png", size=64, channels=1) for i in ids]
    masks = [load_image(root / "masks" / f"mask_{i}.png", size=64, channels=1)[0] > 127 for i in ids]
    torch.manual_seed(0)
    model = create_backbone("resnet18", "none", in_chans=1, num_classes=2)
    x = build_transform("none", train=False, channels=1)(torch.stack(imgs))
    cams = grad_cam(model, x)
    for img, mask, cam in zip(imgs, masks, cams):
        assert mask.shape == img.shape[1:] == cam.shape
        assert 0 < mask.float().mean() < 0.9
        # the same padding: the lesion lies inside the image content, not in the black border
        content = img[0] > 0
        assert content[mask].float().mean() > 0.95
        share = cam_inside_mask(cam, mask)
        assert 0.0 <= share <= 1.0  # an untrained model: no claim about localisation


# ----------------------------------------------------------------------------- degenerate maps
def test_degenerate_reasons_on_hand_made_maps():
    from fusion.gradcam import UNIFORM_RANGE, degenerate_reasons

    peaked = torch.zeros(1, 16, 16)
    peaked[0, 4, 4] = 1.0
    uniform = torch.full((1, 16, 16), 1.0)
    uniform[0, 0, 0] = 1.0 - UNIFORM_RANGE / 2
    zero = torch.zeros(1, 16, 16)
    maps = torch.cat([peaked, uniform, zero])
    assert degenerate_reasons(maps, (8, 8)) == ["", f"uniform map (range {UNIFORM_RANGE / 2:.3f} < {UNIFORM_RANGE})",
                                                "zero map (no positive evidence for the class)"]
    small = degenerate_reasons(peaked, (2, 2))[0]
    assert small.startswith("last feature map is 2 x 2")


def test_resnet18_at_64_px_warns_that_its_2x2_map_cannot_localise_and_128_px_does_not_say_so():
    import warnings

    from fusion.gradcam import DegenerateHeatmapWarning

    torch.manual_seed(0)
    model = create_backbone("resnet18", "none", in_chans=1, num_classes=2)
    with pytest.warns(DegenerateHeatmapWarning, match=r"1 of 1 Grad-CAM map\(s\) are degenerate \(last feature map "
                                                      r"is 2 x 2"):
        grad_cam(model, torch.randn(1, 1, 64, 64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grad_cam(model, torch.randn(1, 1, 128, 128))
    assert not any("feature map is" in str(w.message) for w in caught)

