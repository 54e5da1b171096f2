"""The floors of mstool: every package imports only floors below its own, so there is no import circle, and no
package reaches into another's private modules. README's layout section draws the same floors."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "toolkit"

FLOORS = {
    0: ("errors", "_version", "_types", "names"),
    1: ("__init__", "_check", "_registry", "_fs"),
    2: ("device", "io", "viz"),
    3: ("labels", "metrics", "models", "losses"),
    4: ("metastructure", "data"),
    5: ("engine",),
    6: ("unsupervised",),
    7: ("runs",),
    8: ("compare",),
}
FLOOR = {name: floor for floor, names in FLOORS.items() for name in names}


def _imports() -> list[tuple[Path, str, list[str], bool]]:
    """(file, its top-level package, the imported module path below toolkit/, function-level?) per import."""
    found = []
    for file in sorted(ROOT.rglob("*.py")):
        parts = list(file.relative_to(ROOT).with_suffix("").parts)
        package = parts[0]
        base = parts[:-1]
        tree = ast.parse(file.read_text())
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = base[: len(base) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                targets = [target] if target else [["__init__"]]
                for t in targets:
                    found.append((file, package, t, id(node) in nested))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    if name == "mstool" or name.startswith("mstool."):
                        found.append((file, package, name.split(".")[1:] or ["__init__"], id(node) in nested))
    return found


def test_every_package_has_a_floor():
    packages = {p.name if p.is_dir() else p.stem for p in ROOT.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert packages - set(FLOOR) == set(), "give the new package a floor here and in README's layout section"


def test_nothing_imports_upward_or_sideways():
    wrong = sorted({f"{file.relative_to(ROOT)} (floor {FLOOR[package]}) imports {'.'.join(target)} (floor "
                    f"{FLOOR[target[0]]})" for file, package, target, _ in _imports()
                    if target[0] != package and FLOOR[target[0]] >= FLOOR[package]})
    assert not wrong, "\n".join(wrong)


def test_no_package_imports_another_packages_private_module():
    wrong = sorted({f"{file.relative_to(ROOT)} imports {'.'.join(target)}" for file, package, target, _ in _imports()
                    if target[0] != package and len(target) > 1 and target[1].startswith("_")})
    assert not wrong, "\n".join(wrong)


def test_function_level_imports_of_mstool_say_why():
    """A function-level import of mstool's own code is there to keep ``mstool --help`` free of torch or to break
    a real cycle, and a comment on its line or the line above says which."""
    silent = []
    for file, _, target, nested in _imports():
        if not nested:
            continue
        lines = file.read_text().splitlines()
        for number, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("from .") and ".".join(target[1:]).split(".")[-1:] and \
                    stripped.split(" import")[0].endswith(target[-1]) and line.startswith(" "):
                context = lines[number - 1] + line
                if "#" not in context:
                    silent.append(f"{file.relative_to(ROOT)}:{number + 1}: {stripped}")
    assert not sorted(set(silent)), "\n".join(sorted(set(silent)))


def _code_lines(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def test_long_modules_say_why_at_their_top():
    """A module over 600 lines states the reason in its docstring (a paragraph starting ``Size:``)."""
    silent = [f"{file.relative_to(ROOT)} ({len(text.splitlines())} lines)"
              for file in sorted(ROOT.rglob("*.py")) for text in [file.read_text()]
              if len(text.splitlines()) > 600 and "\nSize: " not in (ast.get_docstring(ast.parse(text)) or "")]
    assert not silent, "give these a `Size:` paragraph or split them:\n" + "\n".join(silent)


def test_no_function_is_longer_than_80_lines_of_code():
    """Docstrings, blank lines and comments do not count."""
    long = []
    for file in sorted(ROOT.rglob("*.py")) + sorted((ROOT.parent / "cli").rglob("*.py")):
        lines = file.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None else node.body
                if body and _code_lines(lines[body[0].lineno - 1:node.end_lineno]) > 80:
                    long.append(f"{file.relative_to(ROOT.parent)}:{node.lineno} {node.name}")
    assert not long, "\n".join(long)


def test_no_package_imports_another_packages_private_names():
    wrong = []
    for file in sorted(ROOT.rglob("*.py")):
        package = file.relative_to(ROOT).parts[0]
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                if node.module.split(".")[0] != package.removesuffix(".py"):
                    wrong += [f"{file.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and a.name != "__version__"]
    assert not wrong, "\n".join(wrong)
