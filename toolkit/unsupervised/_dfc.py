"""DFC: unsupervised segmentation by differentiable feature clustering (Kim, Kanezaki, Tanaka 2020).

Legend: N batch · C channels · q response channels (clusters) · H, W pixels.

A small CNN is trained on the image it segments, one network per image as in the paper: ``layers`` blocks of
3 x 3 convolution, ReLU and batch norm extract features, a 1 x 1 convolution with ``q`` channels and a batch norm
give the response map ``r``, and a pixel's cluster is ``argmax_q r``. Each iteration minimises

``L = CE(r, argmax r) + mu * (mean |r[y+1, x] - r[y, x]| + mean |r[y, x+1] - r[y, x]|)
(+ scribble_weight * CE(r, scribbles) on scribbled pixels)``

by SGD, the feature-similarity term pulling every pixel towards its own cluster and the spatial-continuity term
making neighbours agree; the batch norm on the response keeps clusters from collapsing at once. Training stops as
soon as at most ``min_labels`` clusters remain, or after ``iterations`` updates. With scribbles the label-count stop
is off and training runs all ``iterations``: the count drops within a few updates, before the scribbles have
taken hold, and it is the scribbles, not the count, that say what the clustering should be. The continuity
weight ``mu`` is ``continuity`` without scribbles and ``scribble_continuity`` with them, both 1 by default, the
authors' code's ``stepsize_con``: over a full budget a strong continuity term erodes small and thin objects, and
without scribbles it merges clusters so fast that the label-count stop ends training early. ``continuity`` was 5
until measured on draws no choice had used (5 test images of 128 x 128 of draws 7 and 8 of ``er``, ``mito``,
``nuc`` and ``em`` and 8 DSB training tiles, seeds 0-2, mean Dice): 1 scored higher on all nine sets (+1.6 to
+14.9 points, mean 0.709 -> 0.770), at 4.4 times the CPU time (1.3 -> 5.7 s per image on one thread: the count
falls to 3 clusters after 19-69 updates with ``mu = 5``, rarely within 200 with 1).

From clusters to a binary map, label-free (``mapping``):

- ``"local"`` (the default): a cluster is foreground where most of its pixels are locally bright, i.e. inside the
  local threshold's mask (:func:`~mstool.unsupervised.local_threshold` at its defaults) of the image smoothed with
  sigma 1, turned over for a dark side. A global split of the cluster means fails wherever the background level
  changes from place to place: on the held-out EM generator (cells that differ in tone as much as the membranes
  differ from them) the dark cells' cluster falls on the membranes' side of any global cut. If no cluster, or
  every cluster, has such a majority, the ``"intensity"`` rule decides instead. Chosen on dev draws (5 test
  images of draw 7 of ``er``, ``nuc`` and ``em``, draw 8 of ``mito``, 8 DSB training tiles and 8 images each of
  held-out EM draws 1 and 2; seeds 0-2, mean Dice, ``"local"`` against ``"intensity"``): DSB 0.857 against 0.792,
  held-out EM 0.559 and 0.539 against 0.460 and 0.478, built-in EM 0.761 against 0.721, nuclei 0.895 against
  0.873, ER 0.810 against 0.796, mitochondria 0.724 against 0.751 (the one set it lost; mean 0.735 against
  0.696); a vote with the Otsu mask (0.672 over the seven sets, seed 0, 0-1 on held-out EM) or the minimum-error
  mask (0.646, seeds 1-2, 0-2 on both EM kinds) did worse than the means, and a vote per connected piece of
  each cluster gained nothing (0.733 against 0.732 over the seven sets, seeds 0-2, the same networks).
- ``"intensity"``, the rule of the authors' demonstration:
  :func:`~mstool.unsupervised._classical.foreground_clusters`, i.e. the clusters whose mean intensity lies above
  the Otsu threshold of the cluster means (weighted by cluster size) are foreground (``foreground="bright"``;
  below it for ``"dark"``).

Either way ``foreground="auto"``, the default, picks one side for the batch by
:func:`~mstool.unsupervised.choose_foreground`. With scribbles (given, or built from a prior) ``mapping`` is not
used: scribble label 0 trains response channel 0 and label 1 channel 1, so cluster 1 is foreground and cluster 0
background by construction; any other cluster joins the anchor whose mean intensity is nearer. If an anchor
cluster ends up empty the ``mapping`` rule is used instead.

The score map is the softmax mass of the foreground clusters, the softmax taken over the clusters that survive
(channels that are no pixel's arg-max are not clusters); the mask is the arg-max cluster's side. With two surviving
clusters ``masks == (scores >= 0.5)``; with more they can differ where no cluster dominates.

With a prior, :func:`prior_scribbles` turns the density into sparse pseudo-scribbles (see there); given scribbles
take precedence where both label a pixel.

Large images (``tile``). An image no larger than ``tile`` on either side (512 by default) is segmented whole, as
in the paper. A larger one would hold ``q`` float maps of its size per layer (4 GB for each of a 4096 x 4096 image
at ``q = 64``, several times over for the gradients), so each update instead trains on one random crop of at most
``tile`` (``crop``, below), and the label-count stop looks at that crop. The clusters are then read from the whole
image in windows of ``tile`` overlapping by ``layers`` pixels, the receptive field of the network, so every
pixel's response is the one a whole-image pass would give. The batch norms get the statistics of the whole
image first (:func:`_whole_image_statistics`: each layer's mean and variance over all windows, layer after
layer), which makes the windowed response equal to the whole-image training-mode response of the paper up to
float rounding. Memory then follows ``tile``, not the image.

Crops (``crop``, 64 by default). Each update trains on one random ``crop x crop`` window of the image (the smaller
of ``crop`` and ``tile``), and the clusters are read from the whole image as above; the label-count stop looks at
the crop. Both of the loss's terms are per-pixel means, so a crop is an unbiased, smaller sample of the paper's
whole-image loss, and a quarter of the pixels of a 128 x 128 image costs a quarter of the time. Measured on draws
no other choice had used (5 test images of 128 x 128 of draws 7 and 8 of ``er``, ``mito``, ``nuc`` and ``em`` and 8
DSB training tiles, seeds 0-2, one thread; mean Dice over the nine sets): the whole image 0.771 at 3.46 CPU s per
image, crops of 64 0.781 at 0.91 s, of 48 0.764 at 0.51 s, of 32 0.775 at 0.32 s (single sets moved 2-6 points
either way, as much as one seed from another). Part of the time saved buys width: ``q = 64`` channels on crops of
64 score 0.795 at 2.40 s (48 channels 0.773; 400 updates of 32 channels 0.750, thin ER losing 6 points to the
continuity term), so the defaults are 64 channels on crops of 64 (README's DFC bullets have the benchmark against
the authors' settings and the six-set table). ``crop=None`` gives the whole-image training of the paper.

References:
    Kim, Kanezaki, Tanaka, "Unsupervised Learning of Image Segmentation Based on Differentiable Feature
    Clustering", IEEE Trans. Image Process. 29 (2020), arXiv 2007.09990.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import IGNORE_INDEX
from .._check import check_in, check_int, check_labels, check_range
from .._types import Progress
from ..device import PRECISIONS, MixedPrecision, spawn_seed
from ..errors import ShapeError
from ._base import METHODS, Segmentation, check_images_and_prior, check_prior, known_prior
from ._classical import (
    FOREGROUND_RULES,
    _constant,
    _empty,
    _warn_constant,
    foreground_clusters,
    resolve_foreground,
    smoothed_threshold_masks,
)

__all__ = ["DFCNet", "prior_scribbles", "dfc", "DFC", "MAPPINGS"]

MAPPINGS = ("local", "intensity")
"""DFC's label-free rules from clusters to foreground (module docstring): ``local``, a majority of locally bright
pixels; ``intensity``, the cluster means' side of their Otsu split."""



