"""Log lines as plain text (the default) or as one JSON object each (`--log-format json`).

A JSON line holds `time` (UTC, ISO 8601, milliseconds), `level`, `logger` and `message`;
on a line about an execution also `execution_id`, `workflow`, `node` and `request_id`, those
known (from `LOG_FIELDS`, which the driver and the request handlers set, or from the call's
`extra`); `trace_id` and `span_id` while a span is current; `exception` with the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from opentelemetry import trace

from tarry.engine._observe import LOG_FIELDS

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("execution_id", "workflow", "node", "request_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        known = LOG_FIELDS.get()
        for field in FIELDS:
            value = getattr(record, field, None) or known.get(field)
            if value:
                line[field] = str(value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = f"{span.trace_id:032x}"
            line["span_id"] = f"{span.span_id:016x}"
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format {log_format!r}: choose text or json")


def configure_logging(log_format: str, level: str, stream: IO[str] | None = None) -> None:
    """The root logger's one handler, writing to `stream` (default stderr) in `log_format`
    (as logging.basicConfig: nothing changes if the root logger has handlers already)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])
