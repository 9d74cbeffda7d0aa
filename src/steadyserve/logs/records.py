"""One line of a process's log file, as the store keeps it: ``parse_line`` never raises.

A replica's or gateway's stdout and stderr go to one file, ``<logs_dir>/<label>.log``
(``digits-r0`` for replica r0 of deployment digits, ``g0`` for a gateway). A line is one of:

- a JSON object written by ``format.JsonFormatter``  -> kind ``record``
- a gateway access line (``"kind": "access"``)       -> kind ``access``, message ``POST /predict 200 3.1ms``
- anything else (user ``print``, a crash traceback, bytes that are not UTF-8) -> kind ``raw``

Raw lines are level ``info``: stdout and stderr share the file, so the stream a line came from
is not known. Python's own crash output is recognised (``Traceback (most recent call last):`` and
``SomeError: ...`` lines are ``error``, ``SomeWarning: ...`` lines ``warning``), so an uncaught
exception that bypassed logging still counts as an error.

The file's label is the authority on who wrote a line: user code shares the replica's stdout and
could print a JSON line naming another deployment, so a replica file's deployment and replica
come from its label whatever the line says, and only gateway files may hold access records.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ..wire.http11 import valid_request_id

Kind = Literal["record", "raw", "access"]
FieldValue = str | int | float | bool

LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_ALIASES = {"warn": "warning", "fatal": "critical", "err": "error", "trace": "debug", "notset": "debug"}
MAX_MESSAGE_CHARS = 32 * 1024  # msg plus its exception: one stored row stays bounded
_MAX_FIELD_CHARS = 200
_FUTURE_SLACK_S = 300.0  # a record stamped further ahead than this has a broken clock: stamped on arrival
_PAST_SLACK_S = 3600.0  # lines are read within seconds of being written; a backlog stays within this
_GATEWAY_LABEL = re.compile(r"g\d{1,4}")
_ERROR_LINE = re.compile(r"(Traceback \(most recent call last\):|[A-Za-z_][\w.]*(Error|Exception|Exit): )")
_WARNING_LINE = re.compile(r"[A-Za-z_][\w.]*Warning: ")
_ACCESS_INTS = ("status", "bytes_in", "bytes_out", "sampled")


def level_number(level: str) -> int:
    """debug 10 < info 20 < warning 30 < error 40 < critical 50 (ValueError for another name)."""
    try:
        return LEVELS[level]
    except KeyError:
        raise ValueError(f"unknown level {level!r}; levels: {', '.join(LEVELS)}") from None


@dataclass(frozen=True)
class LogRecord:
    ts: float  # epoch seconds: when the process wrote it, else when the line was read
    level: str  # a key of LEVELS
    deployment: str | None  # None: a gateway's own line
    revision: int | None
    replica: str | None  # slot id (r0); for an access record the replica that served the call
    source: str  # the file's label: digits-r0, g0
    request_id: str | None
    message: str
    kind: Kind
    fields: dict[str, FieldValue] = field(default_factory=dict)  # logger; access: status, duration_ms...
    template_id: int | None = None  # set by the pattern miner before the row is stored

    @property
    def level_no(self) -> int:
        return LEVELS[self.level]


@dataclass(frozen=True)
class Label:
    """Who writes ``<label>.log``: ``digits-r0`` is replica r0 of digits, ``g0`` gateway g0."""

    source: str
    deployment: str | None
    replica: str | None
    gateway: bool


@functools.lru_cache(maxsize=4096)  # a handful of files, each read line by line
def parse_label(label: str) -> Label:
    deployment, dash, slot = label.rpartition("-")
    if dash and deployment and slot:
        return Label(label, deployment, slot, gateway=False)
    return Label(label, None, None, gateway=_GATEWAY_LABEL.fullmatch(label) is not None)


def parse_line(raw: bytes, label: str, now: float) -> LogRecord:
    """The record a log line of process ``label`` stands for; ``now`` stamps lines without a time."""
    who = parse_label(label)
    line = raw.rstrip(b"\r\n")
    if line.startswith(b"{"):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            if doc.get("kind") == "access" and who.gateway:
                return _access(doc, who, now)
            if isinstance(doc.get("msg"), str):
                return _structured(doc, who, now)
    text = line.decode("utf-8", errors="replace")
    return LogRecord(now, _raw_level(text), who.deployment, None, who.replica, who.source, None,
                     _cap(text, MAX_MESSAGE_CHARS), "raw")


def _raw_level(text: str) -> str:
    if _ERROR_LINE.match(text):
        return "error"
    return "warning" if _WARNING_LINE.match(text) else "info"


def _structured(doc: dict[str, Any], who: Label, now: float) -> LogRecord:
    message = doc["msg"]
    exc = doc.get("exc")
    if isinstance(exc, str) and exc:
        message = f"{message}\n{exc}"
    fields: dict[str, FieldValue] = {}
    logger = _text(doc.get("logger"))
    if logger is not None:
        fields["logger"] = logger
    deployment, replica = (who.deployment, who.replica) if not who.gateway else (_text(doc.get("deployment")), None)
    return LogRecord(_ts(doc.get("ts"), now), _level(doc.get("level")), deployment, _revision(doc.get("revision")),
                     replica, who.source, _request_id(doc.get("request_id")), _cap(message, MAX_MESSAGE_CHARS),
                     "record", fields)


def _access(doc: dict[str, Any], who: Label, now: float) -> LogRecord:
    fields: dict[str, FieldValue] = {}
    for name in _ACCESS_INTS:
        value = doc.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            fields[name] = value
    duration = doc.get("duration_ms")
    if isinstance(duration, int | float) and not isinstance(duration, bool) and math.isfinite(duration):
        fields["duration_ms"] = round(float(duration), 3)
    for name in ("method", "handler"):
        value = _text(doc.get(name))
        if value is not None:
            fields[name] = value
    path = _text(doc.get("path"))
    if path is not None:  # a query string may carry a token: never stored, even if a caller sent one
        fields["path"] = path.split("?", 1)[0]
    status = fields.get("status")
    parts = [str(fields.get("method", "-")), str(fields.get("path", "-")), str(status if status is not None else "-")]
    if "duration_ms" in fields:
        parts.append(f"{fields['duration_ms']:.1f}ms")
    level = doc.get("level")
    default = "warning" if isinstance(status, int) and status >= 500 else "info"
    return LogRecord(_ts(doc.get("ts"), now), _level(level) if isinstance(level, str) else default,
                     _text(doc.get("deployment")), _revision(doc.get("revision")), _text(doc.get("replica")),
                     who.source, _request_id(doc.get("request_id")), " ".join(parts), "access", fields)


def _ts(value: object, now: float) -> float:
    # Within the last hour, not ahead: a printed line cannot place itself long before (or after) it was read.
    if (isinstance(value, int | float) and not isinstance(value, bool)
            and now - _PAST_SLACK_S <= value <= now + _FUTURE_SLACK_S):
        return float(value)
    return now  # also NaN: no comparison holds for it


def _level(value: object) -> str:
    if not isinstance(value, str):
        return "info"
    name = value.lower()
    name = _ALIASES.get(name, name)
    return name if name in LEVELS else "info"


def _revision(value: object) -> int | None:
    if isinstance(value, str) and value.isdigit() and len(value) <= 9:
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 31 else None


def _request_id(value: object) -> str | None:
    return value if isinstance(value, str) and value.isascii() and valid_request_id(value.encode()) else None


def _text(value: object) -> str | None:
    return _cap(value, _MAX_FIELD_CHARS) if isinstance(value, str) and value else None


def _cap(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
