"""mstool: semantic segmentation with scarce, noisy or absent labels, built on label meta-structures.

Deep networks trained for segmentation learn the *meta-structure* of their labels (per-class spatial
densities) rather than the pixel labels themselves (Luo et al., arXiv 2205.00160). mstool makes, measures
and exploits meta-structures: a label-noise zoo, noise transition matrices, density priors, a supervised
noisy-label comparison suite and unsupervised segmentation augmented by density priors.

Conventions (they bite, so they are stated once here and in every docstring that depends on them):

- images ``(N, C, H, W)`` float32, z-scored per image;
- labels ``(N, H, W)`` int64, classes ``0..K-1``, ignore index 255; binary: 0 background, 1 foreground;
- score maps ``(N, 1, H, W)`` foreground probability (binary) or ``(N, K, H, W)`` softmax;
- densities ``(N, C, H, W)`` float32, one channel per class;
- noise transition matrix ``T[i, j] = P(noisy = j | clean = i)``, rows sum to 1;
- randomness comes in as ``generator: torch.Generator | None``; device and dtype follow the input.
"""

from ._version import __version__
from .errors import MstoolError, MstoolWarning

IGNORE_INDEX = 255
"""Label value that marks pixels without a label (sparse labels, VOC borders)."""

__all__ = ["__version__", "MstoolError", "MstoolWarning", "IGNORE_INDEX"]
