"""What a comparison sweep costs: FLOPs and CPU seconds of a training step, and the GPU-hours they imply.

A training step's floating-point operations are counted exactly (:class:`torch.utils.flop_counter.FlopCounterMode`,
forward and backward of one image, times the batch); its CPU time is measured. The GPU-hours printed are an
ESTIMATE, the FLOPs divided by an assumed sustained throughput (``--tflops``): use them until a card has timed the
cells itself (``benchmarks/gpu_check.sh`` times one quick and one paper cell).

    python benchmarks/bench_cost.py                                    # the paper sweep on built-in paper-sized data
    python benchmarks/bench_cost.py --train-images 1000 --side 512 --tflops 100,300
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mstool.engine import TrainConfig
from mstool.losses import make_loss
from mstool.models import build_model


def step_flops(cfg: TrainConfig) -> float:
    """FLOPs of one training step (forward, loss, backward) of ``cfg``'s network on its batch of crops."""
    net = build_model(cfg.model, options=cfg.model_options, generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 1, cfg.crop, cfg.crop)
    y = (torch.rand(1, cfg.crop, cfg.crop) < 0.3).long()
    loss_fn = make_loss("bce", 1)
    with FlopCounterMode(display=False) as counter:
        loss_fn(net(x), y).backward()
    return counter.get_total_flops() * cfg.batch_size


def cpu_step_seconds(cfg: TrainConfig, batch: int, repeats: int = 3) -> float:
    """Best of ``repeats`` CPU seconds of one optimizer step at ``batch``, scaled to the preset's batch."""
    net = build_model(cfg.model, options=cfg.model_options, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss_fn = make_loss("bce", 1)
    x = torch.randn(batch, 1, cfg.crop, cfg.crop)
    y = (torch.rand(batch, cfg.crop, cfg.crop) < 0.3).long()
    best = math.inf
    for _ in range(repeats + 1):  # the first warms up
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
        best = min(best, time.perf_counter() - t0)
    return best * cfg.batch_size / batch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--train-images", type=int, default=38,
                    help="training images (default 38: the built-in paper-sized synth data, 64 images, 60%% train)")
    ap.add_argument("--side", type=int, default=256, help="image side (default 256)")
    ap.add_argument("--cells", type=int, default=180, help="trainings in the sweep (default 180: 12 x 3 x 5)")
    ap.add_argument("--tflops", default="100,300", help="assumed sustained GPU TFLOPS for the estimate")
    ap.add_argument("--cpu-batch", type=int, default=2, help="batch the CPU step is timed at, then scaled")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = TrainConfig.from_preset(args.preset)
    repeats = max(1, round(args.side * args.side / cfg.reference_size ** 2)) if cfg.reference_size else 1
    steps = math.ceil(args.train_images * repeats / cfg.batch_size) * cfg.epochs
    flops = step_flops(cfg)
    cpu = cpu_step_seconds(cfg, args.cpu_batch)
    total = flops * steps * args.cells
    print(f"{args.preset} preset: {cfg.model} {cfg.model_options}, batch {cfg.batch_size} of {cfg.crop}^2 crops, "
          f"{cfg.epochs} epochs of {args.train_images} images of {args.side}^2 = {steps} steps per cell")
    print(f"one step: {flops / 1e12:.3g} TFLOP (counted), {cpu:.3g} s on this CPU with {torch.get_num_threads()} "
          f"threads (measured at batch {args.cpu_batch}, scaled)")
    print(f"one cell: {flops * steps / 1e15:.3g} PFLOP, {cpu * steps / 3600:.3g} CPU hours here (measured step)")
    print(f"the sweep of {args.cells} cells: {total / 1e18:.3g} EFLOP, {cpu * steps * args.cells / 3600:.3g} CPU "
          "hours here")
    for tf in (float(t) for t in args.tflops.split(",")):
        hours = total / (tf * 1e12) / 3600
        print(f"  ESTIMATE at {tf:.0f} TFLOPS sustained: {hours:.3g} GPU-hours ({hours / args.cells * 60:.3g} "
              "GPU-minutes per cell), training only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
