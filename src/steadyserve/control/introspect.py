"""The child that imports a service for the controller: ``python -m steadyserve.control.introspect``.

It imports ``--target`` the way a replica does and writes one JSON document to
``--result-fd`` (not stdout: user code may print), then exits at once:

    {"description": {...ServiceDescription...}}    or    {"error": "file.py:3: NameError: ..."}

It never instantiates the class nor runs ``setup()``. The parent
(``describer.py``) bounds it in time and memory and reads the document.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from typing import Any

from ..errors import ConfigError
from ..loading import load_service_class, parse_target


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="steadyserve.control.introspect")
    p.add_argument("--target", required=True, help="absolute FILE[:Class] of the service")
    p.add_argument("--result-fd", type=int, required=True, help="where to write the JSON result")
    p.add_argument("--address-space-mb", type=int, help="RLIMIT_AS, set before the service is imported")
    return p.parse_args(argv)


def _describe(target_spec: str) -> dict[str, Any]:
    from ..description import describe_class

    try:
        target = parse_target(target_spec)
        cls = load_service_class(target)
        return {"description": describe_class(cls, target.file).model_dump(mode="json")}
    except ConfigError as exc:  # ServiceLoadError and handler errors carry file:line or Class.handler
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - anything else the service's classes raise while described
        return {"error": f"{target_spec}: {type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    result = os.fdopen(args.result_fd, "w", encoding="utf-8")
    os.set_inheritable(args.result_fd, False)  # processes the service starts do not get it
    os.dup2(2, 1)  # what the service prints joins stderr, whose tail the parent reports
    if args.address_space_mb is not None:
        limit = args.address_space_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    document = _describe(args.target)
    result.write(json.dumps(document))
    result.close()
    sys.stderr.flush()
    # Skip interpreter shutdown: threads and atexit hooks the service left must not hold up the answer.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
