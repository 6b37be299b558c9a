"""The study's four backbones (ResNet18, EfficientNet-B7, ConvNeXt-tiny, ViT-small) by name:
shapes at small sizes, weights files of both libraries, offline ImageNet, Grad-CAM."""
import urllib.error

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from analysis.errors import ConfigError
from fusion.backbones import (Backbone, BackboneInfo, backbone_info, create_backbone, resolve_backbone,
                              weights_recipe)
from fusion.gradcam import cam_inside_mask, grad_cam

STUDY = ["resnet18", "efficientnet_b7", "convnext_tiny", "vit_small_patch16_224"]
# B7 has 66 M parameters: its file round trip (265 MB) is the slow part
ROUND_TRIP = [pytest.param(n, marks=pytest.mark.slow) if n == "efficientnet_b7" else n for n in STUDY]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def built():
    """``built(name, in_chans)``: each study backbone built once per channel count for this module
    (EfficientNet-B7 alone takes seconds); tests use them in eval mode and leave them unchanged."""
    cache = {}

    def get(name, in_chans):
        if (name, in_chans) not in cache:
            torch.manual_seed(0)
            cache[name, in_chans] = create_backbone(name, in_chans=in_chans, num_classes=3).eval()
        return cache[name, in_chans]

    yield get
    cache.clear()


def _library_model(name):
    """The model as its own library builds it (1000-class ImageNet head), random weights."""
    if name == "vit_small_patch16_224":
        return timm.create_model(name, pretrained=False, dynamic_img_size=True, dynamic_img_pad=True)
    return torchvision.models.get_model(name, weights=None)


@pytest.mark.parametrize("typed, name", [
    ("ResNet18", "resnet18"), ("resnet-18", "resnet18"), ("efficientnet-b7", "efficientnet_b7"),
    ("EfficientNet-B7", "efficientnet_b7"), ("convnext-tiny", "convnext_tiny"), ("ConvNeXt tiny", "convnext_tiny"),
    ("vit_small", "vit_small_patch16_224"), ("ViT-small", "vit_small_patch16_224"),
    ("vit_small_patch16_224", "vit_small_patch16_224"),
])
def test_names_users_type_resolve_to_the_registry_name(typed, name):
    assert resolve_backbone(typed) == name
    assert backbone_info(typed).name == name


def test_unknown_names_get_one_line_with_a_close_registered_name():
    for typed, meant in [("vit_smal", "vit_small_patch16_224"), ("efficientnet-b8", "efficientnet_b7"),
                         ("convnext_tinny", "convnext_tiny"), ("resnet81", "resnet18")]:
        with pytest.raises(ConfigError) as err:
            resolve_backbone(typed)
        msg = str(err.value)
        assert f"unknown backbone {typed!r}" in msg and f"did you mean '{meant}'" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="available: .*vit_small_patch16_224"):
        create_backbone("swin_tiny")


@pytest.mark.parametrize("name", STUDY)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_each_study_backbone_gives_embeddings_and_logits_at_a_small_size(built, name, in_chans):
    model = built(name, in_chans)
    info = backbone_info(name)
    assert model.get_submodule(info.first_conv).in_channels == in_chans
    assert model.get_submodule(info.classifier) is model.head
    x = torch.rand(2, in_chans, 40, 40)  # not 224, and not a multiple of ViT's 16-pixel patch
    with torch.no_grad():
        emb = model.forward_features(x)
        logits = model(x)
    assert emb.shape == (2, info.embedding_dim)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, model.head(emb))  # the embedding is the penultimate layer


def test_registry_metadata_matches_the_library_models():
    expected = {"resnet18": 512, "efficientnet_b7": 2560, "convnext_tiny": 768, "vit_small_patch16_224": 384}
    for name, dim in expected.items():
        info = backbone_info(name)
        assert info.embedding_dim == dim
        lib = _library_model(name)
        classifier = lib.get_submodule(info.tv_classifier)
        assert isinstance(classifier, nn.Linear) and classifier.in_features == dim
        first = lib.get_submodule(info.first_conv[len("body."):])
        assert isinstance(first, nn.Conv2d) and first.in_channels == 3
        lib.get_submodule(info.gradcam_layer[len("body."):])
    assert backbone_info("vit_small_patch16_224").library == "timm"
    assert backbone_info("efficientnet_b7").library == "torchvision"


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_a_library_state_dict_saved_locally_gives_the_library_models_outputs(name, tmp_path):
    """torchvision's (ResNet, EfficientNet, ConvNeXt) or timm's (ViT) own state dict, as
    ``torch.save(model.state_dict())`` writes it, loads with its 1000-class head: same logits."""
    torch.manual_seed(1)
    lib = _library_model(name).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(lib.state_dict(), path)
    ours = create_backbone(name, weights=path, in_chans=3, num_classes=1000).eval()
    assert ours.weights_report["skipped"] == [] and ours.weights_report["adapted"] == []
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), lib(x), rtol=1e-4, atol=1e-5)
    grey = create_backbone(name, weights=str(path), in_chans=1, num_classes=3).eval()
    assert [s.split()[0] for s in grey.weights_report["skipped"]] == ["head.weight", "head.bias"]
    g = torch.rand(2, 1, 48, 48)
    with torch.no_grad():  # summed RGB filters: a grey image is seen as its RGB copy
        torch.testing.assert_close(grey.forward_features(g), ours.forward_features(g.expand(-1, 3, -1, -1)),
                                   rtol=1e-4, atol=1e-5)


