"""How a client finds its coordinator and credentials (``hearth.config.resolve_endpoint``).

Real bundle files (a CA, an issued certificate, ``make_bundle``, ``write_bundle``) in
temporary directories, with ``$HOME``, the working directory and ``$HEARTH_*``
controlled by the test. Each bundle carries its own name and address, so the one
picked can be told apart.
"""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path

import pytest

from hearth.config import find_bundle, resolve_endpoint
from hearth.errors import ValidationError
from hearth.security.bundle import BundleError, make_bundle, write_bundle
from hearth.security.pki import CertificateAuthority

#: Bundle name -> the address it carries.
ADDRESSES = {
    "from-flag": "flag.lan:7001",
    "from-env": "env.lan:7002",
    "from-data": "data.lan:7003",
    "from-cwd": "cwd.lan:7004",
    "from-home": "home.lan:7005",
}
LOCAL_URL = "http://127.0.0.1:7999"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("Test CA")


class Places:
    """The directories one test plays in, and how to put a bundle in each."""

    def __init__(self, tmp: Path, ca: CertificateAuthority) -> None:
        self.ca = ca
        self.data = tmp / "data"
        self.cwd = tmp / "cwd"
        self.home = tmp / "home"
        self.elsewhere = tmp / "elsewhere"
        for directory in (self.data, self.cwd, self.home, self.elsewhere):
            directory.mkdir()
        self.flag = self.elsewhere / "flag.hearth"
        self.env = self.elsewhere / "env.hearth"
        self.in_data = self.data / "admin.hearth"
        self.in_cwd = self.cwd / ".hearth" / "admin.hearth"
        self.in_home = self.home / ".hearth" / "admin.hearth"

    def bundle(self, path: Path, name: str, *, addresses: tuple[str, ...] | None = None
               ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        issued = self.ca.issue_client(name, "admin")
        addrs = (ADDRESSES[name],) if addresses is None else addresses
        write_bundle(path, make_bundle(self.ca, issued, addresses=addrs), overwrite=True)
        return path

    def all_five(self) -> None:
        self.bundle(self.flag, "from-flag")
        self.bundle(self.env, "from-env")
        self.bundle(self.in_data, "from-data")
        self.bundle(self.in_cwd, "from-cwd")
        self.bundle(self.in_home, "from-home")

    def coordinator_json(self, url: str = LOCAL_URL) -> None:
        (self.data / "coordinator.json").write_text(json.dumps({"url": url, "pid": 1}))

    def admin_token(self, token: str = "hth_local-admin-token") -> str:
        (self.data / "admin.token").write_text(token + "\n")
        return token


@pytest.fixture
def places(tmp_path: Path, ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
           ) -> Places:
    where = Places(tmp_path, ca)
    for name in ("HEARTH_URL", "HEARTH_TOKEN", "HEARTH_BUNDLE", "HEARTH_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(where.home))
    monkeypatch.chdir(where.cwd)
    assert Path.home() == where.home
    return where


# -- which bundle ------------------------------------------------------------------------


def test_the_bundle_search_order(places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    places.all_five()
    monkeypatch.setenv("HEARTH_BUNDLE", str(places.env))

    def picked(**kw: object) -> tuple[str | None, str | None]:
        endpoint = resolve_endpoint(data=places.data, **kw)  # type: ignore[arg-type]
        return (endpoint.bundle.name if endpoint.bundle else None), endpoint.bundle_source

    assert picked(bundle=places.flag) == ("from-flag", str(places.flag))
    assert picked() == ("from-env", str(places.env))
    monkeypatch.delenv("HEARTH_BUNDLE")
    assert picked() == ("from-data", str(places.in_data))
    places.in_data.unlink()
    assert picked() == ("from-cwd", str(places.in_cwd))
    places.in_cwd.unlink()
    assert picked() == ("from-home", str(places.in_home))
    places.in_home.unlink()
    assert picked() == (None, None)


def test_the_flag_and_the_environment_name_a_bundle_explicitly(
        places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    places.all_five()
    assert find_bundle(places.flag, places.data)[1:] == (str(places.flag), True)
    monkeypatch.setenv("HEARTH_BUNDLE", str(places.env))
    assert find_bundle(None, places.data)[1:] == (str(places.env), True)
    monkeypatch.delenv("HEARTH_BUNDLE")
    assert find_bundle(None, places.data)[1:] == (str(places.in_data), False)


def test_the_data_dir_defaults_to_the_environment_then_dot_hearth(
        places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    places.bundle(places.in_data, "from-data")
    places.bundle(places.in_cwd, "from-cwd")
    monkeypatch.setenv("HEARTH_DATA", str(places.data))
    assert find_bundle()[0].name == "from-data"  # type: ignore[union-attr]
    monkeypatch.delenv("HEARTH_DATA")
    # The default data dir is ./.hearth, which is also the third place searched.
    assert find_bundle()[0].name == "from-cwd"  # type: ignore[union-attr]


def test_a_tilde_in_an_explicit_bundle_is_the_home_dir(places: Places) -> None:
    places.bundle(places.home / "mine.hearth", "from-home")
    endpoint = resolve_endpoint(data=places.data, bundle="~/mine.hearth")
    assert endpoint.bundle is not None and endpoint.bundle.name == "from-home"


def test_an_explicit_bundle_must_exist_even_when_others_do(
        places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    places.all_five()
    missing = places.elsewhere / "missing.hearth"
    with pytest.raises(BundleError, match=re.escape(f"bundle {missing} does not exist")):
        resolve_endpoint(data=places.data, bundle=missing)
    monkeypatch.setenv("HEARTH_BUNDLE", str(missing))
    with pytest.raises(BundleError, match=r"does not exist; copy the \.hearth file"):
        resolve_endpoint(data=places.data)


@pytest.mark.parametrize("damage", [b"", b"not a bundle", b"\x1f\x8b\x08\x00broken"])
def test_a_damaged_bundle_found_by_search_is_an_error_not_skipped(
        places: Places, damage: bytes) -> None:
    places.bundle(places.in_cwd, "from-cwd")
    places.bundle(places.in_home, "from-home")
    places.in_data.write_bytes(damage)
    with pytest.raises(BundleError) as info:
        resolve_endpoint(data=places.data)
    assert info.value.message.startswith(f"bundle {places.in_data} ")
    assert isinstance(info.value, ValidationError)
    with pytest.raises(BundleError):  # https needs the bundle too
        resolve_endpoint("https://coordinator.lan:7843", data=places.data)


def test_a_directory_where_the_bundle_would_be_is_skipped(places: Places) -> None:
    places.in_data.mkdir()
    places.bundle(places.in_home, "from-home")
    endpoint = resolve_endpoint(data=places.data)
    assert endpoint.bundle is not None and endpoint.bundle.name == "from-home"


# -- which URL -------------------------------------------------------------------------------


def test_an_explicit_bundle_is_dialled_before_coordinator_json(
        places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    places.all_five()
    places.coordinator_json()
    endpoint = resolve_endpoint(data=places.data, bundle=places.flag)
    assert endpoint.url == "https://flag.lan:7001"
    assert endpoint.tls
    monkeypatch.setenv("HEARTH_BUNDLE", str(places.env))
    assert resolve_endpoint(data=places.data).url == "https://env.lan:7002"


def test_an_explicit_bundle_without_addresses_falls_back_to_coordinator_json(
        places: Places) -> None:
    places.bundle(places.flag, "from-flag", addresses=())
    places.coordinator_json()
    endpoint = resolve_endpoint(data=places.data, bundle=places.flag)
    assert endpoint.url == LOCAL_URL
    assert endpoint.bundle is not None  # found, and kept, though the URL is plain http


def test_an_implicit_bundle_comes_after_coordinator_json(places: Places) -> None:
    places.bundle(places.in_data, "from-data")
    places.coordinator_json()
    token = places.admin_token()
    endpoint = resolve_endpoint(data=places.data)
    assert (endpoint.url, endpoint.token) == (LOCAL_URL, token)
    (places.data / "coordinator.json").unlink()
    endpoint = resolve_endpoint(data=places.data)
    assert endpoint.url == "https://data.lan:7003"
    assert endpoint.token is None  # the local admin token never goes to an https URL


@pytest.mark.parametrize("content", [
    "", "{", "[]", '{"pid": 1}', '{"url": ""}', '{"url": null}', '{"url": 123}',
])
def test_an_unreadable_coordinator_json_is_ignored(places: Places, content: str) -> None:
    places.bundle(places.in_data, "from-data")
    (places.data / "coordinator.json").write_text(content)
    assert resolve_endpoint(data=places.data).url == "https://data.lan:7003"


def test_nothing_found_means_the_default_local_url(places: Places) -> None:
    endpoint = resolve_endpoint(data=places.data)
    assert (endpoint.url, endpoint.token, endpoint.bundle) == (
        "http://127.0.0.1:7843", None, None)
    assert endpoint.ssl_context() is None


def test_the_url_flag_beats_the_environment_beats_everything_found(
        places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    places.all_five()
    places.coordinator_json()
    monkeypatch.setenv("HEARTH_URL", "https://env-url.lan:9000/")
    assert resolve_endpoint(data=places.data).url == "https://env-url.lan:9000"
    assert resolve_endpoint("https://flag-url.lan:9001/", data=places.data,
                            bundle=places.flag).url == "https://flag-url.lan:9001"


# -- which token -------------------------------------------------------------------------------


def test_an_http_url_uses_the_local_admin_token_and_no_bundle(places: Places) -> None:
    token = places.admin_token()
    places.in_data.write_bytes(b"damaged")  # never read for an explicit http URL
    places.bundle(places.in_home, "from-home")
    endpoint = resolve_endpoint("http://127.0.0.1:1234", data=places.data)
    assert (endpoint.url, endpoint.token, endpoint.bundle, endpoint.bundle_source) == (
        "http://127.0.0.1:1234", token, None, None)
    assert endpoint.ssl_context() is None


def test_an_http_url_from_the_environment_skips_the_bundle_too(
        places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    token = places.admin_token()
    places.in_data.write_bytes(b"damaged")
    monkeypatch.setenv("HEARTH_URL", "http://127.0.0.1:1235")
    endpoint = resolve_endpoint(data=places.data)
    assert (endpoint.url, endpoint.token, endpoint.bundle) == (
        "http://127.0.0.1:1235", token, None)


def test_the_token_flag_beats_the_environment_beats_admin_token(
        places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    places.admin_token("hth_from-file")
    url = "http://127.0.0.1:1234"
    assert resolve_endpoint(url, data=places.data).token == "hth_from-file"
    monkeypatch.setenv("HEARTH_TOKEN", "hth_from-env")
    assert resolve_endpoint(url, data=places.data).token == "hth_from-env"
    assert resolve_endpoint(url, "hth_from-flag", data=places.data).token == "hth_from-flag"


def test_an_empty_or_missing_admin_token_file_is_no_token(places: Places) -> None:
    assert resolve_endpoint("http://127.0.0.1:1", data=places.data).token is None
    (places.data / "admin.token").write_text("\n")
    assert resolve_endpoint("http://127.0.0.1:1", data=places.data).token is None


def test_an_explicit_token_goes_to_an_https_url_with_the_bundle(
        places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    places.admin_token("hth_from-file")
    places.bundle(places.in_data, "from-data")
    endpoint = resolve_endpoint("https://data.lan:7003", data=places.data)
    assert endpoint.token is None
    monkeypatch.setenv("HEARTH_TOKEN", "hth_person")
    endpoint = resolve_endpoint("https://data.lan:7003", data=places.data)
    assert endpoint.token == "hth_person"
    assert endpoint.bundle is not None and endpoint.bundle.name == "from-data"


# -- TLS contexts ---------------------------------------------------------------------------------


def test_an_https_url_without_a_bundle_says_how_to_get_one(places: Places) -> None:
    endpoint = resolve_endpoint("https://coordinator.lan:7843", data=places.data)
    assert endpoint.tls and endpoint.bundle is None
    with pytest.raises(ValidationError) as info:
        endpoint.ssl_context()
    message = info.value.message
    assert message.startswith("the coordinator at https://coordinator.lan:7843 uses mutual "
                              "TLS and no bundle was found")
    assert "--bundle FILE" in message and "$HEARTH_BUNDLE" in message


def test_an_https_url_with_a_bundle_gets_a_client_context(places: Places) -> None:
    places.bundle(places.in_home, "from-home")
    endpoint = resolve_endpoint("https://home.lan:7005", data=places.data)
    context = endpoint.ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
