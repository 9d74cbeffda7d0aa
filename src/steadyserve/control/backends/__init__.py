"""Where replicas run: the one interface the controller starts, stops, signals and observes them through.

``local`` (the default) runs each replica as a process on this machine, listening on a
Unix socket in the private socket directory. ``ray`` runs each as a Ray actor on a
cluster node, listening on TCP on the node's address and accepting only calls that
carry its credential. Either way a replica is an endpoint in the routing table, and
the supervisor's decisions (probes, restarts, rollouts, scaling) are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..processes import ProcessHandle
from ..spec import ResourceLimits


class Unschedulable(Exception):
    """No node can take the replica now (a cluster backend); the message says why, node by node."""


@dataclass(frozen=True)
class ReplicaLaunch:
    """One replica to start: everything but where it listens and writes, which its backend decides."""

    deployment: str
    replica_id: str
    generation: int
    revision: int
    args: tuple[str, ...]  # steadyserve.replica.main's, less --endpoint, --error-file, --metrics-dir
    env: Mapping[str, str] = field(default_factory=dict)  # the deployment's env and its env secrets
    secret_files: Mapping[str, str] = field(default_factory=dict)  # secrets mounted as files
    resources: ResourceLimits = ResourceLimits()

    @property
    def label(self) -> str:
        return f"{self.deployment}-{self.replica_id}"


class ReplicaHandle(ProcessHandle, Protocol):
    """A started replica. Its endpoint may be known only once it listens (None until then)."""

    @property
    def endpoint(self) -> str | None: ...

    @property
    def node(self) -> str | None:
        """The cluster node it runs on (None: this machine)."""
        ...

    @property
    def credential(self) -> str | None:
        """What a caller must present (``x-steady-replica-key``); None where the socket is private."""
        ...

    def fatal_error(self) -> str | None:
        """What the replica reported before it died (its own words, unfiltered)."""
        ...

    def sync(self) -> None:
        """Move remote work along (never blocks): learn the endpoint, copy logs and metrics."""
        ...

    def forget(self) -> None:
        """After it exited: remove what it leaves behind (its socket, secret files, children)."""
        ...


class ReplicaBackend(Protocol):
    kind: str

    def start(self, launch: ReplicaLaunch) -> ReplicaHandle:
        """Start one replica; raises (with a message for the event) if it cannot be placed."""
        ...

    def placement_problem(self, deployment: str, revision: int, resources: ResourceLimits) -> str | None:
        """Why a replica with these resources cannot be placed now (None: it can)."""
        ...

    def adopt(self, row: Mapping[str, Any], resources: ResourceLimits) -> ReplicaHandle | None:
        """A replica a previous controller recorded and left running, if it is still the one recorded
        (``resources``: what its revision holds, so placement counts it)."""
        ...

    def release_others(self, keep: set[str]) -> None:
        """Stop what this instance started earlier and no replica holds now (labels in ``keep`` stay)."""
        ...

    def close(self) -> None: ...


def credential_of(handle: ProcessHandle | None) -> str | None:
    return getattr(handle, "credential", None)


__all__ = ["ReplicaBackend", "ReplicaHandle", "ReplicaLaunch", "Unschedulable", "credential_of"]
