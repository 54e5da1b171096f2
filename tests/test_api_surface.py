"""The public API as a committed snapshot: names leave (or arrive) only on purpose.

Every public module of the library (``mstool`` and each ``mstool.<name>...`` whose parts do not start with ``_``,
found by walking the package folder) must define ``__all__``; the sorted names are compared with
``tests/api_surface.txt``, one ``module.name`` a line. After an intended change, regenerate the snapshot with

    python tests/test_api_surface.py --update

and commit it with the change. ``python tests/test_api_surface.py`` alone prints the difference.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

import mstool

SNAPSHOT = Path(__file__).resolve().with_name("api_surface.txt")
UPDATE = "python tests/test_api_surface.py --update"
HEADER = f"# Public names (__all__) of mstool's public modules, one module.name a line. Regenerate: {UPDATE}\n"


def public_modules() -> list[str]:
    """``mstool`` and the dotted names of its public packages and modules, sorted (files only; nothing imported).

    ``mstool.cli`` (the command line, cli/ in the repository) is not library API and is left out; it lies under
    the package folder only in a regular, non-editable install.
    """
    root = Path(mstool.__file__).resolve().parent
    names = ["mstool"]
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        parts = list(rel.parent.parts) + ([] if path.name == "__init__.py" else [path.stem])
        if not parts or parts[0] == "cli" or any(p.startswith("_") for p in parts):
            continue
        # a folder is a package only with an __init__.py, in every folder above it too
        if not all((root.joinpath(*rel.parent.parts[:i]) / "__init__.py").is_file()
                   for i in range(1, len(rel.parent.parts) + 1)):
            continue
        names.append(".".join(["mstool", *parts]))
    return sorted(set(names))


def _exports(name: str) -> list[str]:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        raise AssertionError(f"{name} is public but defines no __all__; add one (or make the module private: _name)")
    return list(exported)


def current_surface() -> list[str]:
    """Sorted ``module.name`` lines of the code that is imported now."""
    return sorted(f"{name}.{export}" for name in public_modules() for export in set(_exports(name)))


def read_snapshot() -> list[str]:
    lines = SNAPSHOT.read_text(encoding="utf-8").splitlines() if SNAPSHOT.is_file() else []
    return [line for line in lines if line.strip() and not line.startswith("#")]


def write_snapshot(lines: list[str]) -> None:
    SNAPSHOT.write_text(HEADER + "".join(f"{line}\n" for line in sorted(lines)), encoding="utf-8", newline="\n")


def difference(snapshot: list[str], current: list[str]) -> str:
    """A readable difference, or "" when they agree."""
    added = sorted(set(current) - set(snapshot))
    removed = sorted(set(snapshot) - set(current))
    if not added and not removed:
        return ""
    text = [f"the public API differs from {SNAPSHOT.name}:"]
    text += [f"  removed: {line}" for line in removed]
    text += [f"  added:   {line}" for line in added]
    text.append(f"if the change is intended, regenerate the snapshot and commit it: {UPDATE}")
    return "\n".join(text)


# --------------------------------------------------------------------------------------------- tests
def test_public_modules_are_found():
    modules = public_modules()
    assert modules[0] == "mstool" and "mstool.labels" in modules and "mstool.io.images" in modules
    assert not [m for m in modules if any(p.startswith("_") for p in m.split("."))]


def test_api_surface_matches_the_snapshot():
    assert SNAPSHOT.is_file(), f"{SNAPSHOT} is missing; make it with: {UPDATE}"
    snapshot = read_snapshot()
    assert snapshot == sorted(snapshot), f"{SNAPSHOT.name} is not sorted; regenerate it with: {UPDATE}"
    message = difference(snapshot, current_surface())
    if message:
        pytest.fail(message, pytrace=False)


@pytest.mark.parametrize("name", public_modules())
def test_every_exported_name_exists(name):
    module = importlib.import_module(name)
    exported = _exports(name)
    assert all(isinstance(e, str) for e in exported), f"{name}.__all__ holds non-strings"
    duplicates = sorted({e for e in exported if exported.count(e) > 1})
    assert not duplicates, f"{name}.__all__ names {duplicates} more than once"
    missing = [e for e in exported if not hasattr(module, e)]
    assert not missing, f"{name}.__all__ names {missing}, which {name} does not define"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare (or, with --update, rewrite) tests/api_surface.txt.")
    parser.add_argument("--update", action="store_true", help=f"rewrite {SNAPSHOT.name} from the code imported now")
    args = parser.parse_args(argv)
    current = current_surface()
    message = difference(read_snapshot(), current)
    if args.update:
        write_snapshot(current)
        print(message.rsplit("\n", 1)[0] if message else f"{SNAPSHOT.name}: no change", file=sys.stderr)
        print(f"wrote {len(current)} names of {len(public_modules())} modules to {SNAPSHOT}", file=sys.stderr)
        return 0
    print(message or f"{SNAPSHOT.name} matches the code ({len(current)} names)", file=sys.stderr)
    return 1 if message else 0


if __name__ == "__main__":
    sys.exit(main())
