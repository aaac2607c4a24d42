"""Schemathesis drives every operation of the served ``/openapi.json`` against a real
coordinator (uvicorn on a free port, a real SQLite file or PostgreSQL database).

What must hold for every generated request, valid by the schema or not:
- no 5xx answer (any is a bug: README, "Bad input changes nothing");
- the status code is one the document lists for the operation, the content type is the
  documented one, and the body validates against the documented schema;
- a JSON body the schema rejects is not accepted (no 2xx), pydantic's lax numbers
  aside (see :func:`rejects_invalid_data`).

Two callers: the admin token (``<data>/admin.token``), on SQLite and PostgreSQL; and
callers without valid credentials (no header, a malformed header, an unknown or a
revoked API token), on SQLite only since they never reach the store, who must get 401
from every ``/v1`` route: every body is read only after authentication.

Generation is steered a little towards the interesting paths: before fuzzing, the
test makes jobs in every state, a lease, a blob, a token and a node, and schema-valid
cases sometimes have their ids, tokens, digests and names swapped for those.

Long polls and streams are bounded, not excluded:
- ``POST /v1/leases`` (``wait``, up to 60 s) and ``GET /v1/jobs/{id}/wait``
  (``timeout``, up to 60 s, 30 by default) have those values cut to at most
  ``MAX_WAIT`` seconds (another valid value, so a valid case stays valid);
- ``GET /v1/watch`` is an endless SSE stream, so it has its own test below: the same
  generated cases, sent with httpx streaming, and only the status, headers and the
  first line are read (``: watching`` on 200; an error body otherwise, validated).
Nothing else is excluded; :func:`test_every_served_operation_is_fuzzed` pins the list.
"""

from __future__ import annotations

import base64
import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.core.mutations import Mutation
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hearth.coordinator import Settings, serve_in_thread

from . import FuzzBudget

#: Every operation the coordinator serves, as "METHOD /path". A new route fails
#: test_every_served_operation_is_fuzzed until it is added here (and so fuzzed).
OPERATIONS = (
    "GET /healthz",
    "GET /metrics",
    "GET /v1/jobs",
    "POST /v1/jobs",
    "POST /v1/jobs/batch",
    "GET /v1/jobs/{job_id}",
    "GET /v1/jobs/{job_id}/events",
    "GET /v1/jobs/{job_id}/wait",
    "POST /v1/jobs/{job_id}/cancel",
    "POST /v1/jobs/{job_id}/retry",
    "POST /v1/jobs/{job_id}/heartbeat",
    "POST /v1/jobs/{job_id}/finish",
    "GET /v1/events",
    "GET /v1/nodes",
    "POST /v1/nodes",
    "POST /v1/leases",
    "POST /v1/leases/heartbeat",
    "POST /v1/leases/finish",
    "POST /v1/blobs",
    "PUT /v1/blobs/{digest}",
    "GET /v1/blobs/{digest}",
    "HEAD /v1/blobs/{digest}",
    "GET /v1/whoami",
    "POST /v1/enrollments",
    "GET /v1/certificates",
    "POST /v1/certificates/revoke",
    "GET /v1/tokens",
    "POST /v1/tokens",
    "DELETE /v1/tokens/{id_or_name}",
)
#: Streams are read by test_watch_answers_at_once, not by the generic loop.
STREAMS = ("GET /v1/watch",)
#: Long polls are cut to this many seconds.
MAX_WAIT = 0.2
#: Per request; a request that hangs longer is a failure, not a stuck test.
REQUEST_TIMEOUT = 15.0



_LAX_WORDS = {"true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"}


def _lax_scalar(value: Any) -> bool:
    """A value pydantic's lax mode turns into a number or a bool: a bool, a number, a
    numeric string or a word like "yes"."""
    if isinstance(value, bool | int | float):
        return True
    if not isinstance(value, str):
        return False
    if value.strip().lower() in _LAX_WORDS:
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


def _values_at(node: Any, path: tuple[str | int, ...]) -> list[Any]:
    """The values at ``path`` in ``node`` (a mutation's path skips array indexes)."""
    if isinstance(node, list):
        return [v for item in node for v in _values_at(item, path)]
    if not path:
        return [node]
    if isinstance(node, dict) and path[0] in node:
        return _values_at(node[path[0]], path[1:])
    return []


