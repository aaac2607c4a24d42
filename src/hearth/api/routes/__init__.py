"""The ``/v1`` routers, one module per resource; each is built over an ApiContext."""

from __future__ import annotations

from typing import Any

from hearth.wire import ErrorBody

_ERR = {"model": ErrorBody}
#: Documented error answers shared by every authenticated route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {**_ERR, "description": "no token, or not a valid one"},
    403: {**_ERR, "description": "authenticated, but not allowed"},
    422: {**_ERR, "description": "the request is not valid"},
    503: {**_ERR, "description": "the store cannot be reached"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {**_ERR, "description": "no such object"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {**_ERR, "description": "the object's state forbids this"}}
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {**_ERR, "description": "the body or payload is over the limit"}}
