"""The one error tree of steadyserve.

    SteadyError
    ├── ConfigError                 bad CLI arguments, service file, settings (not retryable)
    │   └── ServiceLoadError        the service module does not import / has no Service
    ├── RequestError                a client sent something we reject (4xx, not retryable)
    │   ├── InvalidInput            422: body is not JSON or fields fail validation
    │   ├── UnknownHandler          404: no such handler (or deployment)
    │   ├── PayloadTooLarge         413: body above the configured limit
    │   ├── MethodNotAllowed        405: GET on a handler with required arguments
    │   ├── Unauthorized            401: missing or invalid token
    │   └── Forbidden               403: the token's role does not allow it
    ├── StateError                  the state database is damaged, emptied or of an unknown version
    ├── HandlerFailed               500: user code raised (carries an error id)
    ├── StreamInterrupted           a streamed answer ended with an error after some items
    ├── DeadlineExceeded            504: the call's deadline passed before (or while) it ran
    ├── RetryableError              try again later (the client retries these)
    │   ├── ServiceUnavailable      503: no ready replica, draining
    │   ├── RateLimited             429: over the token's rate limit
    │   ├── GatewayError            502/504: no replica answered in time
    │   └── ConnectionFailed        the client could not reach the gateway
    └── UpstreamError               the gateway could not get an answer (retryable branch)
        ├── UpstreamUnreachable     connect failed: the request provably never left
        ├── UpstreamDraining        503 from a draining replica: never executed
        ├── UpstreamOverloaded      503 from a replica at its concurrency limit: never executed
        ├── UpstreamLost            connection dropped after the request was sent
        └── UpstreamTimeout         no answer within the per-request timeout

Foreign exceptions (OSError, pydantic.ValidationError, ...) are translated into
this tree at one boundary each, with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any


class SteadyError(Exception):
    """Base of every error steadyserve raises on purpose."""


class ConfigError(SteadyError):
    """Bad configuration: arguments, files, settings."""


class ServiceLoadError(ConfigError):
    """The service module could not be imported or holds no usable Service."""


class RequestError(SteadyError):
    """A request we reject; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}


class InvalidInput(RequestError):
    status = 422


class UnknownHandler(RequestError):
    status = 404


class PayloadTooLarge(RequestError):
    status = 413


class MethodNotAllowed(RequestError):
    status = 405


class Unauthorized(RequestError):
    status = 401


class Forbidden(RequestError):
    status = 403


class StateError(SteadyError):
    """The state database cannot be used as it is; the message says what to do (one line)."""


class HandlerFailed(SteadyError):
    """User code raised; the traceback is logged under ``error_id``."""

    def __init__(self, message: str, error_id: str) -> None:
        super().__init__(message)
        self.error_id = error_id


class StreamInterrupted(SteadyError):
    """A streamed answer broke off after ``items`` items (its replica went away, a timeout passed).

    Not retried by the client: part of the answer was already delivered."""

    def __init__(self, message: str, items: int = 0, **details: Any) -> None:
        super().__init__(message)
        self.items = items
        self.details = details


class DeadlineExceeded(SteadyError):
    """The call's deadline passed: it was dropped before it ran, or its handler overran."""

    def __init__(self, message: str, started: bool = False) -> None:
        super().__init__(message)
        self.started = started  # False: the handler never began, so nothing ran


class RetryableError(SteadyError):
    """A failure that may pass if the same call is made again later."""

    def __init__(self, message: str, retry_after_s: float | None = None, **details: Any) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.details = details


class ServiceUnavailable(RetryableError):
    pass


class RateLimited(RetryableError):
    pass


class GatewayError(RetryableError):
    pass


class ConnectionFailed(RetryableError):
    pass


class UpstreamError(SteadyError):
    """The gateway did not get a usable answer from a replica."""

    #: True when the request certainly did not run on the replica.
    never_executed = False


class UpstreamUnreachable(UpstreamError):
    never_executed = True


class UpstreamDraining(UpstreamError):
    never_executed = True


class UpstreamOverloaded(UpstreamError):
    never_executed = True


class UpstreamLost(UpstreamError):
    never_executed = False


class UpstreamTimeout(UpstreamError):
    never_executed = False
