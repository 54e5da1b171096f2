"""`mstool data`: make synthetic datasets and check dataset folders."""

from __future__ import annotations

import click

from mstool import names

from .options import (
    device_option,
    echo,
    handle_errors,
    mask_mode_option,
    overwrite_option,
    quiet_option,
    seed_option,
    threads_option,
)

# Kept in step with mstool.data.SYNTH_KINDS and LAYOUTS by tests/cli/test_data.py; listed here so that
# `mstool data --help` does not import torch.


@click.group()
def data():
    """Make synthetic datasets and check dataset folders."""


@data.command("synth")
@click.option("--kind", type=click.Choice(names.SYNTH_KINDS), default="er", show_default=True,
              help="er: tubular network; mito: rods and blobs; nuc: textured nuclei; shapes: multi-class scene; "
                   "em: dark cell membranes in an electron micrograph.")
@click.option("--n", "n", type=click.IntRange(min=3), default=64, show_default=True, help="Number of images.")
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True, help="Image side in pixels.")
@click.option("--snr", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True,
              help="Signal-to-noise ratio: mean foreground contrast over background noise std.")
@click.option("--invert", is_flag=True, help="Turn the intensities over: bright objects become dark (and em's "
              "dark membranes bright).")
@seed_option
@device_option
@threads_option
@overwrite_option
@quiet_option
@click.argument("out", type=click.Path(file_okay=False))
@handle_errors
def synth(kind, n, size, snr, invert, seed, device, threads, overwrite, quiet, out):
    """Write a synthetic dataset to OUT in the paper layout (train/val/test, images/labels)."""
    from mstool.data import split_counts, write_synthetic_dataset

    from .options import runtime

    dev = runtime(device, threads)
    root = write_synthetic_dataset(out, kind, n, size, seed=seed, snr=snr, invert=invert, device=str(dev),
                                   overwrite=overwrite)
    train, val, test = split_counts(n)
    echo(f"wrote {n} {kind} images of {size} x {size} to {root} (train {train}, val {val}, test {test})", quiet=quiet)


@data.command("check")
@click.argument("root", type=click.Path())
@click.option("--layout", type=click.Choice(names.LAYOUT_CHOICES), default="auto", show_default=True,
              help="Folder layout; auto finds it.")
@click.option("--mask-suffix", default="_masks", show_default=True, help="Mask suffix of the cellpose layout.")
@mask_mode_option
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the report as JSON to this file (.json).")
@overwrite_option
@handle_errors
def check(root, layout, mask_suffix, mask_mode, json_path, overwrite):
    """Validate a dataset folder: counts, sizes, dtypes, foreground fraction per split, and every problem.

    Exits with status 2 when a problem is found.
    """
    from mstool.data import check_dataset

    report = check_dataset(root, layout, mask_mode=mask_mode, mask_suffix=mask_suffix, json_path=json_path,
                           overwrite=overwrite)
    click.echo(f"{report.root}: {report.layout} layout")
    for s in report.splits:
        d = s.as_dict()
        sizes = ", ".join(f"{k} ({v})" for k, v in d["sizes"].items()) or "-"
        dtypes = ", ".join(f"{k} ({v})" for k, v in d["dtypes"].items()) or "-"
        fg = "-" if d["foreground_fraction"] is None else f"{d['foreground_fraction']:.3f}"
        classes = ", ".join(str(k) for k in d["class_pixels"]) or "-"
        click.echo(f"  {s.split:<8} images {s.images:>5}  labelled {s.labelled:>5}  sizes {sizes}  dtypes {dtypes}  "
                   f"mask values {classes}  foreground {fg}")
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.ok:
        click.echo("no problems found")
        return
    click.echo(f"{len(report.problems)} problem(s):")
    for p in report.problems:
        click.echo(f"  - {p}")
    click.echo(f"Error: {report.root}: {len(report.problems)} problem(s) found, listed above", err=True)
    raise SystemExit(2)
