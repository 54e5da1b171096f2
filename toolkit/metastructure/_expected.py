"""The meta-structure a network will learn from a noisy label set, estimated from one draw of it.

Legend: N batch · C channels · K classes · H, W pixels.

A network trained on noisy labels learns their *expected* density (Luo et al. 2022, Lemma 1): a label that keeps
10% of the foreground at random has a tenth of the clean density in expectation, so a network learns the clean
meta-structure from it although one draw of it looks nothing like the clean label. Comparing one draw's density
with the clean one (:func:`mstool.metastructure.meta_similarity`) mixes two things: how far the expected density
moved (which costs Dice) and zero-mean pixel noise around it (which training averages away).

:func:`expected_similarity` separates them. Its model: given the clean label, the noisy pixels are independent,
and the chance that a pixel is noisy class ``c`` depends only on the pixel's *context*, its clean class and its
distance to the nearest pixel of another clean class (1, 2, ... capped at ``max_distance``). The context rates
``p_c`` are counted over every image. Under that model the white-noise variance of the noisy density at pixel
``x`` is ``sum_{y in W(x)} p_c(y) (1 - p_c(y)) / |W(x)|^2``; the covariance with the clean density is untouched
by noise that is independent of it. Spearman's correction for attenuation then gives the correlation of the
*expected* noisy density with the clean density::

    r = cov(d_noisy, d_clean) / sqrt((var(d_noisy) - noise variance) * var(d_clean))

with variances and covariances over the pixels of each image, pooled over images.

The noise model is checked against the draw before anything is removed. Independent pixel noise leaves a
residual (the draw minus the context rates) whose window density varies exactly as the model says; a residual
that varies clearly more (by over 10%, or four sampling errors) is structure, such as a skeleton's connected lines,
which a network learns like any other part of the label: then no noise is removed and the score is the one-draw
correlation. A residual that varies less (jitter moves pixels rather than redrawing them) caps the noise removed.

Partial labels (pixels the noisy label leaves as ``ignore_index``) are what a network trained on them sees: it
gets no gradient there and predicts the rate it learnt for the pixel's context from the labelled pixels. So the
rates are counted among the pixels the noisy label gives, an unlabelled pixel enters the density at its context's
rate with no noise, and a context the label gives no pixel of (scribbles never touch a boundary) takes its clean
class's rate over all distances. One exactly drawn region, scribbles or some whole objects then score 1, and a
drawn part that is dilated scores as the dilation does; ``one_draw`` still counts 255 as no class.

What the model gets right, by construction:

- random sampling and flipping (any rate, class-dependent or not) are one rate per context: ``r`` near 1;
- dilation, erosion and skeletons are deterministic: either the distance pins them down (rates 0 or 1) or the
  residual check sees their structure; no noise is removed and ``r`` equals the one-draw correlation, which for a
  deterministic label is exactly the expected one (built-in ER skeleton, h = 1: 0.868; mitochondria 0.755;
  nuclei tiles of the DSB sample 0.368);
- random labels (independent of the clean one) have no covariance: ``r`` near 0, never above 1 (clamped) and
  never undefined (the noise variance removed is capped at 95% of the noisy density's variance);
- inverted labels (binary NTM determinant below 0) get ``polarity = -1`` and the score of the inverted label.

Where it fails:

- very weak signal: labels flipped 45% both ways keep 3-4% of their density's variance as signal, so the score
  is the ratio of two small, noisy numbers, clamped at 1, and reads low (built-in ER 0.88, mitochondria 0.72,
  where redrawing gives 0.96-1); its interval is wide and :attr:`ExpectedSimilarity.signal` says why;
- a label mixing structure and noise (a sampled skeleton) fails the residual check as a whole and scores its one
  draw, below its expected value;
- noise that depends on the image rather than on the label's geometry (a pre-segmentation that misses dim
  objects) is judged by its expectation *given the label*, which is not what a network sees;
- whole objects missed together with pixel noise (``objects:0.5+sample:0.3``) fail the residual check as a
  whole and score their one draw.

A label that is exactly a union of whole clean objects (8-connected pieces; ``objects:s``, the rest background)
is one draw per object: a window's noise variance is then its share of the class squared times ``q (1 - q)``,
``q`` the share of the class's pixels kept, instead of the sum over its pixels. Read per pixel, that noise looked
like structure (built-in nuclei 0.54 where a network trained on them nearly reaches the clean one).

References:
    Luo, Liu, Guo, Yang, arXiv 2205.00160 (2022), Lemma 1.
    Spearman, "The proof and measurement of association between two things", Am. J. Psychol. 15 (1904).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import IGNORE_INDEX
from .._check import check_int, check_range, check_same_device, check_shape
from ..errors import ParameterError, ShapeError
from ..labels import boundary_distance
from ._density import _resolve_num_classes

__all__ = ["ExpectedSimilarity", "expected_similarity", "expected_density"]

_WHITE_TOLERANCE = 0.1
"""How far above the modelled white-noise variance the residual's variance may lie and still count as noise."""

