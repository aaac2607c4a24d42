"""The CLI's value parsers: durations, labels, backoff and import specs."""

from __future__ import annotations

import pytest

from hearth.cli.parse import parse_backoff, parse_duration, parse_import, parse_labels
from hearth.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("30", 30.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("250ms", 0.25),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        (" 2M ", 120.0),
        ("1h 30m", 5400.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", " ", "x", "5x", "-1", "-5s", "5s5", "s", "1..2", "1e3"])
def test_bad_durations_say_what_to_type(text: str) -> None:
    with pytest.raises(ValidationError, match="5s, 2m"):
        parse_duration(text, what="--delay")


def test_duration_message_names_the_option() -> None:
    with pytest.raises(ValidationError, match=r"^--delay 'soon' is not a duration"):
        parse_duration("soon", what="--delay")


def test_labels() -> None:
    assert parse_labels(["team=ml", "url=a=b", "empty=", "team=ops"]) == {
        "team": "ops", "url": "a=b", "empty": ""}
    assert parse_labels([]) == {}


@pytest.mark.parametrize("item", ["team", "=ml", " =x"])
def test_bad_labels(item: str) -> None:
    with pytest.raises(ValidationError, match="key=value"):
        parse_labels([item])


def test_backoff() -> None:
    assert parse_backoff("2s") == (2.0, None)
    assert parse_backoff("500ms,30s") == (0.5, 30.0)
    assert parse_backoff("1,1") == (1.0, 1.0)


@pytest.mark.parametrize(("text", "match"), [
    ("0", "greater than 0"),
    ("5s,1s", "at least the initial"),
    ("x", "not a duration"),
    ("1s,", "not a duration"),
])
def test_bad_backoff(text: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_backoff(text)


def test_import_specs() -> None:
    assert parse_import("hearth.builtins") == ("hearth.builtins", None)
    assert parse_import("examples.img2pdf.img2pdf:worker") == ("examples.img2pdf.img2pdf",
                                                              "worker")


@pytest.mark.parametrize("spec", ["", "a.", "a..b", "a:b:c", "a:", "1a", "a/b", "a:b.c"])
def test_bad_import_specs(spec: str) -> None:
    with pytest.raises(ValidationError, match="MODULE:ATTR"):
        parse_import(spec)
