"""Every error answer as ``{"error": "<a sentence>", "code": "<code>"}``.

:class:`hearth.errors.HearthError` subclasses carry their status and code; request
validation failures (malformed JSON, schema errors) become one readable 422 sentence
naming the field and what is wrong; unknown routes and methods keep their status.
Unexpected exceptions are logged with their traceback and answered with a generic
sentence: internals, payloads and tokens never leak into an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from hearth.api.encode import error_of, error_response
from hearth.errors import HearthError

log = logging.getLogger(__name__)

_WHERE = {"body": "field", "query": "query parameter", "path": "path parameter",
          "header": "header"}
_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid",
          503: "unavailable"}
MAX_LISTED = 3


def _field(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _problem(error: dict[str, Any]) -> str:
    loc = tuple(error.get("loc") or ())
    kind = error.get("type", "")
    msg = str(error.get("msg", "is not valid"))
    if kind == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"the request body is not valid JSON ({detail}{at})".replace(" ()", "")
    source = _WHERE.get(str(loc[0]), "field") if loc else "field"
    name = _field(loc[1:]) if loc else ""
    if not name:
        if kind == "missing":
            return "the request body is missing; send a JSON object"
        return f"the request body is not valid: {msg}"
    if kind == "missing":
        return f"{source} '{name}' is required"
    if kind == "extra_forbidden":
        return f"{source} '{name}' is not a known field"
    return f"{source} '{name}' is not valid: {msg}"


def validation_sentence(errors: Sequence[Any]) -> str:
    problems = list(dict.fromkeys(_problem(e) for e in errors))
    text = "; ".join(problems[:MAX_LISTED])
    if len(problems) > MAX_LISTED:
        text += f"; and {len(problems) - MAX_LISTED} more problem(s)"
    return f"The request is not valid: {text}."


async def _hearth_error(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, HearthError):  # pragma: no cover - registered for HearthError
        raise exc
    return error_of(exc)


async def _request_invalid(_: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return error_response(validation_sentence(errors), "invalid", 422)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover
        raise exc
    status = exc.status_code
    if status == 400:
        # FastAPI's own body parsing answers 400 when the bytes cannot be decoded at all
        # (not UTF-8); like any other unreadable body, that is documented as 422.
        return error_response("The request is not valid: the request body is not valid "
                              "JSON (it is not UTF-8 text).", "invalid", 422)
    if status == 404 and exc.detail in (None, "Not Found"):
        message = (f"there is no route {request.method} {request.url.path}; the API is "
                   "described at /openapi.json")
    elif status == 405:
        message = (f"{request.method} is not allowed on {request.url.path}; see "
                   "/openapi.json for the methods it takes")
    else:
        message = str(exc.detail)
    return error_response(message, _CODES.get(status, "error"), status,
                          dict(exc.headers) if exc.headers else None)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error answering %s %s", request.method, request.url.path,
              exc_info=exc)
    return error_response("the coordinator hit an internal error; it was logged. Try "
                          "again, and report it if it persists", "internal", 500)


async def answer(request: Request, exc: Exception) -> Response:
    """The answer to ``exc``, as the app's exception handlers give it (for routes
    served outside FastAPI's routing: :mod:`hearth.api.fastlane`)."""
    if isinstance(exc, HearthError):
        return await _hearth_error(request, exc)
    if isinstance(exc, RequestValidationError):
        return await _request_invalid(request, exc)
    if isinstance(exc, HTTPException):
        return await _http_error(request, exc)
    return await _unexpected(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HearthError, _hearth_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
