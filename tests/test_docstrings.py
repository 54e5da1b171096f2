"""Run every docstring `Example:` of the library as a test.

The examples run against the installed `mstool.*` modules (not `toolkit.*` copies that
`pytest --doctest-modules toolkit` would import under a second name, with a second set of classes).
"""

import doctest
import importlib
import pkgutil

import pytest

import mstool

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(mstool.__path__, "mstool.") if not m.name.startswith("mstool.cli")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name} (see captured stdout)"
