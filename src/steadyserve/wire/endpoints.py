"""Endpoint strings: ``unix:/path/to.sock``, ``tcp:127.0.0.1:9000`` or ``tcp:[fd00::1]:9000``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


async def create_server(endpoint: str, factory: Callable[[], asyncio.Protocol], **kw: Any) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    kind, _, address = endpoint.partition(":")
    if kind == "unix":
        if os.path.exists(address):
            os.unlink(address)  # a stale socket from a killed predecessor
        return await loop.create_unix_server(factory, address, **kw)
    host, port = tcp_address(address)
    return await loop.create_server(factory, host, port, **kw)


async def open_connection(endpoint: str, factory: Callable[[], asyncio.Protocol]) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    loop = asyncio.get_running_loop()
    kind, _, address = endpoint.partition(":")
    if kind == "unix":
        return await loop.create_unix_connection(factory, address)
    host, port = tcp_address(address)
    return await loop.create_connection(factory, host, port)


def tcp_address(address: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); an IPv6 host comes in brackets: ``[fd00::1]:9000``."""
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def listening_endpoint(endpoint: str, server: asyncio.AbstractServer) -> str:
    """The endpoint as bound: ``tcp:HOST:0`` becomes ``tcp:HOST:<the port the kernel chose>``."""
    kind, _, address = endpoint.partition(":")
    sockets = getattr(server, "sockets", ())  # asyncio.Server's; AbstractServer does not declare it
    if kind == "unix" or not sockets:
        return endpoint
    host, _, _ = address.rpartition(":")
    return f"tcp:{host}:{sockets[0].getsockname()[1]}"


def write_endpoint_file(path: Path, endpoint: str) -> None:
    """Atomically: a reader polling for it never sees half an address."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(endpoint)
    os.replace(partial, path)
