"""The managed Redis of `tarry serve`, against real processes: one server per data dir, the
redis-server dies with its server (kill -9 included), a stale one is stopped at start,
workflow modules are imported before Redis starts, appendfsync reaches redis-server, and
a Redis that refuses the connection is logged with the reason (never the password)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tarry.config import Config
from tarry.localredis import PID_FILE, find_redis_server, free_port
from tarry.server import Server
from tarry.store.refusal import why_refused

pytestmark = pytest.mark.standalone  # Redis processes of its own: not in the cluster pass

ROOT = Path(__file__).resolve().parents[2]
NO_RETRY = Retry(NoBackoff(), 0)


class Processes:
    """Every process a test starts, ended (by pid) when the test ends, even on failure."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []
        self.redis_pids: list[tuple[int, Path]] = []

    def popen(self, args: list[str], name: str, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        with open(self.tmp_path / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    env=None if env is None else {**os.environ, **env})
        self.started.append(proc)
        return proc

    def serve(self, data_dir: Path, name: str, *flags: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.popen([sys.executable, "-m", "tarry", "serve", "--address", "127.0.0.1:0",
                           "--data-dir", str(data_dir), "--workflows", "examples.pausing",
                           *flags], name, env)

    def output(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    def ready(self, proc: subprocess.Popen[bytes], name: str, data_dir: Path) -> int:
        """Wait until a `tarry serve` listens; return its redis-server's pid (its pidfile's)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, self.output(name)
            if "listening on" in self.output(name):
                pid = int((data_dir / PID_FILE).read_text())
                self.redis_pids.append((pid, data_dir))
                return pid
            time.sleep(0.05)
        raise AssertionError(f"{name} did not come up:\n{self.output(name)}")

    def end(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for pid, data_dir in self.redis_pids:
            if is_redis_of(pid, data_dir):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.end()


def is_redis_of(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a live (not zombie) redis-server with `data_dir` on its command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmdline and str(data_dir).encode() in cmdline


def gone_soon(pid: int, data_dir: Path, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not is_redis_of(pid, data_dir):
            return True
        time.sleep(0.05)
    return False


async def listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert proc.poll() is None, "redis-server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def stop(proc: subprocess.Popen[bytes], procs: Processes, name: str) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, procs.output(name)


def redis_port(procs: Processes, name: str) -> int:
    line = next(ln for ln in procs.output(name).splitlines()
                if "started a managed redis-server on port" in ln)
    return int(line.split(" on port ")[1].split()[0])


def test_kill_9_of_the_server_takes_its_redis_along(procs: Processes, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = procs.serve(data_dir, "first")
    redis_pid = procs.ready(first, "first", data_dir)
    assert is_redis_of(redis_pid, data_dir)

    first.kill()
    first.wait()
    assert gone_soon(redis_pid, data_dir), "the managed redis-server outlived its server"

    # The kernel dropped the lock with the process: the next start just works.
    second = procs.serve(data_dir, "second")
    new_pid = procs.ready(second, "second", data_dir)
    assert new_pid != redis_pid
    stop(second, procs, "second")
    assert gone_soon(new_pid, data_dir)
    assert not (data_dir / PID_FILE).exists(), "the pidfile is removed at stop"


def test_a_second_server_on_the_same_data_dir_is_refused(procs: Processes,
                                                         tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = procs.serve(data_dir, "first", "--appendfsync", "always")
    redis_pid = procs.ready(first, "first", data_dir)

    second = procs.serve(data_dir, "second")
    assert second.wait(20) != 0
    error = procs.output("second").strip().splitlines()[-1]
    assert error == f"error: data dir {data_dir} is in use by tarry serve pid {first.pid}"
    assert "Traceback" not in procs.output("second")
    # It started no redis-server of its own and left the first one's alone.
    assert int((data_dir / PID_FILE).read_text()) == redis_pid
    assert is_redis_of(redis_pid, data_dir)

    # --appendfsync reached the managed redis-server.
    with redis.Redis(port=redis_port(procs, "first")) as client:
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
    stop(first, procs, "first")
    assert gone_soon(redis_pid, data_dir)


async def test_a_stale_redis_server_is_stopped_at_start(procs: Processes, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # A redis-server whose server is gone, still running on the data dir: the pidfile names
    # it. Its title is Redis's own ("redis-server 127.0.0.1:port", no --dir), as an older
    # Tarry left it: it is known by its working directory then.
    port = free_port()
    stale = procs.popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                         "--dir", str(data_dir), "--appendonly", "yes", "--save", ""], "stale")
    await listening(port, stale)
    (data_dir / PID_FILE).write_text(f"{stale.pid}\n")

    server = procs.serve(data_dir, "server")
    new_pid = procs.ready(server, "server", data_dir)
    assert stale.wait(5) == 0, "the stale redis-server was not stopped (SIGTERM: exit 0)"
    assert new_pid != stale.pid
    assert f"stopping redis-server pid {stale.pid}" in procs.output("server")
    stop(server, procs, "server")


def test_a_pidfile_naming_another_program_is_left_alone(procs: Processes,
                                                        tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    other = procs.popen(["sleep", "60"], "sleep")
    (data_dir / PID_FILE).write_text(f"{other.pid}\n")
    server = procs.serve(data_dir, "server")
    procs.ready(server, "server", data_dir)
    assert other.poll() is None, "a process that is no redis-server of this dir was killed"
    stop(server, procs, "server")


def test_a_missing_workflow_module_fails_before_redis_starts(procs: Processes,
                                                             tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = procs.popen([sys.executable, "-m", "tarry", "serve", "--address", "127.0.0.1:0",
                        "--data-dir", str(data_dir), "--workflows", "no.such.module"], "serve")
    assert proc.wait(20) == 1
    out = procs.output("serve")
    assert out.strip().splitlines()[-1] == (
        "error: cannot import workflow module 'no.such.module': No module named 'no'")
    assert "Traceback" not in out
    assert not (data_dir / "redis.log").exists(), "a redis-server was started"


def test_a_bad_setting_is_a_one_line_error_at_start(procs: Processes, tmp_path: Path) -> None:
    assert Config.from_env({"TARRY_APPENDFSYNC": "no"}).appendfsync == "no"
    assert Config.from_env({}).appendfsync == "everysec"
    data_dir = tmp_path / "data"
    proc = procs.serve(data_dir, "serve", env={"TARRY_APPENDFSYNC": "sometimes"})
    assert proc.wait(20) == 1
    last = procs.output("serve").strip().splitlines()[-1]
    assert last == ("error: TARRY_APPENDFSYNC='sometimes': Input should be 'always', "
                    "'everysec' or 'no'")
    assert not (data_dir / "redis.log").exists()
    proc = procs.serve(data_dir, "serve-ttl", env={"TARRY_LEASE_TTL": "abc"})
    assert proc.wait(20) == 1
    assert procs.output("serve-ttl").strip().splitlines() == [
        "error: TARRY_LEASE_TTL='abc': Input should be a valid number, unable to parse "
        "string as a number"]


async def test_a_wrong_password_is_logged_as_such(procs: Processes, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    password, wrong = "s3cret-right-one", "wr0ng-pass-word"
    port = free_port()
    guarded = procs.popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                           "--dir", str(tmp_path), "--save", "", "--appendonly", "no",
                           "--requirepass", password], "guarded")
    await listening(port, guarded)
    caplog.set_level(logging.WARNING, logger="tarry")
    server = Server(Config(address="127.0.0.1:0",
                           redis_url=f"redis://default:{wrong}@127.0.0.1:{port}/0",
                           workflow_modules=("examples.pausing",), shutdown_grace=0.5))
    try:
        await server.start()  # it starts anyway, NOT_SERVING
        for _ in range(100):
            if "Redis refused the connection: authentication failed" in caplog.text:
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop(0.5)
    refusals = [r for r in caplog.records if "Redis refused the connection" in r.getMessage()]
    assert refusals, caplog.text
    assert all(r.levelno == logging.WARNING for r in refusals)
    health = [r for r in refusals if r.name == "tarry.server"]
    assert len(health) == 1, "one line per change of cause"
    assert "authentication failed" in health[0].getMessage()
    assert password not in caplog.text and wrong not in caplog.text

    # No password at all: NOAUTH is a refusal too.
    async with aioredis.Redis(port=port, retry=NO_RETRY) as client:
        with pytest.raises(redis.RedisError) as noauth:
            await client.ping()
    assert (why_refused(noauth.value) or "").startswith("authentication failed")
    guarded.terminate()
    assert guarded.wait(10) == 0


async def test_tls_failures_and_plain_unreachability() -> None:
    port = free_port()  # nobody listens: not a refusal, just unreachable
    async with aioredis.Redis(port=port, socket_connect_timeout=1, retry=NO_RETRY) as client:
        with pytest.raises(redis.ConnectionError) as refused:
            await client.ping()
    assert why_refused(refused.value) is None

    # TLS to a server that answers in plaintext: the handshake fails, and that is said.
    async def plaintext(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"-ERR unknown command\r\n")
        await writer.drain()
        writer.close()

    plain = await asyncio.start_server(plaintext, "127.0.0.1", 0)
    async with plain:
        plain_port = plain.sockets[0].getsockname()[1]
        async with aioredis.Redis(port=plain_port, ssl=True, ssl_cert_reqs="none",
                                  socket_connect_timeout=2, retry=NO_RETRY) as client:
            with pytest.raises(redis.RedisError) as tls:
                await client.ping()
    assert (why_refused(tls.value) or "").startswith("TLS failed"), repr(tls.value)
