"""Desired state: what should run (deployments, their revisions, replica counts, secrets).

Called by the control API and at start-up; the controller's loop reconciles towards it.
Each change is committed to the state DB before it returns: an acknowledged change survives
a kill -9 of the controller right after. Mixed into ``Controller``, which provides ``db``,
``config``, ``ledger``, ``deployments`` and ``record``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..wording import plural
from .config import DeploymentConfig, PlatformConfig, resolve_deployment
from .revisions import (
    CONTROLLER_ONLY_SETTINGS,
    Drift,
    drift_changes,
    drift_message,
    revision_json,
    spec_changes,
)
from .rollout import GatewayLedger, Outcomes
from .spec import DeploymentSpec
from .statedb import StateDB

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class DeploymentState:
    """Desired state of one deployment: its active revision and replica count."""

    config: DeploymentConfig
    revision: int
    replicas: int
    configs: dict[int, DeploymentConfig]  # every revision a live replica may run
    previous_revision: int | None = None  # rollback target while a rollout is under way
    deleting: bool = False
    next_index: int = 0
    spec_replicas: int | None = None  # what the last applied spec asked for; a later scale overrides it
    baked: bool = False  # the current rollout's canary has passed its bake
    bake_since: float | None = None  # a replica of the new revision first became ready in this rollout
    # Gateway-observed totals per revision when the rollout began: judged are the calls since.
    baseline: dict[int, Outcomes] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplyResult:
    revision: int
    rolling_out: bool  # a new revision is being rolled out
    replicas: int
    scaled: bool  # the same revision, with the replica count the spec changed
    created: bool = False  # a new deployment
    watching: tuple[str, ...] = ()  # what changed of what only the controller uses (alerts, slo, prediction)

    @property
    def changed(self) -> bool:
        return self.created or self.rolling_out or self.scaled or bool(self.watching)


class DesiredState:
    db: StateDB
    config: PlatformConfig
    ledger: GatewayLedger
    deployments: dict[str, DeploymentState]
    record: Callable[..., None]
    _saved_desired: list[dict[str, Any]] | None = None  # the deployments rows as last written

    def _config_of(self, name: str, revision: int) -> DeploymentConfig | None:
        recorded = self.db.revision_config(name, revision)
        if recorded is not None:
            return DeploymentConfig.model_validate_json(recorded)
        stored = self.db.revision_spec(name, revision)
        if stored is None:
            return None
        doc = json.loads(stored)
        spec = DeploymentSpec.model_validate({**doc["spec"], "service": doc["target"]})
        return resolve_deployment(name, spec, self.config.base_dir)[0]

    def apply_deployment(self, config: DeploymentConfig, replicas: int | None = None,
                         secrets: Mapping[str, str] | None = None) -> ApplyResult:
        """Create or update a deployment. A changed spec (or secret value) rolls out a new revision;
        the same spec is a no-op, except that a changed replica count in it is applied."""
        config = self._with_secret_versions(config, secrets or {})
        revision, created = self.db.record_revision(config.name, revision_json(config), config.model_dump_json())
        current = self.deployments.get(config.name)
        spec_count = config.spec.desired_replicas
        if created:
            self.record("deployment", config.name, "revision", f"revision {revision} of {config.target}", config.name)
        if current is not None and current.revision == revision and not current.deleting:
            was_autoscaled = current.config.spec.autoscaled
            count = replicas if replicas is not None else (
                spec_count if spec_count != current.spec_replicas or was_autoscaled else current.replicas)
            why = ""
            if replicas is None and config.spec.autoscaled:  # the autoscaler's count, in the new bounds
                count = _within(current.replicas, config.spec.replica_bounds)
                low, high = config.spec.replica_bounds
                why = f"the spec's range is now {low}..{high}"
            current.spec_replicas = spec_count
            watching = tuple(key for key in CONTROLLER_ONLY_SETTINGS
                             if getattr(current.config.spec, key) != getattr(config.spec, key))
            if watching:
                old_doc, new_doc = current.config.spec.model_dump(mode="json"), config.spec.model_dump(mode="json")
                changes = spec_changes({k: old_doc.get(k) for k in watching}, {k: new_doc.get(k) for k in watching})
                self.record("deployment", config.name, "settings",
                            f"{', '.join(watching)} changed: {'; '.join(changes)[:2000]} (revision {revision}"
                            " stays: nothing rolls out)",
                            config.name)
            current.config = current.configs[revision] = config
            scaled = self.scale(config.name, count, autoscaled_because=why)
            return ApplyResult(revision, rolling_out=False, replicas=count, scaled=scaled, watching=watching)
        if current is None or current.deleting:
            count = replicas if replicas is not None else spec_count
            next_index = current.next_index if current is not None else 0
            self.deployments[config.name] = DeploymentState(config, revision, count, {revision: config},
                                                            next_index=next_index, spec_replicas=spec_count)
            self.record("deployment", config.name, "created", f"revision {revision}, {plural(count, 'replica')}", config.name)
        else:
            current.configs[revision] = config
            if replicas is None and config.spec.autoscaled:
                replicas = _within(current.replicas, config.spec.replica_bounds)
            elif replicas is None and spec_count != current.spec_replicas:
                replicas = spec_count  # the spec's count changed: it wins over an earlier scale
            current.spec_replicas = spec_count
            current.previous_revision, current.revision, current.config = current.revision, revision, config
            current.baked, current.bake_since = False, None
            current.baseline = {rev: self.ledger.total(config.name, rev) for rev in (revision, current.previous_revision)}
            if replicas is not None:
                current.replicas = replicas
            self.record("deployment", config.name, "rollout",
                        f"rolling out revision {revision} (from {current.previous_revision})", config.name)
        self._save_desired()
        dep = self.deployments[config.name]
        return ApplyResult(revision, rolling_out=dep.previous_revision is not None, replicas=dep.replicas,
                           scaled=False, created=current is None or current.deleting)

    def _with_secret_versions(self, config: DeploymentConfig, values: Mapping[str, str]) -> DeploymentConfig:
        """Store new secret values; the config names the version of each that its revision uses."""
        if not values and set(config.secret_versions) == set(config.spec.secrets):
            return config  # a recorded revision (rollback): it keeps the values it ran with
        unknown = sorted(set(values) - set(config.spec.secrets))
        if unknown:
            raise ConfigError(f"deployment {config.name!r}: values for undeclared secrets {', '.join(unknown)};"
                              " declare them under secrets: in the spec")
        versions = {}
        for name in config.spec.secrets:
            if name in values:
                versions[name] = self.db.put_secret(config.name, name, values[name])
            else:
                latest = self.db.latest_secret_version(config.name, name)
                if latest is None:
                    raise ConfigError(f"deployment {config.name!r}: secret {name} has no value yet; deploy with"
                                      " `steady deploy -f FILE` (it reads the value where the spec says)")
                versions[name] = latest
        return config.model_copy(update={"secret_versions": versions})

    def rollback(self, name: str, to_revision: int | None) -> ApplyResult:
        """Roll out an earlier revision again (as a new revision), with its secret values."""
        dep = self.deployments[name]
        known = [r["revision"] for r in self.db.revisions(name)]
        target = to_revision or max((r for r in known if r < dep.revision), default=None)
        config = self._config_of(name, target) if target is not None and target in known else None
        if target is None or config is None:
            raise LookupError(f"no revision {target} of {name!r} to roll back to;"
                              f" revisions: {', '.join(map(str, known))}")
        self.record("deployment", name, "rollback_requested", f"rollback to revision {target}", name)
        return self.apply_deployment(config, replicas=dep.replicas)

    def scale(self, name: str, replicas: int, autoscaled_because: str = "") -> bool:
        """Set the count; ``autoscaled_because``: an autoscaled deployment's count moved by a spec change
        (an ``autoscaled`` event with that reason, as the autoscaler's own changes)."""
        dep = self.deployments[name]
        if dep.replicas == replicas:
            return False
        if autoscaled_because:
            self.record("deployment", name, "autoscaled", f"replicas {dep.replicas} -> {replicas}:"
                        f" {autoscaled_because}", name)
        else:
            self.record("deployment", name, "scaled", f"replicas {dep.replicas} -> {replicas}", name)
        dep.replicas = replicas
        self._save_desired()
        return True

    def delete(self, name: str) -> None:
        dep = self.deployments[name]
        dep.deleting = True
        self.record("deployment", name, "deleting", "retiring all replicas", name)
        self._save_desired()

    def _report_drift(self, secrets: dict[str, dict[str, str]]) -> None:
        """After a crash the recorded state wins; say exactly how the file differs from it and how to
        apply that. Only compares: nothing of the file is stored, a secret value included."""
        running = {n: d for n, d in self.deployments.items() if not d.deleting}
        drifts = []
        for config in self.config.deployments:
            dep = running.get(config.name)
            if dep is None:
                drifts.append(Drift(config.name, ("in the file, not running (deleted since, or new)",)))
                continue
            try:
                used = self.db.secret_values(config.name, dep.config.secret_versions)
            except KeyError:  # a value gone from the state DB: its replicas' start says so; not this report
                used = {}
            new_values = [n for n, value in secrets.get(config.name, {}).items() if used.get(n) != value]
            count = config.spec.desired_replicas
            changes = list(drift_changes(dep.config, config, new_values))
            if config.spec.autoscaled or dep.config.spec.autoscaled:
                # The autoscaler sets the count: what differs is the range or its settings, which deploying
                # the file applies (`steady scale` is refused for an autoscaled deployment).
                count = dep.replicas
                was, now = dep.config.spec, config.spec
                if was.autoscaled != now.autoscaled or was.replica_bounds != now.replica_bounds:
                    changes.append(f"replicas: {_shown_range(was)} -> {_shown_range(now)}")
                if was.autoscaling != now.autoscaling:
                    changes.append("autoscaling settings")
            drifts.append(Drift(config.name, tuple(changes), None if dep.replicas == count else (dep.replicas, count)))
        in_file = {c.name for c in self.config.deployments}
        drifts += [Drift(n, (f"running (revision {d.revision}), not in the file",)) for n, d in running.items()
                   if n not in in_file]
        message = drift_message(drifts, self.config.apply_hint, f" --state-dir {self.config.state_dir}")
        if message is not None:
            self.record("controller", "controller", "drift", message)

    def _save_desired(self) -> None:
        """Committed at once when it changed (an acknowledged change survives a kill -9); else nothing."""
        rows = [
            {"name": n, "revision": d.revision, "replicas": d.replicas, "previous_revision": d.previous_revision,
             "deleting": int(d.deleting), "next_index": d.next_index, "spec_replicas": d.spec_replicas}
            for n, d in self.deployments.items()
        ]
        if rows != self._saved_desired:
            self.db.save_deployments(rows)
            self._saved_desired = rows


def _within(count: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], count))


def _shown_range(spec: DeploymentSpec) -> str:
    low, high = spec.replica_bounds
    return f"{{min: {low}, max: {high}}}" if spec.autoscaled else str(low)