_NOISE_CAP = 0.95
"""At most this share of the noisy density's variance is taken for noise, so a label that is nearly all noise
(random labels) keeps a finite, near-zero score instead of dividing by zero."""


@dataclass(frozen=True)
class ExpectedSimilarity:
    """How alike the expected density of a noisy label set and the clean density are (:func:`expected_similarity`).

    Attributes:
        score: correlation of the noisy label's expected density with the clean density, for the polarity in
            ``polarity``, in ``[-1, 1]``; NaN when no clean foreground class varies (nothing to compare).
        low, high: bootstrap confidence interval of ``score`` over images (equal to ``score`` for one image).
        one_draw: the correlation of this draw's density with the clean density, uncorrected and signed (what
            :func:`mstool.metastructure.meta_similarity` measures, pooled over images).
        polarity: ``-1`` when the labels invert the classes (binary NTM determinant < 0), else ``1``.
        signal: share of the noisy density's variance that is not independent pixel noise, in ``[0, 1]``.
        images: images compared.
        bandwidth: box window half-width ``h`` (side ``2h + 1``).
    """

    score: float
    low: float
    high: float
    one_draw: float
    polarity: int
    signal: float
    images: int
    bandwidth: int

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready values, NaN written as ``None``."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.__dict__.items()}


def expected_similarity(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None = None, *,
                        bandwidth: int = 1, max_distance: int = 8, ignore_index: int | None = IGNORE_INDEX,
                        bootstrap: int = 1000, confidence: float = 0.95,
                        generator: torch.Generator | None = None) -> ExpectedSimilarity:
    """Similarity of a noisy label set's *expected* density to the clean density, from one draw of it.

    See the module docstring for the model, its assumptions (pixels independent given their clean class and
    distance to the clean boundary) and where it fails. Foreground classes ``1..K-1`` are compared, each pooled
    over images, and their correlations averaged.

    Args:
        clean: ``(N, H, W)`` integer clean labels.
        noisy: ``(N, H, W)`` integer noisy labels of the same images; ``ignore_index`` pixels teach nothing and
            take their context's rate in the expected density (module docstring), and count as no class in
            ``one_draw``.
        num_classes: ``K``; ``None`` infers it from both (at least 2).
        bandwidth: box window half-width ``h >= 1`` of the densities. ``1`` (3 x 3) ordered trained Dice best on
            built-in ER and mitochondria data; wider windows forgive dilations that cost Dice.
        max_distance: the distance contexts ``1..D`` of the noise model.
        ignore_index: unlabelled value; clean pixels holding it are left out of the noise model.
        bootstrap: resamples of the images for the confidence interval (0: none, ``low = high = score``).
        confidence: the interval's coverage, in ``(0, 1)``.
        generator: draws the bootstrap resamples.

    Returns:
        An :class:`ExpectedSimilarity`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> clean = torch.zeros(4, 32, 32, dtype=torch.long)
        >>> clean[:, 8:24, 6:14] = 1
        >>> noisy = clean * (torch.rand(clean.shape, generator=g) < 0.3)  # keep 30% of the foreground
        >>> s = expected_similarity(clean, noisy, bootstrap=0)
        >>> round(s.one_draw, 2), round(s.score, 2)
        (0.87, 0.99)
    """
    parts = _parts(clean, noisy, num_classes, bandwidth=bandwidth, max_distance=max_distance,
                   ignore_index=ignore_index)
    bootstrap = check_int(bootstrap, "bootstrap", low=0, note="resamples")
    check_range(confidence, "confidence", 0, 1, low_open=True, high_open=True)
    sums = parts["sums"]  # (N, C, 8) per image and class, see _moments
    polarity, bandwidth = parts["polarity"], parts["bandwidth"]
    window = (2 * bandwidth + 1) ** 2
    score, one_draw, signal = _pooled(sums.sum(0, keepdim=True), polarity, window)
    n = sums.shape[0]
    low = high = float(score[0])
    if bootstrap and n > 1:
        pick = torch.randint(n, (bootstrap, n), generator=generator).to(sums.device)
        boot = _pooled(sums[pick].sum(1), polarity, window)[0]
        boot = boot[torch.isfinite(boot)]
        if boot.numel():
            q = torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=boot.dtype, device=boot.device)
            low, high = (float(v) for v in torch.quantile(boot, q))
    return ExpectedSimilarity(score=float(score[0]), low=low, high=high, one_draw=float(one_draw[0]),
                              polarity=polarity, signal=float(signal[0]), images=n, bandwidth=bandwidth)


