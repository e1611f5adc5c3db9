"""The layers of docs/DESIGN.md, enforced: a module may import only from its own package and the
layers below it. `app/` holds the composition roots (the `recsys` command, the ASGI app, the filing
command), the only place that wires training and serving together. The auditor (`auditor/`) is a
client of the HTTP API beside them: it imports nothing of the project, so it audits any server."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package -> the packages it may import (besides itself)
ALLOWED = {
    "recsys": set(),
    "compliance": {"recsys"},
    "served": {"recsys", "compliance"},
    "training": {"recsys", "compliance", "served"},
    "serving": {"recsys", "compliance", "served"},
    # the black-box auditor is a client of the HTTP API only: it imports none of the server's code
    "auditor": set(),
    "benchmarks": {"recsys", "compliance", "served", "training", "serving", "auditor"},
    "app": {"recsys", "compliance", "served", "training", "serving", "benchmarks", "auditor"},
}


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, name in imports(path):
                top = name.split(".")[0]
                if top in ALLOWED and top != package and top not in allowed:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_every_package_is_in_the_layer_map():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(ALLOWED), f"add {sorted(packages - set(ALLOWED))} to the layer map (docs/DESIGN.md too)"
