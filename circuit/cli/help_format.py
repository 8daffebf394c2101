"""Help that reads like a manual page: `circuit keys add [OPTIONS] NAME`, flags without a type.

Recent Typer renders a required argument as `{NAME}`, wraps an optional one that already reads
`[PATH]` in a second pair of brackets, and labels every flag `<bool>` and every argument `<str>`.
`CircuitTyper` makes every command and group render the plain forms instead; each command
module builds its Typer app with it.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


def _usage_name(param: Any) -> str:
    name = param.metavar or param.name.upper()
    if not param.required and not name.startswith("["):
        name = f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


class _PlainHelp:
    """The help of a command or group with plain argument names and untyped flags."""

    def get_params(self, ctx: Any) -> list:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # a flag takes no value: nothing to label
            if param.param_type_name == "argument":
                # The name says what it is (NAME, REQUEST_ID); `<str>` beside it says nothing.
                param.display_type_rich = lambda ctx: None
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_usage_name(param))
        if isinstance(self, TyperGroup):
            pieces.append(self.subcommand_metavar)
        return pieces


class HelpCommand(_PlainHelp, TyperCommand):
    pass


class HelpGroup(_PlainHelp, TyperGroup):
    pass


class CircuitTyper(typer.Typer):
    """A Typer app whose commands and groups render plain help (see the module docstring)."""

    def __init__(self, *args: Any, cls: type[TyperGroup] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, cls=cls or HelpGroup, **kwargs)

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or HelpCommand, **kwargs)
