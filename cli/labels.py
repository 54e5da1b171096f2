"""`mstool labels`: make noisy label sets with the label zoo and analyse them against the clean labels."""

from __future__ import annotations

import math

import click

from mstool import names

from .options import (
    check_spec,
    device_option,
    echo,
    handle_errors,
    mask_mode_option,
    overwrite_option,
    quiet_option,
    seed_option,
    threads_option,
)


@click.group()
def labels():
    """Make noisy label sets with the label zoo and analyse them against the clean labels."""


def _layout_options(func):
    func = mask_mode_option(func)
    func = click.option("--mask-suffix", default="_masks", show_default=True,
                        help="Mask suffix of the cellpose layout.")(func)
    func = click.option("--split", "splits", multiple=True,
                        help="Only these splits (repeatable; default: every split).")(func)
    func = click.option("--layout", type=click.Choice(names.LAYOUT_CHOICES), default="auto", show_default=True,
                        help="Folder layout of the clean labels; auto also accepts a plain folder of masks.")(func)
    return func


@labels.command("specs")
def specs():
    """List the label specs of the zoo (name, usage, taxonomy class, what it does)."""
    from mstool.labels import spec_help

    click.echo(spec_help())
    click.echo("Compose with '+', applied left to right: skeleton+shift:1+sample:0.1 is the paper's EMS.")


@labels.command("make")
@click.option("--clean", "clean", required=True, type=click.Path(exists=True, file_okay=False),
              help="Clean labels: a dataset folder or a folder of masks.")
@click.option("--spec", required=True, callback=check_spec,
              help="Label spec, e.g. sample:0.1, flip:0.45,0.45, dilate:2 (see `mstool labels specs`).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder (mirrors --clean); never inside or around --clean.")
@_layout_options
@seed_option
@device_option
@threads_option
@overwrite_option
@quiet_option
@handle_errors
def make(clean, spec, out, layout, splits, mask_suffix, mask_mode, seed, device, threads, overwrite, quiet):
    """Write a noisy copy of a label set, mask for mask, with noise.json recording how."""
    from mstool.runs import make_label_set

    from .options import runtime

    dev = runtime(device, threads)
    meta = make_label_set(clean, spec, out, seed=seed, layout=layout, splits=splits or None,
                          mask_suffix=mask_suffix, mask_mode=mask_mode, device=dev, overwrite=overwrite)
    echo(f"wrote {meta['masks']} {meta['spec']} masks to {out} (seed {seed})", quiet=quiet)


def _pair_options(func):
    """--clean, --noisy (repeatable) and the clean set's layout options: the label sets compared."""
    func = _layout_options(func)
    func = click.option("--noisy", "noisy", required=True, multiple=True,
                        type=click.Path(exists=True, file_okay=False),
                        help="A noisy label set named like --clean, file for file (repeatable: one report "
                             "each).")(func)
    return click.option("--clean", "clean", required=True, type=click.Path(exists=True, file_okay=False),
                        help="Clean labels: a dataset folder or a folder of masks.")(func)


@labels.command("analyze")
@_pair_options
@click.option("--distance", type=click.IntRange(min=1), default=2, show_default=True,
              help="Half-width in pixels of the boundary band for the boundary fraction.")
@click.option("--bandwidth", "bandwidths", type=click.IntRange(min=1), multiple=True,
              help="Box-window half-widths of the meta-structure similarity (repeatable; default 2, 4, 8).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write every statistic as JSON to this file (.json).")
@overwrite_option
@device_option
@threads_option
@handle_errors
def analyze(clean, noisy, layout, splits, mask_suffix, mask_mode, distance, bandwidths, json_path, overwrite, device,
            threads):
    """A table per noisy label set: NTM, rank, det, MI, boundary fraction, meta-structure similarity, taxonomy."""
    from mstool.runs import analyze_label_sets

    from .options import runtime

    reports = analyze_label_sets(clean, list(noisy), layout=layout, splits=splits or None, mask_suffix=mask_suffix,
                                 mask_mode=mask_mode, distance=distance, bandwidths=tuple(bandwidths) or (2, 4, 8),
                                 json_path=json_path, overwrite=overwrite, device=runtime(device, threads))
    for rep in reports:
        click.echo(_format_report(rep))


