"""The Dockerfile that builds the image every pod runs: the spec's directory and steadyserve (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from .. import __version__
from .common import APP_DIR

PYTHON_IMAGE = "python:3.11-slim"
IGNORED = (".steady", ".venv", "venv", ".git", "**/__pycache__", "**/*.pyc", "k8s", "*.db", "*.log")


def dockerfile(has_requirements: bool, version: str = __version__) -> str:
    """Built from the spec's directory: ``docker build -f DIR/Dockerfile -t IMAGE <spec dir>``."""
    requirements = (f"COPY requirements.txt {APP_DIR}/requirements.txt\n"
                    f"RUN pip install -r {APP_DIR}/requirements.txt\n") if has_requirements else ""
    return f"""\
# Written by `steady export kubernetes`: the services of the spec and steadyserve {version}.
FROM {PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# What pip installs for steadyserve: --build-arg STEADYSERVE=./dist/steadyserve-{version}-py3-none-any.whl
# (a wheel inside the build context) or a VCS URL, if your index does not have it.
ARG STEADYSERVE="steadyserve=={version}"
RUN pip install "$STEADYSERVE"
{requirements}WORKDIR {APP_DIR}
COPY . {APP_DIR}
# The manifests run every container as this user (runAsNonRoot).
RUN groupadd --gid 10001 steady && useradd --uid 10001 --gid 10001 --no-create-home steady
USER 10001:10001
EXPOSE 8000 8001 8080
"""


def dockerignore(extra: Sequence[str] = ()) -> str:
    """``Dockerfile.dockerignore`` (BuildKit reads it next to the Dockerfile): state, caches, the export
    itself and secret files (``extra``, relative to the build context) stay out of the image."""
    return "".join(f"{pattern}\n" for pattern in (*IGNORED, *extra))
