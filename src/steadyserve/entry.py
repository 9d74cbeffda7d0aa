"""Shared start-up of the replica and gateway processes: logging, event loop, clean-up."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from collections.abc import Callable, Coroutine, Mapping

import uvloop

from .logs.format import install_json_logging


async def every(interval_s: float, action: Callable[[], object]) -> None:
    """Run ``action`` every ``interval_s`` until the task is cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        action()


def run_process(identity: Mapping[str, str], main: Coroutine[object, object, int], endpoint: str) -> int:
    """Run ``main`` on uvloop, logging JSON records that carry ``identity`` (the controller collects
    them: logs/collect.py); remove its Unix socket after."""
    install_json_logging(identity, logging.INFO)
    _raise_open_files_limit()
    try:
        return uvloop.run(main)
    finally:
        scheme, _, address = endpoint.partition(":")
        if scheme == "unix" and os.path.exists(address):
            os.unlink(address)


def _raise_open_files_limit() -> None:
    """Many machines start processes with 1024 open files; a gateway may hold 10,000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            logging.getLogger("steadyserve").warning("could not raise the open-files limit from %d", soft)