def _tolerated(case: Case, mutation: Mutation) -> bool:
    """Whether a negated value is one the API is known to accept (see below)."""
    if mutation.parameter_location is not ParameterLocation.BODY:
        return True
    if mutation.keywords not in (("type",), ("anyOf",)):
        return False
    values = _values_at(case.body, tuple(mutation.path))
    return bool(values) and all(_lax_scalar(v) for v in values)


def rejects_invalid_data(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """negative_data_rejection, for JSON bodies, except pydantic's lax numbers.

    - Request bodies are validated in pydantic's default (lax) mode, so a number
      field also takes ``true`` (1), ``"3"`` or ``2.0`` for an integer, and a bool
      field ``1`` or ``"yes"``. That is how the API has always parsed them, not a
      fault found here: a type change to such a value is let through.
    - A "negative" query, path or header value is often a valid one once on the
      wire, where everything is a string: ``{}`` for a string is sent as ``kind=``.
      Those are still checked for 5xx and for documented answers, not for refusal.
    Any other schema-violating body that is accepted fails the test.
    """
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        meta = case.meta
        mutations = getattr(meta.phase.data, "mutations", ()) if meta is not None else ()
        if mutations and all(_tolerated(case, m) for m in mutations):
            return None
        raise


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    rejects_invalid_data,
]
# Left out on purpose: positive_data_acceptance (the schema cannot say everything the
# server checks: kind and namespace patterns, unknown ids, stale tokens are all 4xx for
# schema-valid input), and the stateful checks (use_after_free and friends), which need
# Schemathesis's own runner. Credentials are covered by the anonymous test below.


@dataclass
class Served:
    """A running coordinator, its document, and the objects made before fuzzing."""

    url: str
    token: str
    schema: schemathesis.BaseSchema
    job_ids: list[str]
    lease_tokens: list[str]
    digests: list[str]
    names: list[str]
    revoked_token: str


def _seed(http: httpx.Client) -> dict[str, list[str]]:
    """Jobs in every state, a live lease, a blob, a token and a node to aim at."""
    def post(path: str, body: Any, status: int = 200) -> Any:
        r = http.post(path, json=body)
        assert r.status_code == status, (path, r.status_code, r.text)
        return r.json()

    def submit(**job: Any) -> str:
        return str(post("/v1/jobs", {"kind": "fz.seed", **job}, 201)["id"])

    def lease() -> dict[str, Any]:
        [got] = post("/v1/leases", {"worker": "fz-w", "kinds": ["fz.seed"]})["leases"]
        return dict(got)

    def finish(got: dict[str, Any], outcome: str, **extra: Any) -> None:
        item = {"job_id": got["job"]["id"], "token": got["token"], "outcome": outcome, **extra}
        [answer] = post("/v1/leases/finish", {"worker": "fz-w", "items": [item]})["items"]
        assert answer["status"] == 200, answer

    ids: list[str] = []
    tokens: list[str] = []
    post("/v1/nodes", {"name": "fz-w", "kinds": ["fz.seed"]})
    for outcome, extra in (("succeeded", {"result": {"payload": {"ok": 1}}}),
                           ("failed", {"error": {"message": "boom", "retryable": False}}),
                           ("failed", {"error": {"message": "boom"}}),
                           ("cancelled", {})):
        ids.append(submit(payload={"outcome": outcome}, max_attempts=3))
        got = lease()
        tokens.append(got["token"])
        finish(got, outcome, **extra)  # succeeded, dead, failed (backing off), cancelled
    ids.append(submit(payload_b64=base64.b64encode(b"\x00bytes").decode()))
    got = lease()
    ids.append(submit(priority=-5, idempotency_key="fz-key", labels={"team": "fz"}))
    tokens.append(got["token"])  # still leased, live
    ids.append(submit(delay=3600.0))  # queued, not due
    digest = str(http.post("/v1/blobs", content=b"fuzz blob").json()["digest"])
    ids.append(submit(input_blobs=[{"digest": digest, "name": "in.txt"}]))
    post("/v1/tokens", {"name": "fz-viewer", "role": "viewer"}, 201)
    revoked = post("/v1/tokens", {"name": "fz-revoked", "role": "operator"}, 201)["token"]
    r = http.delete("/v1/tokens/fz-revoked")
    assert r.status_code == 200, r.text
    return {"job_ids": ids, "lease_tokens": tokens, "digests": [digest],
            "names": ["fz-w", "fz-viewer", "fz-revoked", "admin"], "revoked": [revoked]}


