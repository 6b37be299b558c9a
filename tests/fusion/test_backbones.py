"""fusion.backbones: parametrised over the registry (as timm's tests/test_models.py)."""
import urllib.error

import pytest
import torch

from analysis.errors import ConfigError
from fusion.backbones import adapt_input_conv, backbone_info, create_backbone, list_backbones

torch.set_num_threads(1)


def test_registry_has_the_required_backbones():
    for name in ["resnet18", "resnet50", "densenet121", "efficientnet_b0", "vgg16_bn", "convnext_tiny"]:
        assert name in list_backbones()
    assert list_backbones("resnet*") == ["resnet18", "resnet34", "resnet50"]


@pytest.mark.parametrize("name", list_backbones())
def test_grey_backbone_gives_embedding_and_logits_of_the_documented_size(name):
    torch.manual_seed(0)
    model = create_backbone(name, weights="none", in_chans=1, num_classes=3).eval()
    info = backbone_info(name)
    assert model.get_submodule(info.first_conv).in_channels == 1
    assert isinstance(model.get_submodule(info.classifier), torch.nn.Linear)
    model.get_submodule(info.gradcam_layer)  # exists
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        emb = model.forward_features(x)
        logits = model(x)
    assert emb.shape == (2, info.embedding_dim)
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_rgb_input(name):
    model = create_backbone(name, in_chans=3, num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2)


def test_unknown_backbone_suggests_a_close_name():
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        create_backbone("resnet81")


def test_summed_rgb_filters_see_a_grey_image_as_its_rgb_copy():
    torch.manual_seed(0)
    rgb = create_backbone("resnet18", in_chans=3, num_classes=3).eval()
    state = rgb.state_dict()
    grey = create_backbone("resnet18", in_chans=1, num_classes=3).eval()
    from fusion.backbones import load_weights
    report = load_weights(grey, state, "rgb model")
    assert report["adapted"] and not report["skipped"]
    g = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grey(g), rgb(g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)
    w = torch.randn(4, 3, 3, 3)
    assert adapt_input_conv(w, 1).shape == (4, 1, 3, 3)
    assert adapt_input_conv(w, 3) is w


def test_offline_imagenet_gives_one_clear_error(monkeypatch):
    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(ConfigError) as err:
        create_backbone("resnet18", weights="imagenet", in_chans=1)
    msg = str(err.value)
    assert "could not download ImageNet weights for resnet18" in msg
    assert "--weights PATH" in msg and "\n" not in msg and "name resolution" in msg
    assert calls  # the download was attempted through torch.hub


def test_torchvision_state_dict_file_loads_with_head_skipped_when_classes_differ(tmp_path):
    import torchvision

    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None)  # 1000-class head, as an ImageNet .pth
    path = tmp_path / "resnet18_local.pth"
    torch.save(tv.state_dict(), path)
    model = create_backbone("resnet18", weights=path, in_chans=1, num_classes=3)
    assert model.weights_report["skipped"] == ["head.weight (1000, 512)", "head.bias (1000,)"]
    torch.testing.assert_close(model.body.layer1[0].conv1.weight, tv.layer1[0].conv1.weight)
    torch.testing.assert_close(model.body.conv1.weight, tv.conv1.weight.sum(1, keepdim=True))


def test_fusion_checkpoint_with_same_head_loads_everything(tmp_path):
    src = create_backbone("resnet18", in_chans=1, num_classes=2)
    path = tmp_path / "pretrained_resnet18.pt"
    torch.save({"model": src.state_dict(), "backbone": "resnet18"}, path)
    same = create_backbone("resnet18", weights=path, in_chans=1, num_classes=2)
    assert same.weights_report["skipped"] == []
    torch.testing.assert_close(same.head.weight, src.head.weight)
    other = create_backbone("resnet18", weights=str(path), in_chans=1, num_classes=3)
    assert [s.split()[0] for s in other.weights_report["skipped"]] == ["head.weight", "head.bias"]
    with pytest.raises(ConfigError, match="for backbone 'resnet18', not 'resnet50'"):
        create_backbone("resnet50", weights=path, in_chans=1)


def test_bad_weights_files_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        create_backbone("resnet18", weights=tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a PyTorch file"):
        create_backbone("resnet18", weights=junk)
    wrong = tmp_path / "wrong.pt"
    torch.save(create_backbone("densenet121", num_classes=3).state_dict(), wrong)
    with pytest.raises(ConfigError, match="do not fit backbone resnet18"):
        create_backbone("resnet18", weights=wrong)
