"""Logging for `kpipe run` and its workers: human text, or one JSON object per line for log collectors.

The supervisor and every worker process call `configure_logging` once at start with the same format, so one
stream (stderr) carries all of them; each line names its process so interleaved output can be told apart.
Fields passed with `logger.info(..., extra={"group": "billing"})` become keys in JSON lines.

Imports: kpipe.redaction.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from kpipe.redaction import safe_block, safe_text

LOG_FORMATS = ("text", "json")
# The same client error is logged at most once per this many seconds.
RATE_LIMIT_INTERVAL = 10.0
LOG_LEVEL_ENV = "KPIPE_LOG_LEVEL"

# Attributes every LogRecord has; anything else on a record came from `extra=` and is worth emitting.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, pid, msg, then any extra fields, then exc."""

    def __init__(self, context: Mapping[str, Any] | None = None):
        super().__init__()
        self._context = dict(context or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        entry.update(self._context)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, context: Mapping[str, Any] | None = None):
        label = " ".join(f"{k}={v}" for k, v in (context or {}).items())
        prefix = f"{label} " if label else ""
        super().__init__(
            f"%(asctime)s.%(msecs)03d %(levelname)-7s [%(process)d] {prefix}%(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )


class _KpipeHandler(logging.StreamHandler):
    """Marks the handler kpipe installed, so configuring twice replaces it rather than doubling every line.

    Every line it writes goes through kpipe.redaction: the message is one line (env() tokens shown as
    env('NAME'), every control character escaped, newlines included) before it is formatted; the formatted
    record is again, except the newlines of a traceback, which stay lines of their own (none can start a
    workflow command).
    """

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.msg, record.args = safe_text(record.getMessage()), None
        return safe_block(super().format(record))


def configure_logging(
    fmt: str = "text",
    level: int | str | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send every log record (kpipe's and user handlers') to stderr as text or JSON lines.

    fmt: "text" or "json". level: a logging level or its name ("info", "DEBUG"); None takes $KPIPE_LOG_LEVEL
    (which `kpipe run --log-level` sets for its workers), else INFO.
    context: fields added to every line of this process, e.g. {"group": "billing", "instance": 0} in a worker.
    Calling it again replaces the previous configuration.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(LOG_FORMATS)}")
    if level is None:
        level = os.environ.get(LOG_LEVEL_ENV) or logging.INFO
    if isinstance(level, str):
        level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    handler = _KpipeHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(context) if fmt == "json" else TextFormatter(context))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _KpipeHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class RateLimitedLog:
    """Log through `logger` at most one line per key every `interval` seconds; the next line that gets through
    says how many were held back. For client errors that repeat many times a second while a broker is down."""

    def __init__(self, logger: logging.Logger, interval: float = RATE_LIMIT_INTERVAL):
        self._logger = logger
        self._interval = interval
        self._last: dict[Any, tuple[float, int]] = {}

    def __call__(self, level: int, key: Any, text: str, *args: Any) -> None:
        now = time.monotonic()
        last, held = self._last.get(key, (0.0, 0))
        if last and now - last < self._interval:
            self._last[key] = (last, held + 1)
            return
        self._last[key] = (now, 0)
        suffix = f" ({held} similar suppressed)" if held else ""
        self._logger.log(level, text + suffix, *args)
