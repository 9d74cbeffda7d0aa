"""Shared start-up of the replica and gateway processes: logging, event loop, clean-up."""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections.abc import Coroutine

import uvloop


def run_process(kind: str, process_id: str, main: Coroutine[object, object, int], endpoint: str) -> int:
    """Run ``main`` on uvloop with log lines tagged by process; remove its Unix socket after."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {kind}={process_id} pid={os.getpid()} %(message)s",
    )
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
