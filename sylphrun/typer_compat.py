"""Typer, minus a start-up cost that `sylphrun trigger` cannot afford.

Typer 0.29 coerces every parameter value, `None` and text included, through a pydantic
`TypeAdapter`. Importing pydantic and building the adapters cost 100-150 ms of every
command on the dev VM: more than everything `sylphrun trigger` does itself
(bench/trigger_latency.py). This reaches into Typer's internals (`_runtime_param`); on a
version without them it does nothing and Typer coerces as it always did.
"""

from __future__ import annotations

import re
from typing import Any

from typer.core import TyperGroup


class _LazyCoercion:
    """A missing value and a text value need no coercion; any other value gets Typer's
    own, built when first needed."""

    def __init__(self) -> None:
        self.real: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        desc = param.type_descriptor
        if value is None and not (param.multiple or param.nargs == -1):
            return None
        if isinstance(value, str) and desc.annotation is str and desc.parameter_info.parser is None:
            return value
        if _is_own_default(value, param, ctx):
            return value
        number = _plain_number(value, desc)
        if number is not None:
            return number
        if self.real is None:
            from typer._coercion import build_runtime_param

            self.real = build_runtime_param(desc)
        return self.real.coerce(value, param=param, ctx=ctx)


def _is_own_default(value: Any, param: Any, ctx: Any) -> bool:
    """A number the command's code declares as the default (`limit: int = 50`), not given
    on the command line: valid as written. Coercing it built pydantic's adapter, half of
    the CPU of `sylphrun runs` (~0.2 s)."""
    from typer._click.core import ParameterSource

    return (
        type(value) in (int, float)
        and param.type_descriptor.annotation is type(value)
        and ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT
    )


# What `int("...")`/`float("...")` and pydantic read alike: digits (and one decimal point).
_PLAIN = {int: re.compile(r"[0-9]+"), float: re.compile(r"[0-9]+(\.[0-9]+)?")}


def _plain_number(value: Any, desc: Any) -> int | float | None:
    """`--workers 2`, `--timeout 1.5`: plain digits within the option's bounds, read as
    Typer reads them (~0.15 s of CPU less in every `worker`/`dev` started so). Anything
    else (a sign, an exponent, a value out of bounds: its error message) goes to Typer."""
    info = desc.parameter_info
    pattern = _PLAIN.get(desc.annotation)
    if pattern is None or not isinstance(value, str) or info.parser is not None:
        return None
    if getattr(info, "click_type", None) is not None or not pattern.fullmatch(value):
        return None
    number = desc.annotation(value)
    if (info.min is not None and number < info.min) or (info.max is not None and number > info.max):
        return None
    return number


def _lazy_coercion(params: Any) -> None:
    # Typer's internals: on a version without `_runtime_param` this does nothing.
    for param in params:
        if getattr(param, "_runtime_param", False) is None and hasattr(param, "type_descriptor"):
            param._runtime_param = _LazyCoercion()


class LazyCoercionGroup(TyperGroup):
    """The app's group: every parameter of the group and of the command run gets
    `_LazyCoercion` before its value is processed."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _lazy_coercion(self.get_params(ctx))  # with --help, which Typer adds
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            _lazy_coercion(command.get_params(ctx))
        return name, command, rest
