"""Memory of training and evaluating on a dataset read item by item, against the dataset's size on disk.

Target (the scale-out issue's): a dataset that does not fit in memory, 10,000 images of 512 x 512 say, trains and
evaluates in the memory of a few batches plus the model. For each dataset size a folder in the paper layout
(``train/val/test``, 80/10/10, 16-bit TIFF images, PNG masks) is written, then each job runs in a fresh process,
so that its peak RSS is its own:

- ``lazy``: one epoch of :func:`mstool.engine.train` on :class:`mstool.data.SegmentationDataset` s (validation
  included), then, with ``--evaluate``, :func:`mstool.engine.evaluate` on the three splits read item by item
  (``eval`` row: the protocols and the feature probe);
- ``eager``: for contrast, the same epoch with the splits loaded whole as tensors (the peak grows with the data).

To write large datasets quickly, ``n / 8`` images are synthesised and each is written in its 8 rotations and
mirrorings (distinct files with the same statistics).

    python benchmarks/bench_lazy.py                                   # 200 and 800 images of 256 x 256
    python benchmarks/bench_lazy.py --sizes 10000 --side 512 --modes lazy --evaluate
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _config():
    from mstool.engine import TrainConfig

    return TrainConfig.from_preset("quick", epochs=1, batch_size=8, crop=128, reference_size=256, val_every=1,
                                   model_options={"base": 8, "depth": 3})


def _child(root: str, mode: str, out: str, device: str = "cpu") -> None:
    import torch

    from mstool.data import SegmentationDataset, load_split_tensors
    from mstool.engine import evaluate, train

    torch.set_num_threads(2)
    start = time.perf_counter()
    extra = {}
    if mode == "lazy":
        train(_config(), SegmentationDataset(root, "train"), None, out_dir=out,
              val_images=SegmentationDataset(root, "val"), device=device)
    elif mode == "eager":
        images, labels, _ = load_split_tensors(root, "train")
        val_images, val_labels, _ = load_split_tensors(root, "val")
        train(_config(), images, labels, out_dir=out, val_images=val_images, val_labels=val_labels, device=device)
    else:  # eval: the lazy run's model on the three splits read item by item
        result = evaluate(Path(out) / "model.pt", SegmentationDataset(root, "test"),
                          val_images=SegmentationDataset(root, "val"), train_images=SegmentationDataset(root, "train"),
                          device=device, generator=torch.Generator().manual_seed(0))
        extra = {"val_dice": result.metrics["val/dice"], "probe_dice": result.metrics["probe/dice"]}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"peak_mb": peak, "seconds": time.perf_counter() - start, **extra}))


def _write(root: Path, n: int, side: int) -> None:
    """``n`` images in the paper layout, 80/10/10: ``ceil(n / 8)`` synthesised, each written in 8 orientations."""
    from mstool.data import synthesize
    from mstool.device import make_generator
    from mstool.io import write_image, write_mask

    index = 0
    for start in range(0, -(-n // 8), 100):
        data = synthesize("er", min(100, -(-n // 8) - start), side, generator=make_generator(start))
        for image, label in zip(data.images[:, 0], data.labels):
            for turn in range(8):
                if index == n:
                    return
                split = "train" if index % 10 < 8 else ("val" if index % 10 == 8 else "test")
                oriented = [x.rot90(turn % 4, (0, 1)) for x in (image, label)]
                if turn >= 4:
                    oriented = [x.flip(1) for x in oriented]
                name = f"img{index:05d}"
                write_image(root / split / "images" / f"{name}.tif",
                            oriented[0].round().clamp(0, 65535).numpy().astype("uint16"))
                write_mask(root / split / "labels" / f"{name}.png", oriented[1].numpy())
                index += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200,800", help="dataset sizes in images (default 200,800)")
    ap.add_argument("--side", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--modes", default="lazy,eager", help="lazy, eager or both (default)")
    ap.add_argument("--evaluate", action="store_true", help="also evaluate the lazy run's model item by item")
    ap.add_argument("--device", default="cpu", help="where to train and evaluate (default cpu)")
    ap.add_argument("--tmp", default=None, help="where to write the datasets (default: the system's temp folder)")
    ap.add_argument("_child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        _child(*args._child)
        return 0
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            root = Path(tmp) / f"d{n}"
            started = time.perf_counter()
            _write(root, n, args.side)
            on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2 ** 20
            raw = n * args.side * args.side * 4 / 2 ** 20  # the float32 images the tensor splits would hold
            print(f"{n} images of {args.side}^2 written in {time.perf_counter() - started:.0f} s: {on_disk:.1f} MB "
                  f"on disk, {raw:.0f} MB as float32", flush=True)
            jobs = args.modes.split(",")
            if args.evaluate and "lazy" in jobs:
                jobs.insert(jobs.index("lazy") + 1, "eval")
            for job in jobs:
                out = Path(tmp) / f"run{n}-{'lazy' if job == 'eval' else job}"
                done = subprocess.run([sys.executable, __file__, str(root), job, str(out), args.device],
                                      capture_output=True, text=True)
                if done.returncode:
                    print(done.stderr[-2000:], file=sys.stderr)
                    return 1
                r = json.loads(done.stdout.strip().splitlines()[-1])
                scores = "".join(f"  {k} {r[k]:.3f}" for k in ("val_dice", "probe_dice") if k in r)
                print(f"{n:6d} images  on disk {on_disk:7.1f} MB  {job:<5} peak RSS {r['peak_mb']:7.0f} MB  "
                      f"{r['seconds']:7.1f} s{scores}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
