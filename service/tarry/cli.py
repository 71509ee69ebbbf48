"""The `tarry` command: run a server, or drive one from the shell.

    tarry serve [--address HOST:PORT] [--redis-url URL] [--workflows mod1,mod2] ...
    tarry run expense-approval --input '{"amount": 1500}' [--wait]
    tarry watch ID                  # live view; --json for one JSON object per line
    tarry watch --workflow W --status AWAITING    # every matching execution, live
    tarry bulk cancel --workflow W --status AWAITING --reason R [--dry-run] [--watch]
    tarry resume ID --data '{"approved": true}' --action approve

Client commands talk to `--target` (env TARRY_TARGET, default localhost:50051), read JSON
(`--input` / `--data` as JSON text, `@file` or `-` for stdin) and print one JSON object on
stdout. A failed call prints `error: CODE (REASON): message` (plus field violations) on
stderr and exits 1; a usage error exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from tarry._liveview import LiveView, change_line
from tarry_client import (
    Client,
    Execution,
    Status,
    TarryError,
    as_json,
)

DEFAULT_TARGET = "localhost:50051"

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 1
    except TarryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tarry watch ID | head`: the reader left, nothing to say
        # Point stdout at /dev/null, or Python's flush at exit complains about the pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# -- the parser -----------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tarry", description="Tarry: durable workflows as a gRPC service.")
    # --target and --timeout are accepted before and after the command. The subcommands'
    # copies default to SUPPRESS so they do not overwrite a value given before the command.
    _client_options(parser, os.environ.get("TARRY_TARGET") or DEFAULT_TARGET, 30.0)
    common = argparse.ArgumentParser(add_help=False)
    _client_options(common, argparse.SUPPRESS, argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, handler: Handler, help_: str, *, client: bool = True
                ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_,
                                  parents=[common] if client else [])
        sub.set_defaults(handler=handler, parser=sub)
        return sub

    serve = command("serve", _serve, "Serve workflows over gRPC until SIGTERM / SIGINT.",
                    client=False)
    serve.add_argument("--address", help="host:port to listen on (env TARRY_ADDRESS; "
                       "default localhost:50051)")
    serve.add_argument("--redis-url", help="the Redis to use (env REDIS_URL); without one, "
                       "a local redis-server is started and managed")
    serve.add_argument("--data-dir", help="where a managed redis-server keeps its data "
                       "(env TARRY_DATA_DIR)")
    serve.add_argument("--appendfsync", choices=("always", "everysec", "no"),
                       help="when the managed redis-server fsyncs its append-only file "
                       "(env TARRY_APPENDFSYNC; default everysec)")
    serve.add_argument("--workflows", metavar="MODULES", help="comma-separated Python "
                       "modules whose workflows to serve (env TARRY_WORKFLOWS)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING... (env TARRY_LOG_LEVEL)")
    serve.add_argument("--log-format", type=str.lower, choices=("text", "json"),
                       help="text, or json for one JSON object a line (env TARRY_LOG_FORMAT; "
                       "default text)")
    serve.add_argument("--metrics-address", metavar="HOST:PORT",
                       help="serve Prometheus metrics over HTTP there (env "
                       "TARRY_METRICS_ADDRESS; default: none)")
    serve.add_argument("--no-reflection", action="store_true",
                       help="do not serve gRPC server reflection")
    serve.add_argument("--processes", metavar="N",
                       help="serve from N processes sharing the port, or 'auto' for one a "
                       "core (env TARRY_PROCESSES; default 1)")

    run = command("run", _run, "Start an execution of a workflow.")
    run.add_argument("workflow")
    run.add_argument("--input", metavar="JSON", help="the input: JSON, @file, or - for stdin")
    run.add_argument("--version", help="the workflow version (default: the latest)")
    run.add_argument("--id", dest="execution_id", help="the execution id to use")
    run.add_argument("--request-id", help="idempotency key (default: a fresh one)")
    run.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE",
                     help="a tag for the execution (repeat for several)")
    run.add_argument("--wait", action="store_true",
                     help="answer once the execution is no longer RUNNING (or at --timeout)")

    resume = command("resume", _resume, "Continue an AWAITING or SUSPENDED execution.")
    resume.add_argument("execution_id", metavar="ID")
    resume.add_argument("--data", metavar="JSON", help="the data: JSON, @file, or - for stdin")
    resume.add_argument("--node", help="the waiting node (needed when several wait)")
    resume.add_argument("--action", help="the action that picks the outgoing edges")
    resume.add_argument("--from-step", help="re-run this step instead of the suspended one")
    resume.add_argument("--request-id", help="idempotency key (default: a fresh one)")
    resume.add_argument("--wait", action="store_true",
                        help="answer once the execution is no longer RUNNING (or at --timeout)")

    for name, handler, help_ in (("suspend", _suspend, "Suspend an execution."),
                                 ("cancel", _cancel, "Cancel an execution.")):
        sub = command(name, handler, help_)
        sub.add_argument("execution_id", metavar="ID")
        sub.add_argument("--reason", default="", help="why (kept with the execution)")
        sub.add_argument("--request-id", help="idempotency key (default: a fresh one)")
        if name == "suspend":
            sub.add_argument("--freeze", action="store_true",
                             help="stop its timers while suspended (the Resume gives each the "
                                  "time it had left)")

    get = command("get", _get, "Show an execution.")
    get.add_argument("execution_id", metavar="ID")

    delete = command("delete", _delete, "Remove a finished execution whole, now.")
    delete.add_argument("execution_id", metavar="ID")

    ls = command("list", _list, "List executions, newest first.")
    ls.add_argument("--workflow", help="only executions of this workflow")
    ls.add_argument("--status", type=str.upper, choices=[s.value for s in Status],
                    help="only executions with this status")
    ls.add_argument("--page-size", type=_natural, help="executions per page")
    ls.add_argument("--page-token", help="next_page_token of the previous page")
    ls.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE",
                    help="only executions with this tag (repeat: with all of them)")
    ls.add_argument("--version", help="only executions of this version (with --workflow)")
    ls.add_argument("--waiting-node", metavar="NODE",
                    help="only executions waiting at this wait node (with --workflow)")
    ls.add_argument("--since", type=_when, metavar="TIME",
                    help="only executions created at or after TIME (ISO 8601, with a zone)")
    ls.add_argument("--before", type=_when, metavar="TIME",
                    help="only executions created before TIME (ISO 8601, with a zone)")

    events = command("events", _events, "Show a page of an execution's event log.")
    events.add_argument("execution_id", metavar="ID")
    events.add_argument("--after", type=_natural, default=0, metavar="SEQ",
                        help="only events after this sequence")
    events.add_argument("--page-size", type=_natural, help="events per page")

    watch = command("watch", _watch, "Follow an execution until it ends; without ID, every "
                    "execution that matches the filters, until interrupted.")
    watch.add_argument("execution_id", metavar="ID", nargs="?")
    watch.add_argument("--after", type=_natural, metavar="SEQ",
                       help="replay the events after this sequence instead of a snapshot")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument("--workflow", help="(without ID) only executions of this workflow")
    watch.add_argument("--status", type=str.upper, choices=[s.value for s in Status],
                       help="(without ID) only executions entering or leaving this status")
    watch.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE",
                       help="(without ID) only executions with this tag (repeat: all)")
    watch.add_argument("--waiting-node", metavar="NODE",
                       help="(without ID) only executions starting or ending a wait at this "
                            "node (with --workflow)")
    watch.add_argument("--cursor", help="(without ID) continue after this cursor (a "
                                        "change's, or a listing's watch_cursor)")

    bulk = command("bulk", _bulk, "Suspend, resume or cancel every execution that matches "
                   "filters, as one batch (or read, follow or stop a batch).")
    bulk.add_argument("what", choices=["suspend", "resume", "cancel", "get", "watch", "stop"],
                      help="the operation of a new batch; or get / watch / stop a batch")
    bulk.add_argument("bulk_id", metavar="ID", nargs="?", help="the batch (get, watch, stop)")
    for flag, kw in (("--workflow", {}), ("--version", {}),
                     ("--waiting-node", {"metavar": "NODE"}),
                     ("--reason", {"default": ""}), ("--node", {"metavar": "NODE"}),
                     ("--action", {}), ("--request-id", {}),
                     ("--data", {"metavar": "JSON", "help": "resume data: JSON, @file or -"})):
        bulk.add_argument(flag, **kw)  # type: ignore[arg-type]
    bulk.add_argument("--status", type=str.upper, choices=[s.value for s in Status])
    bulk.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE")
    bulk.add_argument("--since", type=_when, metavar="TIME")
    bulk.add_argument("--before", type=_when, metavar="TIME")
    bulk.add_argument("--freeze", action="store_true", help="suspend: freeze timers")
    bulk.add_argument("--rate", type=_natural, help="executions a second (default 100)")
    bulk.add_argument("--dry-run", action="store_true", help="only count the matching ones")
    bulk.add_argument("--watch", action="store_true",
                      help="follow the new batch until it ends (one JSON object per line)")

    workflows = command("workflows", _workflows,
                        "List the workflows served, or describe one.")
    workflows.add_argument("name", nargs="?", help="the workflow to describe")
    workflows.add_argument("--version", help="the version to describe (default: the latest)")
    return parser


def _client_options(parser: argparse.ArgumentParser, target: Any, timeout: Any) -> None:
    parser.add_argument("--target", default=target, metavar="HOST:PORT",
                        help=f"the server (env TARRY_TARGET; default {DEFAULT_TARGET})")
    parser.add_argument("--timeout", type=float, default=timeout, metavar="SECONDS",
                        help="deadline of each call (default 30)")
    suppress = timeout is argparse.SUPPRESS
    for flag, env, help_ in (
            ("--token", "TARRY_TOKEN", "bearer token sent with each call"),
            ("--namespace", "TARRY_NAMESPACE", "the namespace the calls work in"),
            ("--ca-cert", "TARRY_CA_CERT", "PEM CA certificate: speak TLS, trusting it"),
            ("--client-cert", "TARRY_CLIENT_CERT", "PEM client certificate (mutual TLS)"),
            ("--client-key", "TARRY_CLIENT_KEY", "PEM key of --client-cert")):
        parser.add_argument(flag, default=argparse.SUPPRESS if suppress else
                            (os.environ.get(env) or None), help=f"{help_} (env {env})")


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a tag is KEY=VALUE, not {text[:64]!r}")
    return key, value


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text[:64]!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone: {text[:64]!r} (e.g. ...Z)")
    return when


def _natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _json_arg(args: argparse.Namespace, option: str, text: str | None) -> Any:
    """The JSON value of --input / --data: inline JSON, `@path` or `-` (stdin)."""
    if text is None:
        return None
    source = text
    try:
        if text == "-":
            source = sys.stdin.read()
        elif text.startswith("@"):
            source = Path(text[1:]).read_text(encoding="utf-8")
        return json.loads(source)
    except OSError as exc:
        args.parser.error(f"{option}: cannot read {text[1:]!r}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        args.parser.error(f"{option}: not valid JSON: {exc}")


# -- serve ----------------------------------------------------------------------------------

def _serve(args: argparse.Namespace) -> int:
    # Imported here, not at the top: client commands need none of the server's machinery.
    from tarry.api._auth import AuthConfigError
    from tarry.config import Config, ConfigError, split_modules
    from tarry.engine import TarryError as EngineError
    from tarry.localredis import LocalRedisError
    from tarry.observe import configure_logging
    from tarry.processes import resolve, serve_processes
    from tarry.server import run

    # Like `python -m` (and uvicorn's --app-dir), find workflow modules in the current
    # directory: the console script does not put it on sys.path by itself.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    modules = None
    if args.workflows is not None:
        modules = split_modules(args.workflows)
        if not modules:
            args.parser.error("--workflows: name at least one module")
    try:
        config = Config.from_env(
            address=args.address, redis_url=args.redis_url, data_dir=args.data_dir,
            appendfsync=args.appendfsync, workflow_modules=modules, log_level=args.log_level,
            reflection=False if args.no_reflection else None, log_format=args.log_format,
            metrics_address=args.metrics_address)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        processes = resolve(args.processes or os.environ.get("TARRY_PROCESSES") or "1")
    except ValueError as exc:
        args.parser.error(str(exc))
    try:
        if processes > 1:
            # The children read their settings from their flags and the environment.
            os.environ["TARRY_LOG_FORMAT"] = config.log_format
            configure_logging(config.log_format, config.log_level)  # the parent's lines
            return serve_processes(config, processes)
        run(config)
    except (OSError, ImportError, EngineError, LocalRedisError, AuthConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


# -- client commands ------------------------------------------------------------------------

def _client(args: argparse.Namespace) -> Client:
    credentials = None
    if args.ca_cert or args.client_cert:
        def pem(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        try:
            credentials = grpc.ssl_channel_credentials(
                pem(args.ca_cert), pem(args.client_key), pem(args.client_cert))
        except OSError as exc:
            args.parser.error(f"cannot read {exc.filename}: {exc.strerror}")
    return Client(args.target, timeout=args.timeout, credentials=credentials, token=args.token,
                  namespace=args.namespace)


def _print(value: object) -> None:
    print(json.dumps(as_json(value), indent=2, ensure_ascii=False))


def _run(args: argparse.Namespace) -> int:
    data = _json_arg(args, "--input", args.input)
    with _client(args) as client:
        _print(client.run(args.workflow, data, version=args.version,
                          execution_id=args.execution_id, request_id=args.request_id,
                          wait=args.wait, tags=dict(args.tag)))
    return 0


def _resume(args: argparse.Namespace) -> int:
    data = _json_arg(args, "--data", args.data)
    with _client(args) as client:
        _print(client.resume(args.execution_id, data, node_id=args.node, action=args.action,
                             from_step=args.from_step, request_id=args.request_id,
                             wait=args.wait))
    return 0


def _suspend(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.suspend(args.execution_id, args.reason, request_id=args.request_id,
                              freeze_timers=args.freeze))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.cancel(args.execution_id, args.reason, request_id=args.request_id))
    return 0


def _get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.get(args.execution_id))
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete(args.execution_id)
    _print({"deleted": args.execution_id})
    return 0


def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.list_executions(args.workflow, args.status, args.page_size,
                                      args.page_token, tags=dict(args.tag),
                                      version=args.version, created_from=args.since,
                                      created_to=args.before,
                                      waiting_node=args.waiting_node))
    return 0


def _bulk(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.what in ("get", "watch", "stop"):
            if not args.bulk_id:
                print(f"error: bulk {args.what} needs the batch's ID", file=sys.stderr)
                return 2
            if args.what == "get":
                _print(client.get_bulk(args.bulk_id))
            elif args.what == "stop":
                _print(client.cancel_bulk(args.bulk_id))
            else:
                for b in client.watch_bulk(args.bulk_id):
                    print(json.dumps(as_json(b), ensure_ascii=False), flush=True)
            return 0
        started = client.start_bulk(
            args.what, workflow=args.workflow, status=args.status, tags=dict(args.tag),
            version=args.version, waiting_node=args.waiting_node, created_from=args.since,
            created_to=args.before, reason=args.reason, freeze_timers=args.freeze,
            data=_json_arg(args, "--data", args.data), node_id=args.node,
            action=args.action, rate=args.rate, dry_run=args.dry_run,
            request_id=args.request_id)
        if args.watch and started.bulk is not None:
            for b in client.watch_bulk(started.bulk.id):
                print(json.dumps(as_json(b), ensure_ascii=False), flush=True)
        else:
            _print(started)
    return 0


def _events(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.events(args.execution_id, args.after, args.page_size))
    return 0


def _workflows(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.name:
            _print(client.describe(args.name, args.version))
        else:
            _print({"workflows": client.workflows()})
    return 0


def _watch(args: argparse.Namespace) -> int:
    if args.execution_id is None:
        return _watch_many(args)
    many = [f for f in ("workflow", "status", "waiting_node", "cursor") if getattr(args, f)]
    if many or args.tag:
        print(f"error: --{(many or ['tag'])[0].replace('_', '-')} is for watching many "
              f"executions: give it without ID", file=sys.stderr)
        return 2
    view = LiveView()
    with _client(args) as client:
        for item in client.watch(args.execution_id, args.after):
            if args.json:  # the shape of WatchExecutionResponse: the cursor and one payload
                key = "execution" if isinstance(item, Execution) else "event"
                line = json.dumps({"sequence": item.sequence, key: as_json(item)},
                                  ensure_ascii=False)
            else:
                line = view.line(item)
            print(line, flush=True)  # live: one line as each item arrives
    return 0


def _watch_many(args: argparse.Namespace) -> int:
    if args.after is not None:
        print("error: --after needs an execution ID (use --cursor)", file=sys.stderr)
        return 2
    with _client(args) as client:
        for change in client.watch_executions(
                args.workflow, args.status, tags=dict(args.tag) or None,
                waiting_node=args.waiting_node, cursor=args.cursor):
            if args.json:
                print(json.dumps(as_json(change), ensure_ascii=False), flush=True)
            else:
                print(change_line(change), flush=True)
    return 0
