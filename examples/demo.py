"""`make demo`: the main job on built-in data, told as the paper's story with mstool's own commands.

1. Built-in synthetic microscopy: make an ER-like dataset (exact ground truth) and check the folder.

Every step is a command a user can run alone; this script only chains them and prints where the
outputs went. Run: python examples/demo.py --out demo_out
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def mstool(*args: str) -> None:
    exe = Path(sys.executable).with_name("mstool")
    cmd = [str(exe) if exe.exists() else "mstool", *args]
    print("$ " + " ".join(["mstool", *args]), flush=True)
    subprocess.run(cmd, check=True)


def step_data(out: Path, n: int, size: int) -> Path:
    root = out / "data" / "er"
    mstool("data", "synth", "--kind", "er", "--n", str(n), "--size", str(size), "--seed", "0", "--overwrite", str(root))
    mstool("data", "check", str(root), "--json", str(out / "data" / "er_check.json"))
    subprocess.run([sys.executable, str(HERE / "synthetic_gallery.py"), "--out", str(out / "synthetic_gallery.png")],
                   check=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description="mstool demo on built-in synthetic data")
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--n", type=int, default=24, help="images in the synthetic dataset")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--clean", action="store_true", help="remove the output folder first")
    args = parser.parse_args()
    if args.clean and args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print("== 1. built-in synthetic microscopy ==", flush=True)
    step_data(args.out, args.n, args.size)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {args.out}/", flush=True)


if __name__ == "__main__":
    main()