@contextlib.contextmanager
def serve(store_url: str, data: Path) -> Iterator[Served]:
    settings_ = Settings(data_dir=data, port=0, store_url=store_url, log_level="warning")
    with serve_in_thread(settings_) as url:
        token = (data / "admin.token").read_text().strip()
        with httpx.Client(base_url=url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            seeded = _seed(http)
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=30)
        # Credentials are the test's to choose (admin token, none, bad ones); and an
        # unknown query parameter is ignored, as by most HTTP APIs, so not "negative".
        schema.config.generation.update(allow_extra_parameters=False,
                                        with_security_parameters=False)
        yield Served(url=url, token=token, schema=schema, job_ids=seeded["job_ids"],
                     lease_tokens=seeded["lease_tokens"], digests=seeded["digests"],
                     names=seeded["names"], revoked_token=seeded["revoked"][0])


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[Served]:
    with serve(store_url, tmp_path / "data") as it:
        yield it


@pytest.fixture
def served_sqlite(sqlite_url: str, tmp_path: Path) -> Iterator[Served]:
    with serve(sqlite_url, tmp_path / "data") as it:
        yield it


# -- steering and bounding the generated cases ----------------------------------------

_SWAP_KEYS = ("job_id", "token", "worker", "digest", "name")


def _known(served: Served, key: str) -> list[str]:
    return {"job_id": served.job_ids, "token": served.lease_tokens, "worker": ["fz-w"],
            "digest": served.digests, "name": served.names,
            "id_or_name": served.names}.get(key, [])


def _steer(case: Case, served: Served, pick: Callable[[list[str]], str | None]) -> None:
    """Swap some ids, tokens, digests and names of a schema-valid case for real ones
    (another valid string: a valid case stays valid). ``pick`` returns None to keep."""
    for key in list(case.path_parameters or {}):
        known = _known(served, key)
        if known and (value := pick(known)) is not None:
            case.path_parameters[key] = value

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _SWAP_KEYS and isinstance(value, str):
                    known = _known(served, key)
                    if known and (new := pick(known)) is not None:
                        node[key] = new
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    if isinstance(case.body, dict | list):
        walk(case.body)
    if case.query and isinstance(case.query.get("worker"), str) and pick(["fz-w"]):
        case.query["worker"] = "fz-w"


def _is_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_WAIT


def _bound_waits(case: Case) -> None:
    """Cut long-poll waits to MAX_WAIT s (a valid value for a valid one; an invalid
    value is left alone and answered 422 at once)."""
    if isinstance(case.body, dict) and _is_seconds(case.body.get("wait")) and (
            case.body["wait"] <= 60):
        case.body["wait"] = MAX_WAIT
    if case.path.endswith("/wait"):
        if case.query is None:
            case.query = {}
        case.query.setdefault("timeout", MAX_WAIT)  # the default is 30 s
    if case.query:
        timeout = case.query.get("timeout")
        with contextlib.suppress(TypeError, ValueError):
            if isinstance(timeout, str) and 0 <= float(timeout) <= 60:
                timeout = float(timeout)
        if _is_seconds(timeout) and timeout <= 60:
            case.query["timeout"] = MAX_WAIT


def _strategy(schema: schemathesis.BaseSchema, label: str) -> st.SearchStrategy[Case]:
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    modes = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    with contextlib.suppress(Exception):  # an operation with nothing to negate
        modes.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    return st.one_of(modes)


def _fuzz_settings(examples: int) -> settings:
    # No shrinking: Schemathesis prints a curl command for the failing request, and
    # shrinking HTTP cases can take minutes.
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))


def _run_each(labels: tuple[str, ...], run: Callable[[str], None],
              sent: Counter[str]) -> None:
    """Run every operation, then report all that failed at once. ``sent`` counts the
    requests per operation: each must have been sent at least once."""
    failures = []
    for label in labels:
        try:
            run(label)
        except Exception as exc:  # the failure of one operation
            failures.append(f"--- {label}\n{exc}")
    if failures:
        pytest.fail(f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures),
                    pytrace=False)
    print(f"{sum(sent.values())} requests over {len(sent)} operations: "
          + ", ".join(f"{label} {n}" for label, n in sorted(sent.items())))
    assert set(sent) == set(labels), f"never sent: {set(labels) - set(sent)}"


