"""The layers of the package, and which may import which: no layer imports one above it.

    cli, main, __main__                      the command and the ASGI entry point
    gateway, supervision                     the HTTP surface and the request flow
    providers                                adapters to each upstream's wire format
    accounting, resilience                   budgets, tokens, prices; breaker, retries, limits
    store, keys, logs, metrics               what is kept, and its read side
    config, settings_reference               the effective configuration
    wire, errors, money, parsers, loop_sweep neutral types and tools every layer shares

Read off the source with `ast`, so an import added anywhere is checked, lazy ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "circuit"

LAYERS = [
    {"wire", "errors", "money", "parsers", "loop_sweep", "__version__"},
    {"config", "settings_reference"},
    {"store", "keys", "logs", "metrics"},
    {"accounting", "resilience"},
    {"providers"},
    {"gateway", "supervision"},
    {"cli", "main", "__main__"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _part(path: Path) -> str:
    """The top-level part of circuit a module belongs to (circuit/store/x.py -> store)."""
    relative = path.relative_to(ROOT)
    return relative.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "circuit":
                found.add(parts[1] if len(parts) > 1 else node.names[0].name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "circuit" and len(parts) > 1:
                    found.add(parts[1])
    return found


def _modules() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts
            and p.name != "__init__.py"]


def test_every_part_of_the_package_has_a_layer():
    assert {_part(p) for p in _modules()} <= LEVEL.keys()


def test_no_module_imports_a_layer_above_its_own():
    breaks = []
    for path in _modules():
        mine = LEVEL[_part(path)]
        for target in _imports(path):
            if LEVEL.get(target, -1) > mine:
                breaks.append(f"{path.relative_to(ROOT.parent)} imports circuit.{target}")
    assert breaks == []


def test_accounting_knows_no_wire_format():
    # Providers read their upstream's format into circuit.wire's types; accounting adds up.
    accounting = [p for p in _modules() if _part(p) == "accounting"]
    assert all("providers" not in _imports(p) for p in accounting)


def test_the_rule_would_catch_a_break(tmp_path):
    # The check itself can fail: an import of the gateway from the store is seen.
    module = tmp_path / "bad.py"
    module.write_text("from circuit.gateway.runtime import Gateway\n")
    assert _imports(module) == {"gateway"} and LEVEL["gateway"] > LEVEL["store"]
