"""A second electron-microscopy-like data set, drawn by code that shares nothing with the built-in generator, to
judge the methods on images they were not tuned on.

Every choice in mstool's unsupervised methods was measured on the built-in kinds, and all of them come from one
generator and one camera model (`mstool.data.synthesize`): Voronoi cells, Poisson-Gaussian counts, a vignetted
illumination. This script draws membrane images another way, with numpy, scipy and scikit-image only:

- cells are the watershed basins of jittered, unevenly spaced seeds on a noisy distance map, so they vary in size
  (about 20-45 px across) and their walls are irregular, not straight Voronoi edges;
- membranes (the foreground) are 2-6 px wide bands along the cell walls; where a band is wider than 4 px its middle
  line is lighter, the double-membrane look of two apposed cell membranes;
- cells are mottled at three scales, one in eight is a dark cell; many hold a nucleus (a disc of darker, clumped
  chromatin inside a thin dark envelope), mitochondria (dark ellipses with light cristae stripes) and vesicles
  (small rings: a dark rim round a light lumen). Envelopes, mitochondria and vesicle rims are as dark as the
  membranes and closed, so intensity alone does not decide;
- the "camera": Gaussian blur, a linear illumination ramp, additive Gaussian noise at the requested
  signal-to-noise ratio, row-wise scan-line offsets, a random gamma and 8-bit quantisation.

`--kind er` draws the endoplasmic reticulum instead: dark tubules (1-5 px wide, smooth random walks) in a bright
cytoplasm mottled at three scales, with dark mitochondria and, in most images, part of a dimmer, clumped nucleus,
neither of which is ER; the same camera.

    python examples/heldout_em.py --out data/heldout-em            # 24 images of 128 x 128, split 14/5/5
    python examples/heldout_em.py --out DIR --n 6 --size 256 --snr 4 --seed 1
    python examples/heldout_em.py --out DIR --kind er                # dark ER tubules

The folder has the paper layout (`{train,val,test}/{images,labels}/`, 8-bit TIFF images, 0/255 PNG masks) that
`mstool compare --data DIR` and `mstool segment DIR/test/images` read; `dataset.json` records the
settings. `examples/unsupervised_table.py --sets heldout-em` (or `heldout-er`) writes it and runs the table on it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.draw import ellipse
from skimage.segmentation import find_boundaries, watershed

from mstool._fs import atomic_dir  # the package's own atomic folder writer
from mstool.data import split_counts
from mstool.errors import MstoolError
from mstool.io import write_image, write_mask


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-correlated noise of correlation length ``sigma`` px."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / max(field.std(), 1e-9)


def cell_seeds(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Dart throwing with a spacing that varies smoothly over the image (20-44 px between seeds)."""
    h, w = shape
    spacing = 32.0 + 12.0 * np.tanh(smooth_noise(rng, shape, 40.0))
    seeds: list[tuple[float, float]] = []
    for y, x in rng.uniform((-10, -10), (h + 10, w + 10), size=(40 * h * w // 400, 2)):
        r = spacing[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))]
        if all((y - sy) ** 2 + (x - sx) ** 2 > r * r for sy, sx in seeds):
            seeds.append((y, x))
    return np.array(seeds)


