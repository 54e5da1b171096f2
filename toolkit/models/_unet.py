"""U-Net, and the blocks the three networks share (norm choice, conv-norm-ReLU, residual block, init).

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._check import check_in, check_int, check_range, check_shape

__all__ = ["UNet"]

NORMS = ("batch", "group", "none")


# ------------------------------------------------------------------------------------------ shared blocks
def make_norm(kind: str, channels: int) -> nn.Module:
    """``batch``: BatchNorm; ``group``: GroupNorm with up to 32 groups of >= 2 channels; ``none``: identity.

    GroupNorm does not depend on the batch, so it suits the batches of 1 to 4 images common in microscopy.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next((g for g in (32, 16, 8, 4, 2) if channels % g == 0 and channels // g >= 2), 1)
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


def conv_norm_act(cin: int, cout: int, norm: str, *, kernel: int = 3, stride: int = 1, dilation: int = 1,
                  act: bool = True) -> nn.Sequential:
    """A ``kernel x kernel`` convolution keeping the size (``stride`` 2: ``ceil(H / 2)``), a norm, a ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation,
                  bias=norm == "none"),
        make_norm(norm, cout),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-norms and an identity (or 1x1 projection) shortcut, then ReLU.

    References:
        He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, Fig. 2.
    """

    def __init__(self, cin: int, cout: int, norm: str, *, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            conv_norm_act(cin, cout, norm, stride=stride, dilation=dilation),
            conv_norm_act(cout, cout, norm, dilation=dilation, act=False),
        )
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else conv_norm_act(cin, cout, norm, kernel=1, stride=stride, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def init_weights(model: nn.Module, generator: torch.Generator | None) -> None:
    """He-normal convolutions (fan-out, ReLU gain), zero biases, unit norm scales.

    ``generator`` (CPU) makes the initialisation reproducible without touching the global seed; ``None``
    draws from torch's global generator, as ``nn.Module`` constructors do.

    References:
        He, Zhang, Ren, Sun, "Delving Deep into Rectifiers", ICCV 2015, Eq. (10).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_common(in_channels: int, num_classes: int, norm: str) -> tuple[int, int]:
    """Check the options every network takes; return ``in_channels`` and ``num_classes`` as Python ints (they
    are written to checkpoints)."""
    in_channels = check_int(in_channels, "in_channels", low=1)
    num_classes = check_int(num_classes, "num_classes", low=1)
    check_in(norm, "norm", NORMS)
    return in_channels, num_classes


# ---------------------------------------------------------------------------------------------------- U-Net
class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(conv_norm_act(cin, cout, norm), conv_norm_act(cout, cout, norm))


class UNet(nn.Module):
    """U-Net: a contracting path of double 3x3 convolutions and max-pooling, an expanding path of 2x2
    transposed convolutions and double convolutions, with skip concatenation at every scale.

    Differences from the paper, on purpose: convolutions are zero-padded ("same"), so the output has the
    input's size instead of a cropped one; a normalisation follows each convolution (``norm``). Upsampling
    is the paper's learned 2x2 transposed convolution (stride 2), which halves the channels before the skip
    concatenation. An input whose ``H`` or ``W`` is not a multiple of ``2 ** depth`` is padded at the
    bottom and right by edge replication and the output is cropped back, so any size works.

    With ``base=64, depth=4`` this is the paper's network (about 31 million parameters).

    Args:
        in_channels: image channels.
        num_classes: output channels: 1 for a binary (sigmoid) map, ``K >= 2`` for softmax classes.
        base: channels of the first scale; scale ``i`` has ``base * 2**i``.
        depth: number of 2x downsamplings (1 to 6).
        norm: ``batch``, ``group`` or ``none``.
        dropout: channel dropout probability at the bottleneck (the paper puts dropout at the end of the
            contracting path).
        generator: CPU generator for a reproducible initialisation (``None``: torch's global one).

    Shapes:
        ``forward``: ``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)``.
        ``features``: ``(N, in_channels, H, W)`` -> ``(N, base, H, W)``, full resolution
        (``feature_stride = 1``).

    References:
        Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
        MICCAI 2015, Fig. 1.

    Example:
        >>> net = UNet(base=8, depth=2)
        >>> net(torch.zeros(2, 1, 37, 53)).shape
        torch.Size([2, 1, 37, 53])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 1, *, base: int = 64, depth: int = 4,
                 norm: str = "batch", dropout: float = 0.0, generator: torch.Generator | None = None):
        super().__init__()
        in_channels, num_classes = check_common(in_channels, num_classes, norm)
        base = check_int(base, "base", low=1)
        depth = check_int(depth, "depth", low=1, high=6)
        check_range(dropout, "dropout", 0, 1, high_open=True)
        self.in_channels, self.num_classes, self.depth = in_channels, num_classes, depth
        self.feature_channels, self.feature_stride = base, 1
        widths = [base * 2**i for i in range(depth + 1)]
        self.inc = _DoubleConv(in_channels, widths[0], norm)
        self.down = nn.ModuleList(_DoubleConv(widths[i], widths[i + 1], norm) for i in range(depth))
        self.dropout = nn.Dropout2d(dropout)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_DoubleConv(2 * widths[i], widths[i], norm) for i in reversed(range(depth)))
        self.classifier = nn.Conv2d(base, num_classes, 1)
        init_weights(self, generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder features ``(N, base, H, W)`` before the 1x1 classifier."""
        check_shape(x, "x", f"N {self.in_channels} H W", dtype="float")
        h, w = x.shape[-2:]
        m = 2**self.depth
        x = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = self.dropout(skips.pop())
        for up, dec in zip(self.up, self.dec, strict=True):
            y = dec(torch.cat([skips.pop(), up(y)], dim=1))
        return y[..., :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)``."""
        return self.classifier(self.features(x))
