"""The HTTP core of the client: keep-alive connections and the error mapping.

Every request of :class:`hearth.client.AsyncClient` goes through :class:`HttpCore`, so
there is one place that turns an error answer (``{"error": ..., "code": ...}``) back
into the :mod:`hearth.errors` class the coordinator raised, and one place that turns a
refused connection or a timeout into :class:`hearth.errors.Unavailable` with a sentence
saying what to do.

Whole-body exchanges (every API call but blob uploads and streamed answers) go over
the lean connections of :mod:`hearth.client.conn`; uploads and streams go through
aiohttp, which is imported the first time one is made (a worker that moves no blobs
never loads it).

It must never put the token into a message, a log line or an exception: the token
lives in the ``Authorization`` header of the pool and nowhere else.
"""

from __future__ import annotations

import codecs
import io
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import orjson
from pydantic import BaseModel

from hearth import __version__
from hearth.client.conn import ConnectFailed, Disconnected, Pool, request_head
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

if TYPE_CHECKING:
    import aiohttp

_KNOWN: tuple[type[HearthError], ...] = (
    ValidationError, PayloadTooLarge, NotFound, Conflict, InvalidTransition, StaleLease,
    Unauthorized, Forbidden, Unavailable,
)
_BY_CODE: dict[str, type[HearthError]] = {cls.code: cls for cls in _KNOWN}
_BY_STATUS: dict[int, type[HearthError]] = {
    422: ValidationError, 400: ValidationError, 413: PayloadTooLarge, 404: NotFound,
    409: Conflict, 401: Unauthorized, 403: Forbidden, 503: Unavailable,
}

#: Bodies longer than this are handed to aiohttp as a file, which it sends in pieces.
LARGE_BODY = 1024 * 1024

#: Query parameters: a mapping, or a list of pairs for repeated names.
Params = Any


def error_for(status: int, code: str | None, message: str | None) -> HearthError:
    """The :mod:`hearth.errors` instance for an error answer (or a batch item's error).

    The ``code`` decides when it is known (``stale_lease`` is a 409 like ``conflict``,
    but a different class); otherwise the status does.
    """
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    text = message or f"the coordinator answered with status {status}"
    if cls is None:
        err = HearthError(text)
        err.status = status
        if code:
            err.code = code
        return err
    return cls(text)


def _error_from_answer(response: Answer, url: str) -> HearthError:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body.get("code")
        return error_for(response.status_code, code if isinstance(code, str) else None,
                         body["error"])
    return error_for(
        response.status_code, None,
        f"the coordinator at {url} answered {response.status_code} "
        f"{response.reason_phrase or ''}".rstrip() + " without an error description",
    )


#: TLS failures the client itself detects or is told by an alert, by the OpenSSL
#: reason in the error text: the sentence to show. (Python's asyncio servers close the
#: connection without flushing their alert when they refuse a client certificate, so
#: such a refusal usually arrives as a bare disconnect: see :func:`unavailable`.)
_TLS_REASONS: tuple[tuple[str, str], ...] = (
    ("CERTIFICATE_VERIFY_FAILED", "the coordinator at {url} presented a certificate that "
     "this bundle's CA did not issue (or that does not cover this address): the bundle "
     "belongs to another Hearth coordinator, or the address is not the coordinator's"),
    ("CERTIFICATE_REQUIRED", "the coordinator at {url} requires a client certificate: "
     "pass --bundle FILE (made by `hearth enroll` on the coordinator) or set "
     "$HEARTH_BUNDLE"),
    ("UNKNOWN_CA", "the coordinator at {url} does not trust this client certificate: it "
     "was issued by another Hearth CA. Ask this coordinator's admin for a bundle "
     "(`hearth enroll NAME`)"),
    ("CERTIFICATE_EXPIRED", "the coordinator at {url} refused the client certificate: it "
     "has expired. Ask the coordinator's admin for a new bundle (`hearth enroll NAME`)"),
    ("WRONG_VERSION_NUMBER", "the coordinator at {url} does not speak TLS: use an "
     "http:// URL for a loopback coordinator"),
)


@dataclass(frozen=True, slots=True)
class ClientCert:
    """What the client knows of its own certificate, to explain a refusal."""

    name: str
    not_before: float
    not_after: float


