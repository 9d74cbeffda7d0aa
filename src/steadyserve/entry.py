"""Shared start-up of the replica and gateway processes: logging, event loop, clean-up."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Coroutine

import uvloop


def run_process(kind: str, process_id: str, main: Coroutine[object, object, int], endpoint: str) -> int:
    """Run ``main`` on uvloop with log lines tagged by process; remove its Unix socket after."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {kind}={process_id} pid={os.getpid()} %(message)s",
    )
    try:
        return uvloop.run(main)
    finally:
        scheme, _, address = endpoint.partition(":")
        if scheme == "unix" and os.path.exists(address):
            os.unlink(address)
