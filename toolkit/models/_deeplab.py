"""DeepLabv3+: a small dilated ResNet, atrous spatial pyramid pooling and a stride-4 decoder.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._check import check_in, check_int, check_shape
from ._unet import BasicBlock, check_common, conv_norm_act, init_weights

__all__ = ["DeepLabV3Plus"]


def _stage(cin: int, cout: int, blocks: int, norm: str, *, stride: int, dilation: int) -> nn.Sequential:
    first = BasicBlock(cin, cout, norm, stride=stride, dilation=dilation)
    return nn.Sequential(first, *(BasicBlock(cout, cout, norm, dilation=dilation) for _ in range(blocks - 1)))


class _ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, three atrous 3x3 branches and image pooling, fused 1x1.

    The image-pooling branch has no normalisation: its map is 1x1, where BatchNorm fails on a batch of one.
    """

    def __init__(self, cin: int, cout: int, rates: tuple[int, int, int], norm: str):
        super().__init__()
        self.branches = nn.ModuleList([conv_norm_act(cin, cout, norm, kernel=1)]
                                      + [conv_norm_act(cin, cout, norm, dilation=r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = conv_norm_act(5 * cout, cout, norm, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ with a small ResNet-18-style backbone, sized for single-channel microscopy images.

    Backbone: a stem of two 3x3 convolutions (the first with stride 2), then four stages of two basic
    residual blocks with ``width``, ``2 width``, ``4 width``, ``8 width`` channels at strides 4, 8, 16, 16
    (``output_stride=16``: the last stage is dilated by 2 instead of strided) or 4, 8, 8, 8
    (``output_stride=8``: dilations 2 and 4). ASPP (``4 width`` channels) has a 1x1 branch, atrous 3x3
    branches at rates 6, 12, 18 (doubled for output stride 8) and image pooling. The decoder upsamples the
    ASPP output to stride 4, concatenates the stride-4 backbone features reduced by a 1x1 convolution to
    ``3/16`` of the ASPP width (the paper's 48 of 256), and refines with two 3x3 convolutions; the 1x1
    classifier's logits are upsampled bilinearly to the input size.

    Args:
        in_channels: image channels.
        num_classes: output channels: 1 for a binary (sigmoid) map, ``K >= 2`` for softmax classes.
        width: channels of the first backbone stage.
        output_stride: 16 or 8, the backbone's total stride.
        norm: ``batch``, ``group`` or ``none``.
        generator: CPU generator for a reproducible initialisation (``None``: torch's global one).

    Shapes:
        ``forward``: ``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)``.
        ``features``: ``(N, in_channels, H, W)`` -> ``(N, 4 width, ceil(H / 4), ceil(W / 4))``, the decoder
        output at stride 4 (``feature_stride = 4``).

    References:
        Chen, Zhu, Papandreou, Schroff, Adam, "Encoder-Decoder with Atrous Separable Convolution for
        Semantic Image Segmentation", ECCV 2018, Fig. 2; Chen, Papandreou, Schroff, Adam, "Rethinking
        Atrous Convolution for Semantic Image Segmentation", arXiv 1706.05587 (ASPP).

    Example:
        >>> net = DeepLabV3Plus(width=8)
        >>> net(torch.zeros(2, 1, 37, 53)).shape
        torch.Size([2, 1, 37, 53])
        >>> net.features(torch.zeros(2, 1, 37, 53)).shape
        torch.Size([2, 32, 10, 14])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 1, *, width: int = 32,
                 output_stride: int = 16, norm: str = "batch", generator: torch.Generator | None = None):
        super().__init__()
        in_channels, num_classes = check_common(in_channels, num_classes, norm)
        width = check_int(width, "width", low=1)
        check_in(output_stride, "output_stride", (16, 8))
        self.in_channels, self.num_classes = in_channels, num_classes
        w = width
        aspp = 4 * w
        low = max(4, 3 * aspp // 16)
        d3, d4 = (1, 2) if output_stride == 16 else (2, 4)
        self.stem = nn.Sequential(conv_norm_act(in_channels, w, norm, stride=2), conv_norm_act(w, w, norm))
        self.layer1 = _stage(w, w, 2, norm, stride=2, dilation=1)
        self.layer2 = _stage(w, 2 * w, 2, norm, stride=2, dilation=1)
        self.layer3 = _stage(2 * w, 4 * w, 2, norm, stride=2 if d3 == 1 else 1, dilation=d3)
        self.layer4 = _stage(4 * w, 8 * w, 2, norm, stride=1, dilation=d4)
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.aspp = _ASPP(8 * w, aspp, rates, norm)
        self.reduce = conv_norm_act(w, low, norm, kernel=1)
        self.decoder = nn.Sequential(conv_norm_act(aspp + low, aspp, norm), conv_norm_act(aspp, aspp, norm))
        self.classifier = nn.Conv2d(aspp, num_classes, 1)
        self.feature_channels, self.feature_stride = aspp, 4
        init_weights(self, generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features ``(N, 4 width, ceil(H / 4), ceil(W / 4))`` before the 1x1 classifier."""
        check_shape(x, "x", f"N {self.in_channels} H W", dtype="float")
        low = self.layer1(self.stem(x))
        deep = self.aspp(self.layer4(self.layer3(self.layer2(low))))
        deep = F.interpolate(deep, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.decoder(torch.cat([deep, self.reduce(low)], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)``, upsampled bilinearly from stride 4."""
        logits = self.classifier(self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
