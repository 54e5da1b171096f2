"""`mstool compare`: the paper's noisy-label experiment on your data, as one resumable command with a report."""

from __future__ import annotations

from pathlib import Path

import click

from mstool import names

from .options import (
    device_option,
    echo,
    handle_errors,
    mask_mode_option,
    mask_suffix_option,
    quiet_option,
    threads_option,
    train_options,
    train_overrides,
)


@click.command("compare")
@click.option("--data", default=None, metavar="ROOT|synth:KIND",
              help=f"A dataset folder, or synth:{'|'.join(names.SYNTH_KINDS)} (generated into OUT/data). "
                   "[default: synth:er]")
@click.option("--labels", "labels", multiple=True,
              help="Label specs, comma-separated (a comma before a letter starts the next spec, so flip:0.2,0.2 "
                   "stays one) or repeated. [default: clean, sample:0.1, sample:0.5, flip:0.2,0.2, flip:0.45,0.45, "
                   "flip:0.9,0.9, dilate:2, erode:1, skeleton, random:0.3; `none`: no supervised cells]. "
                   "NAME=FOLDER trains on real noisy masks named like the training images, e.g. "
                   "clean,crowd=annotations/crowd.")
@click.option("--unsupervised", "unsupervised", multiple=True, metavar="METHODS",
              help="Unsupervised methods evaluated beside the supervised rows on the same test images, "
                   "comma-separated or repeated: NAME[:OPTION,...], e.g. otsu,local,kmeans,dfc,igtt,igtt:no-ems,"
                   "igtt:prior=otsu (prior=M: a prior bootstrapped from M's masks, no labels; "
                   "prior=labels:SPEC: the prior of rough labels made from the test labels by SPEC; "
                   "scribbles=labels:SPEC, igtt and dfc: that partial annotation itself, scored where nothing "
                   "was drawn).")
@click.option("--model", "models", multiple=True,
              help=f"Networks ({', '.join(names.MODELS)}), comma-separated or repeated. [default: unet]")
@click.option("--seeds", default=None, help="Seeds, comma-separated. [default: 0,1,2]")
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Run folder (required unless --list-cells).")
@train_options
@click.option("--layout", type=click.Choice(names.LAYOUT_CHOICES), default=None,
              help="Dataset layout. [default: auto]")
@click.option("--synth-n", type=click.IntRange(min=3), default=None,
              help="Images of a synth: dataset. [default: 24 (quick) or 64 (paper)]")
@click.option("--synth-size", type=click.IntRange(min=32), default=None,
              help="Image side of a synth: dataset. [default: 128 (quick) or 256 (paper)]")
@click.option("--synth-invert", is_flag=True, default=None,
              help="Turn a synth: dataset over: dark objects on a bright background.")
@click.option("--synth-seed", type=click.IntRange(min=0), default=None,
              help="Seed of a synth: dataset: another draw of the same kind, to judge a method on images it was "
                   "not tuned on. [default: 0]")
@click.option("--cell", "cells", multiple=True,
              help="Run only this cell (repeatable), e.g. for one job per cell on a cluster; see --list-cells.")
@click.option("--list-cells", is_flag=True, help="Print the cell ids of the suite and exit.")
@click.option("--report-only", is_flag=True, help="Only (re)write the results and report of finished cells.")
@click.option("--keep-checkpoints", is_flag=True,
              help="Keep each finished cell's checkpoint.pt (only needed to resume; model.pt is always kept).")
@click.option("--executor", type=click.Choice(names.EXECUTORS), default="local", show_default=True,
              help="Where the cells run: this process, or one Ray task per cell (pip install 'mstool[ray]').")
@click.option("--address", default=None,
              help="Ray cluster to join (auto, ray://HOST:10001). [default: start a local Ray instance]")
@click.option("--cpus-per-cell", type=click.FloatRange(min=0, min_open=True), default=1, show_default=True,
              help="CPUs each Ray task asks for (its worker trains with that many threads).")
@click.option("--gpus-per-cell", type=click.FloatRange(min=0), default=0, show_default=True,
              help="GPUs each Ray task asks for; a fraction lets several small cells share one GPU.")
@mask_mode_option
@mask_suffix_option
@device_option
@threads_option
@quiet_option
@handle_errors
def compare(data, labels, unsupervised, models, seeds, out, preset, config_file, epochs, batch_size, crop, lr,
            noise_mode, settings, layout, synth_n, synth_size, synth_invert, synth_seed, cells, list_cells, report_only,
            keep_checkpoints, executor, address, cpus_per_cell, gpus_per_cell, mask_mode, mask_suffix, device, threads,
            quiet):
    """Train one network per label spec, model and seed, evaluate each honestly, and report.

    Writes OUT/results.csv, results.json, summary.md, plots/*.png and report.html. Re-running into OUT skips
    finished cells and resumes interrupted ones.
    """
    from mstool.compare import (
        SuiteConfig,
        parse_list,
        read_config_file,
        run_and_report,
        split_method_list,
        write_results,
    )

    from ._progress import TrainingBars
    from .options import runtime

    if out is None and not list_cells:  # listing the cells writes nothing, so it needs no folder
        raise click.UsageError("Missing option '-o' / '--out' (the run folder)")
    if report_only:  # the run folder's own config.toml says what the suite is
        summary = write_results(out)
        echo(f"wrote the report of {summary['rows']} finished cells to {Path(out) / 'report.html'}", quiet=quiet)
        return
    values = read_config_file(config_file) if config_file else {}
    values = {k: v for k, v in values.items() if k != "train"} | {"train": train_overrides(
        values, epochs=epochs, batch_size=batch_size, crop=crop, lr=lr, noise_mode=noise_mode, settings=settings)}
    for key, given in (("data", data), ("preset", preset), ("layout", layout), ("synth_n", synth_n),
                       ("synth_size", synth_size), ("synth_invert", synth_invert), ("synth_seed", synth_seed),
                       ("mask_mode", mask_mode), ("mask_suffix", mask_suffix)):
        if given is not None:
            values[key] = given
    if labels:
        values["labels"] = [] if [v.strip().lower() for v in labels] == ["none"] else parse_list(labels)
    if unsupervised:
        values["unsupervised"] = split_method_list(unsupervised)
    if models:
        values["models"] = parse_list(models, kind="models")
    if seeds is not None:
        try:
            values["seeds"] = [int(s) for s in parse_list(seeds, kind="seeds")]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers; got {seeds!r}",
                                     param_hint="--seeds") from None
    suite = SuiteConfig.from_dict(values)
    if list_cells:
        for cell in suite.cells():
            click.echo(cell.id)
        return
    dev = runtime(device, threads)
    plan = suite.cells() if not cells else list(cells)
    bars = TrainingBars(quiet=quiet, cells=len(plan))
    try:
        summary = run_and_report(suite, out, device=dev, cells=list(cells) or None, progress=bars,
                                 keep_checkpoints=keep_checkpoints, executor=executor, address=address,
                                 cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell)
    finally:
        bars.close()
    echo(f"{summary['rows']} of {summary['planned']} cells finished; summary: {Path(out) / 'summary.md'}, report: "
         f"{Path(out) / 'report.html'}", quiet=quiet)
    if summary["failed"]:  # the others went on; say which failed and leave a status scripts can see
        click.echo(f"Error: {len(summary['failed'])} cell(s) failed ({', '.join(summary['failed'][:3])}"
                   f"{' ...' if len(summary['failed']) > 3 else ''}); their errors are in {Path(out) / 'summary.md'}",
                   err=True)
        raise SystemExit(1)
