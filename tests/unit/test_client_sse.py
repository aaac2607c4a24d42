"""The server-sent-events parser of the client (``hearth.client.sse``): pure, line fed."""

from __future__ import annotations

from hearth.client.sse import ServerEvent, SSEParser


def feed(parser: SSEParser, text: str) -> list[ServerEvent]:
    events = []
    for line in text.split("\n"):
        event = parser.feed(line)
        if event is not None:
            events.append(event)
    return events


def test_one_event_with_id_and_type() -> None:
    events = feed(SSEParser(), 'id: 7\nevent: job\ndata: {"seq": 7}\n\n')
    assert events == [ServerEvent("job", '{"seq": 7}', "7")]


def test_comments_and_keepalives_dispatch_nothing() -> None:
    assert feed(SSEParser(), ": keepalive\n\n: keepalive\n\n") == []


def test_data_lines_join_with_newlines() -> None:
    events = feed(SSEParser(), "data: a\ndata: b\ndata\n\n")
    assert [e.data for e in events] == ["a\nb\n"]


def test_only_one_leading_space_is_dropped() -> None:
    events = feed(SSEParser(), "data:  two\ndata:none\n\n")
    assert events[0].data == " two\nnone"


def test_type_defaults_to_message_and_resets_between_events() -> None:
    events = feed(SSEParser(), "event: job\ndata: 1\n\ndata: 2\n\n")
    assert [e.event for e in events] == ["job", "message"]


def test_last_id_carries_over_until_changed() -> None:
    parser = SSEParser()
    events = feed(parser, "id: 3\ndata: a\n\ndata: b\n\nid: 4\ndata: c\n\n")
    assert [e.id for e in events] == ["3", "3", "4"]
    assert parser.last_id == "4"


def test_id_with_nul_is_ignored_and_retry_is_recorded() -> None:
    parser = SSEParser()
    feed(parser, "id: 1\nid: 2\x00\nretry: 1500\nretry: soon\n")
    assert parser.last_id == "1"
    assert parser.retry == 1500


def test_event_without_data_is_not_dispatched() -> None:
    assert feed(SSEParser(), "event: job\nid: 9\n\n") == []


def test_unknown_fields_are_ignored() -> None:
    assert feed(SSEParser(), "foo: bar\ndata: x\n\n")[0].data == "x"
