"""Store conformance for certificates and API tokens: every adapter must pass all of it.

Runs on real SQLite files and real PostgreSQL databases (``store_url``), clock
injected. The race (several creators of one token name) uses real threads on two
store instances sharing one database, as two coordinators would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hearth.domain.jobs import JobSpec
from hearth.errors import Conflict, NotFound, ValidationError
from hearth.store import CertRecord, Store, TokenRecord, open_store
from hearth.store.sql import SqlStore, migrate
from hearth.store.sql.backend import backend_for
from hearth.store.sql.schema import metadata

T0 = 1_800_000_000.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def cert(serial: str, name: str = "w1", issued_at: float = T0, **kw: object) -> CertRecord:
    fields: dict[str, object] = {
        "role": "worker", "kinds": ("img2pdf", "ocr"), "fingerprint": "ab" * 32,
        "not_after": issued_at + 86400, **kw}
    return CertRecord(serial=serial, name=name, issued_at=issued_at, **fields)  # type: ignore[arg-type]


def token(token_id: str, name: str = "ci", created_at: float = T0, **kw: object) -> TokenRecord:
    fields: dict[str, object] = {
        "role": "operator", "namespaces": ("team-a", "team-b"), "secret_hash": "cd" * 32, **kw}
    return TokenRecord(id=token_id, name=name, created_at=created_at, **fields)  # type: ignore[arg-type]


# -- certificates ------------------------------------------------------------------------


def test_certificates_round_trip_in_issue_order(store: Store) -> None:
    b = cert("0b", issued_at=T0 + 1)
    a2 = cert("0a2", name="w2", issued_at=T0)
    a1 = cert("0a1", issued_at=T0, role="admin", kinds=(), revoked_at=T0 + 5)
    for c in (b, a2, a1):
        store.record_certificate(c)
    assert store.list_certificates() == [a1, a2, b]
    assert store.list_certificates(name="w1") == [a1, b]
    assert store.list_certificates(name="nobody") == []


def test_a_duplicate_serial_is_a_conflict_and_serials_are_lowercase_hex(store: Store) -> None:
    store.record_certificate(cert("01f"))
    with pytest.raises(Conflict, match="01f"):
        store.record_certificate(cert("01f", name="other"))
    for bad in ("01F", "", "xyz", "0" * 65):
        with pytest.raises(ValidationError):
            store.record_certificate(cert(bad))
    assert [c.name for c in store.list_certificates()] == ["w1"]


def test_revoke_by_name_revokes_every_live_certificate_of_that_name(store: Store) -> None:
    old = cert("01", issued_at=T0, revoked_at=T0 + 1)
    live = [cert("02", issued_at=T0 + 2), cert("03", issued_at=T0 + 3)]
    other = cert("04", name="w2", issued_at=T0)
    for c in (old, *live, other):
        store.record_certificate(c)
    got = store.revoke_certificates(now=T0 + 10, name="w1")
    # Every match is returned as it is now; the earlier revocation keeps its time.
    assert got == [old, *(dataclasses.replace(c, revoked_at=T0 + 10) for c in live)]
    assert store.list_certificates(name="w1") == got
    assert store.list_certificates(name="w2") == [other]
    assert store.revoked_serials() == {"01", "02", "03"}
    # Again: nothing left to revoke, nothing changes.
    assert store.revoke_certificates(now=T0 + 20, name="w1") == got


def test_revoke_by_serial_revokes_only_that_certificate(store: Store) -> None:
    for c in (cert("0a", issued_at=T0), cert("0b", issued_at=T0 + 1)):
        store.record_certificate(c)
    assert store.revoked_serials() == set()
    [got] = store.revoke_certificates(now=T0 + 5, serial="0A")  # as openssl prints it
    assert (got.serial, got.revoked_at) == ("0a", T0 + 5)
    assert store.revoked_serials() == {"0a"}
    assert [c.revoked_at for c in store.list_certificates()] == [T0 + 5, None]
    assert store.revoke_certificates(now=T0 + 9, serial="0a") == [got]


def test_revoking_certificates_needs_one_selector_and_a_match(store: Store) -> None:
    store.record_certificate(cert("01"))
    for kw in ({}, {"name": "w1", "serial": "01"}):
        with pytest.raises(ValidationError):
            store.revoke_certificates(now=T0, **kw)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="nobody"):
        store.revoke_certificates(now=T0, name="nobody")
    with pytest.raises(NotFound, match="ff"):
        store.revoke_certificates(now=T0, serial="ff")
    assert store.revoked_serials() == set()


# -- API tokens --------------------------------------------------------------------------


def test_tokens_round_trip_in_creation_order(store: Store) -> None:
    b = token("tb", name="deploy", created_at=T0 + 1, expires_at=T0 + 3600)
    a2 = token("ta2", name="viewer", created_at=T0, role="viewer", namespaces=())
    a1 = token("ta1", name="ci", created_at=T0)
    for t in (b, a2, a1):
        store.create_token(t)
    assert store.get_token("tb") == b
    assert store.get_token("ta2").namespaces == ()
    assert store.list_tokens() == [a1, a2, b]
    with pytest.raises(NotFound, match="nope"):
        store.get_token("nope")


def test_token_ids_and_live_names_are_unique_but_revoked_names_reusable(store: Store) -> None:
    first = token("t1", name="ci")
    store.create_token(first)
    with pytest.raises(Conflict, match="t1"):
        store.create_token(token("t1", name="other"))
    with pytest.raises(Conflict, match="ci"):
        store.create_token(token("t2", name="ci"))
    revoked = store.revoke_token("ci", now=T0 + 1)
    assert revoked == dataclasses.replace(first, revoked_at=T0 + 1)
    second = token("t2", name="ci", created_at=T0 + 2)
    store.create_token(second)  # the name is free again
    with pytest.raises(Conflict, match="ci"):
        store.create_token(token("t3", name="ci"))
    assert store.list_tokens() == [revoked, second]


def test_revoke_token_by_id_or_live_name(store: Store) -> None:
    store.create_token(token("t1", name="ci"))
    store.create_token(token("t2", name="deploy", created_at=T0 + 1))
    by_id = store.revoke_token("t1", now=T0 + 5)
    assert by_id.revoked_at == T0 + 5
    # Already revoked: returned unchanged, by id; by name there is no live token left.
    assert store.revoke_token("t1", now=T0 + 9) == by_id
    with pytest.raises(NotFound, match="ci"):
        store.revoke_token("ci", now=T0 + 9)
    by_name = store.revoke_token("deploy", now=T0 + 6)
    assert (by_name.id, by_name.revoked_at) == ("t2", T0 + 6)
    assert store.get_token("t2") == by_name
    with pytest.raises(NotFound, match="ghost"):
        store.revoke_token("ghost", now=T0)


def test_concurrent_creators_of_one_token_name_exactly_one_wins(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(2)]
    try:
        def go(i: int) -> str:
            try:
                stores[i % 2].create_token(token(f"t{i}", name="racer", created_at=T0 + i))
            except Conflict as exc:
                assert "racer" in exc.message
                return "conflict"
            return "created"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(go, range(16)))
        assert outcomes.count("created") == 1
        assert outcomes.count("conflict") == 15
        [winner] = stores[0].list_tokens()
        assert winner.name == "racer" and winner.revoked_at is None
    finally:
        for s in stores:
            s.close()


# -- durability and migration ------------------------------------------------------------


def test_certificates_and_tokens_survive_reopening_the_store(store_url: str) -> None:
    first = open_store(store_url)
    try:
        first.record_certificate(cert("0c"))
        first.record_certificate(cert("0d", issued_at=T0 + 1))
        first.revoke_certificates(now=T0 + 2, serial="0d")
        first.create_token(token("t1"))
        first.revoke_token("t1", now=T0 + 3)
        first.create_token(token("t2", created_at=T0 + 4))
        certs, tokens = first.list_certificates(), first.list_tokens()
    finally:
        first.close()
    second = open_store(store_url)
    try:
        assert second.list_certificates() == certs
        assert second.revoked_serials() == {"0d"}
        assert second.list_tokens() == tokens
        assert [t.revoked_at for t in tokens] == [T0 + 3, None]
    finally:
        second.close()


def test_upgrading_a_database_with_jobs_adds_the_security_tables(store_url: str) -> None:
    backend = backend_for(store_url)
    try:
        migrate(backend, "0001")
        [sub] = SqlStore(backend).submit([JobSpec(kind="k")], now=T0, new_id=lambda: "j_old")
        migrate(backend)
        with backend.write_engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert context.get_current_revision() not in (None, "0001")
            assert compare_metadata(context, metadata) == []
    finally:
        backend.dispose()
    store = open_store(store_url)
    try:
        assert store.get("j_old") == sub.job
        store.create_token(token("t1"))
        store.record_certificate(cert("01"))
        assert [t.id for t in store.list_tokens()] == ["t1"]
    finally:
        store.close()
