"""What `steady serve` shows an operator: events as they happen, a progress line
while replicas start, and how to call the service once everything is ready."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from .control.config import PlatformConfig
from .control.statedb import Event
from .description import ServiceDescription

_COLOURS = {"ready": "green", "recovered": "green", "crash_loop": "red", "killed": "red",
            "exited": "yellow", "unhealthy": "yellow", "ejected": "yellow"}
_NOT_READY = {"exited", "unhealthy", "killed", "crash_loop"}


class ServeConsole:
    def __init__(self, console: Console, config: PlatformConfig, services: dict[str, ServiceDescription],
                 state_dir: Path) -> None:
        self.console = console
        self.config = config
        self.state_dir = state_dir
        self.services = services
        self._ready: set[str] = set()
        self._total = sum(d.spec.desired_replicas for d in config.deployments) + config.gateway.processes
        self._started = time.monotonic()
        self._status: Status | None = None

    def start(self) -> None:
        for dep in self.config.deployments:
            self.console.print(f"starting [bold]{dep.name}[/bold] from {dep.target} ...")
        self._status = self.console.status(self._progress_text())
        self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _progress_text(self) -> str:
        waited = time.monotonic() - self._started
        return f"waiting for processes to be ready: {len(self._ready)}/{self._total} ({waited:.0f}s)"

    def on_event(self, event: Event) -> None:
        subject = f"{event.deployment}/{event.subject}" if event.deployment else event.subject
        if event.type == "ready":
            self._ready.add(subject)
        elif event.type in _NOT_READY:
            self._ready.discard(subject)
        colour = _COLOURS.get(event.type, "dim")
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        self.console.print(f"[dim]{stamp}[/dim] [{colour}]{subject:>14} {event.type:<10}[/{colour}] {escape(event.message)}")
        if self._status is not None:
            self._status.update(self._progress_text())
        if event.type == "stopping":
            self.stop()

    def on_all_ready(self) -> None:
        self.stop()
        cfg = self.config
        lines = [f"\n[bold green]up[/bold green] at [bold]{cfg.url}[/bold]"
                 f" ({cfg.gateway.processes} gateway processes)"]
        for dep in cfg.deployments:
            handlers = self.services[dep.name].handlers
            # The call to suggest: the first handler with an example, else the first one.
            first = next((h for h in handlers.values() if h.example), next(iter(handlers.values())))
            example = json.dumps(first.example or {p: "..." for p in first.required_params})
            path = first.name if cfg.default_deployment == dep.name else f"{dep.name}/{first.name}"
            lines.append(
                f"  [bold]{dep.name}[/bold]: {dep.spec.desired_replicas} replicas, lb={dep.spec.lb}\n"
                f"    try:  curl -s {cfg.url}/{path} -H 'content-type: application/json' -d '{example}'\n"
                f"    or:   steady call {dep.name} {first.name} --json '{example}' --state-dir {self.state_dir}"
            )
        lines.append(f"  status: steady status --state-dir {self.state_dir}    api: {cfg.api_url}/docs (with a token)    stop: Ctrl-C")
        if cfg.auth_required:
            lines.append(f"  [yellow]access control is on[/yellow]: calls need a token; make one with\n"
                         f"    steady token create --role admin --name you --state-dir {self.state_dir}\n"
                         f"  and send it as 'authorization: Bearer <token>' (or STEADY_TOKEN for the CLI and Client)")
        lines.append("")
        self.console.print("\n".join(lines))


def recorded_state(config: PlatformConfig, services: dict[str, ServiceDescription],
                   state_dir: Path) -> tuple[PlatformConfig, dict[str, ServiceDescription]]:
    """The deployments a recovering controller keeps running, with their recorded revisions and
    replica counts (read as ``Controller._recover`` reads them), and what the console says of each."""
    from .control.config import DeploymentConfig
    from .control.statedb import DB_NAME, StateDB
    from .description import HandlerDescription

    db = StateDB(state_dir / DB_NAME, create=False)
    try:
        rows = [(row, db.revision_config(row["name"], row["revision"]))
                for row in db.desired_deployments() if not row["deleting"]]
    finally:
        db.close()
    in_file = {dep.name: dep for dep in config.deployments}
    deployments: list[DeploymentConfig] = []
    described: dict[str, ServiceDescription] = {}
    for row, recorded in rows:
        name = row["name"]
        dep = DeploymentConfig.model_validate_json(recorded) if recorded else in_file.get(name)
        if dep is None:  # a revision recorded without its config, not in the file: the drift event names it
            continue
        dep = dep.model_copy(update={"spec": dep.spec.model_copy(update={"replicas": row["replicas"]})})
        service = services.get(name)
        if service is None or service.target != dep.target:  # not the file's service: its handlers only
            file, _, class_name = dep.target.rpartition(":")
            service = ServiceDescription(file=Path(file), class_name=class_name, handlers={
                h: HandlerDescription(name=h, idempotent=i) for h, i in dep.handlers_idempotent.items()})
        deployments.append(dep)
        described[name] = service
    return config.model_copy(update={"deployments": tuple(deployments)}), described
