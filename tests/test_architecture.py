"""The layers of docs/architecture.md, checked on the code: every ``autorec`` import of every
module under src/autorec must point to its own layer or one below. A module that reaches upward
(say ``data`` importing ``models``, or a model importing ``protocol``) fails here with its name."""

from __future__ import annotations

import ast
from pathlib import Path

import autorec

SRC = Path(autorec.__file__).resolve().parent

FOUNDATION = {
    "errors",
    "atomic",
    "optim",
    "distributed",
    "textconfig",
    "autorec",
}  # "autorec": __version__
METRICS = {"evaluation", "ranking"}
# docs/architecture.md, "The layers": top-level part of autorec -> what it may import.
ALLOWED: dict[str, set[str]] = {
    **{name: {"autorec"} for name in FOUNDATION},
    "textconfig": {"autorec", "errors"},  # its refusals are ConfigErrors
    "data": FOUNDATION,
    "evaluation": FOUNDATION | {"data"},
    "ranking": FOUNDATION | {"data", "evaluation"},
    "models": FOUNDATION | {"data"} | METRICS,
    "search": FOUNDATION | {"data", "models"} | METRICS,
    "protocol": FOUNDATION | {"data", "models", "search"} | METRICS,
    "reproduce": FOUNDATION | {"data", "models", "protocol"} | METRICS,
    "tune": FOUNDATION | {"data", "models"} | METRICS,
    "serve": FOUNDATION | {"data", "models"} | METRICS,
    "cli": FOUNDATION
    | {"data", "models", "protocol", "search", "reproduce", "serve", "tune"}
    | METRICS,
    "__main__": {"cli"},
}


def _part(module: str) -> str:
    """'autorec.data.loaders.blocks' -> 'data'; 'autorec' -> 'autorec'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _autorec_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n == "autorec" or n.startswith("autorec.")}
    return found


def test_every_module_imports_only_its_layer_and_below() -> None:
    violations = []
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 40  # the walk found the package
    for path in modules:
        rel = path.relative_to(SRC)
        # src/autorec/data/split.py -> "data"; src/autorec/atomic.py -> "atomic"
        part = rel.parts[0] if len(rel.parts) > 1 else rel.stem.replace("__init__", "autorec")
        if part not in ALLOWED:
            violations.append(f"{rel}: layer {part!r} is not in docs/architecture.md")
            continue
        for name in _autorec_imports(path):
            target = _part(name)
            if target != part and target not in ALLOWED[part]:
                violations.append(f"{rel} imports {name} ({part} -> {target})")
    assert violations == []


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from autorec.models import make_model\nimport autorec.cli.app\n")
    assert {_part(n) for n in _autorec_imports(bad)} == {"models", "cli"}
    assert "models" not in ALLOWED["data"] and "cli" not in ALLOWED["models"]