def cells(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell labels (1..M) and the seeds (M, 2)."""
    h, w = shape
    seeds = cell_seeds(rng, shape)
    pad = 12
    canvas = (h + 2 * pad, w + 2 * pad)
    markers = np.zeros(canvas, dtype=np.int32)
    ij = np.clip(np.round(seeds).astype(int) + pad, 0, np.array(canvas) - 1)
    markers[ij[:, 0], ij[:, 1]] = np.arange(1, len(seeds) + 1)
    # distance to the nearest seed, made irregular: the basins' walls wander off the Voronoi edges
    elevation = ndimage.distance_transform_edt(markers == 0) + 4.0 * smooth_noise(rng, canvas, 5.0)
    labels = watershed(elevation, markers)[pad:-pad, pad:-pad]
    return labels, seeds


def draw(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The scene: membrane mask (H, W) bool and an ideal electron transmission (H, W) float in about [0, 1]."""
    h, w = shape
    labels, seeds = cells(rng, shape)
    walls = find_boundaries(labels, mode="inner")  # 2 px: a pixel on each side of the wall
    to_wall = ndimage.distance_transform_edt(~walls)
    width = 4.0 + 2.0 * np.tanh(smooth_noise(rng, shape, 25.0))  # 2-6 px
    membrane = to_wall <= (width - 2.0) / 2.0

    m = labels.max()
    tone = rng.uniform(0.6, 0.9, m + 1)
    dark_cells = rng.random(m + 1) < 0.125
    tone[dark_cells] = rng.uniform(0.42, 0.52, dark_cells.sum())
    image = tone[labels] * (1 + 0.05 * smooth_noise(rng, shape, 1.0) + 0.06 * smooth_noise(rng, shape, 4.0)
                            + 0.05 * smooth_noise(rng, shape, 12.0))
    inside = ndimage.distance_transform_edt(~membrane)  # room left before a membrane

    # nuclei: at the seeds of large enough cells, a disc of clumped chromatin inside a thin dark envelope
    yy, xx = np.mgrid[:h, :w]
    clumps = smooth_noise(rng, shape, 2.0) > 0.6
    for k, (sy, sx) in enumerate(seeds, start=1):
        iy, ix = int(round(sy)), int(round(sx))
        if not (0 <= iy < h and 0 <= ix < w) or labels[iy, ix] != k or rng.random() > 0.5:
            continue
        radius = 0.55 * inside[iy, ix]
        if radius < 6:
            continue
        r = np.hypot(yy - sy, xx - sx) * (1 + 0.08 * np.cos(3 * np.arctan2(yy - sy, xx - sx) + rng.uniform(0, 6)))
        nucleus = r < radius
        image[nucleus] = (0.55 + 0.1 * rng.random()) * np.where(clumps[nucleus], 0.6, 1.0)
        image[(r >= radius - 1.2) & (r < radius)] = rng.uniform(0.2, 0.3)

    # mitochondria and vesicles, clear of the membranes and of each other
    taken = membrane.copy()
    n_organelles = int(rng.poisson(h * w / 300))
    for _ in range(n_organelles):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        mito = rng.random() < 0.45
        a, b = (rng.uniform(6, 14), rng.uniform(3, 5)) if mito else (rng.uniform(2.5, 4.5),) * 2
        if inside[int(cy), int(cx)] < a + 2:
            continue
        rr, cc = ellipse(cy, cx, b, a, shape=shape, rotation=rng.uniform(0, math.pi))
        if taken[rr, cc].any():
            continue
        taken[rr, cc] = True
        if mito:
            angle = rng.uniform(0, math.pi)
            along = (xx[rr, cc] - cx) * np.cos(angle) + (yy[rr, cc] - cy) * np.sin(angle)
            stripes = np.cos(2 * math.pi / 3.5 * along)
            image[rr, cc] = rng.uniform(0.25, 0.38) + 0.12 * (stripes > 0.3)
        else:
            rim = np.hypot(yy[rr, cc] - cy, xx[rr, cc] - cx) > a - 1.3
            image[rr, cc] = np.where(rim, rng.uniform(0.2, 0.35), rng.uniform(0.8, 0.95))

    dark = rng.uniform(0.18, 0.3)
    image[membrane] = dark * (1 + 0.1 * smooth_noise(rng, shape, 2.0)[membrane])
    double = membrane & (width > 4.5) & (to_wall <= 0.5)  # the light line between two apposed membranes
    image[double] += 0.15
    return membrane, np.clip(image, 0, None)


def draw_er(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Endoplasmic reticulum as EM shows it: dark tubules (1-5 px wide; smooth random walks that turn off sharply
    now and then) in a bright, mottled cytoplasm that also holds dark mitochondria and a dimmer nucleus, which are
    not ER. Returns the ER mask (H, W) bool and the ideal transmission (H, W) float."""
    h, w = shape
    image = rng.uniform(0.7, 0.85) * (1 + 0.05 * smooth_noise(rng, shape, 1.0) + 0.07 * smooth_noise(rng, shape, 5.0)
                                      + 0.08 * smooth_noise(rng, shape, 20.0))
    yy, xx = np.mgrid[:h, :w]
    if rng.random() < 0.6:  # part of a nucleus, dimmer and clumped
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(25, 45)
        nucleus = np.hypot(yy - cy, xx - cx) < r
        image[nucleus] *= np.where(smooth_noise(rng, shape, 2.0)[nucleus] > 0.7, 0.55, 0.75)
    centre = np.zeros(shape, dtype=bool)
    half = np.zeros(shape)
    for _ in range(max(1, int(rng.poisson(h * w / 1200)))):
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        heading, width = rng.uniform(0, 2 * math.pi), rng.uniform(2.5, 4.5)
        for _ in range(int(rng.uniform(30, 120))):
            heading += rng.normal(0, 0.15)
            y, x = y + math.sin(heading), x + math.cos(heading)
            if not (0 <= y < h and 0 <= x < w):
                break
            centre[int(y), int(x)] = True
            half[int(y), int(x)] = max(half[int(y), int(x)], width / 2)
            if rng.random() < 0.01:  # a branch: the walk turns off sharply
                heading += rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.4)
    distance, (iy, ix) = ndimage.distance_transform_edt(~centre, return_indices=True)
    er = distance < half[iy, ix]  # 1 px for a width under 3, 3 px from 3 on, 5 px above 4.1
    image[er] = rng.uniform(0.22, 0.32) * (1 + 0.1 * smooth_noise(rng, shape, 2.0)[er])
    for _ in range(int(rng.poisson(h * w / 2500))):  # mitochondria, clear of the tubules
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        rr, cc = ellipse(cy, cx, rng.uniform(3, 6), rng.uniform(7, 14), shape=shape, rotation=rng.uniform(0, math.pi))
        keep = ~er[rr, cc]
        image[rr[keep], cc[keep]] = rng.uniform(0.3, 0.42)
    return er, np.clip(image, 0, None)


def photograph(rng: np.random.Generator, ideal: np.ndarray, membrane: np.ndarray, snr: float) -> np.ndarray:
    """Blur, a linear illumination ramp, Gaussian and scan-line noise at ``snr``, a gamma, 8 bits."""
    h, w = ideal.shape
    image = ndimage.gaussian_filter(ideal, rng.uniform(0.8, 1.4))
    angle = rng.uniform(0, 2 * math.pi)
    ramp = ((np.arange(h)[:, None] - h / 2) * math.sin(angle) + (np.arange(w)[None] - w / 2) * math.cos(angle))
    image = image * (1 + 0.3 * ramp / math.hypot(h, w))
    contrast = abs(image[~membrane].mean() - image[membrane].mean()) if membrane.any() and (~membrane).any() else 0.3
    sd = contrast / snr
    image = image + rng.normal(0, sd, image.shape) + rng.normal(0, 0.3 * sd, (h, 1))
    low, high = np.percentile(image, [0.5, 99.5])
    image = np.clip((image - low) / (high - low), 0, 1) ** rng.uniform(0.8, 1.25)
    return np.round(255 * image).astype(np.uint8)


KINDS = {"em": (draw, "membrane"), "er": (draw_er, "er")}
"""Scene drawers by kind, with the name of the foreground class."""


def em_like(rng: np.random.Generator, shape: tuple[int, int], snr: float = 8.0,
            kind: str = "em") -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W) uint8 and its mask (H, W) uint8 (1 = membrane, or ER for ``kind="er"``)."""
    foreground, ideal = KINDS[kind][0](rng, shape)
    return photograph(rng, ideal, foreground, snr), foreground.astype(np.uint8)


def write_dataset(root: Path, n: int = 24, size: int = 128, snr: float = 8.0, seed: int = 0,
                  invert: bool = False, kind: str = "em", overwrite: bool = False) -> Path:
    """``n`` images in the paper layout under ``root`` (written beside it, then renamed: no half-written folder);
    ``invert`` turns the images over (bright membranes on dark cells), the labels stay; ``overwrite`` replaces a
    folder this script (or mstool) wrote, once the new one is complete."""
    rng = np.random.default_rng(seed)
    counts = split_counts(n)
    # refuses a non-empty folder it did not write; a failed run leaves nothing half-written
    with atomic_dir(root, overwrite=overwrite, kind="heldout") as tmp:
        start = 0
        for split, count in zip(("train", "val", "test"), counts, strict=True):
            for i in range(start, start + count):
                image, mask = em_like(rng, (size, size), snr, kind)
                image = 255 - image if invert else image
                write_image(tmp / split / "images" / f"heldout_{kind}_{i:04d}.tif", image)
                write_mask(tmp / split / "labels" / f"heldout_{kind}_{i:04d}.png", mask)
            start += count
        meta = {"generator": "examples/heldout_em.py", "kind": kind, "n": n, "size": size, "snr": snr, "seed": seed,
                "invert": invert, "classes": ["background", KINDS[kind][1]],
                "split": dict(zip(("train", "val", "test"), counts, strict=True))}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Path(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--out", type=Path, required=True, help="new or empty folder")
    parser.add_argument("--n", type=int, default=24, help="images (at least 3; default 24)")
    parser.add_argument("--size", type=int, default=128, help="side in pixels (default 128)")
    parser.add_argument("--snr", type=float, default=8.0, help="membrane contrast over noise std (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=sorted(KINDS), default="em",
                        help="em: membranes between cells (default); er: ER tubules in the cytoplasm")
    parser.add_argument("--invert", action="store_true", help="bright foreground on a dark background")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder this script wrote")
    args = parser.parse_args()
    if args.n < 3 or args.size < 32 or not args.snr > 0:
        parser.error(f"need --n >= 3, --size >= 32 and --snr > 0; got {args.n}, {args.size}, {args.snr}")
    try:
        print(write_dataset(args.out, args.n, args.size, args.snr, args.seed, args.invert, args.kind,
                            args.overwrite))
    except MstoolError as err:  # a folder that is not empty, or cannot be written
        parser.error(f"--out {err}")


if __name__ == "__main__":
    main()
