"""What makes a revision, what changed between two, and how a spec file differs from what runs (pure).

A revision is the deployment's spec with its service named by absolute
``file:Class`` (so ``up`` with a relative path and ``deploy`` with an absolute
one agree), without its replica count (scaling is not a rollout), and with the
versions of its secrets (a new secret value is a rollout; the value itself is
never in a revision).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import DeploymentConfig

# What the controller alone uses: changing it rolls nothing out (the revision's stored config follows it).
CONTROLLER_ONLY_SETTINGS = ("prediction", "alerts", "slo", "autoscaling")
_NOT_A_ROLLOUT = ("replicas", *CONTROLLER_ONLY_SETTINGS)


def revision_document(config: DeploymentConfig) -> dict[str, Any]:
    spec = config.spec.model_dump(mode="json")
    spec["service"] = config.target
    for key in _NOT_A_ROLLOUT:
        spec.pop(key, None)
    return {"target": config.target, "spec": spec, "secret_versions": dict(sorted(config.secret_versions.items()))}


def revision_json(config: DeploymentConfig) -> str:
    """The canonical text two equal revisions share byte for byte."""
    return json.dumps(revision_document(config), sort_keys=True)


def spec_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths that differ, each as ``path: old -> new`` (``(none)`` where absent)."""
    changes = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changes += spec_changes(before, after, f"{path}.")
        elif before != after:
            changes.append(f"{path}: {_show(before)} -> {_show(after)}")
    return changes


def revision_changes(old_json: str | None, new_json: str) -> list[str]:
    """What a revision changed relative to the one before it (everything is new for the first)."""
    new = json.loads(new_json)
    if old_json is None:
        return ["first revision"]
    old = json.loads(old_json)
    old_versions = old.get("secret_versions", {})
    new_values = [name for name, version in new.get("secret_versions", {}).items()
                  if old_versions.get(name) != version]
    return _changes(old.get("spec", {}), new.get("spec", {}), new_values)


def drift_changes(running: DeploymentConfig, in_file: DeploymentConfig, new_secret_values: Iterable[str]) -> list[str]:
    """How a deployment in the spec file differs from its running revision, the replica count aside;
    ``new_secret_values``: the secrets whose value in the file is not the running one."""
    return _changes(revision_document(running)["spec"], revision_document(in_file)["spec"], new_secret_values)


def _changes(old_spec: Mapping[str, Any], new_spec: Mapping[str, Any], new_secret_values: Iterable[str]) -> list[str]:
    """Spec paths that differ, then each secret with a new value, by name: a value is never shown."""
    return spec_changes(old_spec, new_spec, "spec.") + [f"secret {n}: new value" for n in sorted(new_secret_values)]


@dataclass(frozen=True)
class Drift:
    """How the spec file differs from one deployment as it runs."""

    deployment: str
    changes: tuple[str, ...] = ()  # what applying the file changes
    replicas: tuple[int, int] | None = None  # (running, in the file), where they differ


def drift_message(drifts: Sequence[Drift], apply_hint: str, scale_options: str = "") -> str | None:
    """What a recovering controller tells of a spec file that differs from what runs, and how to
    apply each difference; None when it matches.

    A replica count is set with ``steady scale``: applying the file again keeps a count scaled to
    since, unless the file's count changed (as ``kubectl apply``).
    """
    differences = []
    for drift in drifts:
        differences += [f"{drift.deployment}: {change}" for change in drift.changes]
        if drift.replicas is not None:
            running, in_file = drift.replicas
            differences.append(f"{drift.deployment}: replicas: {running} running -> {in_file} in the file")
    if not differences:
        return None
    scales = [f"steady scale {d.deployment} {d.replicas[1]}{scale_options}" for d in drifts if d.replicas is not None]
    hints = []
    if scales:
        hints.append(f"To run the file's replica count{'s' if len(scales) > 1 else ''}: {'; '.join(scales)}")
    if any(d.changes for d in drifts):
        hints.append(f"To apply the file: {apply_hint}")
    return "kept the recorded state; the spec file differs from it: " + "; ".join(differences) + ". " + ". ".join(hints)


class _Absent:
    def __repr__(self) -> str:
        return "(none)"


_ABSENT: Any = _Absent()


def _show(value: Any) -> str:
    return "(none)" if value is _ABSENT else json.dumps(value)
