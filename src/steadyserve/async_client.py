"""``steadyserve.AsyncClient``: ``Client``'s calls for asyncio code, streams included.

    async with AsyncClient() as client:            # STEADY_URL / STEADY_TOKEN, as Client
        answer = await client.call("echo", "echo", message="hi")
        async for token in client.stream("chat", "generate", prompt="Hi"):
            print(token)

Retries follow ``Client``: idempotent calls on retryable failures with full-jitter
backoff (at least ``Retry-After``); a stream only until its first item.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from .client import (
    DEFAULT_URL,
    _body,
    _never_executed,
    _path,
    _transport_error,
    decode_answer,
    error_from_response,
)
from .client import retry_delay_s as retry_delay_s
from .client_streams import ItemDecoder, alines_of, is_json, stream_format
from .errors import ConfigError, RetryableError, StreamInterrupted
from .trust import httpx_verify, tls_failure_message


class AsyncClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        cacert: str | os.PathLike[str] | None = None,
        verify: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        url = url or os.environ.get("STEADY_URL")
        self._url_hint = "" if url else " (the default gateway address: pass AsyncClient(url=...) or set STEADY_URL)"
        self.url = (url or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("STEADY_TOKEN")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.max_retries = max_retries
        self._backoff = (backoff_base_s, backoff_max_s)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._cacert = cacert
        tls = httpx_verify(cacert) if verify else False
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport,
                                       verify=tls)

    async def call(self, deployment: str, handler: str, /, **inputs: Any) -> Any:
        """As ``Client.call``."""
        return await self.request(deployment, handler, inputs)

    async def request(self, deployment: str, handler: str, inputs: dict[str, Any] | list[dict[str, Any]] | None = None,
                      *, idempotent: bool = True, timeout_s: float | None = None) -> Any:
        path = _path(deployment, handler)
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
        attempt = 0
        while True:
            try:
                try:
                    response = await self._http.post(path, timeout=timeout, **_body({} if inputs is None else inputs))
                except httpx.TransportError as exc:
                    self._raise_if_tls(exc)
                    raise _transport_error(exc, self.url + self._url_hint) from exc
                if response.status_code >= 400:
                    raise error_from_response(response)
                return decode_answer(response)
            except RetryableError as error:
                if attempt >= self.max_retries or not (idempotent or _never_executed(error)):
                    raise
                await self._sleep(retry_delay_s(attempt, error.retry_after_s, *self._backoff, self._rng))
                attempt += 1

    async def stream(self, deployment: str, handler: str, /, *, idempotent: bool = True,
                     timeout_s: float | None = None, **inputs: Any) -> AsyncIterator[Any]:
        """As ``Client.stream``: the items of a generator handler, as they arrive."""
        path = _path(deployment, handler)
        attempt = 0
        while True:
            got_one = False
            try:
                async for item in self._stream_once(path, inputs, timeout_s):
                    got_one = True
                    yield item
                return
            except RetryableError as error:
                if got_one or attempt >= self.max_retries or not (idempotent or _never_executed(error)):
                    raise
                await self._sleep(retry_delay_s(attempt, error.retry_after_s, *self._backoff, self._rng))
                attempt += 1

    async def _stream_once(self, path: str, inputs: dict[str, Any], timeout_s: float | None) -> AsyncIterator[Any]:
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
        items = 0
        try:
            async with self._http.stream("POST", path, timeout=timeout, **_body(inputs)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(response)
                content_type = response.headers.get("content-type", "")
                fmt = stream_format(content_type)
                if is_json(content_type):  # a handler that answers in one piece: its answer is the one item
                    await response.aread()
                    yield response.json()
                    return
                if fmt == "raw":
                    async for data in response.aiter_bytes():
                        items += 1
                        yield data
                    return
                decoder = ItemDecoder(fmt)
                async for line in alines_of(response.aiter_text()):
                    for item in decoder.feed(line):
                        items += 1
                        yield item
                for item in decoder.finish():
                    items += 1
                    yield item
        except httpx.TransportError as exc:
            if items == 0:
                self._raise_if_tls(exc)
                raise _transport_error(exc, self.url + self._url_hint) from exc
            raise StreamInterrupted(f"the stream from {self.url} broke off after {items} items: {exc}",
                                    items=items) from exc

    def _raise_if_tls(self, exc: httpx.TransportError) -> None:
        message = tls_failure_message(exc, self.url, self._cacert, option="AsyncClient(cacert=...)")
        if message is not None:
            raise ConfigError(message) from exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
