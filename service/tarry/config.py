"""One frozen configuration builds the store, the engine and the server. No globals."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tarry import limits

DEFAULT_WORKFLOWS = ("examples.pausing", "examples.suspend_resume")


@dataclass(frozen=True)
class Config:
    address: str = "localhost:50051"
    """Where the gRPC server listens (`host:port`; port 0 picks a free one)."""
    redis_url: str | None = None
    """Redis to use. None: start and manage a local redis-server with its data in `data_dir`."""
    data_dir: str = "var/redis"
    """Where a managed redis-server keeps its data (AOF on)."""
    appendfsync: str = "everysec"
    """The managed redis-server's AOF fsync policy: always | everysec | no."""
    workflow_modules: tuple[str, ...] = DEFAULT_WORKFLOWS
    """Python modules whose top-level `Workflow`s are served."""
    log_level: str = "INFO"
    key_prefix: str = "tarry:v1"
    lease_ttl: float = 10.0
    """Seconds before another server may take over an execution whose server went silent."""
    reflection: bool = True
    """Serve gRPC server reflection."""
    default_deadline: float = 30.0
    """Cap, in seconds, on calls that come without a deadline, Run / Resume waits included
    (a wait then answers with the execution as it stands). Watches end after
    `max_watch_seconds` instead."""
    max_watch_seconds: float = 3600.0
    """A watch stream with no deadline ends (OK, resumable) after this long."""
    shutdown_grace: float = 10.0
    """Seconds a SIGTERM leaves running steps to finish before their executions are handed on."""
    events_maxlen: int = 10_000
    """Events kept per execution (older ones are trimmed; their cursors get OUT_OF_RANGE)."""
    owner: str | None = None
    """This server's name in leases. Default: `host:port` when `address` names a fixed port
    (a restarted server then takes its executions back at once), else host:pid:random.
    Give each server sharing a Redis its own (TARRY_SERVER_ID)."""
    max_step_restarts: int = 3
    """How often a step found running after its server stopped is started again; once more
    and the execution ends FAILED (StepCrashLoop)."""
    take_back: bool = False
    """`owner` is proven unique (set by `--processes` for its children): take back at start
    the executions leased under it."""
    reuse_port: bool = False
    """Share the port with other processes (SO_REUSEPORT; set by `--processes`)."""
    max_executions: int = 10_000
    """Executions one server drives at once; a Run or Resume past it gets RESOURCE_EXHAUSTED."""
    max_request_bytes: int = limits.MAX_REQUEST_BYTES
    """The largest request message accepted (gRPC's `max_receive_message_length`); a larger
    one is refused by gRPC itself with RESOURCE_EXHAUSTED."""
    max_concurrent_rpcs: int = limits.MAX_CONCURRENT_RPCS
    """Unary calls answered at a time; one more gets RESOURCE_EXHAUSTED (OVERLOADED) at once."""
    max_watches: int = limits.MAX_WATCHES
    """WatchExecution streams open at a time; one more gets RESOURCE_EXHAUSTED (OVERLOADED)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Settings from TARRY_* / REDIS_URL environment variables, then explicit overrides
        (flags). Overrides that are None are ignored."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if "TARRY_ADDRESS" in env:
            values["address"] = env["TARRY_ADDRESS"]
        if env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
        if "TARRY_DATA_DIR" in env:
            values["data_dir"] = env["TARRY_DATA_DIR"]
        if env.get("TARRY_APPENDFSYNC"):
            values["appendfsync"] = env["TARRY_APPENDFSYNC"].strip().lower()
        if env.get("TARRY_WORKFLOWS"):
            values["workflow_modules"] = split_modules(env["TARRY_WORKFLOWS"])
        if "TARRY_LOG_LEVEL" in env:
            values["log_level"] = env["TARRY_LOG_LEVEL"]
        if "TARRY_REFLECTION" in env:
            values["reflection"] = env["TARRY_REFLECTION"].lower() not in ("0", "false", "no")
        if env.get("TARRY_KEY_PREFIX"):
            values["key_prefix"] = env["TARRY_KEY_PREFIX"]
        for key, name in (("TARRY_TAKE_BACK", "take_back"), ("TARRY_REUSE_PORT", "reuse_port")):
            if key in env:
                values[name] = env[key] == "1"
        if env.get("TARRY_SERVER_ID"):
            values["owner"] = env["TARRY_SERVER_ID"]
        if "TARRY_LEASE_TTL" in env:
            values["lease_ttl"] = float(env["TARRY_LEASE_TTL"])
        for key, name in (("TARRY_MAX_REQUEST_BYTES", "max_request_bytes"),
                          ("TARRY_MAX_CONCURRENT_RPCS", "max_concurrent_rpcs"),
                          ("TARRY_MAX_WATCHES", "max_watches"),
                          ("TARRY_MAX_STEP_RESTARTS", "max_step_restarts"),
                          ("TARRY_MAX_EXECUTIONS", "max_executions")):
            if key in env:
                values[name] = int(env[key])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def split_modules(text: str) -> tuple[str, ...]:
    """`"a.b, c"` -> `("a.b", "c")`: a comma-separated list of module names."""
    return tuple(m.strip() for m in text.split(",") if m.strip())