def test_timm_resnet18_state_dict_and_safetensors_file_load(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(2)
    lib = timm.create_model("resnet18", pretrained=False).eval()  # timm's key names = torchvision's
    path = tmp_path / "model.safetensors"  # what the Hugging Face hub serves
    save_file(lib.state_dict(), str(path))
    ours = create_backbone("ResNet18", weights=path, in_chans=3, num_classes=1000).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), lib(x), rtol=1e-4, atol=1e-5)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"no")
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        create_backbone("resnet18", weights=junk)


def test_vit_weights_saved_at_224_load_into_any_image_size_and_pretrain_checkpoints_round_trip(tmp_path):
    torch.manual_seed(3)
    lib = timm.create_model("vit_small_patch16_224", pretrained=False).eval()  # fixed 224 px, as on the hub
    path = tmp_path / "vit.pth"
    torch.save(lib.state_dict(), path)
    model = create_backbone("ViT-small", weights=path, in_chans=1, num_classes=2)
    torch.testing.assert_close(model.body.pos_embed, lib.pos_embed)
    torch.testing.assert_close(model.body.patch_embed.proj.weight, lib.patch_embed.proj.weight.sum(1, keepdim=True))
    ckpt = tmp_path / "pretrained_vit.pt"  # the layout fusion.pretrain writes
    torch.save({"model": model.state_dict(), "backbone": "vit_small_patch16_224"}, ckpt)
    again = create_backbone("vit_small", weights=ckpt, in_chans=1, num_classes=2).eval()
    assert again.weights_report["skipped"] == []
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model.eval()(x))
    with pytest.raises(ConfigError, match="checkpoint is for backbone 'vit_small_patch16_224', not 'resnet18'"):
        create_backbone("resnet18", weights=ckpt, in_chans=1)


def test_a_timm_state_dict_for_a_torchvision_backbone_says_which_file_is_expected(tmp_path):
    path = tmp_path / "timm_convnext.pth"
    torch.save(timm.create_model("convnext_tiny", pretrained=False).state_dict(), path)
    with pytest.raises(ConfigError) as err:
        create_backbone("convnext_tiny", weights=path)
    msg = str(err.value)
    assert "do not fit backbone convnext_tiny" in msg and "torchvision's convnext_tiny state dict" in msg
    assert "torchvision.models.get_model('convnext_tiny', weights='DEFAULT')" in msg and "\n" not in msg


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("name", STUDY)
def test_offline_imagenet_is_one_line_saying_how_to_make_a_local_file(name, monkeypatch):
    import huggingface_hub

    from fusion import backbones

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    monkeypatch.setattr(timm.models, "load_state_dict_from_hf", _no_network)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)  # not cached
    monkeypatch.setattr(backbones, "_host_reachable", lambda host: True)  # the download itself fails
    built = []
    monkeypatch.setattr(Backbone, "__init__", lambda *a, **k: built.append(a))
    with pytest.raises(ConfigError) as err:
        create_backbone(name, weights="imagenet", in_chans=1)
    msg = str(err.value)
    assert msg.startswith(f"could not download ImageNet weights for {name} (URLError:")
    assert "name resolution" in msg and "--weights PATH" in msg and weights_recipe(name) in msg
    assert "\n" not in msg and "Traceback" not in msg
    assert not built  # it failed before building the network


def test_vit_imagenet_offline_fails_at_once_and_a_cached_file_needs_no_network(tmp_path, monkeypatch):
    """Without DNS the hub client is not called (it would retry for a minute); a file in the
    Hugging Face cache is read without any network."""
    import huggingface_hub
    from safetensors.torch import save_file

    from fusion import backbones

    calls = []
    monkeypatch.setattr(timm.models, "load_state_dict_from_hf", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(backbones, "_host_reachable", lambda host: False)
    with pytest.raises(ConfigError) as err:
        create_backbone("vit_small", weights="imagenet")
    assert "huggingface.co cannot be reached and the weights are not in the local Hugging Face cache" in str(err.value)
    assert not calls
    torch.manual_seed(4)
    lib = _library_model("vit_small_patch16_224").eval()
    cached = tmp_path / "model.safetensors"
    save_file(lib.state_dict(), str(cached))
    asked = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, filename, **k: asked.append((repo, filename)) or
                        (str(cached) if filename == "model.safetensors" else None))
    model = create_backbone("vit_small", weights="imagenet", in_chans=3, num_classes=1000).eval()
    assert asked[0] == (timm.models.get_pretrained_cfg("vit_small_patch16_224").hf_hub_id, "model.safetensors")
    assert not calls and model.weights_report["source"] == "imagenet"
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), lib(x), rtol=1e-4, atol=1e-5)


