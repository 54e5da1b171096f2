"""Tests of mstool.engine._predict: whole and tiled probability maps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mstool.engine import predict
from mstool.engine._predict import _ramp, _starts
from mstool.errors import ParameterError, ShapeError
from mstool.models import build_model
from tests.engine import one_thread  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _unet(num_classes: int = 1) -> nn.Module:
    return build_model("unet", num_classes=num_classes, options={"base": 4, "depth": 2},
                       generator=torch.Generator().manual_seed(0))


def _images(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, h, w, generator=torch.Generator().manual_seed(seed))


class _Pointwise(nn.Module):
    """A per-pixel network: every tiling of it must give the untiled map exactly (up to rounding)."""

    def __init__(self, num_classes: int = 1):
        super().__init__()
        self.in_channels, self.num_classes = 1, num_classes
        self.conv = nn.Conv2d(1, num_classes, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.linspace(-1, 2, num_classes).view(-1, 1, 1, 1))
            self.conv.bias.fill_(0.1)

    def forward(self, x):
        return self.conv(x)


def test_whole_prediction_is_a_probability_map():
    x = _images(3, 20, 28)
    probs = predict(_unet(), x)
    assert probs.shape == (3, 1, 20, 28) and probs.dtype == torch.float32
    assert bool(((probs >= 0) & (probs <= 1)).all())
    multi = predict(_unet(3), x)
    assert multi.shape == (3, 3, 20, 28)
    assert torch.allclose(multi.sum(dim=1), torch.ones(3, 20, 28), atol=1e-6)


def test_tiled_equals_untiled_when_the_image_fits_one_tile():
    net, x = _unet(), _images(2, 30, 40)
    whole = predict(net, x)
    torch.testing.assert_close(predict(net, x, tile=40, overlap=8), whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(predict(net, x, tile=64), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tile, overlap", [(16, 0), (16, 4), (24, 15), (17, 5)])
def test_tiles_blend_back_to_the_whole_map(tile, overlap):
    net, x = _Pointwise(3), _images(2, 45, 61)
    torch.testing.assert_close(predict(net, x, tile=tile, overlap=overlap, batch_size=3), predict(net, x),
                               atol=1e-6, rtol=0)


def test_tiled_unet_is_close_to_whole_inside():
    net, x = _unet(), _images(1, 64, 64)
    tiled, whole = predict(net, x, tile=48, overlap=24), predict(net, x)
    assert (tiled - whole).abs().mean() < 0.05  # tiles see zero padding at their inner edges


def test_result_does_not_depend_on_batch_split():
    net, x = _unet(), _images(5, 16, 16)
    torch.testing.assert_close(predict(net, x, batch_size=1), predict(net, x, batch_size=4), atol=1e-6, rtol=0)
    torch.testing.assert_close(predict(net, x[:2]), predict(net, x)[:2], atol=1e-6, rtol=0)


def test_empty_batch():
    assert predict(_unet(), _images(0, 16, 16)).shape == (0, 1, 16, 16)
    assert predict(_unet(3), _images(0, 16, 16), tile=16).shape == (0, 3, 16, 16)


def test_training_flag_is_restored():
    net = _unet()
    net.train()
    predict(net, _images(1, 16, 16))
    assert net.training
    net.eval()
    predict(net, _images(1, 16, 16))
    assert not net.training


def test_window_starts_cover_the_image():
    assert _starts(10, 16, 4) == [0]
    assert _starts(40, 16, 4) == [0, 12, 24]
    assert _starts(41, 16, 4) == [0, 12, 24, 25]
    for size, tile, overlap in ((100, 32, 8), (33, 32, 0), (64, 16, 15)):
        starts = _starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == size
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_ramp_is_one_at_the_image_border():
    w = _ramp(0, 8, 20, 3, torch.device("cpu"))
    assert w.tolist() == pytest.approx([1, 1, 1, 1, 1, 0.75, 0.5, 0.25])
    inner = _ramp(6, 8, 20, 3, torch.device("cpu"))
    assert inner[0] == pytest.approx(0.25) and inner[-1] == pytest.approx(0.25) and inner[4] == 1


def test_errors():
    net, x = _unet(), _images(1, 16, 16)
    with pytest.raises(ShapeError, match=r"`images` must be \(N, C, H, W\)"):
        predict(net, x[0])
    with pytest.raises(ShapeError, match="must have the model's 1 channel"):
        predict(net, x.repeat(1, 3, 1, 1))
    with pytest.raises(ParameterError, match="`tile` must be an integer >= 16; got 8"):
        predict(net, x, tile=8)
    with pytest.raises(ParameterError, match=r"`overlap` must be an integer in \[0, 15\] \(below tile = 16\); got 16"):
        predict(net, x, tile=16, overlap=16)
    with pytest.raises(ParameterError, match="`batch_size` must be an integer >= 1"):
        predict(net, x, batch_size=0)


def test_predict_on_device(device):
    net, x = _unet().to(device), _images(2, 24, 24)
    probs = predict(net, x, tile=16, overlap=4)
    assert probs.device == x.device and probs.shape == (2, 1, 24, 24)
    on_device = predict(net, x.to(device))
    assert on_device.device.type == device.type
    torch.testing.assert_close(on_device.cpu(), predict(net.cpu(), x), atol=1e-4, rtol=0)
