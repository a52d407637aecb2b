"""The dependency rule of DESIGN §3, checked on the source (imports anywhere in a file)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "musicrl": {"musicrl"},
    "rewards": {"musicrl", "rewards"},
    "training": {"musicrl", "rewards", "training"},
    "app": {"musicrl", "rewards", "app"},
}
PROJECT = set(ALLOWED)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    bad = []
    for f in sorted((ROOT / package).rglob("*.py")):
        if package == "musicrl" and f.parent.name == "cli":
            continue  # the command knows every package (lazily, per command)
        extra = _imports(f) - ALLOWED[package]
        if extra:
            bad.append(f"{f.relative_to(ROOT)} imports {sorted(extra)}")
    assert not bad, "\n".join(bad)


def test_cli_reaches_training_and_app_only_lazily():
    files = sorted((ROOT / "musicrl" / "cli").glob("*.py"))
    assert len(files) >= 5
    for f in files:
        top = set()
        for node in ast.parse(f.read_text()).body:  # module-level statements only
            if isinstance(node, ast.Import):
                top.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                top.add(node.module.split(".")[0])
        assert not top & {"training", "app", "rewards"}, f.name
