"""What makes a revision, and what changed between two (pure).

A revision is the deployment's spec with its service named by absolute
``file:Class`` (so ``up`` with a relative path and ``deploy`` with an absolute
one agree), without its replica count (scaling is not a rollout), and with the
versions of its secrets (a new secret value is a rollout; the value itself is
never in a revision).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .config import DeploymentConfig

_NOT_A_ROLLOUT = ("replicas",)


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
    changes = spec_changes(old.get("spec", {}), new.get("spec", {}), "spec.")
    changes += [f"secret {c.split(':', 1)[0]}: new value" for c in
                spec_changes(old.get("secret_versions", {}), new.get("secret_versions", {}))]
    return changes


class _Absent:
    def __repr__(self) -> str:
        return "(none)"


_ABSENT: Any = _Absent()


def _show(value: Any) -> str:
    return "(none)" if value is _ABSENT else json.dumps(value)
