"""steadyserve: run model services with replicas behind a self-healing gateway."""

__version__ = "0.1.0"

from .client import Client  # noqa: E402
from .errors import (  # noqa: E402
    Forbidden,
    GatewayError,
    HandlerFailed,
    InvalidInput,
    RateLimited,
    ServiceUnavailable,
    SteadyError,
    Unauthorized,
    UnknownHandler,
)
from .service import Batch, Service, handler  # noqa: E402

__all__ = [
    "Batch", "Client", "Forbidden", "GatewayError", "HandlerFailed", "InvalidInput", "RateLimited",
    "Service", "ServiceUnavailable", "SteadyError", "Unauthorized", "UnknownHandler", "__version__",
    "handler",
]
