"""Log records a person (or a log pipeline) can use: each names its process role, shard,
controller and, inside a reconcile, the key.

Every process of a pod logs: the manager (leader candidate, informers, health server), the
reconcile workers (one per shard) and the RQ job workers. Which process wrote a line and about
which object is what an operator's user needs to read the log, so this module puts these fields on
every record:

- ``set_process(role, shard, controller=...)`` once per process (``manager``, ``worker``,
  ``job-worker``): every thread of the process logs them, threads started later included;
- ``log_context(controller=..., key=...)`` around a unit of work, bound with :mod:`contextvars`
  so that each reconcile thread sees its own fields;
- ``configure(level, fmt)`` installs one stderr handler that writes them as text or JSON lines.

That handler redacts credentials (:func:`~shard_operator.redaction.redact_url`) from every record it
writes, message, traceback and stack alike, so a password in a Redis URL that an exception quotes
never reaches the log, whichever call site logged it.

It also quiets urllib3's "Retrying (Retry(total=2, ...))" warnings: the Kubernetes client retries
a refused connection three times and urllib3 logs each retry, so one failed request to an
unreachable API server printed three long warnings before the caller's own error line.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import IO, Any, Literal

from shard_operator.errors import ConfigError
from shard_operator.redaction import redact_url

__all__ = ["FORMATS", "JsonFormatter", "RedactingFilter", "TextFormatter", "configure", "current_fields",
           "log_context", "set_process"]

Format = Literal["text", "json"]
FORMATS: tuple[Format, ...] = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Fields every record carries (None when unknown), in the order a text line shows them.
STANDARD_FIELDS = ("role", "shard", "controller", "key")

_process: dict[str, str | None] = {"role": None, "shard": None, "controller": None}
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "shard_operator_log_context", default=MappingProxyType({}))


def set_process(role: str, shard: str | None = None, *, controller: str | None = None) -> None:
    """Name this process (its role, shard and controller) on every record of every thread from now on;
    call once at the start of each process. A :func:`log_context` field of the same name wins."""
    _process.update(role=role, shard=shard, controller=controller)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind ``fields`` (e.g. ``controller=``, ``key=``) to every record logged inside the block.

    Nested blocks add to the outer fields; the binding is per thread (and per asyncio task).
    """
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def current_fields() -> dict[str, Any]:
    """The fields a record logged here and now would carry (standard ones None when unknown)."""
    fields: dict[str, Any] = {**_process, "key": None}
    fields.update(_context.get())
    return fields


class _ContextFilter(logging.Filter):
    """Puts the process and context fields on each record passing through the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current_fields()
        for name, value in fields.items():
            if not hasattr(record, name) or name in STANDARD_FIELDS:
                setattr(record, name, value)
        record.context_fields = fields
        return True


class RedactingFilter(logging.Filter):
    """Replaces credentials in a record's message, traceback and stack by ``***`` (never drops a record).

    The message is formatted here (``msg % args``) and stored redacted with no arguments left; the
    traceback is formatted once into ``exc_text``, which both formatters of this module write instead
    of formatting ``exc_info`` again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_url(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_url(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_url(record.stack_info)
        return True


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback: the (redacted) ``exc_text`` the filter left, else formatted now."""
    if record.exc_text:
        return record.exc_text
    return formatter.formatException(record.exc_info) if record.exc_info else ""


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "context_fields", None)
    return dict(fields) if fields is not None else current_fields()


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``TIME LEVEL ROLE[SHARD] LOGGER: MESSAGE controller=... key=... other=...`` (unknown fields left out)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields_of(record)
        role = fields.pop("role", None) or "-"
        shard = fields.pop("shard", None)
        who = f"{role}[{shard}]" if shard else role
        extras = " ".join(f"{name}={value}" for name, value in fields.items() if value is not None)
        line = f"{_timestamp(record)} {record.levelname} {who} {record.name}: {record.getMessage()}"
        if extras:
            line += " " + extras
        if record.exc_info or record.exc_text:
            line += "\n" + _exception_text(self, record)
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, role, shard, controller, key,
    every other bound field, and ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": _timestamp(record), "level": record.levelname, "logger": record.name,
                                 "message": record.getMessage(), "pid": record.process}
        entry.update(_fields_of(record))
        if record.exc_info or record.exc_text:
            entry["exception"] = _exception_text(self, record)
        return json.dumps(entry, default=str)


class _DropUrllib3Retries(logging.Filter):
    """Drops urllib3's per-retry warnings; the caller logs the failed attempt once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Retrying (")


_RETRY_FILTER = _DropUrllib3Retries()
_HANDLER_MARK = "_shard_operator_handler"


def quiet_urllib3_retries() -> None:
    """Stop urllib3 from logging each retry of a request (idempotent)."""
    pool_logger = logging.getLogger("urllib3.connectionpool")
    if _RETRY_FILTER not in pool_logger.filters:
        pool_logger.addFilter(_RETRY_FILTER)


def configure(level: str = "INFO", fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr) as ``fmt`` lines.

    Replaces the handler an earlier call installed (so it can be called again with other settings)
    and leaves other handlers alone. Raises :class:`ConfigError` for an unknown level or format.
    """
    numeric = logging.getLevelName(str(level).upper())
    if str(level).upper() not in LEVELS or not isinstance(numeric, int):
        raise ConfigError(f"--log-level {level!r} is not one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ConfigError(f"--log-format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    quiet_urllib3_retries()
    return handler
