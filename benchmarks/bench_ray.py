"""Wall time of a 4-cell comparison sweep: the Ray executor (start-up included) against the local executor.

Target (the scale-out issue's): on 2 CPU cores the Ray sweep takes at most 1.3x the local sweep's wall time. The
local executor runs the cells one after another on all threads; Ray runs one cell per CPU at once, each on one
thread, and pays for starting its instance and its workers (each imports torch). Both sides run in alternating
rounds into fresh folders and keep their best time (noise on a shared machine only ever adds time).

    python benchmarks/bench_ray.py                   # 2 label specs x 2 seeds, quick preset, 60 epochs
    python benchmarks/bench_ray.py --epochs 200 --rounds 3 --check   # exit 1 if the target is missed
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from mstool.compare import SuiteConfig, run_suite

TARGET = 1.3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2, help="alternating timing rounds (default 2)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = ap.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("needs Ray: pip install 'mstool[ray]'", file=sys.stderr)
        return 2
    config = SuiteConfig(data="synth:er", labels=["clean", "sample:0.1"], seeds=[0, 1], synth_n=12, synth_size=64,
                         train={"epochs": args.epochs, "val_every": 10})
    best = {"local": float("inf"), "ray": float("inf")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for side in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
                out = Path(tmp) / f"{side}{r}"
                start = time.perf_counter()
                if side == "ray":
                    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
                    try:
                        run_suite(config, out, executor="ray", cpus_per_cell=1)
                    finally:
                        ray.shutdown()
                else:
                    run_suite(config, out)
                seconds = time.perf_counter() - start
                best[side] = min(best[side], seconds)
                print(f"round {r + 1} {side:<5} {seconds:7.1f} s", flush=True)
    ratio = best["ray"] / best["local"]
    print(f"4 cells ({args.epochs} epochs each), torch {torch.__version__}, {torch.get_num_threads()} threads: "
          f"local {best['local']:.1f} s, ray {best['ray']:.1f} s (start-up included); ray / local = {ratio:.2f} "
          f"(target <= {TARGET})")
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
