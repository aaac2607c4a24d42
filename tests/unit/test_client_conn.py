"""The client's lean HTTP/1.1 connections (hearth.client.conn), against real sockets.

Each test runs a small asyncio server on a loopback port that answers exactly as the
test needs (keep-alive, ``Connection: close``, chunked, a hang-up, silence), so what
is checked is what goes over the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from hearth.client import conn as conn_module
from hearth.client.conn import ConnectFailed, Disconnected, Pool, request_head
from hearth.client.http import HttpCore
from hearth.errors import Unavailable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


def _answer(body: bytes, *, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\ncontent-length: {len(body)}\r\n{extra}\r\n").encode() + body


def run(handler: Handler, test: Callable[[Pool, list[int]], Awaitable[None]]) -> list[int]:
    """Serve ``handler`` on a free port; ``test(pool, connections)`` runs against it
    (``connections`` counts accepted connections). Returns the count."""
    accepted: list[int] = []

    async def main() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(1)
            try:
                await handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Pool("127.0.0.1", port, ssl_context=None, limit=4, connect_timeout=2)
        try:
            await test(pool, accepted)
        finally:
            pool.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
    return accepted


def head(path: str = "/x", length: int | None = None) -> bytes:
    return request_head("POST", path, "127.0.0.1", {"user-agent": "t"}, length)


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        first, body = await _read_request(reader)
        writer.write(_answer(first.split(b" ")[1] + b"|" + body))
        await writer.drain()


def test_requests_share_one_keep_alive_connection() -> None:
    async def test(pool: Pool, accepted: list[int]) -> None:
        for i in range(5):
            status, headers, body = await pool.exchange(head(f"/n{i}", 3), b"abc", 5)
            assert (status, body) == (200, f"/n{i}|abc".encode())
            assert headers["content-length"] == str(len(body))

    assert len(run(echo_forever, test)) == 1


def test_a_connection_idle_too_long_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conn_module, "IDLE_LIMIT", 0.05)

    async def test(pool: Pool, accepted: list[int]) -> None:
        await pool.exchange(head(), None, 5)
        await asyncio.sleep(0.1)
        await pool.exchange(head(), None, 5)

    assert len(run(echo_forever, test)) == 2


def test_connection_close_and_chunked_answers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n"
                     b"x-a: 1\r\nX-A: 2\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await _read_request(reader)
        writer.write(_answer(b"bye", extra="connection: close\r\n"))
        await writer.drain()
        await reader.read()  # until the client hangs up

    async def test(pool: Pool, accepted: list[int]) -> None:
        status, headers, body = await pool.exchange(head(), None, 5)
        assert (status, body, headers["x-a"]) == (201, b"hello world", "1, 2")
        assert (await pool.exchange(head(), None, 5))[2] == b"bye"
        assert pool._idle == []  # the server said close: not kept

    assert len(run(handler, test)) == 1


def test_a_hang_up_before_the_answer_is_disconnected() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
        await writer.drain()

    async def test(pool: Pool, accepted: list[int]) -> None:
        with pytest.raises(Disconnected):
            await pool.exchange(head(), None, 5)
        assert pool._idle == []

    run(handler, test)


def test_silence_times_out_and_the_connection_is_dropped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()

    async def test(pool: Pool, accepted: list[int]) -> None:
        with pytest.raises(TimeoutError):
            await pool.exchange(head(), None, 0.1)
        assert pool._idle == [] and pool._all == set()

    run(handler, test)


def test_garbage_is_a_disconnect_not_a_hang() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def test(pool: Pool, accepted: list[int]) -> None:
        with pytest.raises(Disconnected, match="not valid HTTP"):
            await pool.exchange(head(), None, 5)

    run(handler, test)


def test_a_cancelled_exchange_never_leaves_its_connection_for_reuse() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:  # answers late: that answer must not reach request 2
            await _read_request(reader)
            await asyncio.sleep(0.2)
            writer.write(_answer(b"late"))
        await echo_forever(reader, writer)

    async def test(pool: Pool, accepted: list[int]) -> None:
        task = asyncio.create_task(pool.exchange(head("/first"), None, 5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await pool.exchange(head("/second"), None, 5))[2] == b"/second|"

    assert len(run(handler, test)) == 2


def test_refused_connections_fail_fast_and_map_to_a_sentence() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectFailed):
            await Pool("127.0.0.1", port, ssl_context=None, limit=1,
                       connect_timeout=2).exchange(head(), None, 5)
        core = HttpCore(f"http://127.0.0.1:{port}", "secret-token", timeout=2)
        with pytest.raises(Unavailable, match="could not reach") as caught:
            await core.request("GET", "/healthz")
        assert "secret-token" not in str(caught.value)
        await core.aclose()

    asyncio.run(main())


def test_the_request_head_carries_host_headers_and_length() -> None:
    got = request_head("POST", "/v1/jobs?a=1", "h:1", {"authorization": "Bearer t"}, 12)
    assert got == (b"POST /v1/jobs?a=1 HTTP/1.1\r\nhost: h:1\r\nauthorization: Bearer t\r\n"
                   b"content-length: 12\r\n\r\n")
    assert b"content-length: 0" in request_head("POST", "/", "h", {}, None)
    assert b"content-length" not in request_head("GET", "/", "h", {}, None)
