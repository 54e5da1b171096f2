"""The ``mstool`` command: a group whose sub-commands are imported only when they are called."""

from __future__ import annotations

import importlib
import sys

import click

from mstool._version import __version__

from .options import one_line

# name -> "module:attribute"; keeps `mstool --help` free of torch imports.
_COMMANDS = {
    "data": ("mstool.cli.data:data", "Make synthetic datasets and check dataset folders."),
    "labels": ("mstool.cli.labels:labels", "Make noisy label sets (the label zoo) and analyse them."),
    "prior": ("mstool.cli.prior:prior", "Estimate a meta-structure density prior (density.npz) and draw it."),
    "train": ("mstool.cli.train:train", "Train a network on a dataset's labels made noisy by a spec, or on your "
                                        "own masks."),
    "evaluate": ("mstool.cli.train:evaluate", "Evaluate a trained network (val/oracle/fixed protocols, probe)."),
    "compare": ("mstool.cli.compare:compare", "Run the noisy-label comparison suite and write its report."),
    "segment": ("mstool.cli.segment:segment", "Segment images without labels, optionally guided by a density prior."),
    "predict": ("mstool.cli.predict:predict", "Segment new images with a network that `mstool train` trained."),
    "score": ("mstool.cli.score:score", "Score predicted masks against ground truth (Dice, IoU per image and pooled)."),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(_COMMANDS)

    def get_command(self, ctx, name):
        if name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's main, with usage errors on one line of stderr (``Error: ...``, exit 2) like every other error."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `mstool`: the help is the answer
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"Error: {one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

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
