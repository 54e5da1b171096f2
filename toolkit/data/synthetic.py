"""Built-in synthetic micrographs (fluorescence-like, and one electron-microscopy-like) with exact ground truth.

Size: one module for the five kinds (over 600 lines) because they share one camera model (:func:`render`) and the
object-drawing helpers; a kind is a geometry function of about 60 lines beside them.

Legend: N batch · K classes · H, W pixels.

Every kind draws a scene geometry (exact labels and an ideal fluorophore density) and hands it to one
shared camera model, :func:`render`. The kinds live in the registry :data:`SYNTH_KINDS`:

- ``er``: endoplasmic-reticulum-like network of thin curved tubules (2-4 px wide) meeting mostly at
  three-way junctions and closing into polygonal loops; foreground fraction typically 15-27 %.
- ``mito``: mitochondria-like rods (capsules 4-30 px long, 3-7 px wide, some slightly bent) and round blobs,
  oriented along a smooth per-image field; foreground fraction typically 7-17 %.
- ``nuc``: nuclei-like ellipses with wavy outlines, a few touching, varied size and brightness, a domed
  profile and chromatin texture (bright speckles), plus a few small bright mitotic-like ones; foreground
  fraction typically 14-31 %.
- ``shapes``: a multi-class scene: a cloudy background (class 0) with discs (1), rectangles (2), triangles (3)
  and rings (4), each class with its own brightness and texture; later objects occlude earlier ones;
  foreground fraction (classes 1-4) typically 12-33 %.
- ``em``: an electron-micrograph-like tissue with **dark** foreground: wavy cell membranes 2-6 px wide around
  bright, grainy cells that hold dark organelles (vesicles, mitochondria, granules) which are not membrane, so
  intensity alone is ambiguous; foreground fraction typically 16-24 %.

Every kind but ``em`` has bright foreground; ``invert=True`` turns any kind over.

The fractions above are for 256 x 256 images; smaller images vary more. Object sizes are in pixels and do not
depend on the image size, object counts are proportional to the image area: a 512 x 512 image looks like four
256 x 256 tiles of the same specimen.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from .. import names
from .._check import check_int, check_range, check_shape
from .._registry import Registry
from ..device import make_generator, resolve_device
from ..errors import MstoolWarning, ParameterError

__all__ = ["Synthetic", "SYNTH_KINDS", "synthesize", "synth_kinds", "render"]

Geometry = Callable[[int, int, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

SYNTH_KINDS: Registry[Geometry] = Registry("synthetic kind", declared=names.SYNTH_KINDS)
"""Scene geometries by name. An entry is ``geometry(n, height, width, generator) -> (labels, density)``
with labels ``(n, H, W)`` int64 and density ``(n, 1, H, W)`` float32 (0 outside the objects of binary
kinds), and carries a ``classes`` attribute (class names, index = class id)."""

_REF_AREA = 256.0 * 256.0  # object densities below are quoted per 256 x 256 pixels
_CHUNK_PIXELS = 1 << 20  # images are generated in chunks of about this many pixels to bound memory
_MIN_SIZE = 32

# Camera: an sCMOS-like sensor (gain in counts per photo-electron, read noise and offset in counts).
_GAIN = 2.0
_READ_NOISE = 3.0
_OFFSET = 100.0
_MAX_COUNT = 65535.0


class Synthetic(NamedTuple):
    """A batch of synthetic micrographs and their exact labels.

    Attributes:
        images: ``(N, 1, H, W)`` float32 camera counts, integer-valued, in ``[0, 65535]``.
        labels: ``(N, H, W)`` int64; binary kinds 0 background / 1 foreground, ``shapes`` ``0..K-1``.
        classes: class names, index = class id, e.g. ``("background", "er")``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]


def synth_kinds() -> list[str]:
    """Names of the synthetic kinds, in registration order.

    Example:
        >>> synth_kinds()
        ['er', 'mito', 'nuc', 'shapes', 'em']
    """
    return SYNTH_KINDS.names()


