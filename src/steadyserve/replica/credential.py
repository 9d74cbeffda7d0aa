"""A networked replica answers only callers that present its credential (our gateways and controller).

On this machine a replica listens on a Unix socket in a directory only its user can
enter. On a cluster it listens on TCP, where anyone who can reach the node could call
it: there every request must carry ``x-steady-replica-key`` with the secret the
controller gave it (through its environment, never its command line, which every
user of the node can read).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable

from ..wire.http11 import REPLICA_KEY_HEADER, Request, StreamReply, json_response

KEY_ENV = "STEADY_REPLICA_KEY"
MIN_KEY_CHARS = 32

Handle = Callable[[Request], Awaitable[bytes | StreamReply]]


def take_key(environ: dict[str, str] | os._Environ[str]) -> bytes | None:
    """The replica's credential, removed from the environment so the service's code never sees it."""
    key = environ.pop(KEY_ENV, None)
    if key is None:
        return None
    if len(key) < MIN_KEY_CHARS or not key.isascii():
        raise ValueError(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} ASCII characters")
    return key.encode("ascii")


def require_key(handle: Handle, key: bytes) -> Handle:
    """``handle``, answering 401 to any request without the credential (probes included)."""
    refusal = json_response(401, {"error": "this replica serves only its steadyserve gateways; call the gateway"},
                            keep_alive=False)

    async def guarded(request: Request) -> bytes | StreamReply:
        given = request.header(REPLICA_KEY_HEADER)
        if given is None or not hmac.compare_digest(given, key):
            return refusal
        return await handle(request)

    return guarded
