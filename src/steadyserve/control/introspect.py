"""The child that imports a service for the controller: ``python -m steadyserve.control.introspect``.

It imports ``--target`` the way a replica does and writes one JSON document to
``--result-fd`` (not stdout: user code may print), then exits at once:

    {"target": "<--target>", "description": {...ServiceDescription...}}
    {"target": "<--target>", "error": "file.py:3: NameError: ..."}

It never instantiates the class nor runs ``setup()``. The parent
(``describer.py``) bounds it in time and memory and reads the document. The
service module runs in this process and could write a document of its own:
the parent trusts none of it before it has validated it (``DescribeAnswer``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

from ..description import DescribeAnswer, describe_class
from ..errors import ConfigError
from ..loading import load_service_class, parse_target


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="steadyserve.control.introspect")
    p.add_argument("--target", required=True, help="absolute FILE[:Class] of the service")
    p.add_argument("--result-fd", type=int, required=True, help="where to write the JSON result")
    p.add_argument("--address-space-mb", type=int, help="RLIMIT_AS, set before the service is imported")
    return p.parse_args(argv)


def _describe(target_spec: str) -> DescribeAnswer:
    try:
        target = parse_target(target_spec)
        cls = load_service_class(target)
        return DescribeAnswer(target=target_spec, description=describe_class(cls, target.file))
    except ConfigError as exc:  # ServiceLoadError and handler errors carry file:line or Class.handler
        return DescribeAnswer(target=target_spec, error=_utf8(str(exc)))
    except Exception as exc:  # noqa: BLE001 - anything else the service's classes raise while described
        return DescribeAnswer(target=target_spec, error=_utf8(f"{target_spec}: {type(exc).__name__}: {exc}"))


def _utf8(text: str) -> str:
    """``text`` as JSON can carry it: a lone surrogate (an undecodable file name) becomes ``\\udc80``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    result = os.fdopen(args.result_fd, "w", encoding="utf-8")
    os.set_inheritable(args.result_fd, False)  # processes the service starts do not get it
    os.dup2(2, 1)  # what the service prints joins stderr, whose tail the parent reports
    if args.address_space_mb is not None:
        limit = args.address_space_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    answer = _describe(args.target)
    result.write(answer.model_dump_json(exclude_none=True))
    result.close()
    sys.stderr.flush()
    # Skip interpreter shutdown: threads and atexit hooks the service left must not hold up the answer.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
