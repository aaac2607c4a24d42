"""The auth seam: who a caller is (token or certificate) and what each role may do.

Certificates are real DER issued by :class:`hearth.security.pki.CertificateAuthority`,
handed to the authenticator the way :mod:`hearth.api.tls` does: in the ASGI scope's
``tls`` extension. Tokens are checked against a fake of the security service's
in-memory view (:class:`FakeCredentials`), with the clock injected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.requests import Request

from hearth.api import auth
from hearth.api.auth import (
    ROLE_PERMISSIONS,
    Principal,
    RequestAuthenticator,
    in_scope,
    may_act_as_worker,
    require,
    require_kinds,
    require_namespace,
    require_worker,
    scoped_namespace,
)
from hearth.errors import Forbidden, Unauthorized
from hearth.security import tokens
from hearth.security.pki import CertificateAuthority
from hearth.store.port import TokenRecord

TOKEN = "hth_secret-token"
NOW = 1_700_000_000.0
DAY = 86400.0


def request(authorization: str | None, der: bytes | None = None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/v1/jobs",
                             "headers": headers}
    if der is not None:
        scope["extensions"] = {"tls": {"hearth_peer_der": der}}
    return Request(scope)


def test_the_admin_token_authenticates_as_admin() -> None:
    auth = RequestAuthenticator(TOKEN)
    assert auth.authenticate(request(f"Bearer {TOKEN}")) == Principal("admin", "admin")
    assert auth.authenticate(request(f"bearer {TOKEN}")).role == "admin"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}",
                                    "Bearer wrong", f"Bearer {TOKEN}x", TOKEN])
def test_anything_else_is_unauthorized_without_echoing_it(header: str | None) -> None:
    with pytest.raises(Unauthorized) as info:
        RequestAuthenticator(TOKEN).authenticate(request(header))
    assert TOKEN not in info.value.message
    assert "wrong" not in info.value.message


def test_an_empty_admin_token_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        RequestAuthenticator("")


@pytest.mark.parametrize(("principal", "worker", "allowed"), [
    (Principal("admin", "admin"), "any-worker", True),
    (Principal("w1", "worker"), "w1", True),
    (Principal("w1", "worker"), "w2", False),
    (Principal("w1", "viewer"), "w1", False),
])
def test_who_may_act_as_a_worker(principal: Principal, worker: str, allowed: bool) -> None:
    assert may_act_as_worker(principal, worker) is allowed
    if allowed:
        require_worker(principal, worker)
    else:
        with pytest.raises(Forbidden, match=worker):
            require_worker(principal, worker)


# -- roles and permissions ---------------------------------------------------------------

PERMISSIONS = ("jobs.read", "jobs.submit", "jobs.control", "approve", "blobs.read",
               "blobs.write", "nodes.read", "work", "administer")

#: Written out by hand on purpose: a change to ROLE_PERMISSIONS must change this too.
EXPECTED: dict[str, set[str]] = {
    "admin": set(PERMISSIONS),
    "operator": {"jobs.read", "jobs.submit", "jobs.control", "approve", "blobs.read",
                 "blobs.write", "nodes.read"},
    "approver": {"jobs.read", "approve", "blobs.read", "nodes.read"},
    "viewer": {"jobs.read", "blobs.read", "nodes.read"},
    "worker": {"work", "blobs.read", "blobs.write"},
}


def test_the_table_has_exactly_these_roles_and_permissions() -> None:
    assert set(ROLE_PERMISSIONS) == set(EXPECTED)
    assert set().union(*ROLE_PERMISSIONS.values()) == set(PERMISSIONS)
    assert {auth.ADMIN, auth.OPERATOR, auth.APPROVER, auth.VIEWER, auth.WORKER} == set(EXPECTED)
    assert {auth.JOBS_READ, auth.JOBS_SUBMIT, auth.JOBS_CONTROL, auth.APPROVE, auth.BLOBS_READ,
            auth.BLOBS_WRITE, auth.NODES_READ, auth.WORK, auth.ADMINISTER} == set(PERMISSIONS)


@pytest.mark.parametrize("permission", PERMISSIONS)
@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_every_role_and_permission(role: str, permission: str) -> None:
    allowed = permission in EXPECTED[role]
    principal = Principal("someone", role, via="token")
    assert (permission in ROLE_PERMISSIONS[role]) is allowed
    assert principal.may(permission) is allowed
    if allowed:
        assert require(principal, permission) is principal
    else:
        with pytest.raises(Forbidden) as info:
            require(principal, permission)
        assert info.value.message.startswith(f"{role} 'someone' may not do this")
        assert f"needs the {permission} permission" in info.value.message


@pytest.mark.parametrize("role", ["", "root", "Admin", "server", "operator "])
def test_an_unknown_role_may_do_nothing(role: str) -> None:
    principal = Principal("x", role)
    for permission in PERMISSIONS:
        assert not principal.may(permission)
        with pytest.raises(Forbidden):
            require(principal, permission)


def test_only_admin_and_a_worker_under_its_own_name_act_as_a_worker() -> None:
    for role in EXPECTED:
        expected = role in ("admin", "worker")
        assert may_act_as_worker(Principal("w1", role), "w1") is expected
        assert may_act_as_worker(Principal("w1", role), "w2") is (role == "admin")


# -- tokens --------------------------------------------------------------------------------


class FakeCredentials:
    """The security service's in-memory view: token records and revoked serials."""

    def __init__(self, records: Iterable[TokenRecord] = (), revoked: Iterable[str] = ()
                 ) -> None:
        self.records = {r.id: r for r in records}
        self.revoked = set(revoked)
        self.asked: list[str] = []

    def token(self, token_id: str) -> TokenRecord | None:
        self.asked.append(token_id)
        return self.records.get(token_id)

    def is_revoked(self, serial: str) -> bool:
        return serial in self.revoked


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_token(name: str = "alice", role: str = "operator", *,
              namespaces: tuple[str, ...] = (), expires_at: float | None = None,
              revoked_at: float | None = None) -> tuple[TokenRecord, str]:
    minted = tokens.mint()
    record = TokenRecord(id=minted.id, name=name, role=role, namespaces=namespaces,
                         secret_hash=minted.secret_hash, created_at=NOW - DAY,
                         expires_at=expires_at, revoked_at=revoked_at)
    return record, minted.value


