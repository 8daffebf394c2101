"""The configuration reference, generated from the settings' declarations (circuit/config.py),
so the README's table can never go stale: `circuit config reference` prints it, and a test
checks that the README holds exactly this."""

from __future__ import annotations

from typing import Any

from circuit.config import declared_settings

START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def accepts_off(f: Any) -> bool:
    """Whether a setting takes `off` (its parser maps it to None)."""
    try:
        return f.metadata["parse"]("off") is None
    except ValueError:
        return False


def _default(f: Any) -> str:
    value = f.default
    if value is None or value == ():
        return "off" if value is None and accepts_off(f) and not f.metadata["secret"] else "–"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def settings_table() -> str:
    """Every setting as a Markdown table: name, environment variable, default, meaning."""
    rows = ["| name | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in declared_settings():
        meaning = f.metadata["help"].replace("|", "\\|")
        if f.metadata["secret"]:
            meaning += " A secret: masked by `circuit config show`."
        rows.append(f"| `{f.name}` | `{f.metadata['env']}` | {_default(f)} | {meaning} |")
    return "\n".join(rows)


def readme_block() -> str:
    """The table between the markers the README carries it in."""
    return f"{START}\n{settings_table()}\n{END}"
