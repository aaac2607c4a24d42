"""Pure parsers for command-line values: durations, labels, backoff, output blobs.

They exist so every command reads ``5s``, ``2m`` or ``team=ml`` the same way, and so
the rules can be tested without starting anything. They raise ``ValidationError``
with a sentence that says what a good value looks like; the CLI shows it as is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from hearth.errors import ValidationError

_PART = r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)"
_COMPOUND_RE = re.compile(rf"(?:{_PART})+")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds from ``"30"``, ``"1.5"``, ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"`` or ``"1d"``.

    A compound form such as ``"1m30s"`` is accepted too. Negative values are refused:
    no option of Hearth takes a negative duration.
    """
    value = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", value):
        total = float(value)
    elif _COMPOUND_RE.fullmatch(value):
        total = sum(float(n) * _UNITS[u] for n, u in re.findall(_PART, value))
    else:
        raise ValidationError(
            f"{what} {text!r} is not a duration: give seconds such as 30 or 1.5, "
            "or a number with a unit: 250ms, 5s, 2m, 1h, 1d"
        )
    if not math.isfinite(total):
        raise ValidationError(f"{what} {text!r} is too large: give at most a few years")
    return total


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """``["team=ml", "env=prod"]`` -> ``{"team": "ml", "env": "prod"}``.

    The value may contain ``=``; the key may not be empty. A key given twice keeps
    the last value, like most command-line tools.
    """
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError(
                f"label {item!r} is not of the form key=value, e.g. --label team=ml"
            )
        labels[key] = value
    return labels


def parse_backoff(text: str) -> tuple[float, float | None]:
    """``"2s"`` -> (2.0, None); ``"1s,1m"`` -> (1.0, 60.0): initial delay and optional max."""
    initial_text, sep, max_text = text.partition(",")
    initial = parse_duration(initial_text, what="backoff initial delay")
    if initial <= 0:
        raise ValidationError("backoff initial delay must be greater than 0, e.g. --backoff 1s")
    if not sep:
        return initial, None
    maximum = parse_duration(max_text, what="backoff maximum delay")
    if maximum < initial:
        raise ValidationError(
            f"backoff maximum ({max_text.strip()}) must be at least the initial delay "
            f"({initial_text.strip()}), e.g. --backoff 1s,5m"
        )
    return initial, maximum


def parse_import(spec: str) -> tuple[str, str | None]:
    """``"pkg.mod:attr"`` -> ("pkg.mod", "attr"); ``"pkg.mod"`` -> ("pkg.mod", None)."""
    module, sep, attr = spec.partition(":")
    module, attr = module.strip(), attr.strip()
    ident = r"[A-Za-z_][A-Za-z0-9_]*"
    if not re.fullmatch(rf"{ident}(\.{ident})*", module) or (
        sep and not re.fullmatch(ident, attr)
    ):
        raise ValidationError(
            f"{spec!r} is not an importable name: use MODULE or MODULE:ATTR, "
            "e.g. --import hearth.builtins or --import myapp.tasks:worker"
        )
    return module, (attr if sep else None)


__all__ = ["parse_backoff", "parse_duration", "parse_import", "parse_labels"]
