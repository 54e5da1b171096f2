"""HRNetV2: parallel high-to-low resolution branches with repeated multi-resolution fusion.

Legend: N batch · C channels · K classes · H, W pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._check import check_int, check_shape
from ._unet import BasicBlock, check_common, conv_norm_act, init_weights

__all__ = ["HRNet"]


def _resize(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class _Fuse(nn.Module):
    """Exchange between branches: output ``i`` sums every branch ``j`` brought to its resolution and width.

    ``j > i`` (lower resolution): 1x1 conv-norm, then bilinear upsampling. ``j < i``: ``i - j`` stride-2
    3x3 convolutions (ReLU between them, none after the last). ``j = i``: identity.
    """

    def __init__(self, widths: list[int], norm: str):
        super().__init__()
        rows = []
        for i, wi in enumerate(widths):
            row = []
            for j, wj in enumerate(widths):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(conv_norm_act(wj, wi, norm, kernel=1, act=False))
                else:
                    steps = [conv_norm_act(wj, wj, norm, stride=2) for _ in range(i - j - 1)]
                    row.append(nn.Sequential(*steps, conv_norm_act(wj, wi, norm, stride=2, act=False)))
            rows.append(nn.ModuleList(row))
        self.rows = nn.ModuleList(rows)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [F.relu(sum(_resize(f(x), xs[i].shape[-2:]) for f, x in zip(row, xs, strict=True)))
                for i, row in enumerate(self.rows)]


class _Stage(nn.Module):
    """One multi-resolution module: ``blocks`` basic blocks on every branch, then a fusion."""

    def __init__(self, widths: list[int], blocks: int, norm: str):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*(BasicBlock(w, w, norm) for _ in range(blocks)))
                                      for w in widths)
        self.fuse = _Fuse(widths, norm)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse([b(x) for b, x in zip(self.branches, xs, strict=True)])


class HRNet(nn.Module):
    """HRNetV2 for segmentation, small by default.

    A stem of two stride-2 3x3 convolutions brings the image to stride 4 (``2 width`` channels), followed by
    ``blocks`` basic residual blocks. Then stage ``s = 1 .. branches - 1`` adds a branch at half the
    resolution of the previous lowest one (a stride-2 3x3 convolution), with ``width * 2**s`` channels,
    runs ``blocks`` basic blocks on every branch and fuses all branches (each output sums every branch
    resampled to its resolution), so high resolution is kept throughout while information is exchanged
    repeatedly. The head upsamples every branch to stride 4, concatenates them (HRNetV2) and mixes them with
    a 1x1 conv-norm-ReLU; a 1x1 classifier gives logits, upsampled bilinearly to the input size.

    The paper's HRNetV2-W18 has ``width=18``, ``branches=4``, four blocks per branch and 1, 4, 3 modules in
    stages 2 to 4; here each stage has one module, which keeps the network small for small datasets.

    Args:
        in_channels: image channels.
        num_classes: output channels: 1 for a binary (sigmoid) map, ``K >= 2`` for softmax classes.
        width: channels of the highest-resolution branch.
        branches: number of parallel resolutions (2 to 4): strides 4, 8, 16, 32.
        blocks: basic residual blocks per branch in each stage.
        norm: ``batch``, ``group`` or ``none``.
        generator: CPU generator for a reproducible initialisation (``None``: torch's global one).

    Shapes:
        ``forward``: ``(N, in_channels, H, W)`` -> logits ``(N, num_classes, H, W)``.
        ``features``: ``(N, in_channels, H, W)`` -> ``(N, width * (2**branches - 1), ceil(H / 4),
        ceil(W / 4))``, the mixed concatenation at stride 4 (``feature_stride = 4``).

    References:
        Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition", TPAMI 2020
        (HRNetV2, Fig. 2 and Fig. 4(b)); Sun, Xiao, Liu, Wang, CVPR 2019.

    Example:
        >>> net = HRNet(width=4, branches=3)
        >>> net(torch.zeros(2, 1, 37, 53)).shape
        torch.Size([2, 1, 37, 53])
        >>> net.features(torch.zeros(2, 1, 37, 53)).shape
        torch.Size([2, 28, 10, 14])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 1, *, width: int = 16, branches: int = 4,
                 blocks: int = 2, norm: str = "batch", generator: torch.Generator | None = None):
        super().__init__()
        in_channels, num_classes = check_common(in_channels, num_classes, norm)
        width = check_int(width, "width", low=1)
        branches = check_int(branches, "branches", low=2, high=4)
        blocks = check_int(blocks, "blocks", low=1)
        self.in_channels, self.num_classes = in_channels, num_classes
        widths = [width * 2**i for i in range(branches)]
        stem = 2 * width
        self.stem = nn.Sequential(conv_norm_act(in_channels, stem, norm, stride=2),
                                  conv_norm_act(stem, stem, norm, stride=2),
                                  *(BasicBlock(stem, stem, norm) for _ in range(blocks)))
        # transition s creates branch s from the lowest-resolution branch so far (the stem for s = 1)
        self.to_first = conv_norm_act(stem, widths[0], norm)
        sources = [stem, *widths[1:-1]]
        self.transitions = nn.ModuleList(conv_norm_act(cin, widths[s], norm, stride=2)
                                         for s, cin in enumerate(sources, start=1))
        self.stages = nn.ModuleList(_Stage(widths[: s + 1], blocks, norm) for s in range(1, branches))
        total = sum(widths)
        self.head = conv_norm_act(total, total, norm, kernel=1)
        self.classifier = nn.Conv2d(total, num_classes, 1)
        self.feature_channels, self.feature_stride = total, 4
        init_weights(self, generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed multi-resolution features ``(N, width * (2**branches - 1), ceil(H / 4), ceil(W / 4))``."""
        check_shape(x, "x", f"N {self.in_channels} H W", dtype="float")
        s = self.stem(x)
        xs = [self.to_first(s)]
        for k, (transition, stage) in enumerate(zip(self.transitions, self.stages, strict=True)):
            xs = stage(xs + [transition(s if k == 0 else xs[-1])])
        size = xs[0].shape[-2:]
        return self.head(torch.cat([_resize(b, size) for b in xs], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)``, upsampled bilinearly from stride 4."""
        logits = self.classifier(self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
