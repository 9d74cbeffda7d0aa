"""Endpoint strings: ``unix:/path/to.sock`` or ``tcp:127.0.0.1:9000``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any


async def create_server(endpoint: str, factory: Callable[[], asyncio.Protocol], **kw: Any) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()
    kind, _, address = endpoint.partition(":")
    if kind == "unix":
        if os.path.exists(address):
            os.unlink(address)  # a stale socket from a killed predecessor
        return await loop.create_unix_server(factory, address, **kw)
    host, _, port = address.rpartition(":")
    return await loop.create_server(factory, host, int(port), **kw)


async def open_connection(endpoint: str, factory: Callable[[], asyncio.Protocol]) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    loop = asyncio.get_running_loop()
    kind, _, address = endpoint.partition(":")
    if kind == "unix":
        return await loop.create_unix_connection(factory, address)
    host, _, port = address.rpartition(":")
    return await loop.create_connection(factory, host, int(port))
