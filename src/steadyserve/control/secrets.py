"""Deployment secrets: read by the deploying user's `steady`, stored write-only, delivered to replicas.

The spec names where a value comes from (``from_env``, ``from_file``); the CLI
reads it and sends it once in the request body. The controller keeps values in
the state database (0600) and gives a replica its revision's values as
environment variables or as 0600 files under ``$STEADY_SECRETS_DIR``. No
answer of the API, no revision, event or log line carries a value: text that
may quote one (a replica's error) goes through ``redact`` first.

Every value is checked where it enters (``check_secret_value``): a name that
is an environment variable name (and so a safe file name), UTF-8 text without
NUL bytes (an environment variable cannot hold one), at most ``MAX_SECRET_BYTES``
(Linux takes one environment string of at most 128 KiB).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import ConfigError
from .spec import SECRET_NAME_PATTERN, DeploymentSpec

SECRETS_DIR_VAR = "STEADY_SECRETS_DIR"
MAX_SECRET_BYTES = 64 * 1024
MIN_REDACTED_CHARS = 4  # shorter values are not redacted: a secret "1" would blank out every 1
_MIN_REDACTED_LINE_CHARS = 8  # a line of a multi-line value, redacted on its own ("word" is everywhere)
REDACTED = "***"
_SHOWN_CHARS = 60


# --- pure: what a value may be ----------------------------------------------------------------
def _value_problem(value: str) -> str | None:
    """Why ``value`` cannot be delivered to a replica (and what to do), or None."""
    if "\0" in value:
        return ("the value contains a NUL byte, which an environment variable cannot hold;"
                " remove it (base64-encode binary values)")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "the value is not valid Unicode text (it holds a lone surrogate); send it as UTF-8"
    if size > MAX_SECRET_BYTES:
        return (f"the value is {size} bytes, over the {MAX_SECRET_BYTES // 1024} KiB limit; keep large"
                " material where the service reads it and put only a short key or path in the secret")
    return None


def _name_problem(name: str) -> str | None:
    if re.fullmatch(SECRET_NAME_PATTERN, name):  # not match: "$" would let "KEY\n" through
        return None
    shown = repr(name if len(name) <= _SHOWN_CHARS else name[:_SHOWN_CHARS] + "...")
    return (f"secret name {shown} must look like an environment variable name: letters, digits and _,"
            " not starting with a digit, at most 128 characters")


def check_secret_value(name: str, value: str) -> None:
    """Raise ConfigError, naming the secret and what to do, if ``value`` cannot be delivered as ``name``."""
    problem = _name_problem(name)
    if problem is not None:
        raise ConfigError(problem)
    problem = _value_problem(value)
    if problem is not None:
        raise ConfigError(f"secret {name}: {problem}")


def redact(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of a secret value replaced by ``***``.

    Values shorter than ``MIN_REDACTED_CHARS`` are left alone. A value is also
    found as ``repr()`` and JSON write it (escaped quotes and newlines) and, if it
    has several lines, line by line (an error that quotes one line of a key
    file; lines of at least 8 characters). Overlapping occurrences become one ``***``, so no part of the longer
    one is left showing.
    """
    needles = {form for value in values if len(value) >= MIN_REDACTED_CHARS for form in _forms(value)}
    spans: list[tuple[int, int]] = []
    for needle in needles:
        start = text.find(needle)
        while start != -1:
            spans.append((start, start + len(needle)))
            start = text.find(needle, start + 1)
    if not spans:
        return text
    parts, shown_from = [], 0
    for start, end in _merged(spans):
        parts += [text[shown_from:start], REDACTED]
        shown_from = end
    parts.append(text[shown_from:])
    return "".join(parts)


def _forms(value: str) -> set[str]:
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    lines = [line.strip() for line in value.splitlines()] if "\n" in value else []
    return forms | {line for line in lines if len(line) >= _MIN_REDACTED_LINE_CHARS}


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# --- reading values where the spec says, and delivering them ------------------------------------
def read_secret_values(name: str, spec: DeploymentSpec, base_dir: Path, environ: Mapping[str, str],
                       source: str = "the spec") -> dict[str, str]:
    """The values of a deployment's secrets, read where its spec says (errors name what is missing)."""
    values = {}
    for secret, ref in spec.secrets.items():
        where = f"{source}: deployments.{name}.secrets.{secret}"
        if ref.from_env is not None:
            if ref.from_env not in environ:
                raise ConfigError(f"{where}: environment variable {ref.from_env} is not set;"
                                  f" export it before running steady")
            value, origin = environ[ref.from_env], f"environment variable {ref.from_env}"
        else:
            path = Path(ref.from_file or "")
            path = path if path.is_absolute() else base_dir / path
            value, origin = _read_file(path, where), str(path)
        problem = _name_problem(secret) or _value_problem(value)
        if problem is not None:
            raise ConfigError(f"{where} (from {origin}): {problem}")
        values[secret] = value
    return values


def _read_file(path: Path, where: str) -> str:
    """The file's text without one trailing newline; no more than a value's limit is read."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SECRET_BYTES + 2)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from exc
    if len(raw) > MAX_SECRET_BYTES + 1:  # the most a value and its newline take
        raise ConfigError(f"{where}: {path} is over {MAX_SECRET_BYTES // 1024} KiB; keep large material"
                          " where the service reads it and put only a short key or path in the secret")
    try:
        return raw.decode().removesuffix("\n")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: {path} is not UTF-8 text; base64-encode binary values") from exc


def split_by_mount(spec: DeploymentSpec, values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(environment variables, files) for a replica."""
    env = {n: v for n, v in values.items() if spec.secrets[n].mount == "env"}
    files = {n: v for n, v in values.items() if spec.secrets[n].mount == "file"}
    return env, files


def write_secret_files(directory: Path, files: Mapping[str, str]) -> None:
    """One 0600 file per secret in a fresh 0700 directory."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    for name, value in files.items():
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # not the locale's: a C locale cannot write "é"
            f.write(value)
