"""A networked replica answers only callers that present its credential (our gateways and controller).

On this machine a replica listens on a Unix socket in a directory only its user can
enter. On a cluster it listens on TCP, where anyone who can reach the node could call
it: there every request must carry ``x-steady-replica-key`` with the secret the
controller gave it (through its environment, never its command line, which every
user of the node can read). A request without it is answered 401 and its connection
closed: nobody without the key holds a connection open.

The key is taken out of ``os.environ`` before the service is imported, so the processes
a service starts do not inherit it. The service's own code runs in the same process and
is trusted with it (it could read ``/proc/self/environ``): the key keeps out others on
the network, not the service.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Awaitable, Callable

from ..wire.http11 import REPLICA_KEY_HEADER, Request, StreamReply, json_response

KEY_ENV = "STEADY_REPLICA_KEY"
MIN_KEY_CHARS = 32

Handle = Callable[[Request], Awaitable[bytes | StreamReply]]


KEY_PATTERN = re.compile(rf"[A-Za-z0-9._~+/=-]{{{MIN_KEY_CHARS},4096}}")  # a header value, nothing else


def valid_key(key: str) -> str:
    """The key without surrounding whitespace (a Secret made from a file ends with a newline)."""
    key = key.strip()
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} characters of letters, digits and ._~+/=-")
    return key


def take_key(environ: dict[str, str] | os._Environ[str]) -> bytes | None:
    """The replica's credential, removed from the environment (the processes the service starts do not get it)."""
    key = environ.pop(KEY_ENV, None)
    return None if key is None else valid_key(key).encode("ascii")


def require_key(handle: Handle, key: bytes) -> Handle:
    """``handle``, answering 401 to any request without the credential (probes included)."""
    refusal = json_response(401, {"error": "this replica serves only its steadyserve gateways; call the gateway"},
                            keep_alive=False)

    async def guarded(request: Request) -> bytes | StreamReply:
        given = request.header(REPLICA_KEY_HEADER)
        if given is None or not hmac.compare_digest(given, key):
            request.keep_alive = False  # the server closes the connection after the refusal
            return refusal
        return await handle(request)

    return guarded
