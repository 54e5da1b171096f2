"""Speed of batched dilate / erode / skeletonize against scikit-image's per-image loop.

Run: ``python benchmarks/bench_skeleton.py --n 32 --size 256 --device cpu`` (``--device cuda`` or ``auto`` to
time a GPU too; scikit-image always runs on the CPU). Prints masks per second for both and their ratio,
and how far the skeletons agree (pixels that differ, IoU of the 1-pixel-dilated skeletons).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from skimage import morphology

from mstool.device import describe_device, resolve_device
from mstool.labels._morphology import dilate, erode, skeletonize


def random_blobs(n: int, size: int, *, seed: int = 0) -> torch.Tensor:
    """``(n, size, size)`` bool masks: Gaussian-smoothed noise thresholded at a random level per image."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 1, size, size, generator=g)
    sigma = size / 40
    x = torch.arange(-3 * int(sigma) - 1, 3 * int(sigma) + 2, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    smooth = F.conv2d(noise, k.view(1, 1, 1, -1), padding=(0, k.numel() // 2))
    smooth = F.conv2d(smooth, k.view(1, 1, -1, 1), padding=(k.numel() // 2, 0))[:, 0]
    ranked = smooth.flatten(1).sort(dim=1).values
    position = ((0.3 + 0.4 * torch.rand(n, generator=g)) * (size * size - 1)).long()
    return smooth > ranked.gather(1, position[:, None])[:, :, None]


def timed(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Best wall time of ``repeat`` runs after one warm-up, in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="masks per batch (default 32)")
    parser.add_argument("--size", type=int, default=256, help="mask height and width in pixels (default 256)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement; the best counts")
    args = parser.parse_args()

    device = resolve_device(args.device)
    masks = random_blobs(args.n, args.size)
    arrays = [m.numpy() for m in masks]
    on_device = masks.to(device)
    print(f"{args.n} masks of {args.size}x{args.size}, {masks.float().mean():.2f} foreground; "
          f"torch on {describe_device(device)}, scikit-image on the CPU")

    cases = [
        ("dilate(2)", lambda: dilate(on_device, 2),
         lambda: [morphology.dilation(a, morphology.disk(2)) for a in arrays]),
        ("erode(1)", lambda: erode(on_device, 1),
         lambda: [morphology.erosion(a, morphology.disk(1)) for a in arrays]),
        ("skeletonize", lambda: skeletonize(on_device),
         lambda: [morphology.skeletonize(a) for a in arrays]),
    ]
    print(f"{'operation':<12} {'mstool masks/s':>15} {'skimage masks/s':>16} {'ratio':>7}")
    for name, ours, theirs in cases:
        t_ours = timed(ours, device, args.repeat)
        t_theirs = timed(theirs, torch.device("cpu"), args.repeat)
        print(f"{name:<12} {args.n / t_ours:>15.1f} {args.n / t_theirs:>16.1f} {t_theirs / t_ours:>6.2f}x")

    ours = skeletonize(on_device).cpu().numpy()
    ref = np.stack([morphology.skeletonize(a) for a in arrays])
    footprint = morphology.disk(1)[None]
    d_ours, d_ref = morphology.dilation(ours, footprint), morphology.dilation(ref, footprint)
    iou = (d_ours & d_ref).sum() / max((d_ours | d_ref).sum(), 1)
    print(f"skeletons: {int((ours != ref).sum())} of {int(ref.sum())} skeleton pixels differ from "
          f"scikit-image; IoU of the 1-px-dilated skeletons {iou:.3f}")


if __name__ == "__main__":
    main()
