"""Security commands: ``hearth ca``, ``hearth enroll``, ``hearth token``, ``hearth whoami``.

``ca init`` works offline on a directory; everything else asks the running coordinator
(it holds the CA key and the token records), with admin credentials found as usual
(``--bundle``, ``$HEARTH_BUNDLE``, ``<data>/admin.hearth``, ..., then a token). A
bundle is written with mode 0600 and a token is printed once; neither is logged.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import click
from rich.table import Table

from hearth import config
from hearth.cli.common import CliError, Conn, client_options, closing_client, output_option
from hearth.cli.render import emit_json, format_size
from hearth.cli.types import Duration

_SERIAL = re.compile(r"[0-9a-fA-F]{16,64}")


def _day(ts: float | None) -> str:
    from hearth.security.pki import utc_date

    return "-" if ts is None else utc_date(ts)


def _split_kinds(values: tuple[str, ...]) -> list[str]:
    return [k.strip() for value in values for k in value.split(",") if k.strip()]


# -- hearth ca ---------------------------------------------------------------------------

@click.group()
def ca() -> None:
    """The coordinator's certificate authority: create it, list and revoke certificates.

    \b
    Examples:
      hearth ca init --dir ./.hearth/ca --name "Home Hearth CA"
      hearth ca list
      hearth ca revoke my-laptop
    """


@ca.command("init")
@click.option("--dir", "directory", metavar="DIR", default=None,
              help="Where to create the CA (ca.crt, ca.key) [default <data>/ca].")
@click.option("--name", default="Hearth CA", show_default=True,
              help="The CA's common name, shown in certificates.")
@click.option("--data", envvar="HEARTH_DATA", metavar="DIR",
              help="Data dir [env HEARTH_DATA; default ./.hearth].")
def ca_init(directory: str | None, name: str, data: str | None) -> None:
    """Create a new CA (the coordinator also creates one on first start if none exists).

    Refuses to replace an existing CA: every bundle it issued would stop working.
    """
    from hearth.security.pki import CertificateAuthority

    where = Path(directory) if directory else config.data_dir(data) / "ca"
    if (where / "ca.key").exists() or (where / "ca.crt").exists():
        raise CliError(f"a CA already exists in {where}; replacing it would invalidate every "
                       "bundle it issued. Use another --dir, or remove it deliberately")
    authority = CertificateAuthority.create(name)
    authority.save(where)
    click.echo(f"created CA {name!r} in {where} (key {where / 'ca.key'}, mode 0600)")
    click.echo(f"fingerprint (SHA-256): {authority.fingerprint}")


@ca.command("list")
@output_option
@click.option("--name", default=None, help="Only this name's certificates.")
@client_options
def ca_list(conn: Conn, output: str, name: str | None) -> None:
    """List the certificates the coordinator issued, with their state."""
    with closing_client(conn) as client:
        found = client.certificates(name)
    if output == "json":
        emit_json(found)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "ROLE", "KINDS", "SERIAL", "ISSUED", "EXPIRES", "STATE"):
        table.add_column(column, no_wrap=column != "KINDS")
    now = time.time()
    for cert in found:
        state = ("revoked" if cert.revoked_at is not None
                 else "expired" if cert.not_after <= now else "valid")
        table.add_row(cert.name, cert.role, ", ".join(cert.kinds) or "any", cert.serial,
                      _day(cert.issued_at), _day(cert.not_after), state)
    from hearth.cli.common import stdout_console

    stdout_console().print(table)


@ca.command("revoke")
@click.argument("target", metavar="NAME|SERIAL")
@click.option("--serial", "as_serial", is_flag=True, help="TARGET is a serial, not a name.")
@click.option("--name", "as_name", is_flag=True, help="TARGET is a name, not a serial.")
@output_option
@client_options
def ca_revoke(conn: Conn, target: str, as_serial: bool, as_name: bool, output: str) -> None:
    """Revoke a certificate now and for good: every certificate of NAME, or the one
    with SERIAL (hex, as `hearth ca list` shows it). Its next request is refused.

    \b
    Examples:
      hearth ca revoke my-laptop
      hearth ca revoke --serial 5f1c0e2a9b7d4c3e
    """
    if as_serial and as_name:
        raise click.UsageError("give --serial or --name, not both")
    serial = as_serial or (not as_name and bool(_SERIAL.fullmatch(target)))
    with closing_client(conn) as client:
        found = client.revoke(serial=target) if serial else client.revoke(name=target)
    if output == "json":
        emit_json(found)
        return
    for cert in found:
        click.echo(f"revoked {cert.role} {cert.name} (serial {cert.serial}, "
                   f"since {_day(cert.revoked_at)})")


# -- hearth enroll -----------------------------------------------------------------------

@click.command()
@click.argument("name")
@click.option("--addr", "addrs", multiple=True, metavar="HOST:PORT",
              help="Coordinator address to write into the bundle; repeat for several "
                   "[default: the addresses the coordinator listens on].")
@click.option("--no-addr", is_flag=True,
              help="Write no address: the worker finds the coordinator over mDNS.")
@click.option("--out", "out", metavar="PATH", default=None,
              help="Where to write the bundle [default ./NAME.hearth].")
@click.option("--validity", type=Duration(), default="90d", show_default=True,
              help="How long the certificate is valid (e.g. 90d, 12h, 365d).")
@click.option("--role", type=click.Choice(["worker", "admin"]), default="worker",
              show_default=True, help="worker: runs jobs as NAME; admin: full control.")
@click.option("--kinds", "kinds", multiple=True, metavar="K1,K2",
              help="Job kinds this worker may run [default any].")
@click.option("--force", is_flag=True, help="Overwrite an existing bundle file.")
@client_options
def enroll(conn: Conn, name: str, addrs: tuple[str, ...], no_addr: bool, out: str | None,
           validity: float, role: str, kinds: tuple[str, ...], force: bool) -> None:
    """Enroll a worker (or an admin): write NAME.hearth, one small file with the CA
    certificate, a client certificate and its key, and where the coordinator is.

    Move the file to the worker (USB stick, scp) and run it there:
    `hearth worker NAME.hearth --import mymodule`. Keep it secret: it is the worker's
    identity. `hearth ca revoke NAME` withdraws it.

    \b
    Examples:
      hearth enroll my-laptop
      hearth enroll --addr 192.168.1.10:7843 --kinds img2pdf --validity 30d pi-4
      hearth enroll --role admin --out ~/.hearth/admin.hearth my-desktop
    """
    from hearth.security.bundle import check_address, loads, write_bundle

    if addrs and no_addr:
        raise click.UsageError("give --addr or --no-addr, not both")
    if validity <= 0:
        raise click.BadParameter("give a duration greater than 0, such as 90d",
                                 param_hint="--validity")
    addresses: list[str] | None = [] if no_addr else (
        [check_address(a) for a in addrs] if addrs else None)
    path = Path(out).expanduser() if out else Path(f"{name}.hearth")
    if path.exists() and not force:
        raise CliError(f"{path} already exists: choose another --out, or --force to "
                       "replace it")
    with closing_client(conn) as client:
        data = client.enroll(name, role=role, kinds=_split_kinds(kinds), validity=validity,
                             addresses=addresses)
        plain = client.url.startswith("http://")
    bundle = loads(data, source="the coordinator's answer")
    write_bundle(path, bundle, overwrite=force)
    info = bundle.info()
    where = ", ".join(bundle.addresses) or "none (the worker looks for it over mDNS)"
    click.echo(f"wrote {path} ({format_size(len(data))}, mode 0600): {role} {name}, kinds "
               f"{', '.join(bundle.kinds) or 'any'}, valid until {_day(info.not_after)}")
    click.echo(f"coordinator address: {where}")
    if plain and addresses is None:
        click.echo("note: this coordinator listens on loopback only, so no other machine "
                   "can reach it; restart it with --host 0.0.0.0 (mutual TLS) and enroll "
                   "again, or give --addr", err=True)
    if role == "worker":
        click.echo(f"on the worker: hearth worker {path.name} --import yourmodule")


# -- hearth token ------------------------------------------------------------------------

@click.group()
def token() -> None:
    """API tokens for people and scripts, with a role and optional namespace scopes.

    \b
    Roles: admin (everything), operator (submit, cancel, retry, read),
           approver (approve, read), viewer (read only).
    Examples:
      hearth token create ci --role operator --namespace builds --expires 30d
      hearth token list
      hearth token revoke ci
    """


@token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "operator", "approver", "viewer"]),
              required=True, help="What the token may do.")
@click.option("--namespace", "namespaces", multiple=True, metavar="NS",
              help="Limit the token to this namespace; repeat for several [default all].")
@click.option("--expires", type=Duration(), default=None, metavar="DURATION",
              help="Expire after this long (e.g. 30d) [default never].")
@output_option
@client_options
def token_create(conn: Conn, name: str, role: str, namespaces: tuple[str, ...],
                 expires: float | None, output: str) -> None:
    """Create a token. It is printed once, here: store it now (only its hash is kept)."""
    if expires is not None and expires <= 0:
        raise click.BadParameter("give a duration greater than 0, such as 30d",
                                 param_hint="--expires")
    with closing_client(conn) as client:
        created = client.create_token(name, role=role, namespaces=list(namespaces),
                                      expires_in=expires)
    if output == "json":
        emit_json(created)
        return
    scope = ", ".join(created.namespaces) or "all namespaces"
    click.echo(f"created {role} token {created.id} ({name}) for {scope}, expires "
               f"{_day(created.expires_at) if created.expires_at else 'never'}", err=True)
    click.echo("it is shown only this once:", err=True)
    click.echo(created.token)


@token.command("list")
@output_option
@client_options
def token_list(conn: Conn, output: str) -> None:
    """List tokens (never their values)."""
    with closing_client(conn) as client:
        found = client.tokens()
    if output == "json":
        emit_json(found)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "NAME", "ROLE", "NAMESPACES", "CREATED", "EXPIRES", "STATE"):
        table.add_column(column)
    now = time.time()
    for tok in found:
        state = ("revoked" if tok.revoked_at is not None else "expired"
                 if tok.expires_at is not None and tok.expires_at <= now else "active")
        table.add_row(tok.id, tok.name, tok.role, ", ".join(tok.namespaces) or "all",
                      _day(tok.created_at), _day(tok.expires_at), state)
    from hearth.cli.common import stdout_console

    stdout_console().print(table)


@token.command("revoke")
@click.argument("id_or_name", metavar="ID|NAME")
@client_options
def token_revoke(conn: Conn, id_or_name: str) -> None:
    """Revoke a token now; its next request is refused."""
    with closing_client(conn) as client:
        tok = client.revoke_token(id_or_name)
    click.echo(f"revoked token {tok.id} ({tok.name}, {tok.role})")


@click.command()
@output_option
@client_options
def whoami(conn: Conn, output: str) -> None:
    """Show who the coordinator takes you for, and how it knows (certificate or token)."""
    with closing_client(conn) as client:
        me = client.whoami()
        url = client.url
    if output == "json":
        emit_json(me)
        return
    scope = ", ".join(me.namespaces) or "all namespaces"
    click.echo(f"{me.name} ({me.role}, by {me.via}) at {url}; {scope}")


__all__ = ["ca", "enroll", "token", "whoami"]
