"""What one client may ask of a server process: sizes, timeouts, connections.

A frozen value object passed into ``HttpServer``; entry points turn command-line
flags into it (``add_limit_flags`` / ``limits_from_flags``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may ask of a server process; ``math.inf`` turns a timeout off."""

    max_body_bytes: int = 16 * 1024 * 1024  # 413
    max_url_bytes: int = 8 * 1024  # request target; 414
    max_header_bytes: int = 64 * 1024  # names + values of all header fields; 431
    max_headers: int = 100  # 431
    header_timeout_s: float = 10.0  # first byte of a request (or the connection) to end of headers; 408
    body_timeout_s: float = 30.0  # end of headers to end of body, whatever its size; 408
    keepalive_timeout_s: float = 60.0  # idle between requests; then closed silently
    send_timeout_s: float = 60.0  # the client reads none of a buffered response this long: closed
    max_connections: int = 10_000  # open per process; beyond it a new connection gets 503 and is closed

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) > 0:
                raise ConfigError(f"server limit {f.name} must be > 0, got {getattr(self, f.name)}")

    @property
    def max_head_raw_bytes(self) -> int:
        """Raw bytes a request line and header section may take: the limits plus their punctuation."""
        return self.max_url_bytes + self.max_header_bytes + 4 * self.max_headers + 1024


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """``--max-url-bytes`` ... ``--max-connections``; ``--max-body-bytes`` is the entry point's own."""
    for f in fields(ServerLimits):
        if f.name != "max_body_bytes":
            parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                                help=f"HTTP server limit (default {f.default})")


def limits_from_flags(args: argparse.Namespace) -> ServerLimits:
    return ServerLimits(**{f.name: getattr(args, f.name) for f in fields(ServerLimits)})
