"""docs/CLIENTS.md links to screenshots the browser tests save: each link must name a test that exists
and saves a screenshot under that label, so the documentation never points at a picture nobody makes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(\.\./tests/e2e/artifacts/([\w.-]+)\.png\)")


def _screenshots(module: Path) -> dict[str, set[str]]:
    """test function name → labels it passes to artifacts.screenshot(page, "<label>")."""
    found: dict[str, set[str]] = {}
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for fn in tree.body:
        if not isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef) or not fn.name.startswith("test_"):
            continue
        labels = found.setdefault(fn.name, set())
        for node in ast.walk(fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "screenshot" and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)):
                labels.add(str(node.args[1].value))
            # Labels built in a helper called with a constant (e.g. fits("tasks")) count too.
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                labels.add(node.args[0].value)
    return found


def test_every_screenshot_linked_from_the_clients_guide_is_made_by_a_test() -> None:
    links = LINK.findall((ROOT / "docs" / "CLIENTS.md").read_text(encoding="utf-8"))
    assert len(links) >= 30
    for name in links:
        module, _, rest = name.partition(".")
        test, _, label = rest.partition("-")
        path = ROOT / "tests" / "e2e" / f"{module}.py"
        assert path.is_file(), name
        labels = _screenshots(path)
        assert test in labels, f"{name}: no test {test} in {path.name}"
        assert label in labels[test], f"{name}: {test} saves no screenshot labelled {label!r}"
