"""Who called: what a handler may know about its caller when its deployment sets ``forward_identity``.

The gateway sends ``x-steady-caller: name=<token name>; role=<role>`` (never the token
itself) and drops any such header a caller sent, so a replica can trust it::

    @handler
    def predict(self, x: float) -> float:
        caller = steadyserve.current_caller()   # None: not forwarded, or no token needed
        ...

In a batched handler one call serves many callers: ``current_caller()`` is None there.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Caller", "current_caller"]

CALLER_HEADER = b"x-steady-caller"  # set by the gateway only; a caller's own is dropped


@dataclass(frozen=True)
class Caller:
    name: str  # the token's name, as in `steady token list` and the audit log
    role: str


_current: ContextVar[Caller | None] = ContextVar("steady_caller", default=None)


def current_caller() -> Caller | None:
    """The caller of the handler call running now, if its deployment forwards identities."""
    return _current.get()


def parse_caller_header(value: bytes | None) -> Caller | None:
    if value is None:
        return None
    fields = dict(part.strip().partition("=")[::2] for part in value.decode("latin-1").split(";"))
    name, role = fields.get("name"), fields.get("role")
    return Caller(name, role) if name and role else None


def set_caller(caller: Caller | None) -> object:
    """For the replica: the caller of the call about to run in this context (a token to reset)."""
    return _current.set(caller)