def secret_of(value: str) -> str:
    parsed = tokens.parse(value)
    assert parsed is not None
    return parsed[1]


def refused(authenticator: RequestAuthenticator, req: Request) -> str:
    with pytest.raises(Unauthorized) as info:
        authenticator.authenticate(req)
    return info.value.message


def test_a_valid_api_token_authenticates_with_its_role_and_namespaces() -> None:
    record, value = new_token("alice", "operator", namespaces=("team-a", "team-b"))
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials([record]), clock=Clock())
    principal = authenticator.authenticate(request(f"Bearer {value}"))
    assert principal == Principal(name="alice", role="operator", via="token",
                                  namespaces=("team-a", "team-b"), ident=record.id)
    assert authenticator.authenticate(request(f"bearer   {value}  ")) == principal


@pytest.mark.parametrize("role", tokens.TOKEN_ROLES)
def test_each_token_role_is_taken_from_the_record(role: str) -> None:
    record, value = new_token(role=role)
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials([record]), clock=Clock())
    assert authenticator.authenticate(request(f"Bearer {value}")).role == role


def test_a_token_with_the_wrong_secret_is_refused_without_echoing_it() -> None:
    record, value = new_token()
    other = tokens.mint().value
    forged = f"hth_{record.id}_{secret_of(other)}"
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials([record]), clock=Clock())
    message = refused(authenticator, request(f"Bearer {forged}"))
    assert "is not valid for this coordinator" in message
    for secret in (forged, secret_of(forged), secret_of(value), value):
        assert secret not in message


def test_an_unknown_token_id_is_refused_like_a_wrong_secret() -> None:
    record, _ = new_token()
    _, unknown = new_token()
    credentials = FakeCredentials([record])
    authenticator = RequestAuthenticator(TOKEN, credentials, clock=Clock())
    message = refused(authenticator, request(f"Bearer {unknown}"))
    assert "is not valid for this coordinator" in message
    assert secret_of(unknown) not in message
    assert credentials.asked == [unknown[4:16]]  # looked up by id, nothing else


def test_a_well_formed_token_without_a_credentials_service_is_refused() -> None:
    _, value = new_token()
    message = refused(RequestAuthenticator(TOKEN), request(f"Bearer {value}"))
    assert "is not valid" in message
    assert value not in message


