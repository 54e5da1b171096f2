import math

import pytest
import torch
from torch import nn

from mstool.errors import ParameterError, ShapeError
from mstool.models import (
    MODELS,
    DeepLabV3Plus,
    HRNet,
    UNet,
    build_model,
    count_parameters,
    model_options,
)

TINY = {
    "unet": {"base": 8, "depth": 2},
    "deeplabv3plus": {"width": 8},
    "hrnet": {"width": 4, "branches": 3, "blocks": 1},
}
NAMES = list(TINY)


def _tiny(name, **kw):
    return build_model(name, options={**TINY[name], **kw.pop("options", {})}, **kw)


def test_registry_lists_the_three_models():
    assert MODELS.names() == ["unet", "deeplabv3plus", "hrnet"]
    assert MODELS.get("unet") is UNet and MODELS.get("deeplabv3plus") is DeepLabV3Plus
    assert MODELS.get("hrnet") is HRNet


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("k", "size"), [(1, (64, 64)), (3, (64, 64)), (1, (37, 53)), (4, (5, 7))])
def test_forward_and_features_shapes(name, k, size):
    net = _tiny(name, num_classes=k).eval()
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        assert net(x).shape == (2, k, *size)
        f = net.features(x)
    s = net.feature_stride
    assert f.shape == (2, net.feature_channels, math.ceil(size[0] / s), math.ceil(size[1] / s))


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter_with_finite_grads(name):
    net = _tiny(name, num_classes=2, generator=torch.Generator().manual_seed(0))
    net(torch.randn(2, 1, 37, 53, generator=torch.Generator().manual_seed(1))).square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("norm", ["group", "none"])
def test_norm_choices(name, norm):
    net = _tiny(name, options={"norm": norm})
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert not has_bn
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules()) == (norm == "group")
    assert net(torch.randn(1, 1, 16, 16)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("name", NAMES)
def test_in_channels_and_wrong_input(name):
    net = _tiny(name, in_channels=3)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    with pytest.raises(ShapeError, match=r"`x` must be \(N, 3, H, W\); got \(1, 1, 16, 16\)"):
        net(torch.randn(1, 1, 16, 16))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [0, 1])
def test_small_batches_in_eval(name, n):
    net = _tiny(name).eval()
    with torch.no_grad():
        assert net(torch.randn(n, 1, 16, 16)).shape == (n, 1, 16, 16)


