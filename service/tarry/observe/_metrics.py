"""Every Prometheus metric of one server, in one registry of its own (no global registry:
several servers can live in one process, as in the tests). README "Operating it" lists
them with what each means."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

RPC_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60)
"""Seconds: an empty call takes ~1 ms, a Run that waits for its execution to settle can take
a deadline's worth."""
STEP_BUCKETS = (.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
LATENESS_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 60, 600)
"""Seconds: timers fire 1-2 ms late at the median (README "Performance"); the tail shows
overload, and hours show timers that fell due while no server ran."""
REDIS_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5)


class Metrics:
    """The metrics of one server, registered in `registry`."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        # The usual process_* and python_* series, for this registry alone.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

        self.rpcs = Counter(
            "tarry_rpcs", "Calls answered, by method and gRPC status code (refusals "
            "before the handler included).", ["method", "code"], registry=registry)
        self.rpc_seconds = Histogram(
            "tarry_rpc_duration_seconds", "Time from the handler taking a call to its answer "
            "(a WatchExecution: the stream's whole life).", ["method"],
            buckets=RPC_BUCKETS, registry=registry)
        self.rpcs_in_flight = Gauge(
            "tarry_rpcs_in_flight", "Unary calls being answered now (the count "
            "max_concurrent_rpcs limits).", registry=registry)
        self.watches_open = Gauge(
            "tarry_watches_open", "WatchExecution streams open now (the count max_watches "
            "limits).", registry=registry)
        self.refusals = Counter(
            "tarry_admission_refusals", "Calls refused with RESOURCE_EXHAUSTED (OVERLOADED), "
            "by the limit reached: max_concurrent_rpcs, max_watches, max_executions.",
            ["limit"], registry=registry)

        self.transitions = Counter(
            "tarry_transitions", "Transitions committed by this server, by the status "
            "before (NEW for a Run that created the execution) and after.",
            ["from_status", "to_status"], registry=registry)
        # tarry_executions{status}: read from Redis at each scrape (`_http.ExecutionCounts`).
        self.drivers = Gauge(
            "tarry_executions_driven", "Executions this server drives now (the count "
            "max_executions limits).", registry=registry)

        self.step_seconds = Histogram(
            "tarry_step_duration_seconds", "Time each step attempt's own code ran, by "
            "workflow and node.", ["workflow", "node"], buckets=STEP_BUCKETS,
            registry=registry)
        self.step_failures = Counter(
            "tarry_step_failures", "Step attempts that failed (raised, timed out, or ended "
            "with what cannot be stored), retried or not.", ["workflow", "node"],
            registry=registry)
        self.step_retries = Counter(
            "tarry_step_retries", "Failed step attempts that will be retried (a backoff "
            "timer was set).", ["workflow", "node"], registry=registry)

        self.timer_lateness = Histogram(
            "tarry_timer_lateness_seconds", "How late timers fired: the firing transition's "
            "time minus the due time, by kind (sleep, retry, wait, timeout).", ["kind"],
            buckets=LATENESS_BUCKETS, registry=registry)
        self.takeovers = Counter(
            "tarry_lease_takeovers", "Executions this server took over, their lease having "
            "run out (reason=expired) or being its own from before a restart "
            "(reason=take_back).", ["reason"], registry=registry)

        self.redis_seconds = Histogram(
            "tarry_redis_duration_seconds", "Time of each store operation, by operation; one "
            "Redis round trip each (a commit or claim counts its wait to join a pipelined "
            "batch).", ["operation"], buckets=REDIS_BUCKETS, registry=registry)
        self.redis_errors = Counter(
            "tarry_redis_errors", "Store operations that failed (Redis unreachable or "
            "refusing), by operation.", ["operation"], registry=registry)
