"""`mstool train` and `mstool evaluate`: one cell of the comparison suite, as two commands users can call alone."""

from __future__ import annotations

import click

from mstool import names

from .options import (
    device_option,
    echo,
    handle_errors,
    mask_mode_option,
    mask_suffix_option,
    overwrite_option,
    quiet_option,
    seed_option,
    threads_option,
    train_options,
    train_overrides,
)

# keys of a comparison's config file that name what `mstool train` takes as options
_COMPARE_ONLY = {"labels", "models", "seeds", "unsupervised"}


@click.command("train")
@click.option("--data", required=True, metavar="ROOT|synth:KIND",
              help=f"A dataset folder, or synth:{'|'.join(names.SYNTH_KINDS)} for built-in data (written to OUT/data).")
@click.option("--labels", "spec", default="clean", show_default=True,
              help="Label spec the clean training labels are turned into (see `mstool labels specs`), or "
                   "NAME=FOLDER: your own masks of the training images, named like them (255: not labelled), "
                   "trained on as they are; validation and test keep the dataset's labels.")
@click.option("--model", type=click.Choice(names.MODELS), default="unet", show_default=True, help="The network.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoint.pt, model.pt, curves.csv, train.json.")
@train_options
@click.option("--layout", type=click.Choice(names.LAYOUT_CHOICES), default=None,
              help="The dataset layout. [default: a --config file's, else auto]")
@mask_mode_option
@mask_suffix_option
@click.option("--lazy", is_flag=True,
              help="Read the train and val splits item by item (data larger than memory; needs both splits).")
@click.option("--ddp", is_flag=True,
              help="One training across the processes torchrun starts (torchrun --nproc-per-node N -m mstool.cli "
                   "train --ddp ...): effective batch = --batch-size x N, the learning rate unchanged.")
@seed_option
@device_option
@threads_option
@quiet_option
@handle_errors
def train(data, spec, model, out, preset, config_file, epochs, batch_size, crop, lr, noise_mode, settings, layout,
          mask_mode, mask_suffix, lazy, ddp, seed, device, threads, quiet):
    """Train a network on noisy labels made from a dataset's clean labels (--labels SPEC), or on your own masks
    of its training images (--labels NAME=FOLDER); resumes a killed run in OUT.

    Validation: the dataset's val split, or 20% of train held out when it has none, or when it has no labelled
    test split (VOC, Cityscapes), where val is the test set; the closing lines say which. A --config file gives
    the preset, the data settings (layout, fit, mask_mode, mask_suffix, val_fraction, synth_*) and a [train]
    table; the options given here win.
    """
    from mstool.compare import LabelEntry, SuiteConfig, read_config_file
    from mstool.engine.distributed import is_main
    from mstool.runs import run_config, train_run

    from ._progress import TrainingBars
    from .options import runtime

    file_values = read_config_file(config_file) if config_file else {}
    elsewhere = sorted(set(file_values) & _COMPARE_ONLY)
    if elsewhere:
        raise click.BadParameter(f"{config_file}: {elsewhere[0]!r} is a `mstool compare` setting; `mstool train` "
                                 "takes --labels, --model and --seed", param_hint="--config")
    values = {k: v for k, v in file_values.items() if k != "train"} | {"train": train_overrides(
        file_values, epochs=epochs, batch_size=batch_size, crop=crop, lr=lr, noise_mode=noise_mode,
        settings=settings)}
    for key, given in (("data", data), ("preset", preset), ("layout", layout), ("mask_mode", mask_mode),
                       ("mask_suffix", mask_suffix)):
        if given is not None:
            values[key] = given
    suite = SuiteConfig.from_dict(values)  # the same keys and checks as `mstool compare --config`
    entry = LabelEntry.parse(spec)  # a zoo spec, or a folder of the user's own masks (NAME=FOLDER)
    if entry.folder is not None and lazy:
        raise click.BadParameter("a label folder is read whole; leave out --lazy", param_hint="--labels")
    cfg = run_config(suite.preset, suite.train, labels=entry.training_spec, model=model, seed=seed)
    source = suite.source
    dev = runtime(device, threads)
    bars = TrainingBars(quiet=quiet)
    try:
        run = train_run(source, out, cfg, device=dev, progress=bars, ddp=ddp, lazy=lazy,
                        labels_from=None if entry.folder is None else entry.folder[1])
    finally:
        bars.close()
    for note in run.record.get("notes", []):  # how the splits were made, when the dataset did not say
        echo(f"data: {note}", quiet=quiet or not is_main())
    last = run.result.history[-1]
    score = next((f"{k} {last[k]:.3f}" for k in ("val_dice", "val_miou") if last.get(k) is not None), "")
    processes = run.record.get("processes", 1)
    used = entry.text if entry.folder else cfg.label_spec
    echo(f"trained {model} on {used} labels for {cfg.epochs} epochs in {run.result.seconds:.1f} s "
         f"({score}); model: {run.result.model_path}"
         + (f" ({processes} processes, effective batch {run.record['effective_batch_size']})" if processes > 1
            else ""), quiet=quiet or not is_main())


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
@click.option("--lazy/--eager", default=None,
              help="Read the splits item by item (data larger than memory; thresholds on the edges of 1024 bins, "
                   "the probe fitted on 64 training items) or whole. Default: as the run was trained.")
@mask_mode_option
@seed_option
@device_option
@threads_option
@overwrite_option
@quiet_option
@handle_errors
def evaluate(checkpoint, data, json_path, no_probe, tile, lazy, mask_mode, seed, device, threads, overwrite, quiet):
    """Evaluate a trained network on the test split: the val, oracle and fixed threshold protocols, polarity,
    per-image and pooled metrics, and the feature probe."""
    from mstool.runs import evaluate_run

    from .options import runtime

    run = evaluate_run(checkpoint, data=data, out=json_path, probe=not no_probe, tile=tile, mask_mode=mask_mode,
                       seed=seed, device=runtime(device, threads), overwrite=overwrite, lazy=lazy)
    metrics, result, target = run.metrics, run.result, run.path
    if result.protocols is not None:
        for name in ("val", "oracle", "fixed"):
            if f"{name}/dice" in metrics:
                echo(f"{name:<7} Dice {metrics[f'{name}/dice']:.3f}  IoU {metrics[f'{name}/iou']:.3f}  "
                     f"threshold {metrics[f'{name}/threshold']:.3f}  polarity {metrics[f'{name}/polarity']:+d} "
                     f"({metrics[f'{name}/polarity_source']})", quiet=quiet)
        if "labels/dice" in metrics:
            echo(f"labels  Dice {metrics['labels/dice']:.3f}  IoU {metrics['labels/iou']:.3f}  threshold "
                 f"{metrics['labels/threshold']:.3f}  polarity {metrics['labels/polarity']:+d} (the training labels' "
                 "NTM: no validation label)", quiet=quiet)
    else:
        echo(f"mIoU {metrics.get('argmax/miou', float('nan')):.3f}  "
             f"pixel accuracy {metrics.get('argmax/pixel_accuracy', float('nan')):.3f}", quiet=quiet)
    if "probe/dice" in metrics:
        echo(f"probe   Dice {metrics['probe/dice']:.3f}", quiet=quiet)
    echo(f"wrote {target}", quiet=quiet)
