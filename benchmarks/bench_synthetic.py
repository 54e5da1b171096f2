"""Speed of the built-in synthetic data: images per second for each kind.

Usage:
    python benchmarks/bench_synthetic.py [--n 64] [--size 256] [--device cpu|cuda|auto|all] [--repeat 3]

Generation always runs on the CPU (so one seed gives one dataset everywhere); a non-CPU device adds the
copy of the result to it. The best of ``--repeat`` runs is reported, after one warm-up run.
"""

from __future__ import annotations

import argparse
import time

import torch

from mstool.data.synthetic import synth_kinds, synthesize
from mstool.device import describe_device, resolve_device


def bench(kind: str, n: int, size: int, device: torch.device, repeat: int) -> tuple[float, float]:
    """Best wall time in seconds over ``repeat`` runs, and the mean foreground fraction of the last run."""
    synthesize(kind, min(n, 2), size, generator=torch.Generator().manual_seed(0), device=device)
    best = float("inf")
    for r in range(repeat):
        g = torch.Generator().manual_seed(r)
        start = time.perf_counter()
        data = synthesize(kind, n, size, generator=g, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, float((data.labels != 0).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="images per run (default 64)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--device", default="all",
                        help="cpu, cuda, cuda:N, auto, or all = cpu and cuda when available (default all)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per kind; the best is kept (default 3)")
    parser.add_argument("--kinds", default=",".join(synth_kinds()),
                        help="comma-separated kinds (default all)")
    args = parser.parse_args()

    if args.device == "all":
        devices = [torch.device("cpu")] + ([torch.device("cuda", 0)] if torch.cuda.is_available() else [])
    else:
        devices = [resolve_device(args.device)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; n={args.n}, size={args.size}")
    for device in devices:
        print(f"device: {describe_device(device)}")
        print(f"  {'kind':<8} {'seconds':>8} {'images/s':>9} {'fg fraction':>12}")
        for kind in args.kinds.split(","):
            seconds, fg = bench(kind, args.n, args.size, device, args.repeat)
            print(f"  {kind:<8} {seconds:8.3f} {args.n / seconds:9.1f} {fg:12.3f}")


if __name__ == "__main__":
    main()