@pytest.mark.parametrize("name", NAMES)
def test_output_does_not_depend_on_batch_split(name):
    net = _tiny(name).eval()
    x = torch.randn(4, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = net(x)
        parts = torch.cat([net(x[:1]), net(x[1:])])
    torch.testing.assert_close(whole, parts, rtol=1e-4, atol=1e-5)


def test_unet_padding_is_cropped_back():
    net = UNet(base=8, depth=3).eval()
    x = torch.randn(1, 1, 37, 53)
    with torch.no_grad():
        assert net.features(x).shape == (1, 8, 37, 53)
        assert net(x).shape == (1, 1, 37, 53)


def test_unet_paper_parameter_count_without_running():
    with torch.device("meta"):
        net = UNet(in_channels=1, num_classes=1, base=64, depth=4)
    assert 30_000_000 < count_parameters(net) < 32_000_000


def test_unet_dropout_is_only_active_in_training():
    net = UNet(base=4, depth=2, dropout=0.5).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_deeplab_output_stride_8():
    net = DeepLabV3Plus(width=4, output_stride=8)
    assert net.layer3[0].body[0][0].stride == (1, 1)
    assert net(torch.randn(2, 1, 33, 33)).shape == (2, 1, 33, 33)


def test_deeplab_trains_on_a_batch_of_one():
    net = DeepLabV3Plus(width=4)  # the image-pooling branch has no BatchNorm
    assert net.training  # BatchNorm on the 1x1 pooled map would refuse a batch of one here
    out = net(torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 1, 64, 64)
    out.mean().backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["aspp.pool.1.weight"].abs().sum() > 0  # the image-pooling branch learns too


@pytest.mark.parametrize("branches", [2, 3, 4])
def test_hrnet_branches(branches):
    net = HRNet(width=2, branches=branches, blocks=1)
    assert net.feature_channels == 2 * (2**branches - 1)
    assert len(net.stages) == branches - 1
    assert net(torch.randn(2, 1, 35, 29)).shape == (2, 1, 35, 29)


# ------------------------------------------------------------------------------------- build_model
def test_build_model_errors():
    with pytest.raises(ParameterError, match="unknown model 'segformer'; choose one of: unet, deeplabv3plus"):
        build_model("segformer")
    with pytest.raises(ParameterError, match="no option .width.; its options are: base, depth, norm"):
        build_model("unet", options={"width": 8})


@pytest.mark.parametrize(("name", "options", "match"), [
    ("unet", {"depth": 0}, "`depth` must be an integer in \\[1, 6\\]; got 0"),
    ("unet", {"base": 2.5}, "`base` must be an integer"),
    ("unet", {"dropout": 1.0}, "`dropout`"),
    ("unet", {"norm": "layer"}, "`norm` must be one of batch, group, none; got 'layer'"),
    ("deeplabv3plus", {"output_stride": 32}, "`output_stride` must be one of 16, 8"),
    ("hrnet", {"branches": 5}, "`branches` must be an integer in \\[2, 4\\]"),
    ("hrnet", {"blocks": 0}, "`blocks`"),
])
def test_bad_option_values(name, options, match):
    with pytest.raises(ParameterError, match=match):
        build_model(name, options=options)


@pytest.mark.parametrize("name", NAMES)
def test_bad_channel_counts(name):
    with pytest.raises(ParameterError, match="num_classes"):
        build_model(name, num_classes=0, options=TINY[name])
    with pytest.raises(ParameterError, match="in_channels"):
        build_model(name, in_channels=True, options=TINY[name])


def test_model_options_match_constructors():
    assert model_options("unet") == {"base": 64, "depth": 4, "norm": "batch", "dropout": 0.0}
    assert model_options("deeplabv3plus") == {"width": 32, "output_stride": 16, "norm": "batch"}
    assert model_options("hrnet") == {"width": 16, "branches": 4, "blocks": 2, "norm": "batch"}


# -------------------------------------------------------------------------------------- determinism
def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", NAMES)
def test_init_is_deterministic_under_global_seed(name):
    nets = []
    for _ in range(2):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            nets.append(_tiny(name))
    assert _same_state(*nets)


@pytest.mark.parametrize("name", NAMES)
def test_init_follows_the_generator(name):
    a = _tiny(name, generator=torch.Generator().manual_seed(3))
    b = _tiny(name, generator=torch.Generator().manual_seed(3))
    c = _tiny(name, generator=torch.Generator().manual_seed(4))
    assert _same_state(a, b)
    assert not _same_state(a, c)


def test_count_parameters():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 2, 1))
    assert count_parameters(net) == (9 * 4 + 4) + (4 * 2 + 2)
    net[0].requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 10


# ------------------------------------------------------------------------------------------- devices
@pytest.mark.parametrize("name", NAMES)
def test_models_run_on_device(name, device):
    net = _tiny(name, num_classes=2, generator=torch.Generator().manual_seed(0)).to(device)
    x = torch.randn(2, 1, 32, 32, device=device)
    y = net(x)
    y.mean().backward()
    assert y.device.type == device.type
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_cpu_and_accelerator_agree(name, accel):
    net = _tiny(name, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    # cuDNN convolutions default to TF32 (10-bit mantissa); compare in full float32
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        cpu = net(x)
        dev = net.to(accel)(x.to(accel)).cpu()
    torch.testing.assert_close(cpu, dev, rtol=1e-4, atol=1e-4)
