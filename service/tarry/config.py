"""One frozen configuration builds the store, the engine and the server. No globals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tarry import limits

DEFAULT_WORKFLOWS = ("examples.pausing", "examples.suspend_resume", "examples.beyond")


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
    key_prefix: str = "tarry:v2"
    redis_partitions: int = 16
    """Partitions of the key layout, for a key prefix new to Redis (README: Deployments)."""
    lease_ttl: float = 10.0
    """Seconds before another server may take over an execution whose server went silent."""
    reflection: bool | None = None
    """Serve gRPC server reflection. None: yes, unless authentication is on."""
    tls_cert: str | None = None
    """PEM certificate (chain) of the gRPC port; with `tls_key`, the port speaks TLS only."""
    tls_key: str | None = None
    """PEM private key of `tls_cert`."""
    tls_client_ca: str | None = None
    """PEM CA certificate(s): with it, callers must present a client certificate it signed
    (mutual TLS)."""
    redis_wait_replicas: int = 0
    """Acknowledge a commit only once this many replicas have it (Redis WAIT); 0: once the
    primary has it."""
    redis_wait_timeout: float = 1.0
    """Seconds a commit waits for `redis_wait_replicas`; short of them, the call gets
    UNAVAILABLE (the transition may be applied; retry with the same request id)."""
    auth_tokens: str | None = None
    """A TOML tokens file (SHA-256 of each token, its subject and roles): bearer tokens on."""
    auth_jwks: str | None = None
    """A JWKS file: bearer JWTs signed by one of its keys are accepted."""
    auth_issuer: str | None = None
    """The `iss` a JWT must carry (unset: not checked)."""
    auth_audience: str | None = None
    """The `aud` a JWT must carry (unset: not checked)."""
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
    change_log_length: int = 100_000
    """Changes the change log keeps (WatchExecutions; about, as Redis trims whole nodes):
    a cursor older than the oldest kept gets OUT_OF_RANGE."""
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
    retention: float = 7 * 86_400.0
    """Seconds a finished execution is kept before it is removed whole (0: forever); a
    workflow's own `retention` wins."""
    first_step_budget: float = 0.005
    """Seconds a new execution's first step (a lone async one) may run before the Run
    commits, so that the creation and that step's outcome are one commit; 0: never."""
    max_executions: int = 10_000
    """Executions one server drives at once; a Run or Resume past it gets RESOURCE_EXHAUSTED."""
    max_request_bytes: int = limits.MAX_REQUEST_BYTES
    """The largest request message accepted (gRPC's `max_receive_message_length`); a larger
    one is refused by gRPC itself with RESOURCE_EXHAUSTED."""
    max_concurrent_rpcs: int = limits.MAX_CONCURRENT_RPCS
    """Unary calls answered at a time; one more gets RESOURCE_EXHAUSTED (OVERLOADED) at once."""
    max_watches: int = limits.MAX_WATCHES
    """WatchExecution streams open at a time; one more gets RESOURCE_EXHAUSTED (OVERLOADED)."""
    metrics_address: str | None = None
    """Where Prometheus metrics are served over HTTP (`host:port`; port 0 picks a free one,
    `Server.metrics_port` says which). None: no metrics endpoint, and no metrics kept."""
    otlp_endpoint: str | None = None
    """An OTLP/gRPC collector (`http://host:4317`) that receives the server's traces. None:
    tracing off (unless a TracerProvider is given to `Server`)."""
    log_format: str = "text"
    """`text` or `json` (one JSON object a line, with the execution's fields): how
    `serve` writes log lines."""

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_tokens or self.auth_jwks)

    @property
    def serves_reflection(self) -> bool:
        return self.reflection if self.reflection is not None else not self.auth_enabled

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Settings from the TARRY_* and REDIS_URL environment variables (`env`, default
        os.environ), then explicit overrides (flags); overrides that are None are ignored.
        A malformed value raises ConfigError, whose message is one line naming the variable."""
        try:
            read = _Environment() if env is None else _given(env)()
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None
        values: dict[str, object] = {
            _RENAMED.get(k, k): v for k, v in read.model_dump(exclude_none=True).items()}
        if "workflow_modules" in values:
            values["workflow_modules"] = split_modules(str(values["workflow_modules"]))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


class ConfigError(ValueError):
    """An environment variable of `tarry serve` does not hold a value of its kind."""


class _Environment(BaseSettings):
    """The environment variables `tarry serve` reads, parsed and checked by pydantic-settings
    (README: Configuration). Unset or empty: the `Config` default."""

    model_config = SettingsConfigDict(env_prefix="TARRY_", env_ignore_empty=True,
                                      extra="ignore", frozen=True)

    address: str | None = None
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    data_dir: str | None = None
    appendfsync: Literal["always", "everysec", "no"] | None = None
    workflows: str | None = None
    log_level: str | None = None
    reflection: bool | None = None
    key_prefix: str | None = None
    take_back: bool | None = None
    reuse_port: bool | None = None
    server_id: str | None = None
    lease_ttl: PositiveFloat | None = None
    max_request_bytes: PositiveInt | None = None
    max_concurrent_rpcs: PositiveInt | None = None
    max_watches: PositiveInt | None = None
    max_step_restarts: NonNegativeInt | None = None
    max_executions: PositiveInt | None = None
    first_step_budget: NonNegativeFloat | None = None
    retention: NonNegativeFloat | None = None
    change_log_length: PositiveInt | None = None
    redis_partitions: Annotated[int, Field(ge=1, le=64)] | None = None
    redis_wait_replicas: NonNegativeInt | None = None
    redis_wait_timeout: PositiveFloat | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    auth_tokens: str | None = None
    auth_jwks: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    metrics_address: str | None = None
    otlp_endpoint: str | None = None
    log_format: Literal["text", "json"] | None = None

    @field_validator("appendfsync", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("metrics_address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        _, sep, port = (value or "").rpartition(":")
        if value is not None and (not sep or not port.isdigit() or int(port) > 65535):
            raise ValueError("should be host:port (port 0 picks a free one)")
        return value


_RENAMED = {"workflows": "workflow_modules", "server_id": "owner"}
"""Variables whose `Config` field has another name."""


def _given(env: Mapping[str, str]) -> type[_Environment]:
    """`_Environment` reading `env` instead of os.environ (for tests and embedders)."""

    class Given(_Environment):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            source = EnvSettingsSource(settings_cls)
            source.env_vars = {k.lower(): v for k, v in env.items()}
            return (source,)

    return Given


def _one_line(exc: ValidationError) -> str:
    """`TARRY_LEASE_TTL='abc': Input should be a valid number, ...` for the first bad one."""
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    var = "REDIS_URL" if name in ("redis_url", "REDIS_URL") else f"TARRY_{name.upper()}"
    return f"{var}={err.get('input')!r}: {err['msg']}"


def split_modules(text: str) -> tuple[str, ...]:
    """`"a.b, c"` -> `("a.b", "c")`: a comma-separated list of module names."""
    return tuple(m.strip() for m in text.split(",") if m.strip())