def test_a_revoked_token_is_refused_naming_its_id_only() -> None:
    record, value = new_token("bob", revoked_at=NOW - 60)
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials([record]), clock=Clock())
    message = refused(authenticator, request(f"Bearer {value}"))
    assert message.startswith(f"token {record.id} (bob) was revoked")
    assert secret_of(value) not in message


def test_a_token_expires_by_the_injected_clock() -> None:
    record, value = new_token("carol", expires_at=NOW + 100)
    clock = Clock(NOW + 99.9)
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials([record]), clock=clock)
    assert authenticator.authenticate(request(f"Bearer {value}")).name == "carol"
    clock.now = NOW + 100  # expires_at itself is already too late
    message = refused(authenticator, request(f"Bearer {value}"))
    assert message.startswith(f"token {record.id} (carol) has expired")
    assert secret_of(value) not in message


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer ", "Bearer    ", "Token {v}", "Basic {v}", "{v}", "Bearer: {v}",
    "Bearer{v}", "Bearer {v}x", "Bearer x{v}", "Bearer {v} {v}",
])
def test_a_malformed_header_is_refused_without_echoing_the_token(header: str) -> None:
    record, value = new_token()
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials([record]), clock=Clock())
    message = refused(authenticator, request(header.format(v=value)))
    assert value not in message
    assert secret_of(value) not in message
    assert ("'Bearer <token>'" in message) or ("is not valid" in message)


def test_the_admin_token_needs_no_credentials_service_and_is_checked_first() -> None:
    credentials = FakeCredentials()
    authenticator = RequestAuthenticator(TOKEN, credentials, clock=Clock())
    assert authenticator.authenticate(request(f"Bearer {TOKEN}")).via == "admin-token"
    assert credentials.asked == []


# -- certificates --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Test CA", now=NOW)


def der_of(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_a_worker_certificate_names_the_worker_its_kinds_and_serial(
        ca: CertificateAuthority) -> None:
    issued = ca.issue_client("w1", "worker", kinds=["img.resize", "email.send"],
                             validity=30 * DAY, now=NOW)
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials(), clock=Clock())
    principal = authenticator.authenticate(request(None, der_of(issued.cert_pem)))
    assert principal == Principal(name="w1", role="worker", via="cert",
                                  kinds=("email.send", "img.resize"),
                                  ident=issued.info.serial)
    assert principal.may("work") and not principal.may("jobs.submit")


