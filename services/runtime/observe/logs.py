"""Logs every process writes: JSON lines by default, a readable line in a terminal, personal data masked.

:func:`configure_logging` installs one handler on the root logger (uvicorn's and FastStream's loggers
propagate to it) with :class:`MaskingFilter`, so no line leaves the process unmasked:

- a citizen id (a run of exactly 12 digits) anywhere in a message, an argument, an extra field or a
  traceback shows only its last three digits (``*********345``);
- the values of personal fields (``schemas.values.PERSONAL_FIELDS``, ``schemas.forms.FORM_PERSONAL_FIELDS``
  and the usual aliases: names, addresses, dates of birth) never appear: an ``extra`` key of that name,
  and such a key inside a dict or list passed as an argument or an extra, becomes ``[masked]``;
- pydantic's ``input_value=…`` in validation errors is masked (it echoes what a citizen typed).

The format is JSON lines (one object per line: ``ts``, ``level``, ``service``, ``logger``, ``message``,
then the extra fields such as ``dossier_id``, ``correlation_id``, ``agency``, ``action``, ``outcome``,
``duration_ms``) unless stderr is a terminal or ``LIENTHONG_LOG_FORMAT=console``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from schemas.forms import FORM_PERSONAL_FIELDS
from schemas.values import PERSONAL_FIELDS

FORMAT_VARIABLE: Final = "LIENTHONG_LOG_FORMAT"
LEVEL_VARIABLE: Final = "LIENTHONG_LOG_LEVEL"
MASKED: Final = "[masked]"

PERSONAL_KEYS: Final[frozenset[str]] = frozenset(
    {
        *PERSONAL_FIELDS,
        *FORM_PERSONAL_FIELDS,
        "name",
        "owner_name",
        "owner_citizen_id",
        "applicant",
        "form",
        "husband",
        "wife",
        "transferor",
        "transferee",
        "phone",
        "email",
        "dob",
    }
)
"""Keys whose values are never logged (a citizen id key keeps its last three digits)."""

_CITIZEN_ID_KEYS: Final = frozenset({"citizen_id", "owner_citizen_id"})
_TWELVE_DIGITS: Final = re.compile(r"(?<!\d)\d{9}(\d{3})(?!\d)")
_INPUT_VALUE: Final = re.compile(
    r"input_value=(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\{[^}]*\}|\[[^\]]*\]|\S+)"
)
_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime", "taskName"}
)


def mask_citizen_id(value: str) -> str:
    """``001085012345`` → ``*********345``."""
    return "*" * max(len(value) - 3, 0) + value[-3:]


def mask_text(text: str) -> str:
    """Every 12-digit run shows only its last three digits; pydantic's echoed inputs are hidden."""
    text = _TWELVE_DIGITS.sub(lambda m: "*********" + m.group(1), text)
    return _INPUT_VALUE.sub("input_value=" + MASKED, text)


def mask_value(value: Any, key: str | None = None) -> Any:
    """``value`` as it may be logged under ``key`` (dicts and lists are masked deeply)."""
    if key is not None and key in PERSONAL_KEYS:
        if key in _CITIZEN_ID_KEYS and isinstance(value, str):
            return mask_citizen_id(value)
        return MASKED
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [mask_value(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return mask_text(str(value))


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call added with ``extra=``."""
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES and not k.startswith("_")}


class MaskingFilter(logging.Filter):
    """Masks a record in place (idempotent): its message, arguments, extra fields and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_lienthong_masked", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what we have rather than nothing
            message = f"{record.msg} {record.args!r}"
        if record.args:
            # Dicts passed as arguments lose their personal keys before formatting.
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            masked_args = tuple(
                mask_value(a) if isinstance(a, (Mapping, list, tuple, set)) else a for a in args
            )
            with contextlib.suppress(Exception):
                message = record.msg % masked_args if isinstance(record.msg, str) else message
        record.msg = mask_text(message)
        record.args = None
        for key, value in extra_fields(record).items():
            setattr(record, key, mask_value(value, key))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        record.exc_info = None  # the masked text is what formatters print
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        record._lienthong_masked = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """``12:00:01.234 INFO  intake services.x: message key=value …`` for a human at a terminal."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{moment} {record.levelname:<7} {self.service} {record.name}: {record.getMessage()}"
        fields = extra_fields(record)
        if fields:
            line += "  " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


def wants_console(stream: TextIO) -> bool:
    chosen = os.environ.get(FORMAT_VARIABLE, "").strip().lower()
    if chosen in {"json", "console"}:
        return chosen == "console"
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def make_handler(
    service: str, stream: TextIO | None = None, *, console: bool | None = None
) -> logging.Handler:
    """A stream handler with the masking filter and the chosen format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    use_console = wants_console(stream) if console is None else console
    handler.setFormatter(ConsoleFormatter(service) if use_console else JsonFormatter(service))
    handler.addFilter(MaskingFilter())
    return handler


def configure_logging(service: str, *, level: int | str | None = None, stream: TextIO | None = None) -> None:
    """Route every logger of the process through one masked handler (replaces earlier handlers)."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(make_handler(service, stream))
    root.setLevel(level or os.environ.get(LEVEL_VARIABLE, "INFO").upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per agency call is too much
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream"):
        named = logging.getLogger(name)
        for existing in list(named.handlers):
            named.removeHandler(existing)
        named.propagate = True


def handoff_log_fields(
    *,
    dossier_id: str,
    correlation_id: str | None,
    agency: str,
    action: str,
    step: str,
    outcome: str,
    duration_s: float | None = None,
    handoff_id: str | None = None,
    attempt: int | None = None,
    error_class: str | None = None,
) -> dict[str, Any]:
    """The ``extra=`` of the one log line per handoff step (received, called, retried, settled,
    dead-lettered, polled …). Ids only: no form content, never a name or a citizen id.

    ``log.info("handoff %s: %s", step, outcome, extra=handoff_log_fields(...))``
    """
    fields: dict[str, Any] = {
        "dossier_id": dossier_id,
        "correlation_id": correlation_id,
        "agency": agency,
        "action": action,
        "step": step,
        "outcome": outcome,
    }
    if duration_s is not None:
        fields["duration_ms"] = round(duration_s * 1000, 1)
    if handoff_id is not None:
        fields["handoff_id"] = handoff_id
    if attempt is not None:
        fields["attempt"] = attempt
    if error_class is not None:
        fields["error_class"] = error_class
    return fields
