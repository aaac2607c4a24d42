"""click parameter types for Hearth values, so bad input is a usage error (exit 2).

Thin adapters over :mod:`hearth.cli.parse`: the rules live there, the wording of
"what to type instead" comes from its ``ValidationError`` messages.
"""

from __future__ import annotations

from typing import Any

import click

from hearth.cli.parse import parse_backoff, parse_duration, parse_labels
from hearth.errors import ValidationError


class Duration(click.ParamType[float]):
    """Seconds, or a number with a unit: ``30``, ``1.5``, ``250ms``, ``5s``, ``2m``, ``1h``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            what = param.opts[0] if param is not None and param.opts else "duration"
            return parse_duration(str(value), what=what)
        except ValidationError as exc:
            self.fail(exc.message, param, ctx)


class Label(click.ParamType[tuple[str, str]]):
    """``key=value``; parsed one at a time, merged by :func:`labels_of`."""

    name = "key=value"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        try:
            ((key, val),) = parse_labels([str(value)]).items()
        except ValidationError as exc:
            self.fail(exc.message, param, ctx)
        return key, val


class BackoffSpec(click.ParamType[tuple[float, float | None]]):
    """``INITIAL[,MAX]`` durations, e.g. ``1s`` or ``500ms,30s``."""

    name = "initial[,max]"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[float, float | None]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_backoff(str(value))
        except ValidationError as exc:
            self.fail(exc.message, param, ctx)


def labels_of(pairs: tuple[tuple[str, str], ...]) -> dict[str, str] | None:
    return dict(pairs) or None


DURATION = Duration()
LABEL = Label()
BACKOFF = BackoffSpec()

__all__ = ["BACKOFF", "DURATION", "LABEL", "labels_of"]
