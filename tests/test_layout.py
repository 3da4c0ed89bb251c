"""The library's shape: short functions and modules, and no import from a higher floor.

Floors (a package may import its own modules and any lower floor, never a higher one):
0 core, infra; 1 data, models, pp, dop; 2 configs; 3 evaluators; 4 trainers; 5 the
top-level modules of ``sopjax`` (the public API and command-line entry points).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "sopjax"
FLOORS = {"core": 0, "infra": 0, "data": 1, "models": 1, "pp": 1, "dop": 1, "configs": 2, "evaluators": 3,
          "trainers": 4}
TOP = 5
MODULES = sorted(ROOT.rglob("*.py"))


def floor_of(module: str) -> int:
    """Floor of a dotted module name under ``sopjax`` (``sopjax.x.y`` → floor of package x)."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in FLOORS:
        return FLOORS[parts[1]]
    return TOP


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sopjax_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, imported module) of every ``sopjax`` import, at any depth of the file."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sopjax":
            base = node.module
            # "from sopjax import models" imports the subpackage sopjax.models
            out += [(node.lineno, f"{base}.{a.name}" if base == "sopjax" else base) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sopjax"]
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_from_a_higher_floor(path):
    me = module_name(path)
    bad = [f"line {line}: {name} (floor {floor_of(name)})" for line, name in sopjax_imports(ast.parse(path.read_text()))
           if floor_of(name) > floor_of(me)]
    assert not bad, f"{me} (floor {floor_of(me)}) imports upward: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_functions_at_most_50_lines_and_modules_at_most_300(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 300, f"{path.name} has {len(text.splitlines())} lines"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 50]
    assert not long, f"{path.name}: {long}"


def test_the_floor_check_sees_an_upward_import():
    tree = ast.parse("from sopjax.trainers import fit\nimport sopjax.evaluators.report\nfrom sopjax import configs\n")
    names = [name for _, name in sopjax_imports(tree)]
    assert names == ["sopjax.trainers", "sopjax.evaluators.report", "sopjax.configs"]
    assert [floor_of(n) for n in names] == [4, 3, 2] and floor_of("sopjax.core.losses") == 0
