"""steadyserve: run model services with replicas behind a self-healing gateway."""

__version__ = "0.1.0"

from .caller import Caller, current_caller  # noqa: E402
from .errors import (  # noqa: E402
    Forbidden,
    GatewayError,
    HandlerFailed,
    InvalidInput,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    SteadyError,
    StreamInterrupted,
    Unauthorized,
    UnknownHandler,
)
from .media import File  # noqa: E402
from .openai_types import ChatMessage  # noqa: E402
from .service import Batch, Service, handler  # noqa: E402


def __getattr__(name: str) -> object:
    # The client pulls in httpx; replicas and gateways never need it at start-up.
    if name == "Client":
        from .client import Client

        return Client
    if name == "AsyncClient":
        from .async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'steadyserve' has no attribute {name!r}")


__all__ = [
    "AsyncClient", "Batch", "Caller", "ChatMessage", "Client", "File", "Forbidden", "GatewayError", "HandlerFailed", "InvalidInput", "PayloadTooLarge",
    "RateLimited", "Service", "ServiceUnavailable", "SteadyError", "StreamInterrupted", "Unauthorized", "UnknownHandler", "__version__",
    "current_caller", "handler",
]
