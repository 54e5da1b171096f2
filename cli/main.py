"""The ``mstool`` command: a group whose sub-commands are imported only when they are called."""

from __future__ import annotations

import importlib

import click

from mstool._version import __version__

# name -> "module:attribute"; keeps `mstool --help` free of torch imports.
_COMMANDS = {
    "data": ("mstool.cli.data:data", "Make synthetic datasets and check dataset folders."),
    "labels": ("mstool.cli.labels:labels", "Make noisy label sets (the label zoo) and analyse them."),
    "prior": ("mstool.cli.prior:prior", "Estimate a meta-structure density prior (density.npz) and draw it."),
    "train": ("mstool.cli.train:train", "Train a network on noisy labels made from a dataset's clean labels."),
    "evaluate": ("mstool.cli.train:evaluate", "Evaluate a trained network (val/oracle/fixed protocols, probe)."),
    "compare": ("mstool.cli.compare:compare", "Run the noisy-label comparison suite and write its report."),
    "segment": ("mstool.cli.segment:segment", "Segment images without labels, optionally guided by a density prior."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        if name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_version(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    import kornia
    import torch

    from mstool.device import describe_device

    click.echo(f"mstool {__version__}")
    click.echo(f"torch {torch.__version__}, kornia {kornia.__version__}")
    click.echo(f"device: {describe_device()}")
    ctx.exit()


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the mstool, torch and kornia versions and the device found, then exit.")
def cli():
    """mstool: segmentation with scarce, noisy or absent labels, built on label meta-structures.

    Networks learn the meta-structure of labels (per-class spatial densities), not the pixel labels;
    mstool makes, measures and uses meta-structures (Luo et al., arXiv 2205.00160).
    """


if __name__ == "__main__":  # pragma: no cover
    cli()
