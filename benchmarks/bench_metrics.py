"""Benchmark: a K-threshold sweep over N score maps, batched (one pass) against a loop over thresholds.

Target (from the issue): 100 score maps of 256 x 256 with K = 50 thresholds in one batched pass. The
batched sweep is :func:`mstool.metrics.confusion_at_thresholds` (bucketize + one bincount + cumulative sums);
the naive reference below thresholds the whole batch once per level. Both give identical counts (checked
here). The full :func:`mstool.metrics.evaluate_binary` (val / oracle / fixed protocols with AUC) is timed too.

Usage:
    python benchmarks/bench_metrics.py                 # CPU, plus CUDA when present
    python benchmarks/bench_metrics.py --device cuda --n 200 --size 512 --k 100
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from mstool.device import describe_device, resolve_device
from mstool.metrics import confusion_at_thresholds, evaluate_binary, threshold_grid

IGNORE = 255


def naive_sweep(probs: torch.Tensor, labels: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Reference: a Python loop over thresholds, each a full pass over the batch -> (N, K, 4) counts."""
    valid = labels != IGNORE
    fg = (labels == 1) & valid
    bg = (labels == 0) & valid
    rows = []
    for t in thresholds:
        pred = probs[:, 0] >= t
        rows.append(torch.stack([(pred & fg).sum((1, 2)), (pred & bg).sum((1, 2)),
                                 (~pred & fg).sum((1, 2)), (~pred & bg).sum((1, 2))], dim=-1))
    return torch.stack(rows, dim=1)


def make_case(n: int, size: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy score maps that partly agree with their labels; a border of ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.rand(n, 1, size, size, generator=g)
    probs = (0.6 * truth + 0.4 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)
    labels = (truth[:, 0] > 0.5).long()
    labels[:, :2] = IGNORE
    return probs.to(device), labels.to(device)


def timed(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Median wall time of ``repeat`` calls after one warm-up call (device synchronised)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn: Callable[[], object], device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a"
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return f"{(torch.cuda.max_memory_allocated(device) - base) / 2**20:.0f} MiB"


def run(device: torch.device, n: int, size: int, k: int, repeat: int) -> None:
    probs, labels = make_case(n, size, device)
    grid = threshold_grid(probs, k)
    batched = confusion_at_thresholds(probs, labels, grid)
    if not torch.equal(batched, naive_sweep(probs, labels, grid)):
        raise SystemExit(f"batched and naive counts differ on {device}")
    half = n // 2
    t_batched = timed(lambda: confusion_at_thresholds(probs, labels, grid), device, repeat)
    t_naive = timed(lambda: naive_sweep(probs, labels, grid), device, repeat)
    t_protocol = timed(lambda: evaluate_binary(probs[half:], labels[half:], val_probs=probs[:half],
                                               val_labels=labels[:half], num_thresholds=k,
                                               allow_inversion=True), device, repeat)
    print(f"device {describe_device(device)}: {n} maps of {size}x{size}, K={k}, median of {repeat}")
    print(f"  batched sweep : {t_batched * 1e3:9.2f} ms  {n / t_batched:10.1f} maps/s  "
          f"peak {peak_memory(lambda: confusion_at_thresholds(probs, labels, grid), device)}")
    print(f"  naive loop    : {t_naive * 1e3:9.2f} ms  {n / t_naive:10.1f} maps/s  "
          f"peak {peak_memory(lambda: naive_sweep(probs, labels, grid), device)}")
    print(f"  speed-up      : {t_naive / t_batched:9.1f} x")
    print(f"  evaluate_binary (val {half} + test {n - half} maps, inversion, AUC): "
          f"{t_protocol * 1e3:9.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="number of score maps (default 100)")
    parser.add_argument("--size", type=int, default=256, help="height and width of each map (default 256)")
    parser.add_argument("--k", type=int, default=50, help="number of thresholds (default 50)")
    parser.add_argument("--device", default="all",
                        help="cpu, cuda, cuda:N, or all = cpu plus cuda when present (default all)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (default 5)")
    args = parser.parse_args()
    if args.device == "all":
        devices = [torch.device("cpu")] + ([resolve_device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [resolve_device(args.device)]
    for device in devices:
        run(device, args.n, args.size, args.k, args.repeat)


if __name__ == "__main__":
    main()
