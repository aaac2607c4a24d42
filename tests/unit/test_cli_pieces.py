"""Small CLI pieces: error lines, job outcomes, the built-ins' input, the worker loader."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from hearth.builtins import sleep_seconds
from hearth.cli.common import CliError, CliUsageError, error_message
from hearth.cli.jobs import ended_badly
from hearth.cli.loader import load_worker
from hearth.errors import NotFound, Unavailable
from hearth.wire import JobOut
from hearth.worker import NonRetryable, Worker


def test_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    err = CliError("job x\nfailed:   badly")
    err.show()
    assert capsys.readouterr().err == "error: job x failed: badly\n"
    assert err.exit_code == 1
    assert CliUsageError("bad").exit_code == 2
    assert isinstance(err, click.ClickException)


def test_unavailable_gets_the_hint_once() -> None:
    assert error_message(Unavailable("the coordinator at http://x is down.")) == (
        "the coordinator at http://x is down: is it running? start it with `hearth up`")
    already = Unavailable("down; start it with `hearth up`")
    assert error_message(already) == already.message
    assert error_message(NotFound("job j does not exist")) == "job j does not exist"


def _job(**fields: Any) -> JobOut:
    base: dict[str, Any] = {
        "id": "j_1", "namespace": "default", "kind": "k", "state": "dead", "run_at": 0,
        "max_attempts": 2, "backoff": {"initial": 1, "max": 2, "multiplier": 2, "jitter": 0},
        "lease_ttl": 30, "created_at": 0, "updated_at": 0}
    return JobOut.model_validate({**base, **fields})


def test_ended_badly() -> None:
    assert ended_badly(_job(attempt=2, last_error={"message": "boom"})) == (
        "job j_1 ended dead after 2 attempts: boom")
    assert ended_badly(_job(state="cancelled", attempt=1)) == (
        "job j_1 ended cancelled after 1 attempt")


@pytest.mark.parametrize(("payload", "seconds"), [
    ({"seconds": 2}, 2.0), (1.5, 1.5), (0, 0.0), (b"3", 3.0), (b" 4s\n", 4.0),
])
def test_sleep_seconds(payload: Any, seconds: float) -> None:
    assert sleep_seconds(payload) == seconds


@pytest.mark.parametrize("payload", [None, {"seconds": "x"}, -1, True, b"soon", "5",
                                     float("inf"), {}])
def test_sleep_refuses_what_is_not_seconds(payload: Any) -> None:
    with pytest.raises(NonRetryable, match="number of seconds"):
        sleep_seconds(payload)


# -- the worker loader, on real modules written to a temp dir ---------------------------


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def _write(where: Path, name: str, body: str) -> str:
    (where / f"{name}.py").write_text("from hearth.worker import Worker\n" + body)
    return name


def _build() -> Worker:
    return Worker(url="http://127.0.0.1:1", name="built")


def test_module_worker_attribute_wins(modules: Path) -> None:
    name = _write(modules, "m_attr", "worker = Worker(name='mine')\n"
                  "other = Worker(name='other')\n")
    assert load_worker(name, Worker, _build).name == "mine"
    assert load_worker(f"{name}:other", Worker, _build).name == "other"


def test_a_single_worker_instance_is_found(modules: Path) -> None:
    name = _write(modules, "m_single", "w = Worker(name='single')\n")
    assert load_worker(name, Worker, _build).name == "single"


def test_register_function_gets_a_built_worker(modules: Path) -> None:
    name = _write(modules, "m_reg", "def register(worker):\n"
                  "    worker.handler('k1')(lambda ctx: 1)\n")
    worker = load_worker(name, Worker, _build)
    assert worker.name == "built"
    assert repr(worker) == "Worker(name='built', kinds=['k1'])"


@pytest.mark.parametrize(("body", "spec_suffix", "words"), [
    ("X = 1\n", "", "offers no handlers"),
    ("a = Worker()\nb = Worker()\n", "", "several workers (a, b)"),
    ("X = 1\n", ":X", "neither a Worker nor a register(worker) function (it is a int)"),
    ("X = 1\n", ":nope", "no attribute 'nope'"),
])
def test_modules_without_handlers_are_usage_errors(modules: Path, body: str,
                                                   spec_suffix: str, words: str) -> None:
    name = _write(modules, f"m_bad_{abs(hash(body + spec_suffix))}", body)
    with pytest.raises(CliUsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_worker(name + spec_suffix, Worker, _build)


def test_missing_module_is_a_usage_error_but_a_missing_dependency_is_not(
        modules: Path) -> None:
    with pytest.raises(CliUsageError, match="cannot import no_such_mod_xyz"):
        load_worker("no_such_mod_xyz", Worker, _build)
    name = _write(modules, "m_broken", "import no_such_dependency_xyz\n")
    with pytest.raises(ModuleNotFoundError):
        load_worker(name, Worker, _build)


def test_worker_start_up_loads_only_what_a_worker_uses() -> None:
    """`hearth worker` (no bundle) must not import the CLI's tables, the blob tools or
    the certificate code: each costs its start-up (W1 counts it), and the modules it
    leaves out are named here so a new top-level import shows up as a failure."""
    probe = (
        "import sys\n"
        "from hearth.cli.main import cli\n"
        "import click\n"
        "ctx = click.Context(cli)\n"
        "assert cli.get_command(ctx, 'worker') is not None\n"
        "from hearth.worker import Worker\n"
        "Worker('http://127.0.0.1:1', token='t', name='probe')\n"
        "heavy = sorted(m for m in ('rich', 'cryptography', 'hearth.cli.render',\n"
        "               'hearth.cli.blobs', 'hearth.cli.security', 'hearth.security.pki')\n"
        "               if m in sys.modules)\n"
        "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"a plain worker start-up imported {out}"


def test_every_command_is_listed_and_loads() -> None:
    from hearth.cli.main import LAZY, cli

    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert set(LAZY) <= set(names) and "version" in names
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
    assert cli.get_command(ctx, "no-such-command") is None


def test_a_mistyped_command_gets_the_nearest_name() -> None:
    from click.testing import CliRunner

    from hearth.cli.main import cli

    result = CliRunner().invoke(cli, ["statu"])
    assert result.exit_code == 2
    assert "No such command 'statu'. Did you mean 'status'?" in result.output
    far = CliRunner().invoke(cli, ["zzzzzz"])
    assert far.exit_code == 2 and "Did you mean" not in far.output