def test_an_admin_certificate_is_an_admin(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("laptop", "admin", now=NOW)
    principal = RequestAuthenticator(TOKEN, clock=Clock()).authenticate(
        request(None, der_of(issued.cert_pem)))
    assert (principal.name, principal.role, principal.via, principal.kinds) == (
        "laptop", "admin", "cert", ())
    assert principal.may("administer")


def test_a_revoked_certificate_is_refused(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("w-revoked", "worker", now=NOW)
    credentials = FakeCredentials(revoked=[issued.info.serial])
    message = refused(RequestAuthenticator(TOKEN, credentials, clock=Clock()),
                      request(None, der_of(issued.cert_pem)))
    assert message.startswith(f"the certificate of w-revoked (serial {issued.info.serial}) "
                              "has been revoked")


def test_a_certificate_expires_by_the_injected_clock(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("w-old", "worker", validity=DAY, now=NOW)
    der = der_of(issued.cert_pem)
    clock = Clock(issued.info.not_after - 1)
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials(), clock=clock)
    assert authenticator.authenticate(request(None, der)).name == "w-old"
    clock.now = issued.info.not_after
    message = refused(authenticator, request(None, der))
    assert message.startswith("the certificate of w-old has expired")
    assert "hearth enroll w-old" in message


def self_signed(subject: list[x509.NameAttribute[str]]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(subject)
    start = dt.datetime.fromtimestamp(NOW, dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def not_hearth_identities(ca: CertificateAuthority) -> dict[str, bytes]:
    server = ca.issue_server(hosts=["coordinator.lan"], ips=["127.0.0.1"], now=NOW)
    return {
        "server certificate": der_of(server.cert_pem),
        "the CA itself": der_of(ca.cert_pem),
        "another organisation": self_signed([
            x509.NameAttribute(NameOID.COMMON_NAME, "w1"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "worker")]),
        "no role": self_signed([
            x509.NameAttribute(NameOID.COMMON_NAME, "w1"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hearth")]),
        "a role that is not a client role": self_signed([
            x509.NameAttribute(NameOID.COMMON_NAME, "w1"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hearth"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "operator")]),
        "a bad node name": self_signed([
            x509.NameAttribute(NameOID.COMMON_NAME, "../etc"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hearth"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "admin")]),
        "not DER at all": b"\x30\x03garbage",
    }


def test_a_certificate_that_is_not_a_hearth_client_identity_is_refused(
        ca: CertificateAuthority) -> None:
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials(), clock=Clock())
    for what, der in not_hearth_identities(ca).items():
        with pytest.raises(Unauthorized) as info:
            authenticator.authenticate(request(None, der))
        assert info.value.message.startswith(
            "the client certificate is not a Hearth identity"), what


@pytest.mark.parametrize("tls", [None, {}, {"hearth_peer_der": None},
                                 {"hearth_peer_der": "not bytes"},
                                 {"client_cert_chain": ["-----BEGIN CERTIFICATE-----"]}])
def test_a_tls_scope_without_peer_der_is_no_credential(tls: object) -> None:
    req = Request({"type": "http", "method": "GET", "path": "/", "headers": [],
                   "extensions": {"tls": tls}})
    message = refused(RequestAuthenticator(TOKEN, FakeCredentials(), clock=Clock()), req)
    assert message.startswith("this route needs credentials")


def test_a_bearer_token_wins_over_the_certificate(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("w1", "worker", now=NOW)
    der = der_of(issued.cert_pem)
    record, value = new_token("alice", "viewer")
    authenticator = RequestAuthenticator(TOKEN, FakeCredentials([record]), clock=Clock())
    assert authenticator.authenticate(request(f"Bearer {TOKEN}", der)) == Principal(
        "admin", "admin")
    assert authenticator.authenticate(request(f"Bearer {value}", der)).name == "alice"
    # A bad token is refused even with a good certificate: no fallback to the certificate.
    message = refused(authenticator, request("Bearer hth_wrong", der))
    assert "is not valid" in message
    message = refused(authenticator, request("Basic abc", der))
    assert "'Bearer <token>'" in message


def test_a_revoked_certificate_is_refused_even_with_a_valid_token(
        ca: CertificateAuthority) -> None:
    """The certificate proves the device: a revoked device stays out whatever token it
    carries (the admin token included)."""
    issued = ca.issue_client("w1", "worker", now=NOW)
    record, value = new_token("alice", "operator")
    credentials = FakeCredentials([record], revoked=[issued.info.serial])
    authenticator = RequestAuthenticator(TOKEN, credentials, clock=Clock())
    for header in (f"Bearer {value}", f"Bearer {TOKEN}"):
        message = refused(authenticator, request(header, der_of(issued.cert_pem)))
        assert "has been revoked" in message
        assert value not in message and TOKEN not in message


# -- recheck ----------------------------------------------------------------------------------


def test_recheck_refuses_a_certificate_revoked_since(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("w1", "worker", now=NOW)
    credentials = FakeCredentials()
    authenticator = RequestAuthenticator(TOKEN, credentials, clock=Clock())
    principal = authenticator.authenticate(request(None, der_of(issued.cert_pem)))
    authenticator.recheck(principal)
    credentials.revoked.add(issued.info.serial)
    with pytest.raises(Unauthorized, match=r"the certificate of w1 \(serial [0-9a-f]+\) has "
                                           "been revoked"):
        authenticator.recheck(principal)


def test_recheck_refuses_a_token_revoked_expired_or_removed_since() -> None:
    record, value = new_token("alice", expires_at=NOW + 100)
    credentials = FakeCredentials([record])
    clock = Clock()
    authenticator = RequestAuthenticator(TOKEN, credentials, clock=clock)
    principal = authenticator.authenticate(request(f"Bearer {value}"))
    authenticator.recheck(principal)

    clock.now = NOW + 100
    with pytest.raises(Unauthorized, match=f"token {record.id} \\(alice\\) is no longer valid"):
        authenticator.recheck(principal)

    clock.now = NOW
    credentials.records[record.id] = TokenRecord(
        id=record.id, name=record.name, role=record.role, namespaces=(),
        secret_hash=record.secret_hash, created_at=record.created_at, revoked_at=NOW)
    with pytest.raises(Unauthorized, match="no longer valid") as info:
        authenticator.recheck(principal)
    assert secret_of(value) not in info.value.message

    del credentials.records[record.id]
    with pytest.raises(Unauthorized, match="no longer valid"):
        authenticator.recheck(principal)


def test_recheck_passes_the_admin_token_and_anything_without_a_credentials_service() -> None:
    credentials = FakeCredentials(revoked=["abc"])
    RequestAuthenticator(TOKEN, credentials).recheck(Principal("admin", "admin"))
    no_service = RequestAuthenticator(TOKEN)
    no_service.recheck(Principal("w1", "worker", via="cert", ident="abc"))
    no_service.recheck(Principal("alice", "viewer", via="token", ident="gone"))


# -- namespaces and kinds ---------------------------------------------------------------------

EVERYWHERE = Principal("root", "operator", via="token")
TEAM_A = Principal("alice", "operator", via="token", namespaces=("team-a",))
TWO_TEAMS = Principal("bob", "viewer", via="token", namespaces=("team-a", "team-b"))


@pytest.mark.parametrize(("principal", "namespace", "allowed"), [
    (EVERYWHERE, "default", True),
    (EVERYWHERE, "team-a", True),
    (TEAM_A, "team-a", True),
    (TEAM_A, "default", False),
    (TEAM_A, "team-a2", False),
    (TEAM_A, "Team-A", False),
    (TWO_TEAMS, "team-b", True),
    (TWO_TEAMS, "team-c", False),
])
def test_require_namespace(principal: Principal, namespace: str, allowed: bool) -> None:
    assert in_scope(principal, namespace) is allowed
    if allowed:
        require_namespace(principal, namespace)
    else:
        with pytest.raises(Forbidden) as info:
            require_namespace(principal, namespace)
        assert f"{principal.name!r} is limited to namespace" in info.value.message
        assert f"not {namespace!r}" in info.value.message


def test_the_namespace_refusal_says_namespace_or_namespaces() -> None:
    with pytest.raises(Forbidden) as one:
        require_namespace(TEAM_A, "default")
    assert one.value.message == "'alice' is limited to namespace team-a, not 'default'"
    with pytest.raises(Forbidden) as two:
        require_namespace(TWO_TEAMS, "default")
    assert two.value.message == ("'bob' is limited to namespaces team-a, team-b, "
                                 "not 'default'")


@pytest.mark.parametrize(("principal", "asked", "used"), [
    (EVERYWHERE, None, None),            # unscoped: every namespace
    (EVERYWHERE, "default", "default"),
    (TEAM_A, None, "team-a"),            # one scope: listed automatically
    (TEAM_A, "team-a", "team-a"),
    (TWO_TEAMS, "team-b", "team-b"),
])
def test_scoped_namespace_picks_the_filter(principal: Principal, asked: str | None,
                                           used: str | None) -> None:
    assert scoped_namespace(principal, asked) == used


def test_scoped_namespace_refuses_outside_and_ambiguous_listings() -> None:
    with pytest.raises(Forbidden, match="limited to namespace team-a, not 'default'"):
        scoped_namespace(TEAM_A, "default")
    with pytest.raises(Forbidden) as info:
        scoped_namespace(TWO_TEAMS, None)
    assert info.value.message == ("'bob' is limited to namespaces team-a, team-b: name one "
                                  "(namespace=...)")


def test_require_kinds() -> None:
    anything = Principal("w1", "worker", via="cert")
    require_kinds(anything, ["a.b", "c.d"])
    limited = Principal("w2", "worker", via="cert", kinds=("email.send", "img.resize"))
    require_kinds(limited, [])
    require_kinds(limited, ["img.resize"])
    require_kinds(limited, ["img.resize", "email.send", "img.resize"])
    with pytest.raises(Forbidden) as info:
        require_kinds(limited, ["video.encode", "img.resize", "audio.mix"])
    assert info.value.message == ("worker w2 is enrolled for kinds email.send, img.resize "
                                  "only, not audio.mix, video.encode")


def test_certificate_kinds_limit_what_a_worker_leases(ca: CertificateAuthority) -> None:
    issued = ca.issue_client("w3", "worker", kinds=["img.resize"], now=NOW)
    principal = RequestAuthenticator(TOKEN, clock=Clock()).authenticate(
        request(None, der_of(issued.cert_pem)))
    require_kinds(principal, ["img.resize"])
    with pytest.raises(Forbidden, match=r"not email\.send"):
        require_kinds(principal, ["email.send"])
