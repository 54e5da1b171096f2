"""`mstool train` and `mstool evaluate`: one cell of the comparison suite, as two commands users can call alone."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import (
    device_option,
    echo,
    handle_errors,
    mask_mode_option,
    overwrite_option,
    quiet_option,
    seed_option,
    threads_option,
    train_options,
    train_overrides,
)


@click.command("train")
@click.option("--data", required=True, metavar="ROOT|synth:KIND",
              help="A dataset folder, or synth:er|mito|nuc|shapes for built-in data (written to OUT/data).")
@click.option("--labels", "spec", default="clean", show_default=True,
              help="Label spec the clean training labels are turned into (see `mstool labels specs`).")
@click.option("--model", default="unet", show_default=True, help="Network: unet, deeplabv3plus or hrnet.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoint.pt, model.pt, curves.csv, train.json.")
@train_options
@click.option("--layout", type=click.Choice(("auto", "paper", "voc", "cellpose")), default="auto", show_default=True)
@mask_mode_option
@seed_option
@device_option
@threads_option
@quiet_option
@handle_errors
def train(data, spec, model, out, preset, config_file, epochs, batch_size, crop, lr, noise_mode, settings, layout,
          mask_mode, seed, device, threads, quiet):
    """Train a network on noisy labels made from a dataset's clean labels; resumes a killed run in OUT.

    Validation: the dataset's val split, or (documented fallback) 20% of train held out.
    """
    from mstool._fs import atomic_path, check_run_dir, open_run_dir
    from mstool.compare import Cell, SuiteConfig, prepare_data, read_config_file
    from mstool.engine import train as train_fn

    from ._progress import TrainingBars
    from .options import runtime

    file_values = read_config_file(config_file) if config_file else {}
    overrides = train_overrides(file_values, epochs=epochs, batch_size=batch_size, crop=crop, lr=lr,
                                noise_mode=noise_mode, settings=settings)
    suite = SuiteConfig(data=data, labels=[spec], models=[model], seeds=[seed], layout=layout,
                        preset=preset or file_values.get("preset", "quick"), train=overrides, mask_mode=mask_mode)
    cfg = suite.train_config(Cell(suite.labels[0], model, seed))
    inputs = [] if suite.is_synthetic else [data]
    out = check_run_dir(out, kind="train", inputs=inputs)
    dev = runtime(device, threads)
    # a dataset folder is read (and a bad one refused) before the run folder is made; synth: data goes into it
    dataset = None if suite.is_synthetic else prepare_data(suite, out)
    open_run_dir(out, kind="train", inputs=inputs)
    dataset = dataset or prepare_data(suite, out)
    bars = TrainingBars(quiet=quiet)
    try:
        result = train_fn(cfg, dataset.train_images, dataset.train_labels, out_dir=out, val_images=dataset.val_images,
                          val_labels=dataset.val_labels, num_classes=dataset.num_classes, device=dev, progress=bars)
    finally:
        bars.close()
    info = {"data": str(dataset.root), "layout": suite.layout, "fit": suite.fit, "val_fraction": suite.val_fraction,
            "synth_seed": suite.synth_seed, "mask_mode": suite.mask_mode, "notes": dataset.notes,
            "config": cfg.to_dict(drop_none=True), "label_stats": result.label_stats}
    with atomic_path(out / "train.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2, default=str) + "\n")
    last = result.history[-1]
    score = next((f"{k} {last[k]:.3f}" for k in ("val_dice", "val_miou") if last.get(k) is not None), "")
    echo(f"trained {model} on {suite.labels[0]} labels for {cfg.epochs} epochs in {result.seconds:.1f} s ({score}); "
         f"model: {result.model_path}", quiet=quiet)


@click.command("evaluate")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False),
              help="model.pt (or checkpoint.pt) written by `mstool train`.")
@click.option("--data", default=None, type=click.Path(exists=True, file_okay=False),
              help="Dataset folder (default: the one recorded in train.json beside the checkpoint).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write every metric (.json; default: evaluation.json beside the checkpoint, replaced "
                   "when mstool wrote that folder).")
@click.option("--no-probe", is_flag=True, help="Skip the linear feature probe.")
@click.option("--tile", type=click.IntRange(min=16), default=None, help="Predict in tiles of this side.")
@mask_mode_option
@seed_option
@device_option
@threads_option
@overwrite_option
@quiet_option
@handle_errors
def evaluate(checkpoint, data, json_path, no_probe, tile, mask_mode, seed, device, threads, overwrite, quiet):
    """Evaluate a trained network on the test split: the val, oracle and fixed threshold protocols, polarity,
    per-image and pooled metrics, and the feature probe."""
    from mstool._fs import atomic_path, check_output_file, is_mstool_folder
    from mstool.compare import SuiteConfig, prepare_data
    from mstool.device import make_generator
    from mstool.engine import evaluate as evaluate_fn
    from mstool.errors import FileMissingError

    from .options import runtime

    ckpt = Path(checkpoint)
    recorded = {}
    if (ckpt.parent / "train.json").exists():
        recorded = json.loads((ckpt.parent / "train.json").read_text())
    root = data or recorded.get("data")
    if root is None:
        raise FileMissingError(f"{ckpt.parent}: no train.json beside the checkpoint; name the dataset with --data")
    suite = SuiteConfig(data=str(root), labels=["clean"], layout=recorded.get("layout", "auto"),
                        fit=recorded.get("fit"), val_fraction=recorded.get("val_fraction", 0.2),
                        synth_seed=recorded.get("synth_seed", 0), mask_mode=mask_mode or recorded.get("mask_mode"))
    target = Path(json_path) if json_path else ckpt.parent / "evaluation.json"
    # the default file lives in the training run's own folder, which evaluation may refresh
    own = json_path is None and is_mstool_folder(ckpt.parent)
    check_output_file(target, overwrite=overwrite or own, inputs=[checkpoint, root], suffixes=(".json",))
    dev = runtime(device, threads)
    dataset = prepare_data(suite, ckpt.parent)
    result = evaluate_fn(ckpt, dataset.test_images, dataset.test_labels, val_images=dataset.val_images,
                         val_labels=dataset.val_labels, train_images=dataset.train_images,
                         train_labels=dataset.train_labels, device=dev, probe=not no_probe, tile=tile,
                         generator=make_generator(seed))
    metrics = {**result.metrics, "data_notes": dataset.notes}
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(metrics, indent=1, default=str) + "\n")
    if result.protocols is not None:
        for name in ("val", "oracle", "fixed"):
            if f"{name}/dice" in metrics:
                echo(f"{name:<7} Dice {metrics[f'{name}/dice']:.3f}  IoU {metrics[f'{name}/iou']:.3f}  "
                     f"threshold {metrics[f'{name}/threshold']:.3f}  polarity {metrics[f'{name}/polarity']:+d} "
                     f"({metrics[f'{name}/polarity_source']})", quiet=quiet)
    else:
        echo(f"mIoU {metrics.get('argmax/miou', float('nan')):.3f}  "
             f"pixel accuracy {metrics.get('argmax/pixel_accuracy', float('nan')):.3f}", quiet=quiet)
    if "probe/dice" in metrics:
        echo(f"probe   Dice {metrics['probe/dice']:.3f}", quiet=quiet)
    echo(f"wrote {target}", quiet=quiet)
