"""Seconds per image and Dice of the classical baselines and DFC on synthetic micrographs.

Every method runs at its default settings on ``--n`` synthetic images per kind (seed 0), z-scored per image as
``mstool.io.normalize_image`` does. Dice is pooled over the images against the exact synthetic labels; the masks
are the methods' own label-free answers (no threshold or polarity is chosen with the labels). Multi-Otsu's
foreground is its brightest class. Each method is warmed up once on a small image before it is timed (imports,
first-call allocations).

``--prior`` adds the prior-using variants (``otsu``, ``local``, ``kmeans``, ``gmm``, ``dfc`` with a prior), the
prior being the box density (bandwidth 5) of the exact labels: a calibrated, best-case prior that shows what a
method does with one, not a result to compare with label-free methods.

The iGTT benchmark lives in its own file.

Usage:
    python benchmarks/bench_unsupervised.py                          # 4 ER images of 128 x 128 on the CPU
    python benchmarks/bench_unsupervised.py --n 8 --kinds er,mito,nuc --threads 1
    python benchmarks/bench_unsupervised.py --device cuda --n 8 --prior
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from mstool.data import synthesize
from mstool.device import describe_device, resolve_device, set_threads
from mstool.errors import MstoolWarning
from mstool.io import normalize_image
from mstool.metastructure import foreground_density
from mstool.unsupervised._base import METHODS
from mstool.unsupervised._classical import GaussianMixture, KMeans, LocalThreshold, MultiOtsu, Otsu  # noqa: F401
from mstool.unsupervised._dfc import DFC  # noqa: F401  (registers "dfc")

NAMES = ["otsu", "minerror", "multiotsu", "local", "kmeans", "gmm", "dfc"]
PRIOR_NAMES = ["otsu", "minerror", "local", "kmeans", "gmm", "dfc"]


def load(kind: str, n: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic images of one kind, z-scored per image, and their labels."""
    data = synthesize(kind, n, size, generator=torch.Generator().manual_seed(0))
    images = [normalize_image(im[0].numpy()) for im in data.images.cpu()]
    stacked = torch.stack(images) if images else torch.zeros(0, 1, size, size)
    return stacked.to(device), data.labels.to(device)


def dice(masks: torch.Tensor, labels: torch.Tensor) -> float:
    """Pooled Dice of the foreground (NaN when both are empty)."""
    inter = ((masks == 1) & (labels == 1)).sum().item()
    total = (masks == 1).sum().item() + (labels == 1).sum().item()
    return 2 * inter / total if total else float("nan")


def run_method(name: str, images: torch.Tensor, prior: torch.Tensor | None) -> tuple[torch.Tensor, float]:
    """Binary masks of one method and the seconds it took (device synchronised)."""
    method = METHODS.get(name)()
    sync(images.device)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MstoolWarning)
        seg = method.segment(images, prior=prior, generator=torch.Generator().manual_seed(0))
    sync(images.device)
    seconds = time.perf_counter() - start
    masks = seg.masks
    if name == "multiotsu":
        masks = (masks == seg.scores.shape[1] - 1).long()  # the brightest class
    return masks, seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="images per kind (default 4)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    parser.add_argument("--kinds", default="er", help="comma-separated synthetic kinds (default er)")
    parser.add_argument("--methods", default=",".join(NAMES), help=f"comma-separated (default {','.join(NAMES)})")
    parser.add_argument("--prior", action="store_true", help="also run the prior variants (best-case prior)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    set_threads(args.threads)
    device = resolve_device(args.device)
    kinds = [k for k in args.kinds.split(",") if k]
    names = [m for m in args.methods.split(",") if m]
    rows = [(name, False) for name in names]
    if args.prior:
        rows += [(name, True) for name in names if name in PRIOR_NAMES]
    print(f"device: {describe_device(device)}; {args.n} images of {args.size} x {args.size} per kind, seed 0")

    warm = load("er", 1, 32, device)[0]
    for name, _ in rows:
        run_method(name, warm, None)

    results: dict[tuple[str, bool, str], tuple[float, float]] = {}
    for kind in kinds:
        images, labels = load(kind, args.n, args.size, device)
        prior = foreground_density(labels, bandwidth=5) if args.prior else None
        for name, with_prior in rows:
            masks, seconds = run_method(name, images, prior if with_prior else None)
            results[name, with_prior, kind] = (seconds / max(args.n, 1), dice(masks, labels))

    header = f"{'method':<16}" + "".join(f"{kind + ' s/img':>12}{kind + ' Dice':>11}" for kind in kinds)
    print(header)
    print("-" * len(header))
    for name, with_prior in rows:
        label = name + ("+prior" if with_prior else "")
        cells = "".join(f"{results[name, with_prior, kind][0]:>12.3f}{results[name, with_prior, kind][1]:>11.3f}"
                        for kind in kinds)
        print(f"{label:<16}{cells}")


if __name__ == "__main__":
    main()
