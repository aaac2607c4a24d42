"""Request bodies of the hot routes, validated straight from bytes.

FastAPI validates a body by decoding it with the standard ``json`` module and then
validating the Python objects: for batches of a thousand jobs that was an eighth of
the coordinator's time. :func:`parse` hands the raw bytes to pydantic's own JSON
validator instead, and reports errors exactly as FastAPI would (a 422 naming the
field). :func:`documented` keeps the OpenAPI document complete: the route names the
schema, and :func:`register_schemas` puts the models into ``components``.

Never use this for a route whose body is not a pydantic model of :mod:`hearth.wire`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.requests import Request

M = TypeVar("M", bound=pydantic.BaseModel)

#: Every model parsed by :func:`parse`, for :func:`register_schemas`.
_MODELS: dict[str, type[pydantic.BaseModel]] = {}


async def parse(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        raise RequestValidationError(errors) from None


def documented(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body :func:`parse` reads as ``model``."""
    _MODELS[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def register_schemas(app: FastAPI) -> None:
    """Generate the OpenAPI document once, with the hot routes' body models in it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            _, defs = models_json_schema(
                [(m, "validation") for m in _MODELS.values()],
                ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
