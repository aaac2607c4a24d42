"""Error answers and connection failures become ``hearth.errors`` classes in the client.

Uses httpx's own ``MockTransport`` as the server: the client code under test is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

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


def run_with(handler: Callable[[httpx.Request], httpx.Response],
             call: Callable[[AsyncClient], object]) -> object:
    async def main() -> object:
        async with AsyncClient("http://coordinator.test", token=TOKEN,
                               transport=httpx.MockTransport(handler)) as client:
            return await call(client)  # type: ignore[misc]

    return asyncio.run(main())


def test_error_body_is_raised_as_its_class_with_the_server_sentence() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        return httpx.Response(409, json={"error": "job j_1 is already succeeded.",
                                         "code": "invalid_transition"})

    with pytest.raises(InvalidTransition, match="already succeeded"):
        run_with(handler, lambda c: c.cancel("j_1"))


def test_non_json_error_names_the_coordinator_and_status() -> None:
    with pytest.raises(HearthError, match=r"coordinator\.test answered 502"):
        run_with(lambda r: httpx.Response(502, text="<html>bad gateway</html>"),
                 lambda c: c.get("j_1"))


def test_connection_refused_is_unavailable_with_advice_and_no_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(Unavailable) as info:
        run_with(handler, lambda c: c.get("j_1"))
    text = str(info.value)
    assert "http://coordinator.test" in text
    assert "hearth up" in text
    assert TOKEN not in text and TOKEN not in repr(info.value)


def test_timeout_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(Unavailable, match="did not answer"):
        run_with(handler, lambda c: c.nodes())


def test_payload_and_data_together_are_refused_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with pytest.raises(ValidationError, match="not both"):
        run_with(handler, lambda c: c.submit("echo", {"a": 1}, data=b"x"))


def test_bad_digest_is_refused_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with pytest.raises(ValidationError, match="digest"):
        run_with(handler, lambda c: c.get_blob("../../etc/passwd"))


def test_submit_sends_only_what_was_given() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(400, json={"error": "stop here.", "code": "invalid"})

    with pytest.raises(ValidationError):
        run_with(handler, lambda c: c.submit("echo", data=b"\x00\x01",
                                             blobs=[("in", "a" * 64)]))
    import orjson

    body = orjson.loads(seen[0])
    assert body["payload_b64"] == "AAE="
    assert "payload" not in body
    assert body["input_blobs"] == [{"digest": "a" * 64, "name": "in"}]


def test_repr_never_shows_the_token() -> None:
    async def main() -> str:
        async with AsyncClient("http://coordinator.test", token=TOKEN) as client:
            return repr(client) + repr(client.__dict__)

    assert TOKEN not in asyncio.run(main())
