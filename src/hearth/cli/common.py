"""What every ``hearth`` command shares: connection options, ``-o``, and error exits.

The contract with users lives here: an expected failure ends the process with a
non-zero code and exactly one line on stderr, ``error: <sentence>``, never a
traceback; usage mistakes exit 2 (click's convention). Tokens come from options,
the environment or the data dir and are passed to the client only: never printed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from hearth.errors import HearthError, Unavailable

if TYPE_CHECKING:  # rich is loaded when a command first prints with it
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

HINT_UP = "is it running? start it with `hearth up`"


class CliError(click.ClickException):
    """An expected failure: one line on stderr, exit code 1 (or the one given)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code  # type: ignore[misc]  # click declares a default

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class CliUsageError(CliError):
    """A mistake in what the user asked for (e.g. a module with no handlers): exit 2."""

    exit_code = 2


def error_message(exc: HearthError, url: str | None = None) -> str:
    """The sentence to show for a Hearth error; adds how to start a coordinator when
    the coordinator is not answering at all."""
    message = exc.message
    if isinstance(exc, Unavailable) and "hearth up" not in message:
        message = message.rstrip(". ") + f": {HINT_UP}"
    return message


class HearthGroup(click.Group):
    """A click group that turns Hearth errors into one ``error:`` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HearthError as exc:
            raise CliError(error_message(exc)) from None
        except OSError as exc:
            # Local files: --blob PATH, -o FILE. (click itself quiets a broken pipe.)
            if isinstance(exc, BrokenPipeError):
                raise
            where = f" {exc.filename}" if exc.filename else ""
            raise CliError(f"cannot use{where}: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True)
class Conn:
    """How to reach the coordinator, as the user gave it (None = find it)."""

    url: str | None
    token: str | None
    data: str | None
    bundle: str | None = None

    def client(self) -> Any:
        from hearth.client import Client

        return Client(self.url, token=self.token, data=self.data, bundle=self.bundle)


def client_options(func: F) -> F:
    """Add ``--url``, ``--token`` and ``--data`` and hand the command one ``conn``."""

    @functools.wraps(func)
    def wrapper(*args: Any, url: str | None, token: str | None, data: str | None,
                bundle: str | None, **kwargs: Any) -> Any:
        return func(*args, conn=Conn(url, token, data, bundle), **kwargs)

    wrapper = click.option(
        "--data", envvar="HEARTH_DATA", metavar="DIR",
        help="Data dir of a local coordinator, where its URL and admin token are found "
             "[env HEARTH_DATA; default ./.hearth].")(wrapper)
    wrapper = click.option(
        "--token", envvar="HEARTH_TOKEN", metavar="TOKEN", show_default=False,
        help="API token (`hearth token create`) [env HEARTH_TOKEN; for a loopback "
             "coordinator default <data>/admin.token].")(wrapper)
    wrapper = click.option(
        "--bundle", envvar="HEARTH_BUNDLE", metavar="FILE",
        help="Enrollment bundle (client certificate) for a mutual-TLS coordinator [env "
             "HEARTH_BUNDLE; then <data>/admin.hearth, ./.hearth/admin.hearth, "
             "~/.hearth/admin.hearth].")(wrapper)
    wrapper = click.option(
        "--url", envvar="HEARTH_URL", metavar="URL",
        help="Coordinator URL [env HEARTH_URL; default: <data>/coordinator.json and the "
             "bundle's addresses, then http://127.0.0.1:7843].")(wrapper)
    return wrapper  # type: ignore[return-value]


def output_option(func: F) -> F:
    return click.option(
        "-o", "--output", type=click.Choice(["table", "json"]), default="table",
        show_default=True, help="table for people, json for scripts (on stdout).")(func)


def _console(stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, soft_wrap=False,
                          width=max(console.width, 240))
    return console


def stdout_console() -> Console:
    """Rich on stdout. Piped output is not cut to 80 columns: scripts and logs get
    whole lines (a terminal still gets its own width)."""
    return _console(stderr=False)


def stderr_console() -> Console:
    """Rich on stderr (progress, notes next to a raw result), sized like stdout."""
    return _console(stderr=True)


@contextmanager
def closing_client(conn: Conn) -> Iterator[Any]:
    client = conn.client()
    try:
        yield client
    finally:
        client.close()


__all__ = [
    "CliError",
    "CliUsageError",
    "Conn",
    "HearthGroup",
    "client_options",
    "closing_client",
    "error_message",
    "output_option",
    "stderr_console",
    "stdout_console",
]
