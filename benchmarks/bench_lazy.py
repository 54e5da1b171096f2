"""Memory of training on a dataset read item by item, against the dataset's size on disk.

Target (the scale-out issue's): a dataset that does not fit in memory trains in the memory of a few batches plus
the model. Each size is trained for one epoch in a fresh process (so peak RSS is that run's alone), lazily
(:class:`mstool.data.SegmentationDataset` handed to :func:`mstool.engine.train`) and, for contrast, eagerly (the
whole split loaded as tensors). The lazy peak should stay flat as the dataset grows; the eager one grows with it.

    python benchmarks/bench_lazy.py                          # 200 and 800 images of 256 x 256
    python benchmarks/bench_lazy.py --sizes 500,2000,8000 --side 512
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


def _child(root: str, mode: str) -> None:
    import torch

    from mstool.data import SegmentationDataset, load_split_tensors
    from mstool.engine import TrainConfig, train

    torch.set_num_threads(2)
    cfg = TrainConfig.from_preset("quick", epochs=1, batch_size=8, crop=128, reference_size=256, val_every=1,
                                  model_options={"base": 8, "depth": 3})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        if mode == "lazy":
            train(cfg, SegmentationDataset(root, "all"), None, out_dir=out)
        else:
            images, labels, _ = load_split_tensors(root, "all")
            train(cfg, images, labels, out_dir=out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"peak_mb": peak, "seconds": time.perf_counter() - start}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200,800", help="dataset sizes in images (default 200,800)")
    ap.add_argument("--side", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--modes", default="lazy,eager")
    ap.add_argument("_child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        _child(*args._child)
        return 0
    from mstool.data import synthesize
    from mstool.device import make_generator
    from mstool.io import write_image, write_mask

    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            root = Path(tmp) / f"d{n}"
            for start in range(0, n, 100):  # a flat cellpose folder, written 100 images at a time
                k = min(100, n - start)
                data = synthesize("er", k, args.side, generator=make_generator(start))
                for i in range(k):
                    write_image(root / f"img{start + i:05d}.tif", (data.images[i, 0] * 60000).clamp(0, 65535)
                                .numpy().astype("uint16"))
                    write_mask(root / f"img{start + i:05d}_masks.png", data.labels[i].numpy())
            on_disk = sum(p.stat().st_size for p in root.iterdir()) / 2 ** 20
            raw = n * args.side * args.side * 4 / 2 ** 20  # the float32 images a tensor split holds
            for mode in args.modes.split(","):
                out = subprocess.run([sys.executable, __file__, str(root), mode], capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr[-2000:], file=sys.stderr)
                    return 1
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{n:6d} images of {args.side}^2  on disk {on_disk:7.0f} MB  (float32 {raw:6.0f} MB)  "
                      f"{mode:<5} peak RSS {r['peak_mb']:7.0f} MB  {r['seconds']:6.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
