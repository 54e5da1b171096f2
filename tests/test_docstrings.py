"""Run every docstring `Example:` of the library as a test.

The examples run against the installed `mstool.*` modules (not `toolkit.*` copies that
`pytest --doctest-modules toolkit` would import under a second name, with a second set of classes).
"""

import doctest
import importlib
import pkgutil
import tempfile

import pytest

import mstool

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(mstool.__path__, "mstool.") if not m.name.startswith("mstool.cli")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name} (see captured stdout)"
    # torch keeps its own compile cache there; everything else would be the examples' leftovers
    left = sorted(p.name for p in system_temp.iterdir() if not p.name.startswith("torchinductor"))
    assert not left, f"the examples of {name} leave {left} in the system temp folder"