def expected_threshold(ntm: torch.Tensor | list[list[float]]) -> tuple[float, int]:
    """The threshold, and polarity, that a binary noise transition matrix implies for a network trained on the
    labels it describes.

    A network learns the labels' expected density (Lemma 1): where the clean class is background its foreground
    probability tends to ``ntm[0, 1]``, the labels' foreground rate there, and where it is foreground to
    ``ntm[1, 1]``. Halfway between the two separates them: 0.5 for clean or symmetrically flipped labels, 0.05
    for labels that keep 10% of the foreground (where 0.5 finds nothing), and polarity -1 with ``1 - (a + b) / 2``
    on the inverted map when the labels swap the classes (``ntm[0, 1] > ntm[1, 1]``). Labels independent of the
    clean ones (equal rows) separate nothing; their threshold is still the midpoint.

    Args:
        ntm: ``(2, 2)`` row-stochastic matrix, row the clean class, column the label's class, as
            :func:`mstool.labels.label_info` measures it (unlabelled pixels left out).

    Returns:
        ``(threshold, polarity)``: foreground where ``probs`` (polarity +1) or ``1 - probs`` (-1) is at least
        the threshold.

    Raises:
        ShapeError: ``ntm`` is not ``(2, 2)``.
        ParameterError: a value outside ``[0, 1]`` or not finite.

    Example:
        >>> expected_threshold([[1.0, 0.0], [0.9, 0.1]])  # a 10% sample of the foreground
        (0.05, 1)
        >>> expected_threshold([[0.3, 0.7], [0.8, 0.2]])  # the classes swapped, mostly
        (0.55, -1)
    """
    m = torch.as_tensor(ntm, dtype=torch.float64)
    if m.shape != (2, 2):
        raise ShapeError(f"`ntm` must be a (2, 2) binary noise transition matrix; got shape {tuple(m.shape)}")
    if not bool(torch.isfinite(m).all()) or bool(((m < 0) | (m > 1)).any()):
        raise ParameterError(f"`ntm` must hold rates in [0, 1]; got {m.tolist()}")
    a, b = float(m[0, 1]), float(m[1, 1])
    middle = (a + b) / 2
    return (round(middle, 12), 1) if b >= a else (round(1 - middle, 12), -1)


