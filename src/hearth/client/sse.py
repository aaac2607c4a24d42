"""A small parser for ``text/event-stream`` (server-sent events), fed line by line.

The watch route (``GET /v1/watch``) streams job events as SSE. The parser is pure (no
I/O) so it is tested on its own; the client feeds it the lines of a streamed answer.
It follows the WHATWG rules that matter here: ``data`` lines are joined with newlines,
comments (``:``) are skipped, one space after the colon is dropped, an empty line
dispatches, and the last ``id`` carries over to later events. It never interprets the
data: the caller decides what an event means.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerEvent:
    event: str
    data: str
    #: The last event id seen so far (WHATWG ``lastEventId``), "" if none yet.
    id: str = ""


class SSEParser:
    """Feed it lines without their line ending; it returns an event on each dispatch."""

    __slots__ = ("_data", "_event", "_last_id", "retry")

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._last_id = ""
        #: The reconnection delay the server asked for, in milliseconds, if any.
        self.retry: int | None = None

    @property
    def last_id(self) -> str:
        return self._last_id

    def feed(self, line: str) -> ServerEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerEvent(self._event or "message", "\n".join(self._data), self._last_id)
        self._data = []
        self._event = ""
        return event