def synthesize(
    kind: str,
    n: int,
    size: int | tuple[int, int] = 256,
    *,
    snr: float = 8.0,
    invert: bool = False,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> Synthetic:
    """Synthetic micrographs with exact labels.

    The kind's geometry draws the scene (see the module docstring); :func:`render` images it: Gaussian
    point-spread blur, background, uneven illumination and Poisson-Gaussian camera noise at the requested
    signal-to-noise ratio.

    Everything is generated on the CPU from ``generator`` and then moved to ``device``, so one seed gives
    bit-identical images and labels on every device. Images are made in chunks of about 2**20 pixels, so
    the output of a seed depends on ``n`` and ``size`` (a larger batch does not start with the same images).

    Args:
        kind: one of :func:`synth_kinds`.
        n: number of images (0 gives empty tensors of the right shape).
        size: ``H`` (square) or ``(H, W)``; each side at least 32 pixels.
        snr: signal-to-noise ratio, ``> 0``: mean foreground contrast over background noise, defined in
            :func:`render`. About 2 is very noisy, 8 is typical, 30 is clean.
        invert: turn each image's intensities over (``min + max - x``, per image), so that bright objects become
            dark ones and the other way round; the labels stay. A test of every method's polarity handling.
        generator: CPU random generator (a fresh, nondeterministic one when ``None``).
        device: where the result lives (``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``).

    Returns:
        :class:`Synthetic`: images ``(N, 1, H, W)`` float32 counts, labels ``(N, H, W)`` int64, class names.

    Raises:
        ParameterError: an unknown kind (the message lists the known ones), ``n < 0``, a side below 32,
            ``snr <= 0`` or a generator that is not a CPU generator.
        DeviceError: the device does not exist here.

    Warns:
        MstoolWarning: some pixels saturated at 65535 (only at a very high ``snr``).

    Example:
        >>> data = synthesize("er", 2, 64, generator=torch.Generator().manual_seed(0))
        >>> data.images.shape, data.labels.shape, data.classes
        (torch.Size([2, 1, 64, 64]), torch.Size([2, 64, 64]), ('background', 'er'))
        >>> bool((data.images == data.images.round()).all()), data.labels.unique().tolist()
        (True, [0, 1])
    """
    if not isinstance(kind, str):
        raise ParameterError(f"`kind` must be a string, one of {', '.join(synth_kinds())}; got {kind!r}")
    geometry = SYNTH_KINDS.get(kind)
    n = check_int(n, "n", low=0)
    height, width = _check_size(size)
    snr = check_range(snr, "snr", 0, math.inf, low_open=True, high_open=True)
    g = _check_generator(generator)
    dev = resolve_device(device)

    chunk = max(1, _CHUNK_PIXELS // (height * width))
    images = [torch.zeros(0, 1, height, width)]
    labels = [torch.zeros(0, height, width, dtype=torch.long)]
    saturated = 0
    for start in range(0, n, chunk):
        lab, density = geometry(min(chunk, n - start), height, width, g)
        img, sat = _render(density, lab != 0, snr, g)
        if invert and img.numel():
            img = img.amin((2, 3), keepdim=True) + img.amax((2, 3), keepdim=True) - img
        images.append(img)
        labels.append(lab)
        saturated += sat
    if saturated:
        warnings.warn(f"{saturated} pixels saturated at {int(_MAX_COUNT)} counts; lower `snr` (got {snr:g})",
                      MstoolWarning, stacklevel=2)
    return Synthetic(torch.cat(images).to(dev), torch.cat(labels).to(dev), tuple(geometry.classes))


def render(
    density: torch.Tensor,
    foreground: torch.Tensor,
    *,
    snr: float = 8.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Image an ideal fluorophore density with a widefield microscope and an sCMOS-like camera.

    Steps: Gaussian point-spread blur (sigma drawn per image in [1, 1.5] px) -> add an autofluorescence
    background (0.05-0.15 of a unit density) -> multiply by a smooth illumination field (a vignetted spot,
    0.6-1.0, with a weak ripple) -> scale to photons -> Poisson shot noise -> gain (2 counts per
    photo-electron) + Gaussian read noise (3 counts) + offset (100 counts) -> round, clip to [0, 65535].

    Signal-to-noise ratio, per image: ``snr = |mu_fg - mu_bg| / sigma_bg``, where ``mu_fg`` and ``mu_bg``
    are the means of the expected (noise-free) counts over foreground (label != 0) and background pixels and
    ``sigma_bg = sqrt(gain**2 * lambda_bg + read_noise**2)`` is the camera noise at the mean background
    photon count ``lambda_bg``. Each image's photon scale is solved from this (a quadratic), so the measured
    ratio matches the requested one up to sampling; noise measured far from objects is a little lower than
    ``sigma_bg`` because blurred light spills into the background near them. An image without foreground or
    without background takes the contrast of a unit density instead.

    Drawn on the CPU (``torch.poisson`` needs a CPU generator); the result goes back to the input's device.

    Args:
        density: ``(N, 1, H, W)`` ideal fluorophore density, ``>= 0`` (about 1 for a bright object).
        foreground: ``(N, H, W)`` foreground mask (bool, or integer labels with nonzero = foreground).
        snr: signal-to-noise ratio, ``> 0``.
        generator: CPU random generator (a fresh, nondeterministic one when ``None``).

    Returns:
        ``(N, 1, H, W)`` float32 integer-valued camera counts in ``[0, 65535]``.

    Warns:
        MstoolWarning: some pixels saturated at 65535.

    Example:
        >>> density = torch.zeros(1, 1, 32, 32)
        >>> density[..., 8:24, 8:24] = 1.0
        >>> g = torch.Generator().manual_seed(0)
        >>> img = render(density, density[:, 0] > 0, snr=10.0, generator=g)
        >>> img.shape, bool(img[..., 12:20, 12:20].mean() > img[..., :4, :4].mean())
        (torch.Size([1, 1, 32, 32]), True)
    """
    check_shape(density, "density", "N 1 H W", dtype="float")
    check_shape(foreground, "foreground", "N H W")
    expected = (density.shape[0],) + tuple(density.shape[2:])
    if tuple(foreground.shape) != expected:
        raise ParameterError(f"`foreground` must be (N, H, W) = {expected} to match `density`; "
                             f"got {tuple(foreground.shape)}")
    snr = check_range(snr, "snr", 0, math.inf, low_open=True, high_open=True)
    g = _check_generator(generator)
    images, saturated = _render(density.detach().float().cpu().clamp(min=0), foreground.cpu() != 0, snr, g)
    if saturated:
        warnings.warn(f"{saturated} pixels saturated at {int(_MAX_COUNT)} counts; lower `snr` (got {snr:g})",
                      MstoolWarning, stacklevel=2)
    return images.to(density.device)


# ---------------------------------------------------------------------------------------------------------
# Checks


def _check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    pair = size if isinstance(size, tuple | list) and len(size) == 2 else (size, size)
    try:  # check_int's rule for an integer; the message names both forms
        height, width = (check_int(s, "size") for s in pair)
    except ParameterError:
        raise ParameterError(f"`size` must be an integer or a pair (H, W) of integers; got {size!r}") from None
    if min(height, width) < _MIN_SIZE:
        raise ParameterError(f"`size` must be at least {_MIN_SIZE} pixels per side; got {size!r}")
    return height, width


def _check_generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        return make_generator(None)
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ParameterError(f"`generator` must be a CPU torch.Generator or None; got {generator!r}")
    return generator


# ---------------------------------------------------------------------------------------------------------
# Shared camera model


def _render(density: torch.Tensor, foreground: torch.Tensor, snr: float,
            g: torch.Generator) -> tuple[torch.Tensor, int]:
    """The work of :func:`render` on CPU tensors; returns the images and the number of saturated pixels."""
    n, _, h, w = density.shape
    if n == 0:
        return torch.zeros(0, 1, h, w), 0
    sigma = _uniform((n, 1), 1.0, 1.5, g).expand(n, 2)
    blurred = gaussian_blur2d(density, (11, 11), sigma, border_type="reflect")
    background = _uniform((n, 1, 1, 1), 0.05, 0.15, g)
    illumination = _illumination(n, h, w, g)
    rate = (blurred.clamp(min=0) + background) * illumination  # photons per unit photon scale

    fg = foreground[:, None]
    n_fg = fg.sum((1, 2, 3)).float()
    n_bg = (~fg).sum((1, 2, 3)).float()
    mean_fg = (rate * fg).sum((1, 2, 3)) / n_fg.clamp(min=1)
    mean_bg = (rate * ~fg).sum((1, 2, 3)) / n_bg.clamp(min=1)
    nominal = illumination.mean((1, 2, 3))  # the contrast of a unit density
    contrast = (mean_fg - mean_bg).abs()  # dark foreground (em) has the same contrast as bright
    contrast = torch.where((n_fg > 0) & (n_bg > 0) & (contrast > 1e-3 * nominal), contrast, nominal)
    bg_level = torch.where(n_bg > 0, mean_bg, background.flatten() * nominal)
    # snr = G s c / sqrt(G^2 s q + r^2)  <=>  G^2 c^2 s^2 - snr^2 G^2 q s - snr^2 r^2 = 0; the positive root
    a = _GAIN**2 * contrast**2
    b = snr**2 * _GAIN**2 * bg_level
    scale = (b + torch.sqrt(b**2 + 4 * a * snr**2 * _READ_NOISE**2)) / (2 * a)

    photons = torch.poisson(rate * scale[:, None, None, None], generator=g)
    read = torch.randn(photons.shape, generator=g) * _READ_NOISE
    counts = (_OFFSET + _GAIN * photons + read).round()
    saturated = int((counts > _MAX_COUNT).sum())
    return counts.clamp(0, _MAX_COUNT).float(), saturated


def _illumination(n: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """``(n, 1, h, w)`` smooth multiplicative field in about [0.55, 1.05]: a vignetted spot, a weak ripple."""
    yy, xx = _grid(h, w)
    diag = math.hypot(h, w)
    cy = _uniform((n, 1, 1, 1), 0.0, h, g)
    cx = _uniform((n, 1, 1, 1), 0.0, w, g)
    spread = _uniform((n, 1, 1, 1), 0.5, 1.2, g) * diag
    spot = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread**2))
    freq = _uniform((n, 2, 1, 1), -1.5, 1.5, g) * (2 * math.pi / diag)
    phase = _uniform((n, 1, 1, 1), 0.0, 2 * math.pi, g)
    ripple = torch.cos(freq[:, :1] * yy + freq[:, 1:] * xx + phase)
    return 0.6 + 0.4 * spot + 0.05 * ripple


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the geometries


def _uniform(shape: tuple[int, ...], low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(h, 1)`` and ``(1, w)``; pixel ``i`` covers ``[i, i + 1)``."""
    yy = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xx = torch.arange(w, dtype=torch.float32)[None] + 0.5
    return yy, xx


def _noise(n: int, h: int, w: int, sigma: float, g: torch.Generator) -> torch.Tensor:
    """``(n, h, w)`` Gaussian-correlated noise, correlation length ``sigma`` px, zero mean and unit std."""
    pad = math.ceil(3 * sigma)
    white = torch.randn((n, 1, h + 2 * pad, w + 2 * pad), generator=g)
    # Blurring a larger canvas and cropping keeps the noise stationary up to the border.
    field = gaussian_blur2d(white, (2 * pad + 1, 2 * pad + 1), (sigma, sigma), border_type="constant")
    field = field[:, 0, pad: pad + h, pad: pad + w]
    field = field - field.mean((1, 2), keepdim=True)
    return field / field.std((1, 2), keepdim=True).clamp(min=1e-6)


def _draw_objects(n: int, h: int, w: int, per_ref_area: float, margin: float, g: torch.Generator,
                  spread: float = 0.35) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Object centres for ``n`` images: ``(cy, cx, active)``, each ``(n, M)``.

    Centres fall uniformly in the image grown by ``margin`` (so objects cut by the border are as common as
    in a crop of a larger field); their number is Poisson with a mean of ``per_ref_area`` per 256 x 256
    pixels of that area, times a per-image density factor in ``1 +- spread``.
    """
    area = (h + 2 * margin) * (w + 2 * margin)
    mean = per_ref_area * area / _REF_AREA * _uniform((n,), 1 - spread, 1 + spread, g)
    top = per_ref_area * area / _REF_AREA * (1 + spread)
    m = max(1, math.ceil(top + 4 * math.sqrt(top) + 2))
    count = torch.poisson(mean, generator=g).clamp(max=m)
    active = torch.arange(m)[None] < count[:, None]
    cy = _uniform((n, m), -margin, h + margin, g)
    cx = _uniform((n, m), -margin, w + margin, g)
    return cy, cx, active


def _select(active: torch.Tensor, **params: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Keep the active objects of ``(n, M)`` parameters: their image index and flat ``(M',)`` params."""
    image, slot = active.nonzero(as_tuple=True)
    return image, {k: v[image, slot] for k, v in params.items()}


def _stamp(level: Callable[..., torch.Tensor], params: dict[str, torch.Tensor], image: torch.Tensor,
           radius: int, n: int, h: int, w: int) -> torch.Tensor:
    """Paint objects in order; per pixel, the index of the last object covering it (-1 for none).

    Each object is evaluated only on the ``(2 radius + 1)**2`` patch around its centre: a pixel is inside
    when ``level(dy, dx, **params) <= 1``, with ``dy, dx`` the pixel centre minus the object centre.

    Args:
        level: the objects' implicit shape function.
        params: per-object tensors ``(M,)`` (or ``(M, k)``), including ``cy`` and ``cx``.
        image: ``(M,)`` image index of each object; objects are painted in the order given.
        radius: patch half-size in pixels, enough to hold every object.

    Returns:
        ``(n, h, w)`` int64 object index, or -1.
    """
    winner = torch.full((n * h * w,), -1, dtype=torch.long)
    if image.numel() == 0:
        return winner.view(n, h, w)
    offsets = torch.arange(-radius, radius + 1)
    cy, cx = params["cy"], params["cx"]
    py = cy.floor().long()[:, None, None] + offsets[None, :, None]
    px = cx.floor().long()[:, None, None] + offsets[None, None, :]
    local = {k: v[:, None, None] for k, v in params.items() if k not in ("cy", "cx")}
    inside = level(py + 0.5 - cy[:, None, None], px + 0.5 - cx[:, None, None], **local) <= 1
    inside &= (py >= 0) & (py < h) & (px >= 0) & (px < w)
    flat = (image[:, None, None] * h + py) * w + px
    order = torch.arange(image.numel())[:, None, None].expand_as(inside)
    winner.scatter_reduce_(0, flat[inside], order[inside], reduce="amax")
    return winner.view(n, h, w)


def _at_winner(winner: torch.Tensor, params: dict[str, torch.Tensor], h: int,
               w: int) -> dict[str, torch.Tensor]:
    """Each object's parameters at the pixels it won, with ``dy, dx`` relative to its centre."""
    idx = winner.clamp(min=0)
    if next(iter(params.values())).numel() == 0:  # no object at all: a harmless stand-in fills the -1s
        params = {k: torch.ones((1,) + v.shape[1:], dtype=v.dtype) for k, v in params.items()}
    got = {k: v[idx] for k, v in params.items()}
    yy, xx = _grid(h, w)
    got["dy"] = yy - got.pop("cy")
    got["dx"] = xx - got.pop("cx")
    return got


def _register(name: str, classes: tuple[str, ...]) -> Callable[[Geometry], Geometry]:
    def decorator(fn: Geometry) -> Geometry:
        fn.classes = classes  # type: ignore[attr-defined]
        return SYNTH_KINDS.register(name)(fn)

    return decorator


# ---------------------------------------------------------------------------------------------------------
# er: tubular network


@_register("er", ("background", "er"))
def _er(n: int, h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """ER-like network: a thinned Gabriel graph of jittered nodes, drawn as curved tubules 2-4 px wide.

    Nodes lie one per cell of a square grid (spacing 20-32 px per image) at a uniform position in the cell,
    which keeps the polygons even-sized as in a real ER network. About half of the edges between nodes
    with more than three edges are dropped (more in a smooth sparse region), leaving mostly three-way
    junctions, loops and a few dead ends. Each edge is a quadratic Bezier curve with a small random bend,
    sampled every <= 0.5 px and drawn with a disc of its width; brightness varies per edge.
    """
    spacing = _uniform((n, 1), 20.0, 32.0, g)
    rows, cols = math.ceil(h / 20.0) + 3, math.ceil(w / 20.0) + 3
    iy = torch.arange(rows).repeat_interleave(cols).float()
    ix = torch.arange(cols).repeat(rows).float()
    m = rows * cols
    jitter = torch.rand((n, m, 2), generator=g)
    y = (iy + jitter[..., 0] - 1) * spacing
    x = (ix + jitter[..., 1] - 1) * spacing
    active = (y < h + spacing) & (x < w + spacing)
    # Inactive nodes go far away (and apart) so that no active node picks one as a neighbour.
    far = -1e5 - 1e3 * torch.arange(m, dtype=torch.float32)
    pos = torch.stack([torch.where(active, y, far), torch.where(active, x, far)], -1)

    # Gabriel graph among the 8 nearest neighbours: i-j is an edge unless a third node lies in the circle
    # with diameter i-j. Its straight edges never cross, and it has few of a k-NN graph's thin triangles.
    dist2 = torch.cdist(pos, pos) ** 2
    dist2.diagonal(dim1=1, dim2=2).fill_(math.inf)
    near = dist2.topk(8, dim=-1, largest=False).indices  # (n, m, 8)
    d_ij = dist2.gather(2, near)
    d_ik = dist2[:, :, None, :].expand(n, m, 8, m)
    d_jk = dist2.gather(1, near.reshape(n, -1, 1).expand(n, m * 8, m)).view(n, m, 8, m)
    blocked = (d_ik + d_jk < d_ij[..., None]).any(-1)
    adjacent = torch.zeros(n, m, m, dtype=torch.bool).scatter_(2, near, ~blocked)
    adjacent = (adjacent | adjacent.transpose(1, 2)) & active[:, :, None] & active[:, None, :]
    degree = adjacent.sum(-1)
    image, i, j = adjacent.triu(1).nonzero(as_tuple=True)
    p0, p2 = pos[image, i], pos[image, j]

    # Dropping edges between well-connected nodes leaves mostly three-way junctions and few dead ends;
    # a coarse random field makes the network sparser in some regions.
    sparse = _noise(n, h // 8 + 1, w // 8 + 1, 1.5, g).clamp(-1.5, 1.5)
    cell = ((p0 + p2) / 16).long()
    drop = 0.5 + 0.15 * sparse[image, cell[:, 0].clamp(0, h // 8), cell[:, 1].clamp(0, w // 8)]
    drop = torch.where((degree[image, i] > 3) & (degree[image, j] > 3), drop, 0.08)
    keep = torch.rand(image.shape, generator=g) >= drop
    # One repair pass: an edge comes back when dropping it left an end node with fewer than two edges.
    ends = torch.cat([image * m + i, image * m + j])
    left = torch.zeros(n * m).index_add_(0, ends, keep.float().repeat(2))
    keep |= (left[image * m + i] < 2) | (left[image * m + j] < 2)
    bend = torch.randn(image.shape, generator=g) * 0.12
    width_p = torch.tensor([0.55, 0.35, 0.1])  # widths 2, 3, 4 px
    width = torch.multinomial(width_p, image.numel(), replacement=True, generator=g) + 2
    brightness = _uniform(image.shape, 0.6, 1.0, g)
    image, p0, p2, bend, width, brightness = (t[keep] for t in (image, p0, p2, bend, width, brightness))

    chord = p2 - p0
    p1 = (p0 + p2) / 2 + bend[:, None] * torch.stack([-chord[:, 1], chord[:, 0]], -1)
    steps = 2 * math.ceil(float(chord.norm(dim=1).max())) + 2 if image.numel() else 2
    t = torch.linspace(0, 1, steps)[None, :, None]
    curve = (1 - t) ** 2 * p0[:, None] + 2 * t * (1 - t) * p1[:, None] + t**2 * p2[:, None]  # (E, S, 2)

    pad = 2
    hp, wp = h + 2 * pad, w + 2 * pad
    density = torch.zeros(n, h, w)
    for wd in (2, 3, 4):
        sel = width == wd
        # An even-width disc is centred on the nearest pixel corner, an odd one on the pixel of the point.
        shift = 0.5 if wd % 2 == 0 else 0.0
        ref = (curve[sel] + shift).floor().long() + pad
        value = brightness[sel][:, None].expand(ref.shape[:2])
        img = image[sel][:, None].expand(ref.shape[:2])
        ok = (ref >= 0).all(-1) & (ref[..., 0] < hp) & (ref[..., 1] < wp)
        canvas = torch.zeros(n * hp * wp)
        flat = (img[ok] * hp + ref[..., 0][ok]) * wp + ref[..., 1][ok]
        canvas = canvas.scatter_reduce_(0, flat, value[ok], reduce="amax").view(n, hp, wp)
        for oy in range(-(wd // 2), (wd - 1) // 2 + 1):
            for ox in range(-(wd // 2), (wd - 1) // 2 + 1):
                if (oy + shift) ** 2 + (ox + shift) ** 2 <= (wd / 2) ** 2:
                    moved = canvas[:, pad - oy: pad - oy + h, pad - ox: pad - ox + w]
                    density = torch.maximum(density, moved)
    labels = (density > 0).long()
    density = density * (1 + 0.15 * _noise(n, h, w, 2.0, g).clamp(-2, 2))
    return labels, density[:, None]


# ---------------------------------------------------------------------------------------------------------
# mito: rods and blobs


def _capsule_level(dy: torch.Tensor, dx: torch.Tensor, *, cos: torch.Tensor, sin: torch.Tensor,
                   half: torch.Tensor, radius: torch.Tensor, bend: torch.Tensor,
                   **_: torch.Tensor) -> torch.Tensor:
    """Distance to a (parabolically bent) segment of half-length ``half``, in units of ``radius``."""
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos - bend * u**2
    return torch.sqrt((u.abs() - half).clamp(min=0) ** 2 + v**2) / radius


@_register("mito", ("background", "mito"))
def _mito(n: int, h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mitochondria: capsules 3-7 px wide and 4-30 px long (a fifth are round blobs), some bent.

    Orientations follow a smooth per-image field plus scatter, as mitochondria align within a cell. The
    density is the projected thickness of a tube (brighter along the axis) times a per-object brightness in
    [0.6, 1.2]; where two overlap, the later one is drawn.
    """
    cy, cx, active = _draw_objects(n, h, w, 150.0, 8.0, g)
    m = cy.shape[1]
    width = _uniform((n, m), 3.0, 7.0, g)
    stretch = torch.rand((n, m), generator=g) ** 1.5
    blob = torch.rand((n, m), generator=g) < 0.2
    length = torch.where(blob, width, width + (30.0 - width) * stretch)
    half = (length - width) / 2
    field = torch.randn((n, 1, 3, 3), generator=g) * 1.2
    where = torch.stack([cx / w * 2 - 1, cy / h * 2 - 1], -1)[:, None]
    theta = F.grid_sample(field, where, align_corners=True, padding_mode="border")[:, 0, 0]
    theta = theta + torch.randn((n, m), generator=g) * 0.35
    bend = _uniform((n, m), -0.2, 0.2, g) / half.clamp(min=1.0)  # end offset <= 0.2 * half
    brightness = _uniform((n, m), 0.6, 1.2, g)

    image, p = _select(active, cy=cy, cx=cx, cos=theta.cos(), sin=theta.sin(), half=half,
                       radius=width / 2, bend=bend, brightness=brightness)
    winner = _stamp(_capsule_level, p, image, 17, n, h, w)
    at = _at_winner(winner, p, h, w)
    inside = winner >= 0
    depth = torch.sqrt((1 - _capsule_level(**at) ** 2).clamp(min=0))
    density = torch.where(inside, at["brightness"] * (0.5 + 0.5 * depth), 0.0)
    density = density * (1 + 0.12 * _noise(n, h, w, 1.0, g).clamp(-2, 2))
    return inside.long(), density[:, None]


# ---------------------------------------------------------------------------------------------------------
# nuc: textured nuclei


def _nucleus_level(dy: torch.Tensor, dx: torch.Tensor, *, cos: torch.Tensor, sin: torch.Tensor,
                   a: torch.Tensor, b: torch.Tensor, wobble: torch.Tensor,
                   **_: torch.Tensor) -> torch.Tensor:
    """Elliptic radius over a wavy outline ``1 + sum_k (c_k cos k phi + s_k sin k phi)``, k = 2, 3, 4.

    ``wobble`` holds ``(c_2, s_2, c_3, s_3, c_4, s_4)`` on its last axis.
    """
    u = (dx * cos + dy * sin) / a
    v = (-dx * sin + dy * cos) / b
    rho = torch.sqrt(u**2 + v**2)
    c1, s1 = u / rho.clamp(min=1e-6), v / rho.clamp(min=1e-6)
    c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
    c3, s3 = c2 * c1 - s2 * s1, c2 * s1 + s2 * c1
    c4, s4 = c2 * c2 - s2 * s2, 2 * c2 * s2
    outline = 1 + sum(wobble[..., 2 * k] * c + wobble[..., 2 * k + 1] * s
                      for k, (c, s) in enumerate(((c2, s2), (c3, s3), (c4, s4))))
    return rho / outline


@_register("nuc", ("background", "nucleus"))
def _nuc(n: int, h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Nuclei: ellipses (semi-axes 9-20 px, aspect 0.6-1) with wavy outlines; 10 % small bright mitotic ones.

    A candidate that overlaps an earlier one by much is removed, which leaves some touching pairs. The
    density is a dome (brighter in the middle) times a per-nucleus brightness in [0.5, 1.3], with mottled
    chromatin and bright speckles.
    """
    cy, cx, active = _draw_objects(n, h, w, 55.0, 10.0, g)
    m = cy.shape[1]
    mitotic = torch.rand((n, m), generator=g) < 0.1
    a = torch.where(mitotic, _uniform((n, m), 5.0, 8.0, g), _uniform((n, m), 9.0, 20.0, g))
    b = a * _uniform((n, m), 0.6, 1.0, g)
    theta = _uniform((n, m), 0.0, math.pi, g)
    wobble = (torch.randn((n, m, 6), generator=g) * 0.035).clamp(-0.07, 0.07)  # outline within 1 +- 0.3
    brightness = _uniform((n, m), 0.5, 1.3, g) * torch.where(mitotic, 1.6, 1.0)

    size = torch.sqrt(a * b)
    centres = torch.stack([cy, cx], -1)
    clash = torch.cdist(centres, centres) < 0.85 * (size[:, :, None] + size[:, None, :])
    earlier = torch.ones(m, m, dtype=torch.bool).tril(-1)
    active &= ~(clash & earlier & active[:, None, :]).any(-1)

    image, p = _select(active, cy=cy, cx=cx, cos=theta.cos(), sin=theta.sin(), a=a, b=b, wobble=wobble,
                       brightness=brightness)
    winner = _stamp(_nucleus_level, p, image, 27, n, h, w)
    at = _at_winner(winner, p, h, w)
    inside = winner >= 0
    dome = torch.sqrt((1 - _nucleus_level(**at) ** 2).clamp(min=0))
    mottle = _noise(n, h, w, 3.0, g)
    speckle = (_noise(n, h, w, 1.0, g) - 1.0).clamp(min=0)
    texture = (0.7 + 0.18 * mottle + 0.9 * speckle).clamp(min=0.3)
    density = torch.where(inside, at["brightness"] * (0.55 + 0.45 * dome) * texture, 0.0)
    return inside.long(), density[:, None]


# ---------------------------------------------------------------------------------------------------------
# shapes: multi-class scene

_SHAPE_CLASSES = ("background", "disc", "rectangle", "triangle", "ring")


def _shape_level(dy: torch.Tensor, dx: torch.Tensor, *, cls: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor, r: torch.Tensor, aspect: torch.Tensor, inner: torch.Tensor,
                 **_: torch.Tensor) -> torch.Tensor:
    """Level of a disc (class 1), rectangle (2), triangle (3) or ring (4) of circumradius ``r``."""
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    rho = torch.sqrt(u**2 + v**2)
    disc = rho / (0.8 * r)
    rect = torch.maximum(u.abs() / (r * aspect.cos()), v.abs() / (r * aspect.sin()))
    # Equilateral triangle: inside when the projections on its three edge normals are <= r / 2.
    tri = torch.maximum(torch.maximum(u, -0.5 * u + 0.8660254 * v), -0.5 * u - 0.8660254 * v) / (0.5 * r)
    ring = torch.maximum(rho / r, inner * r / rho.clamp(min=1e-6))
    return torch.where(cls == 1, disc, torch.where(cls == 2, rect, torch.where(cls == 3, tri, ring)))


@_register("shapes", _SHAPE_CLASSES)
def _shapes(n: int, h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Discs, rectangles, triangles and rings (circumradius 7-22 px) on a cloudy background.

    Classes are drawn uniformly and later objects occlude earlier ones. Class signatures (density before
    blur): background 0.15 with a cloudy texture; disc 1.1 flat; rectangle 0.6 with stripes of period 6 px
    along its long axis; triangle 0.4 with a coarse speckle; ring 0.85 flat.
    """
    cy, cx, active = _draw_objects(n, h, w, 42.0, 8.0, g)
    m = cy.shape[1]
    cls = torch.randint(1, len(_SHAPE_CLASSES), (n, m), generator=g)
    r = _uniform((n, m), 7.0, 22.0, g)
    theta = _uniform((n, m), 0.0, 2 * math.pi, g)
    aspect = _uniform((n, m), 0.35, math.pi / 4, g)  # half-sides r cos(aspect) >= r sin(aspect)
    inner = _uniform((n, m), 0.45, 0.7, g)

    image, p = _select(active, cy=cy, cx=cx, cls=cls, cos=theta.cos(), sin=theta.sin(), r=r,
                       aspect=aspect, inner=inner)
    winner = _stamp(_shape_level, p, image, 23, n, h, w)
    at = _at_winner(winner, p, h, w)
    labels = torch.where(winner >= 0, at["cls"], 0)
    stripes = torch.cos(2 * math.pi / 6 * (at["dx"] * at["cos"] + at["dy"] * at["sin"]))
    cloud = _noise(n, h, w, 6.0, g).clamp(-2, 2)
    speckle = _noise(n, h, w, 1.5, g).clamp(-2, 2)
    per_class = torch.stack([
        0.15 * (1 + 0.3 * cloud),
        torch.full_like(cloud, 1.1),
        0.6 + 0.3 * stripes,
        0.4 * (1 + 0.3 * speckle),
        torch.full_like(cloud, 0.85),
    ])
    density = per_class.gather(0, labels[None]).squeeze(0)
    return labels, density[:, None]


# ---------------------------------------------------------------------------------------------------------
# em: cell membranes in an electron micrograph


def _ellipse_level(dy: torch.Tensor, dx: torch.Tensor, *, cos: torch.Tensor, sin: torch.Tensor, a: torch.Tensor,
                   b: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
    """Elliptic radius: 1 on an ellipse of semi-axes ``a`` (along ``cos, sin``) and ``b``."""
    u = (dx * cos + dy * sin) / a
    v = (-dx * sin + dy * cos) / b
    return torch.sqrt(u**2 + v**2)


@_register("em", ("background", "membrane"))
def _em(n: int, h: int, w: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Electron-microscopy-like tissue: dark cell membranes (the foreground) around bright, grainy cells that
    hold dark organelles, which are *not* membrane.

    Cells are the Voronoi cells of jittered seeds (one per grid cell of 30-48 px) in a smoothly warped plane, so
    membranes are wavy; a pixel is membrane within half the local membrane width (2-6 px, varying smoothly) of the
    bisector between its two nearest seeds. Each cell's cytoplasm has its own brightness (0.8-1.05) and a fine
    grain; inside the cells, away from the membranes, lie dark vesicles (discs of radius 2-5 px, 0.3-0.45),
    mitochondria (ellipses 5-12 x 3-6 px, 0.3-0.45, with cristae stripes) and small dense granules (0.15-0.3).
    Membranes are 0.1-0.25. Organelles are as dark as membranes, so a threshold cannot tell them apart: their
    shape (closed blobs inside a cell, not a connected network between cells) has to.
    """
    spacing = _uniform((n, 1, 1), 30.0, 48.0, g)
    rows, cols = math.ceil(h / 30.0) + 3, math.ceil(w / 30.0) + 3
    iy = torch.arange(rows).repeat_interleave(cols).float()
    ix = torch.arange(cols).repeat(rows).float()
    jitter = _uniform((n, rows * cols, 2), 0.1, 0.9, g)
    seeds = torch.stack([(iy + jitter[..., 0] - 1), (ix + jitter[..., 1] - 1)], -1) * spacing  # (n, m, 2)
    yy, xx = _grid(h, w)
    warp = 3.0 * _noise(2 * n, h, w, 20.0, g).view(n, 2, h, w)
    pts = torch.stack([(yy + warp[:, 0]).flatten(1), (xx + warp[:, 1]).flatten(1)], -1)  # (n, h w, 2)
    d2 = torch.cdist(pts, seeds) ** 2
    near, which = d2.topk(2, dim=-1, largest=False)
    s1 = seeds.gather(1, which[..., :1].expand(-1, -1, 2))
    s2 = seeds.gather(1, which[..., 1:].expand(-1, -1, 2))
    # distance to the bisector of the two nearest seeds (exact for a Voronoi edge)
    to_edge = ((near[..., 1] - near[..., 0]) / (2 * (s2 - s1).norm(dim=-1).clamp(min=1e-3))).view(n, h, w)
    cell = which[..., 0].view(n, h, w)
    width = 4.0 + 2.0 * _noise(n, h, w, 20.0, g).clamp(-1, 1)
    membrane = to_edge < width / 2

    cyto = _uniform((n, rows * cols), 0.8, 1.05, g).gather(1, cell.flatten(1)).view(n, h, w)
    grain = _noise(n, h, w, 1.2, g).clamp(-2.5, 2.5)
    density = cyto * (1 + 0.08 * grain + 0.05 * _noise(n, h, w, 6.0, g).clamp(-2, 2))

    # organelles: centres whose ellipse stays clear of the membranes
    cy, cx, active = _draw_objects(n, h, w, 240.0, 0.0, g)
    m = cy.shape[1]
    kind = torch.multinomial(torch.tensor([0.45, 0.3, 0.25]), n * m, replacement=True, generator=g).view(n, m)
    a = torch.where(kind == 0, _uniform((n, m), 2.0, 5.0, g),
                    torch.where(kind == 1, _uniform((n, m), 5.0, 12.0, g), _uniform((n, m), 1.0, 2.0, g)))
    b = torch.where(kind == 1, _uniform((n, m), 3.0, 6.0, g).minimum(a), a)
    theta = _uniform((n, m), 0.0, math.pi, g)
    dark = torch.where(kind == 2, _uniform((n, m), 0.15, 0.3, g), _uniform((n, m), 0.3, 0.45, g))
    iy_c = cy.long().clamp(0, h - 1)
    ix_c = cx.long().clamp(0, w - 1)
    clear = to_edge[torch.arange(n)[:, None], iy_c, ix_c] - width[torch.arange(n)[:, None], iy_c, ix_c] / 2
    active &= clear > a + 2.0
    image, p = _select(active, cy=cy, cx=cx, cos=theta.cos(), sin=theta.sin(), a=a, b=b, dark=dark,
                       mito=(kind == 1).float())
    winner = _stamp(_ellipse_level, p, image, 13, n, h, w)
    at = _at_winner(winner, p, h, w)
    cristae = 0.5 + 0.5 * torch.cos(2 * math.pi / 3.0 * (at["dx"] * at["cos"] + at["dy"] * at["sin"]))
    organelle_density = at["dark"] * (1 + at["mito"] * 0.6 * cristae)
    inside = (winner >= 0) & ~membrane
    density = torch.where(inside, organelle_density, density)
    membrane_density = _uniform((n, 1, 1), 0.1, 0.25, g) * (1 + 0.15 * _noise(n, h, w, 2.0, g).clamp(-2, 2))
    density = torch.where(membrane, membrane_density, density)
    return membrane.long(), density[:, None].clamp(min=0)
