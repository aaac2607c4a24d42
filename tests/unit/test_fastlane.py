"""The fast lane (``hearth.api.fastlane``): the hot routes answered by their own handlers
after the shared permission check, everything else passed on untouched, and the table
that ``create_app`` fills naming exactly the job-traffic routes."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from hearth.api.app import create_app
from hearth.api.auth import JOBS_SUBMIT, Principal, RequestAuthenticator
from hearth.api.context import ApiContext
from hearth.api.fastlane import FastLane, HotRoutes
from hearth.engine.metrics import Metrics

TOKEN = "admin-secret"


def _ctx() -> ApiContext:
    return ApiContext(authenticator=RequestAuthenticator(TOKEN), metrics=Metrics(),
                      max_request=1 << 20, max_blob=1 << 20, version="test")


async def _acall(app: Any, method: str, path: str, *, token: str | None = TOKEN,
                body: bytes = b"") -> tuple[int, Any]:
    headers = [(b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
             "scheme": "http", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    sent = [{"type": "http.request", "body": body, "more_body": False}]
    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return sent.pop(0) if sent else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in out if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
    return status, orjson.loads(content) if content else None


def _call(app: Any, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    return asyncio.run(_acall(app, method, path, **kw))


class _Downstream:
    """Stands for FastAPI: records what reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await Response(b'{"via": "app"}', media_type="application/json")(scope, receive,
                                                                          send)


def _lane() -> tuple[FastLane, _Downstream, list[Principal]]:
    ctx = _ctx()
    seen: list[Principal] = []
    routes = HotRoutes()

    @routes.add("POST", "/v1/jobs", JOBS_SUBMIT)
    async def submit(request: Request, principal: Principal) -> Response:
        seen.append(principal)
        return Response(orjson.dumps({"via": "lane", "body": (await request.body()).decode()}),
                        media_type="application/json")

    down = _Downstream()
    return FastLane(down, routes=routes, ctx=ctx), down, seen


def test_a_hot_route_is_answered_by_its_handler_without_reaching_the_app() -> None:
    lane, down, seen = _lane()
    status, body = _call(lane, "POST", "/v1/jobs", body=b'{"kind": "x"}')
    assert (status, body) == (200, {"via": "lane", "body": '{"kind": "x"}'})
    assert down.paths == [] and [p.role for p in seen] == ["admin"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/jobs"), ("POST", "/v1/jobs/x"),
                                              ("POST", "/v1/leases")])
def test_any_other_route_goes_on_to_the_app(method: str, path: str) -> None:
    lane, down, seen = _lane()
    assert _call(lane, method, path) == (200, {"via": "app"})
    assert down.paths == [path] and seen == []


def test_credentials_are_checked_before_the_handler_runs() -> None:
    lane, down, seen = _lane()
    status, body = _call(lane, "POST", "/v1/jobs", token="wrong")
    assert status == 401 and body["code"] == "unauthorized"
    status, body = _call(lane, "POST", "/v1/jobs", token=None)
    assert status == 401 and "needs credentials" in body["error"]
    assert seen == [] and down.paths == []


def test_a_hot_route_must_also_be_a_fastapi_route() -> None:
    routes = HotRoutes()
    routes.add("POST", "/v1/nowhere", JOBS_SUBMIT)(_handler)
    app = FastAPI()
    router = APIRouter(prefix="/v1")
    router.post("/elsewhere")(_handler)
    app.include_router(router)
    with pytest.raises(RuntimeError, match="POST /v1/nowhere must also be a FastAPI route"):
        routes.bind(app.routes)


async def _handler(request: Request, principal: Principal) -> Response:
    return Response(b"")  # pragma: no cover - never called


def test_the_app_serves_exactly_the_job_traffic_routes_in_the_lane() -> None:
    ctx = _ctx()
    app = create_app(ctx)
    # Innermost of the app's own middleware: inside the body limit and request counter.
    assert [m.cls for m in app.user_middleware][-1] is FastLane
    assert sorted(ctx.hot.table) == [("POST", "/v1/jobs"), ("POST", "/v1/jobs/batch"),
                                     ("POST", "/v1/leases"), ("POST", "/v1/leases/finish"),
                                     ("POST", "/v1/leases/heartbeat")]
    for (method, path), hot in ctx.hot.table.items():
        assert hot.route.path == path and method in hot.route.methods
