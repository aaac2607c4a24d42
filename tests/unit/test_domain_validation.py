"""Input rules for names, digests and job specs (``hearth.domain.validation``)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from hearth.domain.jobs import BlobRef, JobSpec
from hearth.domain.retry import Backoff
from hearth.domain.validation import (
    MAX_IDEMPOTENCY_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_PRIORITY,
    MAX_SECONDS,
    check_digest,
    check_kind,
    check_namespace,
    check_node_name,
    check_spec,
)
from hearth.errors import PayloadTooLarge, ValidationError

DIGEST = "0123456789abcdef" * 4


def _table(checker: Any, valid: list[Any], invalid: list[Any]) -> list[Any]:
    return [pytest.param(checker, v, True, id=f"{checker.__name__}-ok-{v!r}") for v in valid] + [
        pytest.param(checker, v, False, id=f"{checker.__name__}-bad-{v!r}"[:80])
        for v in invalid
    ]


NAME_CASES = [
    *_table(
        check_kind,
        valid=["a", "7", "email.send", "img_resize-v2", "a" * 64, "0.-_"],
        invalid=["", "Email", "EMAIL.SEND", "-send", ".send", "_send", "a" * 65, "café",
                 "\uff4bind", "send email", "send/email", "send\n", "send\x00", None, 5],
    ),
    *_table(
        check_namespace,
        valid=["default", "a", "team-1", "0", "a" * 63],
        invalid=["", "a" * 64, "Team", "-team", "team_1", "team.1", "équipe", "team\n",
                 None],
    ),
    *_table(
        check_digest,
        valid=[DIGEST, "0" * 64, "f" * 64],
        invalid=["../../etc/passwd", DIGEST.upper(), "A" + DIGEST[1:], DIGEST[:63],
                 DIGEST + "0", "g" * 64, DIGEST + "\n", " " + DIGEST[1:], "", None, 42,
                 DIGEST.encode(), "../" + DIGEST[3:], "\uff10" + DIGEST[1:]],
    ),
    *_table(
        check_node_name,
        valid=["node-1", "Node.A_b", "a" * 63],
        invalid=["", "-node", "a" * 64, "node 1", "node/1", "node\n", None],
    ),
]


@pytest.mark.parametrize(("checker", "value", "ok"), NAME_CASES)
def test_names_and_digests(checker: Any, value: Any, ok: bool) -> None:
    if ok:
        assert checker(value) == value
    else:
        with pytest.raises(ValidationError):
            checker(value)


def test_a_long_bad_digest_is_not_echoed_back() -> None:
    with pytest.raises(ValidationError) as info:
        check_digest("x" * 10_000)
    assert "x" * 81 not in info.value.message


# -- check_spec -------------------------------------------------------------------------
SPEC = JobSpec(kind="email.send", payload=b'{"to": "a@b"}', payload_type="json",
               input_blobs=(BlobRef(DIGEST, 10, "in.png"),), labels={"team": "a"},
               idempotency_key="k-1", timeout=60.0)


def test_a_good_spec_is_returned_unchanged() -> None:
    assert check_spec(SPEC) is SPEC


@pytest.mark.parametrize(
    "changes",
    [
        {"payload": b"x" * 1024 * 1024},
        {"delay": 0.0},
        {"delay": MAX_SECONDS},
        {"run_at": 0.0},
        {"max_attempts": 0},
        {"max_attempts": 1_000_000},
        {"lease_ttl": 1.0},
        {"timeout": None},
        {"priority": MAX_PRIORITY},
        {"priority": -MAX_PRIORITY},
        {"labels": {f"k{i}": "v" for i in range(MAX_LABELS)}},
        {"labels": {"team/owner": "x" * MAX_LABEL_VALUE, "A.b_c-d": "", "k" * 63: "v"}},
        {"idempotency_key": "k" * MAX_IDEMPOTENCY_KEY},
        {"idempotency_key": None},
        {"input_blobs": ()},
    ],
    ids=lambda value: repr(value)[:60],
)
def test_spec_edges_that_are_allowed(changes: dict[str, Any]) -> None:
    check_spec(replace(SPEC, **changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "Bad Kind"}, "job kind"),
        ({"namespace": "Bad_NS"}, "namespace"),
        ({"payload_type": "xml"}, "payload_type"),
        ({"delay": -1.0}, "delay"),
        ({"delay": math.nan}, "delay must be a finite"),
        ({"delay": math.inf}, "delay must be a finite"),
        ({"delay": -math.inf}, "delay must be a finite"),
        ({"delay": MAX_SECONDS + 1}, "ten years"),
        ({"run_at": -1.0}, "run_at"),
        ({"run_at": math.nan}, "run_at"),
        ({"run_at": math.inf}, "run_at"),
        ({"lease_ttl": 0.5}, "at least 1 second"),
        ({"lease_ttl": 0.0}, "lease_ttl"),
        ({"lease_ttl": -5.0}, "lease_ttl"),
        ({"lease_ttl": math.nan}, "lease_ttl must be a finite"),
        ({"lease_ttl": math.inf}, "lease_ttl must be a finite"),
        ({"timeout": 0.0}, "timeout"),
        ({"timeout": math.nan}, "timeout must be a finite"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": 1_000_001}, "max_attempts"),
        ({"max_attempts": 2**40}, "max_attempts"),
        ({"labels": {"team": "a\x00"}}, "NUL"),
        ({"idempotency_key": "k\x00"}, "NUL"),
        ({"priority": MAX_PRIORITY + 1}, "priority"),
        ({"priority": -MAX_PRIORITY - 1}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"backoff": Backoff(max=math.inf)}, "backoff max"),
        ({"backoff": Backoff(max=MAX_SECONDS * 2)}, "backoff max"),
        ({"labels": {f"k{i}": "v" for i in range(MAX_LABELS + 1)}}, "at most 32 labels"),
        ({"labels": {"": "v"}}, "label key"),
        ({"labels": {"-team": "v"}}, "label key"),
        ({"labels": {"my team": "v"}}, "label key"),
        ({"labels": {"équipe": "v"}}, "label key"),
        ({"labels": {"k" * 64: "v"}}, "label key"),
        ({"labels": {"team\n": "v"}}, "label key"),
        ({"labels": {1: "v"}}, "label key"),
        ({"labels": {"team": "x" * (MAX_LABEL_VALUE + 1)}}, "label 'team'"),
        ({"labels": {"team": 7}}, "label 'team'"),
        ({"idempotency_key": "k" * (MAX_IDEMPOTENCY_KEY + 1)}, "idempotency_key"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"input_blobs": (BlobRef("../../etc/passwd", 1),)}, "blob digest"),
        ({"input_blobs": (BlobRef(DIGEST, -1),)}, "blob size"),
        ({"input_blobs": (BlobRef(DIGEST, 1, "a/b"),)}, "blob name"),
        ({"input_blobs": (BlobRef(DIGEST, 1, "x" * 256),)}, "blob name"),
    ],
    ids=lambda value: repr(value)[:60],
)
def test_spec_rejects(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        check_spec(replace(SPEC, **changes))


@pytest.mark.parametrize(("size", "limit"), [(11, 10), (1024 * 1024 + 1, None)])
def test_payload_over_the_limit(size: int, limit: int | None) -> None:
    spec = replace(SPEC, payload=b"x" * size)
    with pytest.raises(PayloadTooLarge) as info:
        check_spec(spec) if limit is None else check_spec(spec, max_payload=limit)
    expected_limit = 1024 * 1024 if limit is None else limit
    assert f"the limit is {expected_limit} bytes" in info.value.message
    assert "blob" in info.value.message
    assert info.value.status == 413


def test_payload_at_the_limit_is_fine() -> None:
    check_spec(replace(SPEC, payload=b"x" * 10), max_payload=10)
