"""Error answers and connection failures become ``hearth.errors`` classes in the client.

A real HTTP server on a loopback port (``helpers.http_server``) gives the answers a
coordinator never would; the client code under test is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from hearth.client import AsyncClient, error_for
from hearth.errors import (
    Conflict,
    Forbidden,
    HearthError,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
    StaleLease,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from helpers import http_server, unused_port

TOKEN = "hth_secret-token-value"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (409, "stale_lease", StaleLease),
        (409, "invalid_transition", InvalidTransition),
        (409, "conflict", Conflict),
        (409, None, Conflict),
        (404, "not_found", NotFound),
        (404, None, NotFound),
        (422, "invalid", ValidationError),
        (422, None, ValidationError),
        (413, "too_large", PayloadTooLarge),
        (401, "unauthorized", Unauthorized),
        (403, None, Forbidden),
        (503, "unavailable", Unavailable),
        (500, "internal", HearthError),
    ],
)
def test_error_for_maps_code_then_status(status: int, code: str | None,
                                         expected: type[HearthError]) -> None:
    err = error_for(status, code, "a sentence.")
    assert type(err) is expected
    assert err.message == "a sentence."


def test_unknown_status_keeps_status_and_code() -> None:
    err = error_for(418, "teapot", None)
    assert type(err) is HearthError
    assert (err.status, err.code) == (418, "teapot")
    assert "418" in err.message


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def call(url: str, call: Callable[[AsyncClient], object], timeout: float = 30.0) -> object:
    async def main() -> object:
        async with AsyncClient(url, token=TOKEN, timeout=timeout) as client:
            return await call(client)  # type: ignore[misc]

    return asyncio.run(main())


def run_with(handler: Handler, call_: Callable[[AsyncClient], object],
             timeout: float = 30.0) -> object:
    with http_server(handler) as url:
        return call(url, call_, timeout)


def test_error_body_is_raised_as_its_class_with_the_server_sentence() -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        return web.json_response({"error": "job j_1 is already succeeded.",
                                  "code": "invalid_transition"}, status=409)

    with pytest.raises(InvalidTransition, match="already succeeded"):
        run_with(handler, lambda c: c.cancel("j_1"))


def test_non_json_error_names_the_coordinator_and_status() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>")

    with pytest.raises(HearthError, match=r"127\.0\.0\.1:\d+ answered 502 Bad Gateway"):
        run_with(handler, lambda c: c.get("j_1"))


def test_connection_refused_is_unavailable_with_advice_and_no_token() -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    with pytest.raises(Unavailable) as info:
        call(url, lambda c: c.get("j_1"))
    text = str(info.value)
    assert url in text
    assert "hearth up" in text
    assert TOKEN not in text and TOKEN not in repr(info.value)


def test_timeout_is_unavailable() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"nodes": []})

    with pytest.raises(Unavailable, match=r"did not answer within 0\.3 s"):
        run_with(handler, lambda c: c.nodes(), timeout=0.3)


def test_a_dropped_connection_is_unavailable() -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()  # hang up without answering
        return web.Response()

    with pytest.raises(Unavailable, match="closed the connection without answering"):
        run_with(handler, lambda c: c.nodes())


async def refuse(request: web.Request) -> web.Response:
    raise AssertionError("no request expected")


def test_payload_and_data_together_are_refused_before_any_request() -> None:
    with pytest.raises(ValidationError, match="not both"):
        run_with(refuse, lambda c: c.submit("echo", {"a": 1}, data=b"x"))


def test_bad_digest_is_refused_before_any_request() -> None:
    with pytest.raises(ValidationError, match="digest"):
        run_with(refuse, lambda c: c.get_blob("../../etc/passwd"))


def test_submit_sends_only_what_was_given() -> None:
    seen: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response({"error": "stop here.", "code": "invalid"}, status=400)

    with pytest.raises(ValidationError):
        run_with(handler, lambda c: c.submit("echo", data=b"\x00\x01",
                                             blobs=[("in", "a" * 64)]))
    import orjson

    body = orjson.loads(seen[0])
    assert body["payload_b64"] == "AAE="
    assert "payload" not in body
    assert body["input_blobs"] == [{"digest": "a" * 64, "name": "in"}]


def test_query_values_are_sent_as_the_api_spells_them() -> None:
    seen: list[list[tuple[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(list(request.query.items()))
        return web.json_response({"jobs": [], "next_cursor": None})

    run_with(handler, lambda c: c.list_jobs("ns", kinds=["a", "b"], labels={"k": "v w"},
                                            limit=7))
    assert seen == [[("limit", "7"), ("kind", "a"), ("kind", "b"), ("label", "k=v w"),
                     ("namespace", "ns")]]


def test_long_lines_of_a_stream_arrive_whole() -> None:
    line = "data: " + "x" * 300_000

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        e_acute = "é".encode()
        # Line endings and a two-byte character split across writes.
        for piece in (b"event: job\r\n" + line[:1000].encode(), line[1000:].encode() + b"\r",
                      b"\n\nid: 3\r", b"\ndata: " + e_acute[:1], e_acute[1:] + b"\r\n"):
            await response.write(piece)
            await asyncio.sleep(0.01)  # so that the pieces arrive apart
        await response.write_eof()
        return response

    async def lines(client: AsyncClient) -> list[str]:
        async with client._core.stream("GET", "/v1/watch") as stream:
            return [item async for item in stream.aiter_lines()]

    assert run_with(handler, lines) == ["event: job", line, "", "id: 3", "data: é"]


def test_repr_never_shows_the_token() -> None:
    async def main() -> str:
        async with AsyncClient("http://coordinator.test", token=TOKEN) as client:
            return repr(client) + repr(client.__dict__)

    assert TOKEN not in asyncio.run(main())