# -- the tests ------------------------------------------------------------------------


def test_every_served_operation_is_fuzzed(served_sqlite: Served) -> None:
    doc = requests.get(f"{served_sqlite.url}/openapi.json", timeout=30).json()
    served_ops = {f"{method.upper()} {path}" for path, ops in doc["paths"].items()
                  for method in ops}
    assert served_ops == set(OPERATIONS) | set(STREAMS)


def test_fuzz_api_with_the_admin_token(served: Served, fuzz_budget: FuzzBudget) -> None:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {served.token}"}
    sent = Counter[str]()

    def run(label: str) -> None:
        @_fuzz_settings(fuzz_budget.api_examples)
        @given(case=_strategy(served.schema, label), data=st.data())
        def fuzz(case: Case, data: st.DataObject) -> None:
            meta = case.meta
            if meta is not None and not meta.generation.mode.is_negative:
                def pick(known: list[str]) -> str | None:
                    return data.draw(st.one_of(st.none(), st.sampled_from(known)))
                _steer(case, served, pick)
            _bound_waits(case)
            sent[label] += 1
            case.call_and_validate(base_url=served.url, session=session, headers=headers,
                                   checks=CHECKS, timeout=REQUEST_TIMEOUT)

        fuzz()

    try:
        _run_each(OPERATIONS, run, sent)
    finally:
        session.close()


def test_fuzz_api_without_credentials(served_sqlite: Served, fuzz_budget: FuzzBudget) -> None:
    served = served_sqlite
    session = requests.Session()
    credentials = [None, "Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=",
                   "Bearer hth_unknown_secret", f"Bearer {served.revoked_token}",
                   f"Bearer {served.token}x"]
    sent = Counter[str]()

    def run(label: str) -> None:
        @_fuzz_settings(fuzz_budget.anonymous_examples)
        @given(case=_strategy(served.schema, label),
               authorization=st.sampled_from(credentials))
        def fuzz(case: Case, authorization: str | None) -> None:
            case.headers.pop("Authorization", None)
            headers = {} if authorization is None else {"Authorization": authorization}
            _bound_waits(case)
            sent[label] += 1
            response = case.call_and_validate(base_url=served.url, session=session,
                                              headers=headers, checks=CHECKS,
                                              timeout=REQUEST_TIMEOUT)
            if case.path.startswith("/v1/"):
                assert response.status_code == 401, (response.status_code, response.text)

        fuzz()

    try:
        _run_each(OPERATIONS, run, sent)
    finally:
        session.close()


def test_watch_answers_at_once(served_sqlite: Served, fuzz_budget: FuzzBudget) -> None:
    """``GET /v1/watch`` never ends on success, so only its opening is read: status,
    headers and the first line, within REQUEST_TIMEOUT."""
    served = served_sqlite
    [label] = STREAMS
    documented = {"200", "401", "403", "404", "422", "503"}
    with httpx.Client(base_url=served.url, timeout=REQUEST_TIMEOUT) as http:
        @_fuzz_settings(fuzz_budget.api_examples)
        @given(case=_strategy(served.schema, label), data=st.data(),
               authorized=st.booleans())
        def fuzz(case: Case, data: st.DataObject, authorized: bool) -> None:
            meta = case.meta
            if meta is not None and not meta.generation.mode.is_negative:
                def pick(known: list[str]) -> str | None:
                    return data.draw(st.one_of(st.none(), st.sampled_from(known)))
                if pick(["job"]):
                    case.query["job_id"] = data.draw(st.sampled_from(served.job_ids))
            kwargs = case.as_transport_kwargs(base_url=served.url)
            headers = {k: v for k, v in (kwargs.get("headers") or {}).items()
                       if k.lower() != "authorization"}
            if authorized:
                headers["Authorization"] = f"Bearer {served.token}"
            request = http.build_request("GET", kwargs["url"], params=kwargs.get("params"),
                                         headers=headers)
            with http.stream("GET", request.url, headers=request.headers) as response:
                assert str(response.status_code) in documented, response.status_code
                if not authorized:
                    assert response.status_code == 401
                if response.status_code == 200:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    first = next(response.iter_lines())
                    assert first == ": watching", first
                    return
                response.read()
            case.validate_response(response, checks=CHECKS)

        fuzz()

