"""The generator the streaming benchmark serves (bench/streaming.py): ``n`` items of ``size`` characters."""

from __future__ import annotations

from collections.abc import Iterator

from steadyserve import Service, handler


class Stream(Service):
    @handler
    def count(self, n: int = 10, size: int = 16) -> Iterator[str]:
        piece = "x" * size
        for _ in range(n):
            yield piece
