"""Log records as one JSON object per line, tagged with the process and the call they belong to.

At process start-up::

    install_json_logging({"deployment": "digits", "revision": "3", "replica": "r0"}, logging.INFO)

Around a handler call in the replica (every record user code emits through ``logging`` while
the call runs, in its task or in a worker thread that got a copy of its context, carries the id)::

    with request_id_context(request_id):
        ...

A line looks like ``{"ts": 1715000000.123, "level": "info", "logger": "app", "msg": "...",
"deployment": "digits", "revision": 3, "replica": "r0", "request_id": "g0-ab12-7"}``; ``exc``
holds a formatted exception. ``msg`` and ``exc`` are capped, so a record is one bounded line
(JSON escapes the newlines inside them).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import orjson

__all__ = ["JsonFormatter", "install_json_logging", "request_id_context", "request_id_var", "run_with_request_id",
           "set_request_id"]

P = ParamSpec("P")
T = TypeVar("T")

MAX_MSG_CHARS = 16 * 1024
MAX_EXC_CHARS = 16 * 1024
IDENTITY_KEYS = frozenset({"deployment", "revision", "replica", "gateway"})

request_id_var: ContextVar[str | None] = ContextVar("steady_request_id", default=None)
"""The request id of the call running in this context (None outside a call)."""


def set_request_id(request_id: str | None) -> Token[str | None]:
    """For the replica: the call about to run in this context; pass the token to ``request_id_var.reset``."""
    return request_id_var.set(request_id)


@contextlib.contextmanager
def request_id_context(request_id: str | None) -> Iterator[None]:
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


def run_with_request_id(request_id: str | None, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in a copy of the current context in which the request id is set.

    For code that hands work to a thread itself: ``executor.submit(run_with_request_id, rid, fn)``.
    (The replica's WorkerPool already runs handlers in a copy of the calling task's context.)"""
    def call() -> T:
        request_id_var.set(request_id)
        return fn(*args, **kwargs)

    return contextvars.copy_context().run(call)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``identity`` (deployment, revision, replica or gateway) on each."""

    def __init__(self, identity: Mapping[str, str]) -> None:
        super().__init__()
        unknown = set(identity) - IDENTITY_KEYS
        if unknown:
            raise ValueError(f"unknown identity keys {sorted(unknown)}; known: {sorted(IDENTITY_KEYS)}")
        self._identity: dict[str, str | int] = {
            key: int(value) if key == "revision" and value.isdigit() else value for key, value in identity.items()}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": record.created, "level": record.levelname.lower(), "logger": record.name,
                               "msg": _cap(record.getMessage(), MAX_MSG_CHARS)}
        doc.update(self._identity)
        request_id = getattr(record, "request_id", None) or request_id_var.get()  # extra= wins: it was explicit
        if isinstance(request_id, str):
            doc["request_id"] = request_id
        exc = self._exception_text(record)
        if exc:
            doc["exc"] = _cap(exc, MAX_EXC_CHARS)
        return orjson.dumps(doc, default=str).decode()

    def _exception_text(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)


def install_json_logging(identity: Mapping[str, str], level: int | str = logging.INFO,
                         capture_uncaught: bool = True) -> logging.Handler:
    """The root logger writes JSON lines to stderr (the process's log file); other handlers go.

    ``warnings`` become records too. ``capture_uncaught``: an exception that ends the process or a
    thread is logged as one ``critical`` record with its traceback instead of many raw lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(identity))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    if capture_uncaught:
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
    return handler


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("steadyserve").critical("uncaught exception", exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value is not None else None
    logging.getLogger("steadyserve").error("uncaught exception in thread %s", name, exc_info=exc_info)


def _cap(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
