"""Layering: the library (toolkit/, imported as mstool) knows nothing of the command line (cli/, mstool.cli).

- no module under toolkit/ imports click or mstool.cli (read with ast: nothing is imported);
- importing mstool or any of its public modules in a fresh interpreter leaves click out of sys.modules;
- ``python -m mstool.cli --help`` answers without importing torch (the sub-commands are imported lazily).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.test_api_surface import public_modules

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit"
FORBIDDEN = ("click", "mstool.cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(TOOLKIT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["mstool", *parts])


def _is_forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def forbidden_imports(path: Path) -> list[str]:
    """``line: statement`` for every import of click or mstool.cli in one file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()  # a plain module's relative imports start from its package
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call):  # importlib.import_module("click"), __import__("click")
            func = ast.unparse(node.func)
            if func.endswith("import_module") or func == "__import__":
                targets = [a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if any(_is_forbidden(t) for t in targets):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_forbidden_imports_are_recognised(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "TOOLKIT", tmp_path)
    (tmp_path / "sub").mkdir()
    source = tmp_path / "sub" / "mod.py"
    source.write_text("import click.testing\nfrom .. import cli\nfrom ..cli.main import cli as c\n"
                      "import importlib\nimportlib.import_module('click')\nfrom clicky import x\nimport os\n")
    assert [line.split(":")[0] for line in forbidden_imports(source)] == ["1", "2", "3", "5"]


def test_no_toolkit_module_imports_click_or_the_cli():
    files = sorted(TOOLKIT.rglob("*.py"))
    assert len(files) > 20, f"found only {len(files)} modules under {TOOLKIT}"
    offenders = {str(p.relative_to(TOOLKIT.parent)): forbidden_imports(p) for p in files}
    offenders = {path: lines for path, lines in offenders.items() if lines}
    assert not offenders, "the library must not import click or mstool.cli (keep them in cli/):\n" + "\n".join(
        f"  {path}:{line}" for path, lines in offenders.items() for line in lines)


def _python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parents[1])


_NO_CLICK = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
             "print(sorted(m for m in sys.modules if m == 'click' or m.startswith(('click.', 'mstool.cli'))))")


def test_importing_the_library_does_not_import_click():
    modules = public_modules()
    assert modules[0] == "mstool"
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # one fresh interpreter each
        results = dict(zip(modules, pool.map(lambda m: _python("-c", _NO_CLICK, m), modules)))
    failed = {m: r.stderr.strip().splitlines()[-1:] for m, r in results.items() if r.returncode != 0}
    assert not failed, f"some modules do not import: {failed}"
    loaded = {m: r.stdout.strip() for m, r in results.items() if r.stdout.strip() != "[]"}
    assert not loaded, "importing these puts click (or mstool.cli) in sys.modules:\n" + "\n".join(
        f"  {m}: {names}" for m, names in loaded.items())


def _import_chain(importtime: str, module: str) -> list[str]:
    """From ``-X importtime`` output: the first import of ``module`` and the imports that led to it, outermost
    first. Each line is ``import time: self | cumulative | <indent>name``; a module's imports come before it,
    indented deeper."""
    rows = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            field = line.split("|")[2]
            name = field.strip()
            rows.append((len(field) - len(field.lstrip()), name))
    for i, (depth, name) in enumerate(rows):
        if name == module or name.startswith(module + "."):
            chain = [name]
            for later_depth, later in rows[i + 1:]:
                if later_depth < depth:
                    chain.append(later)
                    depth = later_depth
            return chain[::-1]
    return []


def test_import_chain_is_read_from_importtime():
    text = ("import time: self [us] | cumulative | imported package\n"
            "import time:  1 | 1 |     torch._C\nimport time:  1 | 2 |   torch\n"
            "import time:  1 | 1 |   numpy\nimport time:  1 | 4 | mstool.engine\n")
    assert _import_chain(text, "torch") == ["mstool.engine", "torch", "torch._C"]
    assert _import_chain(text, "click") == []


def test_cli_help_does_not_import_torch():
    result = _python("-X", "importtime", "-m", "mstool.cli", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage:" in result.stdout and "segment" in result.stdout
    chain = _import_chain(result.stderr, "torch")
    assert not chain, "`mstool --help` imports torch, through: " + " -> ".join(chain)
