"""Bench service: a sync handler that takes a fixed time, like a small model on one worker."""

import time

from steadyserve import Service, handler


class Sleeper(Service):
    @handler
    def nap(self, ms: int = 50) -> dict[str, int]:
        time.sleep(ms / 1000)
        return {"slept_ms": ms}
