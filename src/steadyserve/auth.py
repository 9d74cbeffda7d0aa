"""API tokens, roles and rate limits: pure pieces used by the gateway and the control API.

A token reads ``st_<id>_<secret>``. Only ``sha256(secret)`` is stored; the id
finds the row and the digests are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # everything
    DEPLOYER = "deployer"  # read, deploy, scale, roll back, delete
    VIEWER = "viewer"  # read the control API
    INVOKER = "invoker"  # call handlers through the gateway


class Action(StrEnum):
    INVOKE = "invoke"  # a handler call on the gateway
    READ = "read"  # GET on the control API
    DEPLOY = "deploy"  # a mutating control API call


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.DEPLOYER: frozenset({Action.READ, Action.DEPLOY}),
    Role.VIEWER: frozenset({Action.READ}),
    Role.INVOKER: frozenset({Action.INVOKE}),
}


def allows(role: str, action: Action) -> bool:
    try:
        return action in ALLOWED[Role(role)]
    except ValueError:
        return False


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(token to show once, its id, the digest to store)."""
    token_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return f"st_{token_id}_{secret}", token_id, digest(secret)


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != "st" or not token_id or not secret:
        return None
    return token_id, secret


def bearer(header_value: bytes | str | None) -> str | None:
    if header_value is None:
        return None
    value = header_value.decode("latin-1") if isinstance(header_value, bytes) else header_value
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    role: str
    digest: str
    rate_per_s: float | None = None
    burst: int | None = None


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 ok, 401 unauthenticated, 403 forbidden
    reason: str
    token: TokenRecord | None = None


def check(header_value: bytes | str | None, tokens: dict[str, TokenRecord], action: Action) -> Verdict:
    """Who is calling and may they do this? Revoked tokens are simply absent from ``tokens``."""
    token = bearer(header_value)
    if token is None:
        return Verdict(401, "missing bearer token (send 'authorization: Bearer <token>')")
    parts = split_token(token)
    record = tokens.get(parts[0]) if parts else None
    if parts is None or record is None or not hmac.compare_digest(record.digest, digest(parts[1])):
        return Verdict(401, "invalid or revoked token")
    if not allows(record.role, action):
        return Verdict(403, f"role {record.role!r} may not {action.value}", record)
    return Verdict(200, "ok", record)


class TokenBucket:
    """``rate_per_s`` tokens a second, up to ``burst`` saved; time passed in."""

    __slots__ = ("rate_per_s", "burst", "_level", "_at")

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._level = float(burst)
        self._at = now

    def take(self, now: float) -> float:
        """0 if allowed now; else the seconds until one token is available."""
        self._level = min(self.burst, self._level + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._level >= 1:
            self._level -= 1
            return 0.0
        return (1 - self._level) / self.rate_per_s
