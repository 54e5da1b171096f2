"""A small noisy-label comparison on real microscopy: the DSB2018 nuclei sample, or your own image and mask.

The 512 x 512 image and its expert instance mask are cut into 128 x 128 tiles, written in the paper's folder
layout (train/val/test), and the comparison suite trains a small U-Net on clean, sampled, flipped, dilated, eroded
skeleton and random labels. The report lands in OUT/run/report.html; its "What the labels predict" table ranks
the trained Dice against the labels' expected-density score, which needs no training.

Run (from the repository root, where ../shared/data holds the sample):
    python examples/compare_real.py --out demo_out/real
or on your own data:
    python examples/compare_real.py --image my.tif --mask my_masks.tif --out runs/mine
or on a dataset folder you already have (any layout):
    python examples/compare_real.py --data path/to/dataset --out runs/mine
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mstool.compare import SuiteConfig, run_suite, write_results
from mstool.data import write_tiled_dataset

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dsb2018-nuclei-sample"
LABELS = ["clean", "sample:0.1", "flip:0.3,0.3", "dilate:3", "erode:2", "skeleton", "random:0.3"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("compare_real_out"))
    parser.add_argument("--image", type=Path, default=SAMPLE / "image.tif")
    parser.add_argument("--mask", type=Path, default=SAMPLE / "mask.tif")
    parser.add_argument("--data", type=Path, default=None, help="a dataset folder instead of --image/--mask")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.data is None:
        if not args.image.exists():
            raise SystemExit(f"{args.image}: not found; pass --image and --mask (or --data) to use your own data")
        data = args.out / "data"
        if not data.exists():
            write_tiled_dataset(args.image, args.mask, data, tile=args.tile)
    else:
        data = args.data
    suite = SuiteConfig(data=str(data), labels=LABELS, seeds=[int(s) for s in args.seeds.split(",")],
                        preset="quick", train={"epochs": args.epochs})
    rows = run_suite(suite, args.out / "run", device=args.device)
    write_results(args.out / "run", rows)
    print(f"{'label spec':<14}{'class':<6}{'val Dice':>9}{'oracle':>8}{'probe':>8}{'score':>8}")
    for r in rows:
        print(f"{r['spec']:<14}{r['label/taxonomy']:<6}{r['val/dice']:>9.3f}{r['oracle/dice']:>8.3f}"
              f"{r.get('probe/dice', float('nan')):>8.3f}{r.get('label/expected_score') or float('nan'):>8.3f}")
    print(f"report: {args.out / 'run' / 'report.html'}")


if __name__ == "__main__":
    main()
