"""Options shared by every command, and the error handling that turns library errors into one line + exit 2.

Nothing here imports torch: ``mstool --help`` must stay fast.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import warnings

import click

from mstool import names

__all__ = ["device_option", "seed_option", "threads_option", "overwrite_option", "quiet_option", "mask_mode_option",
           "mask_suffix_option", "mask_output_options", "runtime", "handle_errors", "WarningPrinter", "one_line",
           "echo", "check_spec"]

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
    "--overwrite", is_flag=True,
    help="Replace an existing output that mstool wrote, once the new one is complete (never an input, never a "
         "folder mstool did not write).")
# Kept in step with mstool.io.MASK_MODES by tests/cli/test_data.py; listed here so that --help does not import torch.
mask_mode_option = click.option(
    "--mask-mode", type=click.Choice(names.MASK_MODES), default=None,
    help="How to read masks: binary (0/1, 0/255), instance (object ids: > 0 is foreground), multiclass (class "
         "indices, 255 = ignore), cityscapes (labelIds -> the 19 train ids), auto. [default: the layout's: "
         "multiclass for VOC, instance for cellpose, cityscapes for Cityscapes labelIds, auto]")
mask_suffix_option = click.option(
    "--mask-suffix", default=None,
    help="Mask suffix of the cellpose layout: name.tif pairs with name{suffix}.tif. [default: _masks]")
quiet_option = click.option("-q", "--quiet", is_flag=True,
                            help="No progress bars, warnings or closing line; only errors.")


def check_spec(ctx, param, value):
    """A click callback: a label spec is checked when the command starts, so its error names the option; ``paper``
    (the paper's EMS, where an option takes it) passes as it is."""
    if value is None or value == "paper":
        return value
    from mstool.errors import SpecError
    from mstool.labels import parse_spec  # imports torch: only when the command runs

    try:
        parse_spec(value)
    except SpecError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def runtime(device: str, threads: int):
    """Resolve ``--device`` and ``--threads`` (imports torch, so call it inside a command body)."""
    from mstool.device import resolve_device, set_threads

    set_threads(threads)
    return resolve_device(device)


def handle_errors(func):
    """Report :class:`mstool.errors.MstoolError` as one line on stderr and exit with status 2; print warnings as
    they come, one line each (``-q`` silences them).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        quiet = bool(kwargs.get("quiet"))
        printer = WarningPrinter(quiet=quiet)
        if quiet:  # libraries that log (Ray) say only errors too
            logging.disable(logging.WARNING)
        try:
            with warnings.catch_warnings():
                from mstool.errors import MstoolWarning

                # every distinct message reaches the printer, which prints each once
                warnings.simplefilter("always", MstoolWarning)
                warnings.showwarning = printer
                result = func(*args, **kwargs)
            printer.summary()
            return result
        except click.exceptions.ClickException:
            raise
        except Exception as exc:  # the library's errors, and OS errors on files the user named
            from mstool.errors import MstoolError

            if isinstance(exc, (MstoolError, OSError)):
                click.echo(f"Error: {one_line(exc)}", err=True)
                sys.exit(2)
            raise
        finally:
            if quiet:
                logging.disable(logging.NOTSET)

    return wrapper


class WarningPrinter:
    """``warnings.showwarning`` for the CLI: ``Warning: <message>`` on one line of stderr, each message once.

    Warnings that differ only in the file they name and in their numbers (the same problem in many files) are
    printed for the first file; :meth:`summary` then says how many more there were.
    """

    def __init__(self, *, quiet: bool = False):
        self.quiet = quiet
        self.seen: set[str] = set()
        self.kinds: dict[str, list[str]] = {}

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = one_line(message)
        if text in self.seen:
            return
        self.seen.add(text)
        same = self.kinds.setdefault(re.sub(r"\d+", "#", text.split(": ", 1)[-1]), [])
        same.append(text)
        if len(same) == 1:
            self._echo(f"Warning: {text}")

    def summary(self) -> None:
        for texts in self.kinds.values():
            if len(texts) > 1:
                self._echo(f"Warning: the same for {len(texts) - 1} more (the last: {texts[-1].split(': ', 1)[0]})")

    def _echo(self, text: str) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)  # keeps open progress bars intact


def one_line(exc: BaseException | Warning | str) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def echo(text: str, *, quiet: bool = False) -> None:
    """A command's closing line on stdout, unless ``-q``."""
    if not quiet:
        click.echo(text)


def train_options(func):
    """Training overrides shared by `mstool train` and `mstool compare` (every TrainConfig field is reachable
    through --set KEY=VALUE or a config file; the common ones have their own flag)."""
    opts = [
        click.option("--preset", type=click.Choice(names.PRESETS), default=None,
                     help="Training preset: quick (CPU-friendly small U-Net) or paper (Luo et al.). [default: quick]"),
        click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="A TOML file of settings (top-level suite keys and a [train] table); flags override it."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per step."),
        click.option("--crop", type=click.IntRange(min=8), default=None, help="Side of the random training crop."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate."),
        click.option("--noise-mode", type=click.Choice(names.NOISE_MODES), default=None,
                     help="offline: one noisy draw per image; online: a fresh draw every epoch (the paper's flips)."),
        click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                     help="Any training setting, e.g. --set optimizer=sgd --set model_options.base=32 (repeatable)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def mask_output_options(*, scores: str, overlays: str):
    """The output folder and how images are read and masks written, shared by `mstool segment` and `mstool
    predict`; ``scores`` and ``overlays`` say what their --scores maps and overlay pictures hold."""
    opts = [
        click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
                     help="Output folder: new, empty, or (with --overwrite) one that mstool wrote; never inside or "
                          "around IMAGES."),
        click.option("--split", "splits", multiple=True,
                     help="When IMAGES is a dataset folder: only the images of this split (repeatable; default: "
                          "all)."),
        click.option("--page", type=click.IntRange(min=0), default=None,
                     help="The page to read of multi-page TIFF images (0-based)."),
        click.option("--scores", is_flag=True, help=f"Also write {scores} (scores/NAME.tif)."),
        click.option("--no-overlays", is_flag=True, help=f"Do not draw {overlays} pictures."),
        click.option("--format", "mask_format", type=click.Choice(names.MASK_FORMATS), default="png",
                     show_default=True, help="Mask file format."),
    ]

    def wrap(func):
        for opt in reversed(opts):
            func = opt(func)
        return func
    return wrap


def parse_settings(settings: tuple[str, ...]) -> dict:
    """Turn ``KEY=VALUE`` strings into a nested dict; values are read as TOML values (numbers, true/false, strings)."""
    import tomllib

    out: dict = {}
    for item in settings:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE; got {item!r}", param_hint="--set")
        key, raw = (s.strip() for s in item.split("=", 1))
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        target = out
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    return out


def train_overrides(file_values: dict, *, epochs=None, batch_size=None, crop=None, lr=None, noise_mode=None,
                    settings=()) -> dict:
    """Merge a config file's [train] table, --set values and the dedicated flags (in that order of precedence)."""
    train = dict(file_values.get("train", {}))
    for key, value in parse_settings(settings).items():
        if isinstance(value, dict) and isinstance(train.get(key), dict):
            train[key] = {**train[key], **value}
        else:
            train[key] = value
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("crop", crop), ("lr", lr),
                       ("noise_mode", noise_mode)):
        if value is not None:
            train[key] = value
    return train