def test_weights_recipes_write_files_that_load(tmp_path, monkeypatch):
    """Run each recipe's Python (with the download replaced by a random state dict) and load its file."""
    import torchvision.models._api as tv_api
    import timm.models._builder as timm_builder

    monkeypatch.setattr(tv_api, "load_state_dict_from_url",
                        lambda *a, **k: torchvision.models.resnet18(weights=None).state_dict())
    monkeypatch.setattr(timm_builder, "load_state_dict_from_hf",
                        lambda *a, **k: timm.create_model("vit_small_patch16_224").state_dict())
    monkeypatch.chdir(tmp_path)
    for name in ("resnet18", "vit_small_patch16_224"):
        recipe = weights_recipe(name)
        assert recipe.startswith('python -c "') and recipe.endswith('"')
        exec(recipe[len('python -c "'):-1], {})
        model = create_backbone(name, weights=tmp_path / f"{name}_imagenet.pth", in_chans=1, num_classes=3)
        assert model.weights_report["adapted"]


@pytest.mark.parametrize("name", STUDY)
def test_grad_cam_gives_a_map_for_each_study_backbone(built, name):
    model = built(name, 1)
    torch.manual_seed(0)
    x = torch.randn(4, 1, 72, 72)  # CNNs: a 2 x 2 or 3 x 3 last map; ViT: padded to 80, a 5 x 5 patch grid
    cams = torch.stack([grad_cam(model, x, target_class=k) for k in range(3)])  # (class, image, H, W)
    assert cams.shape == (3, 4, 72, 72) and torch.isfinite(cams).all()
    assert cams.min() >= 0 and cams.max() <= 1
    peaks = cams.amax(dim=(2, 3))
    assert ((peaks == 0) | (peaks == 1)).all()
    # random weights can make a class's map negative everywhere (ReLU -> 0), not all 12 maps; a layer whose
    # gradients never reach the logits (e.g. a ViT's last block output) gives only zero maps
    assert (peaks == 1).sum() >= 3
    shown = cams[peaks == 1]
    assert (shown.amax(dim=(1, 2)) > shown.mean(dim=(1, 2))).all()  # not constant


def test_vit_tokens_go_back_to_their_patch_in_row_major_order(built):
    model = built("vit_small_patch16_224", 1)
    tokens = torch.arange(1 + 3 * 3, dtype=torch.float32).reshape(1, 10, 1).expand(1, 10, 2)
    grid = model.tokens_to_grid(tokens, (40, 40))  # 40 px padded to 48: a 3 x 3 grid after the class token
    assert grid.shape == (1, 2, 3, 3)
    assert grid[0, 0].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ConfigError, match="do not match a 2 x 2 patch grid"):
        model.tokens_to_grid(tokens, (32, 32))


def _blob_task(n, gen, size):
    """Class 1 <=> a bright blob in the top-right quadrant (the only evidence)."""
    y = torch.randint(0, 2, (n,), generator=gen)
    x = 0.2 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen) + 0.1 * torch.randn(n, 1, size, size, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    half = size // 2
    for i in torch.nonzero(y).flatten().tolist():
        cy, cx = torch.randint(3, half - 3, (2,), generator=gen).tolist()
        x[i, 0] += torch.exp(-((yy - cy) ** 2 + (xx - half - cx) ** 2) / (2 * 3.0 ** 2))
    return x, y


def test_vit_grad_cam_finds_the_only_evidence_in_a_known_quadrant():
    """A small ViT of the registered kind (timm, dynamic size, class token; 8-px patches, 36-px
    images padded to 40) learns a blob task; its maps put the heat in the blob's quadrant.
    The quadrant is not on the diagonal, so a transposed token grid would fail."""
    size = 36
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    body = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                             depth=2, num_heads=2, in_chans=1, dynamic_img_size=True, dynamic_img_pad=True)
    body.head = nn.Identity()
    info = BackboneInfo("tiny_vit", 32, "body.patch_embed.proj", "head", "body.blocks.1.norm1", "head",
                        library="timm")
    model = Backbone(info, body, 2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(150):
        x, y = _blob_task(32, gen, size)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    x, y = _blob_task(64, gen, size)
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert (pred == y).float().mean() > 0.85
    keep = (y == 1) & (pred == 1)
    cams = grad_cam(model, x[keep])
    quadrant = torch.zeros(size, size, dtype=torch.bool)
    quadrant[: size // 2, size // 2:] = True
    share = np.array([cam_inside_mask(c, quadrant) for c in cams])
    assert np.median(share) > 0.6 and share.mean() > 0.5, share  # chance: 0.25
