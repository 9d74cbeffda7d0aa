"""What `steady serve` shows an operator: events as they happen, a progress line
while replicas start, and how to call the service once everything is ready."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.status import Status

from .control.config import ServeConfig
from .control.statedb import Event
from .service import HandlerSpec

_COLOURS = {"ready": "green", "recovered": "green", "crash_loop": "red", "killed": "red",
            "exited": "yellow", "unhealthy": "yellow", "ejected": "yellow"}
_NOT_READY = {"exited", "unhealthy", "killed", "crash_loop"}


class ServeConsole:
    def __init__(self, console: Console, config: ServeConfig, specs: dict[str, HandlerSpec], state_dir: Path) -> None:
        self.console = console
        self.config = config
        self.state_dir = state_dir
        # The call to suggest: the first handler with an example, else the first one.
        self.first = next((s for s in specs.values() if s.options.example), next(iter(specs.values())))
        self._ready: set[str] = set()
        self._total = config.replicas + config.gateways
        self._started = time.monotonic()
        self._status: Status | None = None

    def start(self) -> None:
        self.console.print(f"starting [bold]{self.config.service_name}[/bold] from {self.config.target} ...")
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
        if event.type == "ready":
            self._ready.add(event.subject)
        elif event.type in _NOT_READY:
            self._ready.discard(event.subject)
        colour = _COLOURS.get(event.type, "dim")
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        self.console.print(f"[dim]{stamp}[/dim] [{colour}]{event.subject:>10} {event.type:<10}[/{colour}] {event.message}")
        if self._status is not None:
            self._status.update(self._progress_text())
        if event.type == "stopping":
            self.stop()

    def on_all_ready(self) -> None:
        self.stop()
        cfg, name = self.config, self.first.name
        example = json.dumps(self.first.options.example or {p: "..." for p in self.first.required_params})
        self.console.print(
            f"\n[bold green]{cfg.service_name} is up[/bold green] at [bold]{cfg.url}[/bold]"
            f" ({cfg.replicas} replicas, {cfg.gateways} gateway processes, lb={cfg.policy})\n"
            f"  try:    curl -s {cfg.url}/{name} -H 'content-type: application/json' -d '{example}'\n"
            f"  or:     steady call {name} --json '{example}' --state-dir {self.state_dir}\n"
            f"  docs:   {cfg.url}/openapi.json    status: steady status --state-dir {self.state_dir}\n"
            f"  stop:   Ctrl-C\n"
        )
