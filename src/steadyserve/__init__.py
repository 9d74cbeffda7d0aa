"""steadyserve: run model services with replicas behind a self-healing gateway."""

__version__ = "0.1.0"

from .service import Batch, Service, handler

__all__ = ["Batch", "Service", "__version__", "handler"]