class DFCNet(nn.Module):
    """The DFC network: ``layers`` x (3 x 3 conv, ReLU, batch norm), then a 1 x 1 conv to ``q`` channels and a batch
    norm on that response.

    Args:
        in_channels: image channels ``C``.
        channels: ``q``, the feature width and the number of response channels (the most clusters possible).
        layers: number of 3 x 3 conv blocks ``M >= 1``.
        generator: CPU generator for a reproducible initialisation (PyTorch's default scheme drawn from it).

    Example:
        >>> net = DFCNet(1, channels=8, layers=2, generator=torch.Generator().manual_seed(0))
        >>> net(torch.zeros(1, 1, 16, 16)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(self, in_channels: int = 1, channels: int = 32, layers: int = 2, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        blocks: list[nn.Module] = []
        width = check_int(in_channels, "in_channels", low=1)
        channels = check_int(channels, "channels", low=2)
        for _ in range(check_int(layers, "layers", low=1)):
            blocks += [nn.Conv2d(width, channels, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(channels)]
            width = channels
        self.features = nn.Sequential(*blocks)
        self.response = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # PyTorch's default initialisation, drawn from ``generator`` instead of the global one
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images -> ``(N, q, H, W)`` normalised response."""
        return self.response(self.features(x))


def prior_scribbles(prior: torch.Tensor, *, top: float = 0.1, bottom: float = 0.2, keep: float = 0.05,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Sparse pseudo-scribbles from a foreground density: dense pixels say foreground, empty ones background.

    Per image: the foreground candidates are the ``top`` fraction of the positive-density pixels with the highest
    density; the background candidates are the ``bottom`` fraction of the known pixels with the lowest density, ties
    at the cut included (so every zero-density pixel is a candidate when at least ``bottom`` of them have zero
    density). Unknown pixels (NaN) are neither. A pixel that is both (a constant prior) is neither. Each candidate
    is kept with probability ``keep``, drawn on ``generator``. The density's scale does not matter, only its order.

    Args:
        prior: ``(N, 1, H, W)`` foreground density, non-negative and finite where known, NaN where unknown.
        top: fraction of the positive-density pixels that are foreground candidates, in ``[0, 1]``.
        bottom: fraction of the known pixels that are background candidates, in ``[0, 1]``.
        keep: sampling rate of the candidates, in ``[0, 1]``.
        generator: CPU generator for the sampling.

    Returns:
        ``(N, H, W)`` int64 scribbles: 1 foreground, 0 background, 255 unlabelled.

    Raises:
        ShapeError: ``prior`` is not ``(N, 1, H, W)``.
        DTypeError: ``prior`` is not a float tensor.
        DataError: ``prior`` is negative or infinite somewhere.
        ParameterError: a fraction outside ``[0, 1]``.

    Example:
        >>> prior = torch.zeros(1, 1, 4, 4)
        >>> prior[..., :2, :] = torch.arange(8.0).view(2, 4) + 1
        >>> prior_scribbles(prior, top=0.25, bottom=0.5, keep=1.0)[0].tolist()
        [[255, 255, 255, 255], [255, 255, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    """
    check_prior(prior)
    top = check_range(top, "top", 0, 1)
    bottom = check_range(bottom, "bottom", 0, 1)
    keep = check_range(keep, "keep", 0, 1)
    n, _, h, w = prior.shape
    if prior.numel() == 0:
        return torch.full((n, h, w), IGNORE_INDEX, dtype=torch.long, device=prior.device)
    known, d = (v.flatten(1) for v in known_prior(prior))
    p = d.shape[1]
    positive = (d > 0).sum(1, keepdim=True)
    # unknown pixels sort below every known one (-1), so the known densities fill the first places
    ranked = torch.where(known, d, torch.full_like(d, -1.0)).sort(1, descending=True).values
    n_top = (top * positive).ceil().long()
    fg = (d >= ranked.gather(1, (n_top - 1).clamp(0, p - 1))) & (d > 0) & (n_top > 0)
    count = known.sum(1, keepdim=True)
    k_bottom = (bottom * count).ceil().long()
    cut = ranked.gather(1, (count - k_bottom).clamp(0, max(p - 1, 0)))
    bg = (d <= cut) & known & (k_bottom > 0)
    picked = torch.rand(n, p, generator=generator).to(d.device) < keep
    out = torch.full((n, p), IGNORE_INDEX, dtype=torch.long, device=d.device)
    out[bg & ~fg & picked] = 0
    out[fg & ~bg & picked] = 1
    return out.view(n, h, w)


def dfc(
    images: torch.Tensor,
    *,
    scribbles: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
    channels: int = 64,
    layers: int = 2,
    iterations: int = 200,
    min_labels: int = 3,
    lr: float = 0.1,
    momentum: float = 0.9,
    continuity: float = 1.0,
    scribble_continuity: float = 1.0,
    scribble_weight: float = 1.0,
    foreground: str = "auto",
    mapping: str = "local",
    prior_top: float = 0.1,
    prior_bottom: float = 0.2,
    prior_keep: float = 0.05,
    tile: int | None = 512,
    crop: int | None = 64,
    precision: str = "auto",
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> Segmentation:
    """Segment each image with its own DFC network (module docstring), then map clusters to foreground label-free.

    The defaults are quick settings for microscopy tiles on a CPU (a 128 x 128 image takes about 2.5 s on one
    thread); the paper trains wider (``q = 100``), on the whole image and longer (up to 1000 iterations).

    Args:
        images: ``(N, C, H, W)`` z-scored float images.
        scribbles: ``(N, H, W)`` int64, 0 background, 1 foreground, 255 unlabelled, or ``None``.
        prior: ``(N, 1, H, W)`` foreground density (NaN where unknown), or ``None``: turned into pseudo-scribbles
            by :func:`prior_scribbles` with ``prior_top``, ``prior_bottom`` and ``prior_keep``.
        channels: ``q``, feature width and maximum number of clusters, ``>= 2``.
        layers: 3 x 3 conv blocks, ``>= 1``.
        iterations: maximum SGD updates per image, ``>= 0`` (the exact number with scribbles).
        min_labels: stop once at most this many clusters remain, ``>= 1`` (not used with scribbles).
        lr, momentum: SGD settings.
        continuity: weight ``mu`` of the spatial-continuity loss without scribbles, ``>= 0``.
        scribble_continuity: ``mu`` when scribbles (given or from a prior) guide training, ``>= 0``.
        scribble_weight: weight of the scribble cross-entropy, ``>= 0`` (1: as much as the similarity term).
        foreground: the side of the intensity that is foreground, ``"bright"``, ``"dark"`` or ``"auto"`` (one side
            for the batch, :func:`~mstool.unsupervised.choose_foreground`).
        mapping: the cluster rule without scribbles, one of :data:`MAPPINGS` (module docstring).
        prior_top, prior_bottom, prior_keep: see :func:`prior_scribbles`.
        tile: side of the largest image segmented whole, ``>= 16`` (``None``: no limit); a larger image trains on
            random crops of at most ``tile`` and is segmented in overlapping windows (module docstring). An image
            that fits in one tile gives exactly the untiled result.
        crop: side of the random crop each update trains on, ``>= 16`` (``None``: the whole image, or ``tile``
            crops of a larger one); the clusters are still read from the whole image (module docstring, Crops).
        precision: the training updates' precision, one of :data:`~mstool.device.PRECISIONS` (``auto``: mixed
            on CUDA, float32 on the CPU); the clusters are read from the last update's response, cast to float32.
        generator: CPU generator: each image's network initialisation (one seed per image, in order) and the
            pseudo-scribble sampling; the crops of a tiled image are drawn from the image's seed.
        progress: called after every update with ``{"event": "round", "round": updates so far, "rounds":
            iterations, "index": image in the batch, "images": N}``.

    Returns:
        :class:`Segmentation`: masks ``(N, H, W)``, scores ``(N, 1, H, W)``, info per image: ``iterations`` (updates
        made), ``labels`` (clusters at the end), ``foreground_clusters``, ``cluster_means``, ``rule``
        (``local``, ``intensity``, ``scribbles`` or ``constant``) and ``scribbled`` (background and foreground
        scribble pixels); for the batch, ``foreground`` (the side), ``foreground_rule`` and, for ``auto``, its
        votes and reason, and ``precision`` (the one used).

    Raises:
        ShapeError, DTypeError: bad ``images``, ``scribbles`` or ``prior``.
        DataError: a negative or infinite ``prior``.
        ParameterError: a bad option or a scribble value other than 0, 1 or 255.
        DeviceError: a ``precision`` the images' device cannot run.

    Example:
        >>> x = torch.zeros(1, 1, 16, 16)
        >>> x[..., 4:12, 4:12] = 2.0
        >>> seg = dfc(x, channels=8, layers=2, iterations=20, generator=torch.Generator().manual_seed(0))
        >>> seg.masks.shape, seg.scores.shape, seg.info["rule"]
        (torch.Size([1, 16, 16]), torch.Size([1, 1, 16, 16]), ['local'])

    References:
        Kim, Kanezaki, Tanaka, IEEE TIP 29 (2020), Algorithm 1 and the scribble extension.
    """
    check_images_and_prior(images, prior)
    settings = _check_dfc(channels, layers, iterations, min_labels, lr, momentum, continuity, scribble_continuity,
                          scribble_weight, foreground, tile, crop, precision)
    check_in(mapping, "mapping", MAPPINGS)
    n, c, h, w = images.shape
    if scribbles is not None:
        check_labels(scribbles, "scribbles", num_classes=2)
        if scribbles.shape != (n, h, w):
            raise ShapeError(f"`scribbles` must be (N, H, W) = {(n, h, w)}; got {tuple(scribbles.shape)}")
    if prior is not None:
        pseudo = prior_scribbles(prior, top=prior_top, bottom=prior_bottom, keep=prior_keep, generator=generator)
        scribbles = pseudo if scribbles is None else torch.where(scribbles != IGNORE_INDEX, scribbles, pseudo)
    foreground, why = resolve_foreground(images, foreground)
    mixed = MixedPrecision(images.device, precision)
    batch = {**why, "precision": mixed.name}  # what holds for the whole batch
    if n == 0:
        return _empty(images, {"iterations": [], "labels": [], "foreground_clusters": [], "cluster_means": [],
                               "rule": [], "scribbled": [], **batch})
    constant = _constant(images)
    _warn_constant(constant, "dfc")
    masks = torch.zeros(n, h, w, dtype=torch.long, device=images.device)
    scores = images.new_zeros(n, 1, h, w)
    info: dict = {key: [] for key in ("iterations", "labels", "foreground_clusters", "cluster_means", "rule",
                                      "scribbled")}
    info.update(batch)
    for i in range(n):
        seed = spawn_seed(generator)
        scr = None if scribbles is None else scribbles[i].to(images.device)
        info["scribbled"].append([0, 0] if scr is None else [int((scr == 0).sum()), int((scr == 1).sum())])
        if bool(constant[i]):
            for key, empty in (("iterations", 0), ("labels", 1), ("foreground_clusters", []),
                               ("cluster_means", []), ("rule", "constant")):
                info[key].append(empty)
            continue
        emit = _round_events(progress, settings["iterations"], i, n)
        net, response, steps = _train(images[i : i + 1], scr, seed=seed, emit=emit, mixed=mixed, **settings)
        if response is not None:
            labels = response.argmax(1)[0]
        else:  # trained on crops: the clusters of the whole image, window by window
            window = settings["tile"] or max(h, w)
            _whole_image_statistics(net, images[i : i + 1], window)
            labels = _windows(net, images[i : i + 1], window, lambda r: r.argmax(1, keepdim=True))[0, 0]
        intensity = images[i].mean(0)
        anchored = scr is not None and bool((scr != IGNORE_INDEX).any())
        fg, means, rule = _foreground(labels, intensity, channels, anchored, foreground, mapping)
        masks[i] = fg[labels].long()
        alive = torch.bincount(labels.flatten(), minlength=channels) > 0
        if response is not None:
            scores[i, 0] = _cluster_score(response, fg, alive)[0, 0]
        else:
            scores[i, 0] = _windows(net, images[i : i + 1], window,
                                    partial(_cluster_score, fg=fg, alive=alive))[0, 0]
        info["iterations"].append(steps)
        info["labels"].append(int(alive.sum()))
        info["foreground_clusters"].append(torch.nonzero(fg).flatten().tolist())
        info["cluster_means"].append({int(k): v for k, v in means.items()})
        info["rule"].append(rule)
    return Segmentation(masks, scores, info)


@METHODS.register("dfc")
@dataclass
class DFC:
    """Differentiable feature clustering (:func:`dfc`), one network per image; a prior gives pseudo-scribbles.

    The fields are :func:`dfc`'s options, with its defaults; ``tile=512`` segments images larger than 512 pixels on
    a side in windows: ``mstool segment`` of one 4096 x 4096 image peaked at 1.3 GB (process RSS, CPU) training on
    512-pixel crops and at 1.2 GB (146 s on one thread) with the default 64 channels on 64-pixel ones, where a
    whole-image pass would need tens of GB.
    """

    deterministic: ClassVar[bool] = False
    binary: ClassVar[bool] = True
    scribbles: ClassVar[bool] = True
    learned: ClassVar[bool] = True

    channels: int = 64
    layers: int = 2
    iterations: int = 200
    min_labels: int = 3
    lr: float = 0.1
    momentum: float = 0.9
    continuity: float = 1.0
    scribble_continuity: float = 1.0
    scribble_weight: float = 1.0
    foreground: str = "auto"
    mapping: str = "local"
    prior_top: float = 0.1
    prior_bottom: float = 0.2
    prior_keep: float = 0.05
    tile: int | None = 512
    crop: int | None = 64
    precision: str = "auto"

    def __post_init__(self) -> None:
        checked = _check_dfc(self.channels, self.layers, self.iterations, self.min_labels, self.lr, self.momentum,
                             self.continuity, self.scribble_continuity, self.scribble_weight, self.foreground,
                             self.tile, self.crop, self.precision)
        # the counts are kept as Python ints (a numpy integer passes the check but not a JSON record)
        for name in ("tile", "crop", "channels", "layers", "iterations", "min_labels"):
            setattr(self, name, checked[name])
        check_in(self.mapping, "mapping", MAPPINGS)
        check_range(self.prior_top, "prior_top", 0, 1)
        check_range(self.prior_bottom, "prior_bottom", 0, 1)
        check_range(self.prior_keep, "prior_keep", 0, 1)

    def segment(self, images: torch.Tensor, *, prior: torch.Tensor | None = None,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                progress: Progress | None = None, scribbles: torch.Tensor | None = None) -> Segmentation:
        """:func:`dfc` with these settings (``scribbles``: optional ``(N, H, W)`` 0/1/255 user scribbles;
        ``progress``: called after every update, see :func:`dfc`; ``labels`` are not used)."""
        return dfc(images, scribbles=scribbles, prior=prior, channels=self.channels, layers=self.layers,
                   iterations=self.iterations, min_labels=self.min_labels, lr=self.lr, momentum=self.momentum,
                   continuity=self.continuity, scribble_continuity=self.scribble_continuity,
                   scribble_weight=self.scribble_weight, foreground=self.foreground, mapping=self.mapping,
                   prior_top=self.prior_top, prior_bottom=self.prior_bottom, prior_keep=self.prior_keep,
                   tile=self.tile, crop=self.crop, precision=self.precision, generator=generator,
                   progress=progress)


def _train(image: torch.Tensor, scribbles: torch.Tensor | None, *, seed: int, tile: int | None, crop: int | None,
           emit: Callable[[int], None], mixed: MixedPrecision, channels: int, layers: int, iterations: int,
           min_labels: int, lr: float, momentum: float, continuity: float, scribble_continuity: float,
           scribble_weight: float) -> tuple[DFCNet, torch.Tensor | None, int]:
    """Train one network on ``image`` ``(1, C, H, W)``; return it, its last response ``(1, q, H, W)`` (``None``
    for an image trained on crops) and the number of updates."""
    g = torch.Generator().manual_seed(seed)
    net = DFCNet(image.shape[1], channels, layers, generator=g)
    net = net.to(image.device, image.dtype).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    target_scr = None
    if scribbles is not None and bool((scribbles != IGNORE_INDEX).any()):
        target_scr = scribbles[None]
        continuity = scribble_continuity
    _, _, h, w = image.shape
    sides = [side for side in (tile, crop) if side is not None]
    th, tw = (h, w) if not sides else (min(*sides, h), min(*sides, w))
    whole = (th, tw) == (h, w)
    x, scr = image, target_scr
    steps = 0
    with torch.enable_grad():
        while True:
            if not whole:  # the crops continue the stream that initialised the network
                y0 = int(torch.randint(0, h - th + 1, (), generator=g))
                x0 = int(torch.randint(0, w - tw + 1, (), generator=g))
                x = image[..., y0 : y0 + th, x0 : x0 + tw]
                scr = None if target_scr is None else target_scr[..., y0 : y0 + th, x0 : x0 + tw]
            with mixed.autocast():
                response = net(x)
            response = response.float()
            labels = response.argmax(1)
            if steps >= iterations or (target_scr is None and labels.unique().numel() <= min_labels):
                break
            if scr is None:
                loss = F.cross_entropy(response, labels)
            else:
                # scribbled pixels answer to their scribble, the others to their own cluster
                own = labels.masked_fill(scr != IGNORE_INDEX, IGNORE_INDEX)
                has_own = bool((own != IGNORE_INDEX).any())
                if whole or bool((scr != IGNORE_INDEX).any()):
                    loss = scribble_weight * F.cross_entropy(response, scr, ignore_index=IGNORE_INDEX)
                    if has_own:
                        loss = loss + F.cross_entropy(response, own, ignore_index=IGNORE_INDEX)
                else:  # a crop without scribbles: the cross-entropy over no pixel would be NaN
                    loss = F.cross_entropy(response, own, ignore_index=IGNORE_INDEX)
            dy = (response[:, :, 1:, :] - response[:, :, :-1, :]).abs().mean()
            dx = (response[:, :, :, 1:] - response[:, :, :, :-1]).abs().mean()
            loss = loss + continuity * (dy + dx)
            opt.zero_grad()
            mixed.backward(loss, opt)
            mixed.step(opt)
            steps += 1
            emit(steps)
    return net, (response.detach() if whole else None), steps


def _round_events(progress: Progress | None, iterations: int, index: int, images: int) -> Callable[[int], None]:
    """What :func:`_train` calls after each update: a ``round`` event for ``progress``, or nothing."""
    if progress is None:
        return lambda step: None
    return lambda step: progress({"event": "round", "round": step, "rounds": iterations, "index": index,
                                  "images": images})


def _cluster_score(response: torch.Tensor, fg: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """``(1, 1, h, w)`` softmax mass of the foreground clusters among the surviving ones, of a ``(1, q, h, w)``
    response."""
    probs = response[0].masked_fill(~alive[:, None, None], -math.inf).softmax(0)
    return (probs * fg[:, None, None].to(probs.dtype)).sum(0).clamp(0, 1)[None, None]


def _window_responses(net: DFCNet, image: torch.Tensor, tile: int,
                      depth: int | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(y, x, response)`` of every ``tile x tile`` window of ``image`` ``(1, C, H, W)``, in row order.

    Each window is run with a margin of ``r`` pixels, ``r`` the number of 3 x 3 convolutions (the receptive
    radius), and the margin is cut off again, so a window's interior sees exactly the pixels a whole-image pass
    would (the zero padding of the convolutions falls in the margin or on the image border). ``depth`` runs only
    the first ``depth`` modules of the network; ``None`` all of them.
    """
    modules = [*net.features, *net.response][:depth]
    margin = sum(isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1 for m in modules)
    _, _, h, w = image.shape
    with torch.no_grad():
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                y0, x0 = max(0, y - margin), max(0, x - margin)
                r = image[..., y0 : min(h, y + tile + margin), x0 : min(w, x + tile + margin)]
                for m in modules:
                    r = m(r)
                yield y, x, r[..., y - y0 : y - y0 + min(tile, h - y), x - x0 : x - x0 + min(tile, w - x)]


def _windows(net: DFCNet, image: torch.Tensor, tile: int,
             reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``(1, c, H, W)``: ``reduce`` (``(1, q, h, w)`` -> ``(1, c, h, w)``) of the response, window by window."""
    out = None
    for y, x, r in _window_responses(net, image, tile):
        part = reduce(r)
        if out is None:
            out = part.new_empty((1, part.shape[1], *image.shape[-2:]))
        out[..., y : y + part.shape[-2], x : x + part.shape[-1]] = part
    return out


def _whole_image_statistics(net: DFCNet, image: torch.Tensor, tile: int) -> None:
    """Give every batch norm of ``net`` the mean and (biased) variance of its input over the whole image, and
    put it in eval mode: the network then maps each window as a training-mode pass over the whole image would.

    Layer after layer, since a batch norm's input depends on the statistics of the ones before it; float64
    sums over the windows of :func:`_window_responses`.
    """
    count = image.shape[-2] * image.shape[-1]
    for depth, m in enumerate([*net.features, *net.response]):
        if not isinstance(m, nn.BatchNorm2d):
            continue
        total = square = 0.0
        for _, _, r in _window_responses(net, image, tile, depth):
            total = total + r.sum((0, 2, 3), dtype=torch.float64)
            square = square + r.square().sum((0, 2, 3), dtype=torch.float64)
        mean = total / count
        m.running_mean.copy_(mean)
        m.running_var.copy_((square / count - mean.square()).clamp_min(0))
        m.eval()


def _foreground(labels: torch.Tensor, intensity: torch.Tensor, q: int, anchored: bool,
                foreground: str, mapping: str) -> tuple[torch.Tensor, dict[int, float], str]:
    """``(q,)`` bool foreground clusters, the non-empty clusters' mean intensities, and the rule used."""
    sizes = torch.bincount(labels.flatten(), minlength=q).to(intensity.dtype)
    sums = torch.bincount(labels.flatten(), weights=intensity.flatten(), minlength=q).to(intensity.dtype)
    means = sums / sizes.clamp(min=1)
    present = sizes > 0
    table = {k: float(means[k]) for k in torch.nonzero(present).flatten().tolist()}
    if anchored and bool(present[0]) and bool(present[1]):
        nearer_fg = (means - means[1]).abs() < (means - means[0]).abs()
        fg = present & nearer_fg
        fg[0], fg[1] = False, True
        return fg, table, "scribbles"
    if mapping == "local":
        local = smoothed_threshold_masks(intensity[None, None], foreground, 1.0, "local")
        inside = torch.bincount(labels.flatten(), weights=local.flatten().to(intensity.dtype), minlength=q)
        fg = present & (2 * inside > sizes)
        if bool(fg.any()) and not bool(fg[present].all()):
            return fg, table, "local"
    return foreground_clusters(means[None], sizes[None], foreground)[0], table, "intensity"


def _check_dfc(channels: int, layers: int, iterations: int, min_labels: int, lr: float, momentum: float,
               continuity: float, scribble_continuity: float, scribble_weight: float, foreground: str,
               tile: int | None, crop: int | None, precision: str) -> dict:
    """Validate the training settings; return those :func:`_train` takes (all but ``precision``, which it gets
    resolved for the images' device)."""
    check_in(foreground, "foreground", FOREGROUND_RULES)
    check_in(precision, "precision", PRECISIONS)
    return {
        "tile": None if tile is None else check_int(tile, "tile", low=16),
        "crop": None if crop is None else check_int(crop, "crop", low=16),
        "channels": check_int(channels, "channels", low=2),
        "layers": check_int(layers, "layers", low=1),
        "iterations": check_int(iterations, "iterations", low=0),
        "min_labels": check_int(min_labels, "min_labels", low=1),
        "lr": check_range(lr, "lr", 0, math.inf, low_open=True),
        "momentum": check_range(momentum, "momentum", 0, 1, high_open=True),
        "continuity": check_range(continuity, "continuity", 0),
        "scribble_continuity": check_range(scribble_continuity, "scribble_continuity", 0),
        "scribble_weight": check_range(scribble_weight, "scribble_weight", 0),
    }
