"""``hearth.coordinator.run`` as a real process: it announces its real URL once it
listens, serves, and stops cleanly on SIGTERM; settings that are unsafe are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hearth.coordinator import Settings, build_app, run
from hearth.errors import ValidationError


def start_process(data: Path, *, log_format: str = "text") -> subprocess.Popen[str]:
    code = ("from hearth.coordinator import Settings, run; "
            f"run(Settings(data_dir={str(data)!r}, port=0, log_format={log_format!r}))")
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HEARTH_DATA": ""})


def wait_for_endpoint(data: Path, proc: subprocess.Popen[str]) -> str:
    endpoint = data / "coordinator.json"
    for _ in range(600):
        if endpoint.exists():
            return str(json.loads(endpoint.read_text())["url"])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"the coordinator never wrote {endpoint}: {err}")


def test_run_announces_its_real_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = start_process(data, log_format="json")
    try:
        url = wait_for_endpoint(data, proc)
        assert not url.endswith(":0")
        token = (data / "admin.token").read_text().strip()
        assert (data / "admin.token").stat().st_mode & 0o077 == 0
        health = httpx.get(url + "/healthz", timeout=30).json()
        assert health["status"] == "ok"
        r = httpx.post(url + "/v1/jobs", json={"kind": "test.proc", "payload": "secret-value"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 201
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0  # a graceful stop, not death by the signal
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(url in line["msg"] for line in lines), err
    assert token not in err
    assert "secret-value" not in err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_non_loopback_listeners_always_use_mutual_tls(tmp_path: Path, host: str) -> None:
    settings = Settings(data_dir=tmp_path, host=host, port=0)
    assert settings.use_tls and settings.use_mdns
    plain = settings.replace(tls=False)
    with pytest.raises(ValidationError, match="without TLS"):
        run(plain)
    with pytest.raises(ValidationError, match="mutual TLS"):
        build_app(plain)
    assert not (tmp_path / "coordinator.json").exists()
    assert not (tmp_path / "ca").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_listeners_are_plain_http_unless_asked(tmp_path: Path, host: str) -> None:
    settings = Settings(data_dir=tmp_path, host=host)
    assert not settings.use_tls and not settings.use_mdns
    assert settings.replace(tls=True).use_tls
    assert not settings.replace(tls=True).use_mdns
    with pytest.raises(ValidationError, match="needs TLS"):
        settings.replace(mdns=True).check()


def test_settings_defaults(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.store_url == f"sqlite:///{tmp_path}/hearth.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 7843)
    assert settings.max_payload == 1024 * 1024
    assert Settings(data_dir=tmp_path, host="::1").check().host == "::1"
    with pytest.raises(ValidationError, match="log_format"):
        Settings(data_dir=tmp_path, log_format="xml").check()
