"""Options shared by every command, and the error handling that turns library errors into one line + exit 2.

Nothing here imports torch: ``mstool --help`` must stay fast.
"""

from __future__ import annotations

import functools
import sys

import click

__all__ = ["device_option", "seed_option", "threads_option", "overwrite_option", "verbosity_option",
           "runtime", "handle_errors"]

device_option = click.option(
    "--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N|mps",
    help="Where tensors live; auto picks CUDA, then MPS, then the CPU.")
seed_option = click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True,
    help="Seed of every random draw; the same seed gives the same output on the CPU.")
threads_option = click.option(
    "--threads", type=click.IntRange(min=0), default=0, show_default=True,
    help="CPU threads for torch (0 keeps torch's default).")
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an existing non-empty output (only once the new output is complete).")
verbosity_option = click.option(
    "-v", "--verbose", "verbosity", count=True, help="More messages (repeatable).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars or messages, only errors.")


def runtime(device: str, threads: int):
    """Resolve ``--device`` and ``--threads`` (imports torch, so call it inside a command body)."""
    from mstool.device import resolve_device, set_threads

    set_threads(threads)
    return resolve_device(device)


def handle_errors(func):
    """Report :class:`mstool.errors.MstoolError` as one line on stderr and exit with status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:  # the library's errors, and OS errors on files the user named
            from mstool.errors import MstoolError

            if isinstance(exc, (MstoolError, OSError)):
                click.echo(f"Error: {_one_line(exc)}", err=True)
                sys.exit(2)
            raise

    return wrapper


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())
