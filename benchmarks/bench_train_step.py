"""Wall time of one training step, split into the data side and the model side.

The data side is what the trainer does around the network: batch assembly (index into the device-resident
images and labels), the online label-noise draw (one draw of the whole training set per epoch, divided by
the steps of an epoch) and the random crop and flips. The model side is the forward pass, the loss, the
backward pass and the optimizer step. The issue's target: the data side is at most 10% of a CPU step.

Both presets' networks are measured: the ``quick`` U-Net (base 16, depth 3) and the ``paper`` U-Net (base 64,
depth 4; on the CPU at batch 4 to keep the run short).

    python benchmarks/bench_train_step.py                       # CPU, batch 8 (paper: 4), 128 (paper: 256)
    python benchmarks/bench_train_step.py --device cuda --batch 32 --size 256
"""

from __future__ import annotations

import argparse
import time

import torch

from mstool.device import resolve_device, set_threads
from mstool.engine import TrainConfig
from mstool.engine._trainer import _Run


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(preset: str, *, device: torch.device, batch: int, size: int, images: int, spec: str,
            repeats: int) -> dict[str, float]:
    """Median seconds per step of the data side and the model side for one preset."""
    g = torch.Generator().manual_seed(0)
    side = 2 * size  # crops come out of larger images, as in training
    x = torch.randn(images, 1, side, side, generator=g)
    y = (torch.rand(images, side, side, generator=g) < 0.3).long()
    cfg = TrainConfig.from_preset(preset, batch_size=batch, crop=size, label_spec=spec, noise_mode="online")
    run = _Run(cfg, x, y, None, None, 2, device)
    steps = -(-images // batch)
    run.model.train()
    data, noise, model = [], [], []
    for _ in range(repeats + 1):  # the first round warms up
        _sync(device)
        t0 = time.perf_counter()
        run.targets = run._draw()
        _sync(device)
        t1 = time.perf_counter()
        index = torch.randperm(images, generator=run.g_data)[:batch].to(device)
        xb, yb = run._batch(index)
        _sync(device)
        t2 = time.perf_counter()
        run._step(xb, yb)
        _sync(device)
        t3 = time.perf_counter()
        noise.append((t1 - t0) / steps)
        data.append(t2 - t1)
        model.append(t3 - t2)
    med = lambda v: sorted(v[1:])[len(v[1:]) // 2]  # noqa: E731
    out = {"noise": med(noise), "batch+crop/flip": med(data), "model": med(model)}
    total = sum(out.values())
    out.update(total=total, images_per_s=batch / total, data_share=(out["noise"] + out["batch+crop/flip"]) / total)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 8; paper on CPU: 4)")
    parser.add_argument("--size", type=int, default=None, help="crop side (default: quick 128, paper 256)")
    parser.add_argument("--images", type=int, default=24, help="training images (the noise draw covers them all)")
    parser.add_argument("--spec", default="flip:0.3,0.3", help="label-noise spec drawn online every epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per preset (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--presets", default="quick,paper", help="comma-separated presets to measure")
    args = parser.parse_args()
    dev = resolve_device(args.device)
    threads = set_threads(args.threads)
    print(f"device {dev}, {threads} CPU thread(s), {args.images} images, online spec {args.spec!r}")
    print(f"{'preset':8} {'batch':>5} {'size':>5} {'noise ms':>9} {'crop ms':>8} {'model ms':>9} {'img/s':>7} "
          f"{'data share':>10}")
    for preset in args.presets.split(","):
        paper_cpu = preset == "paper" and dev.type == "cpu"
        batch = args.batch or (4 if paper_cpu else 8)
        size = args.size or (256 if preset == "paper" else 128)
        r = measure(preset, device=dev, batch=batch, size=size, images=args.images, spec=args.spec,
                    repeats=args.repeats)
        flag = "" if r["data_share"] <= 0.10 or dev.type != "cpu" else "  (above the 10% target)"
        print(f"{preset:8} {batch:5d} {size:5d} {1000 * r['noise']:9.1f} {1000 * r['batch+crop/flip']:8.1f} "
              f"{1000 * r['model']:9.1f} {r['images_per_s']:7.1f} {100 * r['data_share']:9.1f}%{flag}")


if __name__ == "__main__":
    main()