def expected_density(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None = None, *,
                     bandwidth: int = 1, max_distance: int = 8,
                     ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """An estimate of the noisy labels' expected foreground densities, for pictures.

    The density of the context rates (what the noise model expects), plus the part of the draw's departure from
    it that is not white noise: the departure shrunk by ``1 - noise variance / its variance`` (pooled, a
    Wiener-style shrinkage), or kept whole when it varies clearly more than white noise (the residual check of
    :func:`expected_similarity`). Random sampling comes out as the clean density scaled by the sampling rate; a
    dilation or a skeleton comes out as its own density.

    Args:
        clean, noisy, num_classes, bandwidth, max_distance, ignore_index: as in :func:`expected_similarity`.

    Returns:
        ``(N, K - 1, H, W)`` float32 densities of classes ``1..K-1`` on the labels' device.
    """
    parts = _parts(clean, noisy, num_classes, bandwidth=bandwidth, max_distance=max_distance,
                   ignore_index=ignore_index, maps=True)
    model, draw, noise = parts["model"], parts["draw"], parts["noise"]
    rest = draw - model
    rest_var = (rest - rest.mean((-1, -2), keepdim=True)).square().mean((-1, -2)).sum(0)  # (C,)
    noise_var = noise.mean((-1, -2)).sum(0)
    # As in the score: a residual that varies clearly more than white noise is structure and is kept whole.
    keep = (1 - noise_var / rest_var.clamp(min=1e-12)).clamp(0, 1)
    keep = torch.where(rest_var > (1 + _WHITE_TOLERANCE) * noise_var, torch.ones_like(keep), keep)
    return (model + keep.view(1, -1, 1, 1) * rest).clamp(0, 1)


def _parts(clean: torch.Tensor, noisy: torch.Tensor, num_classes: int | None, *, bandwidth: int,
           max_distance: int, ignore_index: int | None, maps: bool = False) -> dict:
    """Checked input → per-image sums (and, with ``maps``, the density maps) of every foreground class."""
    check_shape(clean, "clean", "N H W", dtype="int")
    check_shape(noisy, "noisy", "N H W", dtype="int")
    if clean.shape != noisy.shape:
        raise ShapeError(f"`clean` and `noisy` must have one shape; got {tuple(clean.shape)} and "
                         f"{tuple(noisy.shape)}")
    check_same_device(("clean", clean), ("noisy", noisy))
    bandwidth = check_int(bandwidth, "bandwidth", low=1, note="pixels")
    if clean.shape[0] == 0:
        raise ShapeError("`clean` and `noisy` hold no image; give at least one")
    k = _resolve_num_classes({"clean": clean, "noisy": noisy}, num_classes=num_classes, ignore_index=ignore_index)
    dev = clean.device
    h, w = clean.shape[-2:]
    valid = torch.ones_like(clean, dtype=torch.bool) if ignore_index is None else clean != ignore_index
    # One context id per valid pixel: its clean class and its distance to another class, in two metrics, so that
    # a pixel touching the other class only at a corner (which a disk erosion keeps) is a context of its own.
    chess = boundary_distance(clean, max_distance, ignore_index=ignore_index)
    city = boundary_distance(clean, max_distance, metric="cityblock", ignore_index=ignore_index)
    d2 = max_distance * max_distance
    contexts = k * d2
    # Unlabelled clean pixels go to one more bin, whose rate stays 0: no noise is modelled there.
    # int32 arithmetic: a quarter less memory traffic than int64, and every id fits.
    context = clean.to(torch.int32) * d2 + chess.to(torch.int32) * max_distance + city - (max_distance + 1)
    context = torch.where(valid, context, torch.full_like(context, contexts))
    # One bincount of (context, noisy class) pairs gives every rate; ignored noisy pixels are a class of their own.
    q = torch.where((noisy >= 0) & (noisy < k), noisy.to(torch.int32), torch.full_like(context, k))
    joint = torch.bincount((context * (k + 1) + q).flatten(), minlength=(contexts + 1) * (k + 1))
    joint = joint.view(contexts + 1, k + 1).to(torch.float64)
    joint[contexts] = 0
    rates = _given_rates(joint[:, :k], k, d2)  # (contexts + 1, K), among the pixels the noisy label gives
    given = q < k
    ctx = context.long()
    size = _box_sum(torch.ones(1, 1, h, w, device=dev), bandwidth)[:, 0]  # in-image window sizes |W(x)|
    sums, model_maps, draw_maps, noise_maps = [], [], [], []
    for c in range(1, k):
        y = (noisy == c).to(torch.float32)
        p = rates[:, c][ctx]
        # A pixel the noisy label leaves out teaches the network nothing, which then predicts its context's rate
        # there: the learnt density is the draw where labelled and the rate elsewhere, with no noise there.
        learnt = torch.where(given, y, p)
        # Pixels outside the model (unlabelled in the clean label) keep their own value: no residual there.
        expect = torch.where(valid, p, learnt)
        win = _box_sum(torch.stack([learnt, (clean == c).to(torch.float32), given * p * (1 - p), expect, y], 1),
                       bandwidth)
        d_noisy, d_clean = win[:, 0] / size, win[:, 1] / size
        kept = _whole_objects(clean == c, y > 0, given)
        # whole objects kept or missed: one draw per object, so a window's variance is its object share squared
        noise = win[:, 2] / size.square() if kept is None else d_clean.square() * (kept * (1 - kept))
        sums.append(_moments(d_noisy, d_clean, noise, (win[:, 0] - win[:, 3]) / size, win[:, 4] / size))
        if maps:
            model_maps.append(win[:, 3] / size)
            draw_maps.append(d_noisy)
            noise_maps.append(noise)
    polarity = 1
    if k == 2:
        # The binary NTM's determinant, P(noisy = 1 | clean = 1) - P(noisy = 1 | clean = 0), from the same counts
        # (among the pixels the noisy label gives, as the NTM of mstool.labels.label_info).
        by_class = joint[:contexts, :k].view(k, d2, k).sum(1)
        t = by_class[:, 1] / by_class.sum(1).clamp(min=1)
        polarity = -1 if float(t[1] - t[0]) < 0 else 1
    out = {"sums": torch.stack(sums, 1), "polarity": polarity, "bandwidth": bandwidth}
    if maps:
        out.update(model=torch.stack(model_maps, 1), draw=torch.stack(draw_maps, 1), noise=torch.stack(noise_maps, 1))
    return out


def _whole_objects(objects: torch.Tensor, drawn: torch.Tensor, given: torch.Tensor) -> float | None:
    """The share of a class's labelled pixels that a label keeps when it keeps or drops each 8-connected piece of
    the class whole and marks nothing else (missed objects, ``objects:s``); ``None`` for any other label, or when
    it keeps every piece or none.

    ``objects``, ``drawn``, ``given``: ``(N, H, W)`` bool: the clean class, the label's pixels of it, the pixels
    the label gives. A piece is kept whole exactly when no kept pixel touches (8 neighbours) a dropped pixel of
    the class, so no piece needs labelling.
    """
    drawn, objects = drawn & given, objects & given
    if bool((drawn & ~objects).any()):
        return None
    near = torch.nn.functional.max_pool2d(drawn[:, None].to(torch.float32), 3, 1, 1)[:, 0] > 0
    if bool((near & objects & ~drawn).any()):
        return None
    share = float(drawn.sum()) / max(1, int(objects.sum()))
    return share if 0 < share < 1 else None


def _given_rates(counts: torch.Tensor, k: int, d2: int) -> torch.Tensor:
    """``(contexts + 1, K)`` counts of (context, noisy class) → each context's class rates among the pixels the
    noisy label gives. A context it gives no pixel of (scribbles never touch a boundary) takes its clean class's
    rate over all distances; the last row (pixels unlabelled in the clean label) stays 0."""
    contexts = k * d2
    by_class = counts[:contexts].view(k, d2, k).sum(1)
    fallback = (by_class / by_class.sum(1, keepdim=True).clamp(min=1)).repeat_interleave(d2, 0)
    total = counts[:contexts].sum(1, keepdim=True)
    rates = torch.where(total > 0, counts[:contexts] / total.clamp(min=1), fallback)
    return torch.cat([rates, torch.zeros_like(rates[:1])]).to(torch.float32)


def _moments(d_noisy: torch.Tensor, d_clean: torch.Tensor, noise: torch.Tensor, residual: torch.Tensor,
             d_draw: torch.Tensor) -> torch.Tensor:
    """``(N, 8)`` float64 per image: covariance and the two variances of the learnt and clean densities over
    pixels, the mean modelled noise variance, the variance of the residual density (the draw's departure from the
    model's rates), the number of pixels, and the covariance with the clean density and the variance of the
    draw's own density (its unlabelled pixels counted as no class, as :func:`meta_similarity` sees it)."""
    n = d_noisy[0].numel()

    def mean(x: torch.Tensor) -> torch.Tensor:
        return x.sum((-1, -2), dtype=torch.float64) / n

    mn, mc, mr, md = mean(d_noisy), mean(d_clean), mean(residual), mean(d_draw)
    return torch.stack([mean(d_noisy * d_clean) - mn * mc, mean(d_noisy.square()) - mn.square(),
                        mean(d_clean.square()) - mc.square(), mean(noise), mean(residual.square()) - mr.square(),
                        torch.full_like(mn, n), mean(d_draw * d_clean) - md * mc, mean(d_draw.square()) - md.square()],
                       -1)


def _box_sum(x: torch.Tensor, h: int) -> torch.Tensor:
    """Sum of ``(N, C, H, W)`` over the ``(2h + 1)^2`` window, clipped at the border, by shifted adds.

    For the small windows used here this is several times faster than the cumulative sums of
    :func:`mstool.metastructure.density`, and more accurate in float32 (no running sum over a whole row).
    """
    for dim in (-1, -2):
        size = x.shape[dim]
        out = x.clone()
        for d in range(1, min(h, size - 1) + 1):
            out.narrow(dim, d, size - d).add_(x.narrow(dim, 0, size - d))
            out.narrow(dim, 0, size - d).add_(x.narrow(dim, d, size - d))
        x = out
    return x


def _pooled(sums: torch.Tensor, polarity: int, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(M, C, 8)`` summed statistics → ``(M,)`` score, one-draw correlation and signal share, mean over classes.

    The noise removed is the modelled white-noise variance, checked against the residual: independent pixel noise
    leaves a residual density whose variance equals the modelled one (a ratio of 1, up to its sampling error).
    A ratio clearly above 1 means the draw departs from the model's rates in structures (a skeleton's lines, not
    salt and pepper), which are part of the label's expected density: nothing is removed. A ratio below 1 (changes
    that move pixels rather than redraw them, such as jitter) caps the noise at the residual's variance.

    A class whose clean density is constant in every image (absent, or everywhere) has no correlation and is
    left out; with no class left the values are NaN.
    """
    cov, var_noisy, var_clean, modelled, var_residual, pixels, cov_draw, var_draw = sums.unbind(-1)
    # The residual variance's relative sampling error is about sqrt(2 / independent windows).
    tolerance = torch.clamp(4 * (2 * window / pixels.clamp(min=1)).sqrt(), min=_WHITE_TOLERANCE)
    white = var_residual <= (1 + tolerance) * modelled
    noise = torch.where(white, torch.minimum(modelled, var_residual), torch.zeros_like(modelled))
    usable = var_clean > 0
    flat = var_noisy <= 0  # an empty noisy class: nothing learned, correlation 0
    one = torch.where(var_draw <= 0, torch.zeros_like(cov), cov_draw / (var_draw * var_clean).clamp(min=1e-300).sqrt())
    signal_var = torch.maximum(var_noisy - noise, (1 - _NOISE_CAP) * var_noisy)
    score = torch.where(flat, torch.zeros_like(cov), cov / (signal_var * var_clean).clamp(min=1e-300).sqrt())
    signal = torch.where(flat, torch.zeros_like(cov), ((var_noisy - noise) / var_noisy.clamp(min=1e-300)))

    def mean(v: torch.Tensor) -> torch.Tensor:
        v = torch.where(usable, v, torch.full_like(v, math.nan))
        return torch.nanmean(v, dim=-1)

    return ((polarity * mean(score)).clamp(-1, 1), mean(one).clamp(-1, 1), mean(signal).clamp(0, 1))
