"""The ``hearth`` CLI against a real coordinator and a real worker, all as processes.

One coordinator (``hearth coordinator --port 0``) and one worker (``hearth worker``
running the built-ins plus a handler module written by the test) serve the module;
every test drives the CLI with ``subprocess`` and reads what a user would read.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import HEARTH, CliCoordinator, WorkerProcess, cli_env, eventually, hearth

pytestmark = pytest.mark.slow

HANDLERS = '''
from hearth.worker import Worker


def always_fails(ctx):
    raise RuntimeError(f"broken on attempt {ctx.attempt}")


def register(worker: Worker) -> None:
    worker.handler("always-fails")(always_fails)
'''


class Stack:
    def __init__(self, data: Path, url: str, worker: WorkerProcess) -> None:
        self.data, self.url, self.worker = data, url, worker

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return hearth(*args, data=self.data)

    def job(self, job_id: str) -> dict[str, Any]:
        done = self.run("status", "--job", job_id, "-o", "json")
        assert done.returncode == 0, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("cli")
    (root / "mods").mkdir()
    (root / "mods" / "failing_tasks.py").write_text(HANDLERS)
    data = root / "data"
    with CliCoordinator(data) as coordinator:
        worker = WorkerProcess(data, "hearth.builtins", "failing_tasks",
                               env={"PYTHONPATH": str(root / "mods")})
        with worker:
            try:
                eventually(lambda: _has_node(data), what="the worker registering")
                yield Stack(data, coordinator.url, worker)
            except BaseException:
                print(coordinator.log_tail(), worker.log_tail(), sep="\n")
                raise


def _has_node(data: Path) -> bool:
    done = hearth("nodes", "-o", "json", data=data)
    return done.returncode == 0 and any("echo" in n["kinds"] for n in json.loads(done.stdout))


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_echo_prints_the_payload_exactly(stack: Stack) -> None:
    done = stack.run("submit", "--kind", "echo", "--payload", "hi", "--wait")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi"


def test_json_payload_comes_back_as_json(stack: Stack) -> None:
    done = stack.run("submit", "--kind", "echo", "--json", '{"a": [1, 2], "b": "é"}', "--wait")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"a": [1, 2], "b": "é"}


def test_submit_prints_the_id_and_status_shows_the_job(stack: Stack) -> None:
    done = stack.run("submit", "--kind", "echo", "--payload", "later", "--delay", "1h",
                     "--label", "team=ml", "--priority", "5")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    listed = stack.run("status", "-o", "json", "--label", "team=ml")
    assert listed.returncode == 0, listed.stderr
    (job,) = [j for j in json.loads(listed.stdout) if j["id"] == job_id]
    assert job["state"] == "queued"
    assert job["priority"] == 5
    assert job["labels"] == {"team": "ml"}
    table = stack.run("status", "--state", "queued")
    assert table.returncode == 0, table.stderr
    assert job_id in table.stdout
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "KIND", "STATE"]
    detail = stack.job(job_id)
    assert [e["type"] for e in detail["events"]] == ["submitted"]
    cancelled = stack.run("cancel", job_id, "-o", "json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)[0]["state"] == "cancelled"


def test_a_failing_job_ends_dead_and_retry_runs_it_again(stack: Stack) -> None:
    done = stack.run("submit", "--kind", "always-fails", "--max-attempts", "2",
                     "--backoff", "100ms,200ms", "--wait")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "ended dead after 2 attempts" in line
    assert "broken on attempt 2" in line
    job_id = line.split()[2]

    detail = stack.job(job_id)
    assert detail["job"]["state"] == "dead"
    assert detail["job"]["attempt"] == 2
    history = [(e["type"], e["attempt"]) for e in detail["events"]]
    assert history[0] == ("submitted", 0)
    assert history[-1] == ("dead", 2)
    assert ("failed", 1) in history

    retried = stack.run("retry", job_id)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.split()[:2] == [job_id, "queued"]

    def dead_again() -> dict[str, Any] | None:
        job = stack.job(job_id)
        return job if job["job"]["state"] == "dead" and job["job"]["attempt"] == 4 else None

    again = eventually(dead_again, what="the retried job failing twice more")
    types = [e["type"] for e in again["events"]]
    assert "retried" in types
    assert types.count("dead") == 2


def test_cancel_stops_a_running_job(stack: Stack) -> None:
    done = stack.run("submit", "--kind", "sleep", "--json", '{"seconds": 60}',
                     "--lease-ttl", "3s")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    eventually(lambda: stack.job(job_id)["job"]["state"] == "leased", what="the job starting")
    cancelled = stack.run("cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.split()[0] == job_id
    final = eventually(lambda: (j := stack.job(job_id))["job"]["state"] == "cancelled" and j,
                       what="the worker stopping the job")
    assert "cancel_requested" in [e["type"] for e in final["events"]]
    again = stack.run("cancel", job_id)
    assert again.returncode == 1
    one_error_line(again)


def test_wait_shows_json_with_output_option(stack: Stack) -> None:
    done = stack.run("submit", "--kind", "sleep", "--json", "0.2", "--wait", "-o", "json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "succeeded"
    assert job["result"]["payload"] == {"slept": 0.2}


def test_giving_up_waiting_says_why(stack: Stack) -> None:
    done = stack.run("submit", "--kind", "nobody-serves-this", "--wait", "--timeout-wait",
                     "500ms")
    assert done.returncode == 1
    assert "no worker has registered kind 'nobody-serves-this'" in one_error_line(done)
    later = stack.run("submit", "--kind", "echo", "--delay", "1h", "--wait",
                      "--timeout-wait", "200ms")
    assert later.returncode == 1
    assert "is still queued after waiting" in one_error_line(later)


def test_blobs_go_in_and_come_out_unchanged(stack: Stack, tmp_path: Path) -> None:
    content = bytes(range(256)) * 1000
    (tmp_path / "in.bin").write_bytes(content)
    put = stack.run("blob", "put", str(tmp_path / "in.bin"))
    assert put.returncode == 0, put.stderr
    digest = put.stdout.strip()
    assert digest == hashlib.sha256(content).hexdigest()
    got = stack.run("blob", "get", digest, "-o", str(tmp_path / "out.bin"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out.bin").read_bytes() == content
    raw = subprocess.run([HEARTH, "blob", "get", digest, "--data", str(stack.data)],
                         capture_output=True, env=cli_env(), timeout=60, check=False)
    assert raw.returncode == 0
    assert raw.stdout == content

    submitted = stack.run("submit", "--kind", "echo", "--blob", str(tmp_path / "in.bin"),
                          "-o", "json", "--delay", "1h")
    assert submitted.returncode == 0, submitted.stderr
    (blob,) = json.loads(submitted.stdout)["input_blobs"]
    assert blob == {"digest": digest, "name": "in.bin", "size": len(content)}


def test_nodes_and_version(stack: Stack) -> None:
    listed = stack.run("nodes", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    (node,) = json.loads(listed.stdout)
    assert {"echo", "sleep", "always-fails"} <= set(node["kinds"])
    table = stack.run("nodes")
    assert node["name"] in table.stdout
    version = hearth("version", "-o", "json")
    assert version.returncode == 0
    assert json.loads(version.stdout)["version"]


def test_watch_prints_new_events_as_json_lines(stack: Stack) -> None:
    command = [HEARTH, "status", "--watch", "-o", "json", "--kind", "echo",
               "--data", str(stack.data)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=cli_env()) as watcher:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in watcher.stdout or ()],
                         daemon=True).start()
        seen: list[dict[str, Any]] = []

        def reported(job_id: str) -> bool:
            while not lines.empty():
                seen.append(json.loads(lines.get()))
            return any(e["job_id"] == job_id and e["type"] == "succeeded" for e in seen)

        def caught_one() -> str | None:
            # A wide watch starts with new events only: submit until it has started.
            done = stack.run("submit", "--kind", "echo", "--payload", "w", "--wait",
                             "-o", "json")
            job_id: str = json.loads(done.stdout)["id"]
            try:
                eventually(lambda: reported(job_id), timeout=3)
            except AssertionError:
                return None
            return job_id

        try:
            # The first job caught may have been submitted before the watch began;
            # once the watch is live, a job submitted now must show all its events.
            eventually(caught_one, what="the watch reporting a job")
            job_id = eventually(caught_one, what="the watch reporting a second job")
        finally:
            watcher.send_signal(signal.SIGINT)
            try:
                code = watcher.wait(30)
            except subprocess.TimeoutExpired:
                watcher.kill()
                raise
        errors = watcher.stderr.read() if watcher.stderr else ""
    assert code == 0, errors
    assert "Traceback" not in errors
    assert {e["type"] for e in seen if e["job_id"] == job_id} >= {"submitted", "leased",
                                                                    "succeeded"}
    assert all(e["kind"] == "echo" for e in seen)


# -- failures: one line, a useful sentence, the right exit code -------------------------


def test_bad_kind_is_one_line(stack: Stack) -> None:
    done = stack.run("submit", "--kind", "Not A Kind", "--payload", "x")
    assert done.returncode == 1
    assert "kind" in one_error_line(done)


def test_unreachable_coordinator_says_how_to_start_one(tmp_path: Path) -> None:
    done = hearth("submit", "--kind", "echo", "--payload", "x", url="http://127.0.0.1:1",
                  data=tmp_path)
    assert done.returncode == 1
    line = one_error_line(done)
    assert "http://127.0.0.1:1" in line
    assert "hearth up" in line


def test_unknown_job_and_bad_digest(stack: Stack) -> None:
    for args in (("status", "--job", "j_nope"), ("retry", "j_nope"),
                 ("blob", "get", "abc")):
        done = stack.run(*args)
        assert done.returncode == 1, args
        one_error_line(done)


def test_usage_errors_exit_2(stack: Stack) -> None:
    assert stack.run("submit", "--kind", "echo", "--delay", "soon").returncode == 2
    assert stack.run("submit", "--kind", "echo", "--payload", "a", "--json", "1").returncode == 2
    assert stack.run("submit", "--kind", "echo", "--label", "novalue").returncode == 2
    assert stack.run("submit", "--payload", "x").returncode == 2
    assert hearth("nosuchcommand").returncode == 2


def test_worker_import_errors_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty_mod.py").write_text("X = 1\n")
    env = {"PYTHONPATH": str(tmp_path)}
    for module, words in (("no_such_module_here", "cannot import"),
                          ("empty_mod", "offers no handlers"),
                          ("empty_mod:X", "neither a Worker nor"),
                          ("empty_mod:missing", "no attribute"),
                          ("not a module", "MODULE:ATTR")):
        done = hearth("worker", "--import", module, data=tmp_path, env=env)
        assert done.returncode == 2, (module, done.stderr)
        assert words in one_error_line(done)


def test_help_teaches_with_examples() -> None:
    for command in ("up", "coordinator", "worker", "submit", "status", "cancel", "retry",
                    "nodes", "version"):
        done = hearth(command, "--help")
        assert done.returncode == 0
        assert "Example" in done.stdout, command
    assert "hearth blob put" in hearth("blob", "--help").stdout
    module = subprocess.run([HEARTH.replace("hearth", "python"), "-m", "hearth.cli", "--help"],
                            capture_output=True, text=True, env=cli_env(), timeout=60,
                            check=False)
    assert module.returncode == 0
    assert "hearth submit --kind echo --payload hi --wait" in module.stdout


def test_tokens_are_never_printed(stack: Stack) -> None:
    token = (stack.data / "admin.token").read_text().strip()
    outputs = [stack.run(*args) for args in (("status",), ("nodes", "-o", "json"),
                                              ("submit", "--help"))]
    for done in outputs:
        assert token not in done.stdout + done.stderr


# -- hearth up ---------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_up_runs_jobs_and_stops_workers_before_the_coordinator(
        tmp_path: Path, stop_signal: signal.Signals) -> None:
    data = tmp_path / "data"
    command = [HEARTH, "up", "--data", str(data), "--port", "0", "--workers", "2",
               "--concurrency", "2"]
    workers: list[int] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=cli_env()) as up:
        try:
            eventually(lambda: len(_nodes(data)) == 2, what="two local workers registering")
            workers = _children(up.pid)
            assert len(workers) == 2
            done = hearth("submit", "--kind", "echo", "--payload", "hi", "--wait", data=data)
            assert (done.returncode, done.stdout) == (0, "hi"), done.stderr
            running = hearth("submit", "--kind", "sleep", "--json", "2", data=data)
            job_id = running.stdout.strip()
            eventually(lambda: _state(data, job_id) == "leased", what="the sleep starting")
        finally:
            up.send_signal(stop_signal)
            try:
                code = up.wait(90)
            except subprocess.TimeoutExpired:
                up.kill()
                raise
            finally:
                for pid in workers:  # only if `up` failed to stop its own workers
                    if _alive(pid):
                        os.kill(pid, signal.SIGKILL)
        out, err = up.communicate()
    assert code == 0, err
    assert "hearth submit --kind echo --payload hi --wait" in out
    assert "Traceback" not in err
    assert not [pid for pid in workers if _alive(pid)]
    # The running job finished before the coordinator went away: it is not left leased.
    with CliCoordinator(data):
        assert _state(data, job_id) == "succeeded"


def _nodes(data: Path) -> list[dict[str, Any]]:
    done = hearth("nodes", "-o", "json", data=data)
    return json.loads(done.stdout) if done.returncode == 0 else []


def _state(data: Path, job_id: str) -> str:
    done = hearth("status", "--job", job_id, "-o", "json", data=data)
    assert done.returncode == 0, done.stderr
    state: str = json.loads(done.stdout)["job"]["state"]
    return state


def test_coordinator_limits_come_from_its_command_line(tmp_path: Path) -> None:
    data = tmp_path / "limited"
    with CliCoordinator(data, extra=("--max-payload", "100", "--retention", "30d")) as coord:
        small = hearth("submit", "--kind", "echo", "--payload", "x" * 100, url=coord.url,
                       data=data)
        assert small.returncode == 0, small.stderr
        big = hearth("submit", "--kind", "echo", "--payload", "x" * 101, url=coord.url,
                     data=data)
        assert big.returncode == 1
        assert big.stderr.startswith("error: payload is 101 bytes; the limit is 100 bytes")
        listed = hearth("status", "-o", "json", url=coord.url, data=data)
        assert len(json.loads(listed.stdout)) == 1  # the refused job was not stored


def test_a_second_coordinator_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "shared"
    with CliCoordinator(data) as first:
        endpoint = (data / "coordinator.json").read_text()
        second = subprocess.run(
            [HEARTH, "coordinator", "--data", str(data), "--port", "0"],
            capture_output=True, text=True, timeout=60, env=cli_env(), check=False)
        assert second.returncode == 1
        assert second.stderr.startswith(
            f"error: another coordinator at {first.url} (pid ")
        assert "--data" in second.stderr
        assert (data / "coordinator.json").read_text() == endpoint  # not taken over
        first.kill()  # kill -9: the kernel releases the lock
        first.start()
        assert hearth("submit", "--kind", "echo", "--payload", "x", url=first.url,
                      data=data).returncode == 0