@labels.command("audit")
@_pair_options
@click.option("--bandwidth", type=click.IntRange(min=1), default=1, show_default=True,
              help="Box-window half-width of the densities.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Resamples of the images for the score's 95% interval (0: none).")
@click.option("--pictures", type=click.Path(file_okay=False), default=None,
              help="Folder to draw one picture per noisy set into.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write every statistic as JSON to this file (.json).")
@seed_option
@overwrite_option
@device_option
@threads_option
@handle_errors
def audit(clean, noisy, layout, splits, mask_suffix, mask_mode, bandwidth, bootstrap, pictures, json_path, seed,
          overwrite, device, threads):
    """Before training: will these noisy labels train like clean ones? The expected-density score per set.

    The score estimates how alike the noisy labels' *expected* density (what a network learns once it averages
    their pixel noise) and the clean density are; the one-draw similarity beside it is what the labels look like.
    The clean labels may cover only some of the noisy set's images: those are used, and counted.
    """
    from mstool.runs import audit_label_sets

    from .options import runtime

    audits = audit_label_sets(clean, list(noisy), layout=layout, splits=splits or None, mask_suffix=mask_suffix,
                              mask_mode=mask_mode, bandwidth=bandwidth, bootstrap=bootstrap, seed=seed,
                              pictures=pictures, json_path=json_path, overwrite=overwrite,
                              device=runtime(device, threads))
    for a in audits:
        e = a.expected
        if math.isnan(e.score):
            score = "expected-density score undefined: the clean labels hold no foreground to compare with"
        else:
            # no resample, or one image: no interval to give
            interval = (f"[95% interval {_fmt(e.low)}, {_fmt(e.high)}]" if bootstrap and e.images > 1 else
                        "[no interval: --bootstrap 0]" if e.images > 1 else "[no interval: one image]")
            score = (f"expected-density score {_fmt(e.score)}  {interval}   "
                     f"one-draw similarity {_fmt(e.one_draw)}   structure {_fmt(e.signal, 2)} of the variance")
        click.echo(f"{a.name}  ({a.used} of {a.available} masks have clean labels and were used)\n"
                   f"  {score}\n  {a.taxonomy}: {a.verdict}")
    if pictures:
        click.echo(f"pictures: {pictures}")


def _fmt(v, digits=3) -> str:
    return "nan" if v is None else f"{v:.{digits}f}"


def _format_report(rep) -> str:
    info, sim = rep.info, rep.similarity
    ntm = "; ".join("[" + ", ".join(_fmt(x) for x in row) + "]" for row in info["ntm"])
    det = "-" if info.get("det") is None else _fmt(info["det"])
    sims = "  ".join(f"{k} {_fmt(v)}" for k, v in sim.items())
    # no changed pixel (clean or partial labels): where changes lie is not defined, which "nan" said badly
    boundary = ("boundary fraction - (no pixel changed)" if info["boundary_fraction"] is None else
                f"boundary fraction {_fmt(info['boundary_fraction'])} (uniform noise would give "
                f"{_fmt(info['expected_boundary_fraction'])})")
    return (
        f"{rep.name}\n"
        f"  taxonomy {info['taxonomy']}   NTM rows=clean, cols=noisy: {ntm}\n"
        f"  rank {info['rank']}  det {det}  condition {_fmt(info['condition'], 2)}  "
        f"MI {_fmt(info['mutual_information'])} of H(clean) {_fmt(info['clean_entropy'])} bits\n"
        f"  changed {_fmt(info['changed_fraction'])}  {boundary}\n"
        f"  meta-structure similarity to clean: {sims}\n"
        f"  expected-density score (noise averaged out, h=1): {_fmt(info.get('expected_score'))}"
    )
