"""Log lines of every long-running command (`serve`, `consume`): text by default, or one JSON
object a line (SAMTAL_LOG_FORMAT=json) for log collectors. uvicorn's loggers go through the same
handler; its access log is off, since the API writes one line per request with the route and
organisation."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson

#: How text lines look (uvicorn's style: the level, then the logger).
TEXT_FORMAT = "%(levelname)s:     %(name)s: %(message)s"
#: Attributes of a record written as fields of their own in JSON.
FIELDS = ("method", "route", "status", "duration_ms", "org")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure(log_format: str) -> None:
    """Send every log line (samtal's and uvicorn's) to stderr in `log_format` (text or json)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
