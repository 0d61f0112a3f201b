"""The package's floors only look down: every import of pyro_lvm inside pyro_lvm goes to a lower floor
(or stays inside its own package). The order, lowest first, is the one in DESIGN.md's layout."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pyro_lvm"

FLOORS = [  # lowest first; a module may import its own package and any floor below it
    ["pyro_lvm.ops"],
    ["pyro_lvm.distributions", "pyro_lvm.color", "pyro_lvm.metrics", "pyro_lvm.runs"],
    ["pyro_lvm.data", "pyro_lvm.nets"],
    ["pyro_lvm.guides"],
    ["pyro_lvm.infer"],
    ["pyro_lvm.models"],
    ["pyro_lvm.estimators", "pyro_lvm.evaluation", "pyro_lvm.lightning"],
    ["pyro_lvm.diagnostics"],
    ["pyro_lvm"],
]


def room(module: str) -> str:
    """The entry of FLOORS a module belongs to: its longest listed prefix."""
    rooms = [r for floor in FLOORS for r in floor if module == r or module.startswith(r + ".")]
    assert rooms, f"{module} is on no floor: add it to FLOORS in tests/test_layers.py"
    return max(rooms, key=len)


def floor(module: str) -> int:
    return next(i for i, rooms in enumerate(FLOORS) if room(module) in rooms)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every pyro_lvm import in a module's source, relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}" if base == "pyro_lvm" else base) for alias in node.names]
    return [(line, name) for line, name in found if name == "pyro_lvm" or name.startswith("pyro_lvm.")]


def arrows_back_up(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of a module that go to its own floor (another room) or above."""
    return [
        f"line {line}: {module} (floor {floor(module)}) imports {name} (floor {floor(name)})"
        for line, name in imports_of(source, module, is_package)
        if room(name) != room(module) and floor(name) >= floor(module)
    ]


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_only_look_down(path):
    assert not arrows_back_up(path.read_text(), module_name(path), path.name == "__init__.py")


def test_every_module_is_on_a_floor():
    for path in FILES:
        room(module_name(path))


@pytest.mark.parametrize(
    "source, module",
    [
        ("from pyro_lvm.models import DeepLatentGaussian\n", "pyro_lvm.guides.probe"),
        ("from ..infer import train\n", "pyro_lvm.ops.probe"),
        ("import pyro_lvm.data\n", "pyro_lvm.nets"),
    ],
)
def test_an_arrow_back_up_is_caught(source, module):
    """The check can fail: imports that run up (absolute, relative, or to a room beside) are found."""
    assert len(arrows_back_up(source, module)) == 1