def tls_failure(url: str, exc: BaseException) -> str | None:
    """The sentence for a TLS failure in ``exc`` (or its causes), if it is one."""
    seen: BaseException | None = exc
    text = ""
    while seen is not None:
        text += f" {seen}"
        if isinstance(seen, ssl.SSLError):  # aiohttp's own subclasses have no reason
            text += f" {getattr(seen, 'reason', None) or ''}"
        seen = seen.__cause__ or seen.__context__
    upper = text.upper().replace(" ", "_")
    for reason, sentence in _TLS_REASONS:
        if reason in upper:
            return sentence.format(url=url)
    return None


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _refused_certificate(url: str, cert: ClientCert | None) -> HearthError:
    """A TLS coordinator closed the connection before answering: most likely it refused
    the client certificate. Say why when the client can tell on its own."""
    now = time.time()
    if cert is None:
        return Unauthorized(f"the coordinator at {url} closed the connection without "
                            "answering: it requires a client certificate. Pass --bundle "
                            "FILE (made by `hearth enroll` on the coordinator)")
    if now >= cert.not_after:
        return Unauthorized(f"the coordinator at {url} refused the certificate of "
                            f"{cert.name}: it expired on {_day(cert.not_after)}. Ask the "
                            f"coordinator's admin for a new bundle (hearth enroll {cert.name})")
    if now < cert.not_before:
        return Unauthorized(f"the certificate of {cert.name} is valid only from "
                            f"{_day(cert.not_before)}: check this machine's clock")
    return Unavailable(
        f"the coordinator at {url} closed the connection without answering. If this "
        f"persists, it does not accept the certificate of {cert.name}: the bundle was made "
        "by another Hearth coordinator, or before this one's CA was replaced; ask its "
        f"admin for a new bundle (hearth enroll {cert.name})")


def unavailable(url: str, exc: Exception, timeout: float | None = None,
                cert: ClientCert | None = None) -> HearthError:
    """A sentence for a connection that failed; never includes headers or the token.

    A refusal that retrying cannot cure is :class:`Unauthorized`; anything else
    (including a bare disconnect, which a restarting coordinator causes too) is
    :class:`Unavailable`."""
    refused = tls_failure(url, exc)
    if refused is not None:
        return Unauthorized(refused)
    if isinstance(exc, Disconnected) or _dropped_by_aiohttp(exc):
        if url.startswith("https://"):
            return _refused_certificate(url, cert)
        return Unavailable(
            f"the coordinator at {url} closed the connection without answering: if it "
            "listens on a LAN address it speaks mutual TLS, so use an https:// URL and a "
            "bundle (--bundle)")
    if isinstance(exc, TimeoutError):
        within = f" within {timeout:g} s" if timeout else ""
        return Unavailable(
            f"the Hearth coordinator at {url} did not answer{within} "
            f"({type(exc).__name__}); it may be overloaded or stopped: is the coordinator "
            "running? start it with `hearth up`"
        )
    detail = str(exc) or type(exc).__name__
    return Unavailable(
        f"could not reach the Hearth coordinator at {url} ({detail}); is the coordinator "
        "running? start it with `hearth up`"
    )


def _dropped_by_aiohttp(exc: Exception) -> bool:
    """An aiohttp failure after the connection was made (only loaded if it is)."""
    import sys

    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and (
        isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError) or (
            isinstance(exc, aiohttp.ClientOSError)
            and not isinstance(exc, aiohttp.ClientConnectorError)))


def model_body(model: BaseModel) -> bytes:
    """JSON for a request model. Only fields the caller set are sent, so the server's
    defaults apply and ``payload`` keeps its meaning (set = JSON, unset = no payload)."""
    return model.model_dump_json(exclude_unset=True).encode()


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer: its status, headers and body."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return orjson.loads(self.content)


async def _read_answer(response: aiohttp.ClientResponse) -> Answer:
    return Answer(response.status, response.reason or "", response.headers,
                  await response.read())


class Stream:
    """A streamed answer being read: its status and headers, and its body piecewise.

    Transport failures while reading become :class:`Unavailable` (see
    :meth:`HttpCore.stream`)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers

    async def aiter_bytes(self, size: int) -> AsyncIterator[bytes]:
        async for block in self._response.content.iter_chunked(size):
            yield block

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines without their line endings (``\\n``, ``\\r\\n`` or ``\\r``),
        however long they are."""
        pending = ""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async for block in self._response.content.iter_any():
            text = pending + decoder.decode(block)
            # A "\r" at the end of a block may be the first half of "\r\n": hold it.
            held = text.endswith("\r")
            *lines, pending = (text[:-1] if held else text).replace(
                "\r\n", "\n").replace("\r", "\n").split("\n")
            if held:
                pending += "\r"
            for line in lines:
                yield line
        pending = (pending + decoder.decode(b"", final=True)).removesuffix("\r")
        if pending:
            yield pending


def _query(params: Params | None) -> list[tuple[str, str]] | None:
    """Query pairs as text (``true``/``false`` for booleans, as the API spells them)."""
    if params is None:
        return None
    pairs = params.items() if isinstance(params, Mapping) else params
    out = []
    for name, value in pairs:
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.append((str(name), text))
    return out


