"""No name is written twice: the CLI's choices come from :mod:`mstool.names`, and so do the registries."""

import click
import pytest

from mstool import names
from mstool.cli.main import cli
from mstool.data import LAYOUTS, synth_kinds
from mstool.engine import NOISE_MODES, PRESETS
from mstool.io import MASK_MODES
from mstool.losses import LOSSES
from mstool.metastructure import KERNELS
from mstool.models import MODELS
from mstool.unsupervised import FOREGROUND_RULES, METHODS


def _choices():
    """Every option of every command with a fixed choice list: (command path, option name, choices)."""

    ctx = click.Context(cli)

    def walk(command, path):
        if isinstance(command, click.Group):  # the top group loads its commands lazily: ask it for each
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), f"{path} {name}")
            return
        for param in command.params:
            if isinstance(param.type, click.Choice):
                yield path, param.name, tuple(param.type.choices)

    return list(walk(cli, "mstool"))


REGISTRIES = {
    "layout": lambda: ("auto", *LAYOUTS.names()),
    "kind": synth_kinds,
    "model": MODELS.names,
    "method": METHODS.names,
    "foreground": lambda: FOREGROUND_RULES,
    "mask_mode": lambda: MASK_MODES,
    "preset": lambda: tuple(PRESETS),
    "noise_mode": lambda: NOISE_MODES,
    "kernel": lambda: KERNELS,
    "mask_format": lambda: names.MASK_FORMATS,
    "executor": lambda: names.EXECUTORS,
}


def test_every_cli_choice_list_equals_its_registry():
    found = _choices()
    assert len(found) >= 12  # the walk reaches the subcommands
    unknown = sorted({name for _, name, _ in found if name not in REGISTRIES})
    assert not unknown, f"options with choices but no registry to compare with: {unknown}"
    for path, name, choices in found:
        assert list(choices) == list(REGISTRIES[name]()), f"{path} --{name}"


@pytest.mark.parametrize(("declared", "registered"), [
    (names.LAYOUTS, lambda: LAYOUTS.names()), (names.SYNTH_KINDS, synth_kinds), (names.MODELS, MODELS.names),
    (names.LOSSES, LOSSES.names), (names.UNSUPERVISED_METHODS, METHODS.names),
    (names.FOREGROUND_RULES, lambda: FOREGROUND_RULES), (names.MASK_MODES, lambda: MASK_MODES),
    (names.PRESETS, lambda: tuple(PRESETS)), (names.NOISE_MODES, lambda: NOISE_MODES),
    (names.KERNELS, lambda: KERNELS),
])
def test_the_names_module_declares_every_registered_name_in_order(declared, registered):
    assert list(declared) == list(registered())


def test_a_registry_refuses_a_name_not_declared():
    from mstool._registry import Registry
    from mstool.errors import ParameterError

    reg = Registry("widget", declared=("a", "b"))
    reg.add("a", 1)
    with pytest.raises(ParameterError, match=r"widget 'c' is not declared in mstool.names \(declared: a, b\)"):
        reg.add("c", 3)
