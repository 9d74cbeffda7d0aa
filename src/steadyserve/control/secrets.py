"""Deployment secrets: read by the deploying user's `steady`, stored write-only, delivered to replicas.

The spec names where a value comes from (``from_env``, ``from_file``); the CLI
reads it and sends it once in the request body. The controller keeps values in
the state database (0600) and gives a replica its revision's values as
environment variables or as 0600 files under ``$STEADY_SECRETS_DIR``. No
answer of the API, no revision, event or log line carries a value.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from .spec import DeploymentSpec

SECRETS_DIR_VAR = "STEADY_SECRETS_DIR"
MAX_SECRET_BYTES = 64 * 1024


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
            value = environ[ref.from_env]
        else:
            path = Path(ref.from_file or "")
            path = path if path.is_absolute() else base_dir / path
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from exc
            if len(raw) > MAX_SECRET_BYTES:
                raise ConfigError(f"{where}: {path} is over {MAX_SECRET_BYTES // 1024} KiB")
            try:
                value = raw.decode().removesuffix("\n")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{where}: {path} is not UTF-8 text") from exc
        if "\0" in value:
            raise ConfigError(f"{where}: the value must not contain a NUL byte")
        values[secret] = value
    return values


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
        with os.fdopen(fd, "w") as f:
            f.write(value)