class HttpCore:
    """A pooled HTTP/1.1 connection to one coordinator, with errors mapped.

    A job's latency is two round trips (its submit, and the lease answer that carries
    it to a worker), so the whole-body exchanges take the shortest path there is
    (:mod:`hearth.client.conn`); aiohttp, which cost half of httpx here, carries blob
    uploads and streams. Connections are made on first use, on the loop that uses
    them."""

    #: Longest wait for a TCP connection: a coordinator that does not accept one within
    #: this is unreachable (a LAN answers in milliseconds), whatever the read timeout.
    CONNECT_TIMEOUT = 5.0
    #: Connections kept to the coordinator at most (long-polls each hold one).
    MAX_CONNECTIONS = 64

    def __init__(self, url: str, token: str | None, *, timeout: float,
                 ssl_context: ssl.SSLContext | None = None,
                 cert: ClientCert | None = None) -> None:
        self._headers = {"user-agent": f"hearth-python/{__version__}"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._cert = cert
        self._ssl_context = ssl_context
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._pool: Pool | None = None
        self._closed = False

    def retarget(self, url: str) -> None:
        """Send later requests to ``url`` (the same coordinator at a new address)."""
        self.url = url.rstrip("/")
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _lean(self) -> Pool:
        if self._closed:
            raise RuntimeError("this client is closed; create a new one")
        if self._pool is None:
            parts = urlsplit(self.url)
            tls = parts.scheme == "https"
            context = self._ssl_context
            if tls and context is None:
                context = ssl.create_default_context()
            host = parts.hostname or "127.0.0.1"
            self._pool = Pool(host, parts.port or (443 if tls else 80),
                              ssl_context=context if tls else None,
                              limit=self.MAX_CONNECTIONS,
                              connect_timeout=min(self.timeout, self.CONNECT_TIMEOUT))
            self._host = parts.netloc.rsplit("@", 1)[-1]
        return self._pool

    @property
    def closed(self) -> bool:
        return self._closed

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this client is closed; create a new one")
        if self._session is None:
            import aiohttp


            connector = aiohttp.TCPConnector(limit=self.MAX_CONNECTIONS, ssl=self._ssl,
                                             use_dns_cache=True)
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=connector, auto_decompress=True,
                timeout=self._timeout(0.0))
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _timeout(self, extra: float, read: float | None = None) -> aiohttp.ClientTimeout:
        import aiohttp

        """The client timeout, lengthened for a long-poll that waits ``extra`` seconds:
        it bounds the connect and each read, not the whole exchange (a big blob may
        take longer than ``timeout`` to arrive, as long as it keeps arriving)."""
        connect = min(self.timeout, self.CONNECT_TIMEOUT)
        return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect,
                                     sock_read=(self.timeout if read is None else read)
                                     + extra)

    def _target(self, path: str) -> Any:
        import yarl

        return yarl.URL(self.url + path, encoded=True)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Params | None = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        wait: float = 0.0,
    ) -> Answer:
        """Send one request; raise the mapped error for any status of 400 or more."""
        all_headers = dict(headers or {})
        if body is not None:
            all_headers["content-type"] = "application/json"
            content = body
        if content is None or (isinstance(content, bytes) and len(content) <= LARGE_BODY):
            answer = await self._exchange(method, path, content, params, all_headers, wait)
        else:
            answer = await self._aiohttp_request(method, path, content, params, all_headers,
                                                 wait)
        if answer.status_code >= 400:
            raise _error_from_answer(answer, self.url)
        return answer

    async def _exchange(self, method: str, path: str, content: bytes | None,
                        params: Params | None, headers: dict[str, str], wait: float
                        ) -> Answer:
        pool = self._lean()
        query = _query(params)
        target = f"{path}?{urlencode(query)}" if query else path
        head = request_head(method, target, self._host, {**self._headers, **headers},
                            None if content is None else len(content))
        try:
            status, got, data = await pool.exchange(head, content, self.timeout + wait)
        except (ConnectFailed, Disconnected, TimeoutError) as exc:
            raise unavailable(self.url, exc, self.timeout + wait, self._cert) from exc
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        return Answer(status, reason, got, data)

    async def _aiohttp_request(self, method: str, path: str, content: Any,
                               params: Params | None, headers: dict[str, str], wait: float
                               ) -> Answer:
        import aiohttp

        session = self._open()
        if isinstance(content, bytes) and len(content) > LARGE_BODY:
            content = io.BytesIO(content)  # written in pieces, not in one call
        all_headers = headers
        try:
            async with session.request(
                    method, self._target(path), data=content, params=_query(params),
                    headers=all_headers, timeout=self._timeout(wait),
            ) as response:
                answer = await _read_answer(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unavailable(self.url, exc, self.timeout + wait, self._cert) from exc
        return answer

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[Stream]:
        """A streamed answer; transport errors while reading it become ``Unavailable``."""
        import aiohttp

        session = self._open()
        try:
            async with session.request(method, self._target(path), params=_query(params),
                                       headers=dict(headers or {}),
                                       timeout=self._timeout(0.0, read_timeout)
                                       ) as response:
                if response.status >= 400:
                    raise _error_from_answer(await _read_answer(response), self.url)
                yield Stream(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise unavailable(self.url, exc, read_timeout, self._cert) from exc
