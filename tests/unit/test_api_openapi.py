"""The served OpenAPI document is complete: every body documented, every $ref defined.

The hot routes read their bodies with pydantic's JSON validator rather than FastAPI's,
so their schemas are registered by hand (hearth.api.body); this pins that they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hearth.coordinator import Settings, build_app

HOT_BODIES = {
    "/v1/jobs": "JobSubmit",
    "/v1/jobs/batch": "JobBatchSubmit",
    "/v1/leases": "LeaseRequest",
    "/v1/leases/heartbeat": "HeartbeatBatch",
    "/v1/leases/finish": "FinishBatch",
}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def test_hot_routes_document_their_bodies_and_every_ref_resolves(tmp_path: Path) -> None:
    doc = build_app(Settings(data_dir=tmp_path)).openapi()
    schemas = doc["components"]["schemas"]
    for path, model in HOT_BODIES.items():
        body = doc["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"}
        assert schemas[model]["type"] == "object"
    missing = {ref for ref in _refs(doc) if ref.rsplit("/", 1)[-1] not in schemas}
    assert missing == set()
    assert "JobSubmit" in str(schemas["JobBatchSubmit"])  # nested models are linked
