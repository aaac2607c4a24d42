"""Fast JSON answers: orjson-encoded bytes in a plain starlette Response.

Hot routes build their answers from :func:`hearth.wire.job_to_wire` dicts and return
them through :func:`json_response`; the pydantic response models stay in the OpenAPI
document only. Never run per-job pydantic serialisation on a hot path.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from hearth.errors import HearthError
from hearth.store.port import ItemResult


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=headers,
                    media_type="application/json")


def error_response(message: str, code: str, status: int,
                   headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message, "code": code}, status, headers)


def error_of(exc: HearthError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.message, exc.code, exc.status, headers)


def item_to_wire(res: ItemResult) -> dict[str, Any]:
    """One :class:`hearth.wire.ItemOut` as a plain dict."""
    if res.error is not None or res.job is None:
        err = res.error or HearthError("the store returned no job for this item")
        return {"job_id": res.job_id, "status": err.status, "error": err.message,
                "code": err.code, "state": None, "cancel_requested": False,
                "lease_expires_at": None}
    job = res.job
    return {"job_id": res.job_id, "status": 200, "error": None, "code": None,
            "state": job.state.value, "cancel_requested": job.cancel_requested,
            "lease_expires_at": job.lease_expires_at}
