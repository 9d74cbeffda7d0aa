"""API tokens and roles: pure pieces used by the gateway and the control API.

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


_NO_DIGEST = digest("no token has this secret")


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
    # The same work whether or not the id is known: timing must not tell which token ids exist.
    presented = digest(parts[1] if parts else token)
    matches = hmac.compare_digest(record.digest if record is not None else _NO_DIGEST, presented)
    if record is None or not matches:
        return Verdict(401, "invalid or revoked token")
    if not allows(record.role, action):
        able = ", ".join(sorted(r.value for r, actions in ALLOWED.items() if action in actions))
        return Verdict(403, f"role {record.role!r} may not {action.value} (roles that may: {able})", record)
    return Verdict(200, "ok", record)

