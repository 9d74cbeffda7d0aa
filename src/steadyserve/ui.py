"""What `steady serve` shows an operator: events as they happen, a progress line
while replicas start, and how to call the service once everything is ready.

The "how to call it" lines are commands to paste into a new shell, so each is complete as
printed: `steady` named in full when it is not on that shell's PATH, every path absolute, the
token (never shown here) read from ``$STEADY_TOKEN``, the certificate to trust named, and a body
the handler accepts: its ``example=``, else one made from its input schema by ``sample_body``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from .control.config import PlatformConfig
from .control.statedb import Event
from .description import HandlerDescription, ServiceDescription
from .printable import for_terminal
from .sample_body import sample_body
from .trust import CA_BUNDLE_ENV
from .wording import plural

_COLOURS = {"ready": "green", "recovered": "green", "crash_loop": "red", "killed": "red",
            "exited": "yellow", "unhealthy": "yellow", "ejected": "yellow"}
_NOT_READY = {"exited", "unhealthy", "killed", "crash_loop"}


@dataclass(frozen=True)
class ShellContext:
    """What the printed commands need from outside the platform's config: how a new shell names
    this `steady`, and the CA bundle the operator trusts. Read once, where the console is made."""

    steady: str  # shell words that run this steady: "steady", or its full path
    steady_on_path: bool
    activate: Path | None  # the virtual environment's activate script, when steady is not on PATH
    ca_bundle: Path | None  # $STEADY_CA_BUNDLE as the operator set it

    @classmethod
    def of_this_process(cls) -> ShellContext:
        """The `steady` script beside this interpreter, compared with the one PATH finds."""
        bin_dir = Path(sys.executable).absolute().parent
        script = bin_dir / "steady"
        found = shutil.which("steady")
        on_path = found is not None and script.exists() and os.path.samefile(found, script)
        if on_path:
            steady = "steady"
        elif script.exists():
            steady = shlex.quote(str(script))
        else:  # run as `python -m steadyserve.cli` from an environment without the script
            steady = f"{shlex.quote(sys.executable)} -m steadyserve.cli"
        activate = bin_dir / "activate"
        bundle = os.environ.get(CA_BUNDLE_ENV)
        return cls(steady=steady, steady_on_path=on_path,
                   activate=activate if not on_path and activate.exists() else None,
                   ca_bundle=Path(bundle).absolute() if bundle else None)


class ServeConsole:
    def __init__(self, console: Console, config: PlatformConfig, services: dict[str, ServiceDescription],
                 state_dir: Path, shell: ShellContext | None = None) -> None:
        self.console = console
        self.config = config
        self.state_dir = state_dir
        self.services = services
        self.shell = shell or ShellContext.of_this_process()
        self._ready: set[str] = set()
        self._total = sum(d.spec.desired_replicas for d in config.deployments) + config.gateway.processes
        self._started = time.monotonic()
        self._status: Status | None = None

    def start(self, recovering: bool = False) -> None:
        if recovering:  # what runs is adopted, not started
            self.console.print(f"recovering the instance in {for_terminal(self.state_dir)} (a controller stopped without"
                               " stopping its processes): adopting what still runs")
        else:
            for dep in self.config.deployments:
                self.console.print(f"starting [bold]{dep.name}[/bold] from {for_terminal(dep.target)} ...")
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
        self.console.print(f"[dim]{stamp}[/dim] [{colour}]{subject:>14} {event.type:<10}[/{colour}] {for_terminal(event.message)}")
        if event.type == "crash_loop":  # the whole traceback is in the process's log
            label = f"{event.deployment}-{event.subject}" if event.deployment else event.subject
            self.console.print(f"{'':>24}its output: {escape(str(self.config.state_dir / 'logs' / label))}.log",
                               soft_wrap=True)
        if self._status is not None:
            self._status.update(self._progress_text())
        if event.type == "stopping":
            self.stop()

    def on_all_ready(self) -> None:
        self.stop()
        # One command per line, never wrapped: each is pasted whole.
        self.console.print("\n".join(self.ready_lines()), soft_wrap=True, emoji=False)

    def ready_lines(self) -> list[str]:
        """Where the platform is up and, one per line, the commands that call it (rich markup)."""
        cfg, shell = self.config, self.shell
        state_dir = f"--state-dir {shlex.quote(str(cfg.state_dir))}"
        cacert = self._cacert()
        cacert_option = f" --cacert {shlex.quote(str(cacert))}" if cacert else ""
        # Over HTTPS, call the gateway by a name its certificate holds (a self-signed one often
        # names only localhost): the printed URL must pass the client's name check.
        url = cfg.url if cfg.gateway.tls_cert is None else _url_for_certificate(cfg.url, cfg.gateway.tls_cert)
        url_option = f" --url {shlex.quote(url)}" if url != cfg.url else ""
        lines = [f"\n[bold green]up[/bold green] at [bold]{url}[/bold]"
                 f" ({plural(cfg.gateway.processes, 'gateway process', 'gateway processes')})"]
        if cfg.auth_required:
            lines.append("  [yellow]access control is on[/yellow]: every call needs a token, shown once to whoever"
                         " makes it and never here; this makes one into $STEADY_TOKEN, which the commands below send:")
            # A name of its own per shell ($$, the time): the line works pasted again in a new shell.
            lines.append(_command("token", f"STEADY_TOKEN=$({shell.steady} token create --role invoker"
                                           f" --name \"shell-$$-$(date +%s)\" {state_dir}) && export STEADY_TOKEN"))
        for dep in cfg.deployments:
            low, high = dep.spec.replica_bounds
            scaling = f" (autoscaled {low}..{high}{', to zero when idle' if low == 0 else ''})" \
                if dep.spec.autoscaled else ""
            lines.append(f"  [bold]{escape(dep.name)}[/bold]: {plural(dep.spec.desired_replicas, 'replica')}{scaling},"
                         f" lb={dep.spec.lb}")
            prefix = "" if cfg.default_deployment == dep.name else f"{dep.name}/"
            handlers = self.services[dep.name].handlers
            chosen = first_call(handlers)
            if chosen is None:
                lines.append(f"    {escape(', '.join(handlers))}: no example= and no body could be made from the"
                             " parameter types; the OpenAPI document describes each body:")
                lines.append(_command("try", _curl(f"{url}/{prefix}openapi.json", None, cfg.auth_required,
                                                   cacert)))
                continue
            handler, body = chosen
            streams = handler.stream is not None
            saved = _saved_as(handler)  # a binary answer goes to a file, not to the terminal
            lines.append(_command("try", _curl(f"{url}/{prefix}{handler.name}", body, cfg.auth_required,
                                               cacert, stream=streams, output=saved)))
            lines.append(_command("or", f"{shell.steady} call {shlex.quote(dep.name)} {handler.name}"
                                        f" --json {shlex.quote(json.dumps(body))}{' --stream' if streams else ''}"
                                        f"{f' --output {saved}' if saved else ''}"
                                        f"{url_option}{cacert_option} {state_dir}"))
            if dep.chat_handler is not None:
                chat = {"model": dep.name, "messages": [{"role": "user", "content": "Hello"}], "stream": True}
                lines.append(_command("openai", _curl(f"{url}/v1/chat/completions", chat, cfg.auth_required,
                                                      cacert, stream=True)))
        lines.append(_command("status", f"{shell.steady} status {state_dir}", indent=2))
        lines.append(f"  api:    {cfg.api_url}/docs (over TCP with a viewer, deployer or admin token; the CLI here"
                     " needs none)")
        lines.append("  stop:   Ctrl-C")
        if not shell.steady_on_path:
            activate = f"; `. {shlex.quote(str(shell.activate))}` puts it there" if shell.activate else ""
            lines.append(f"  [dim]this steady is not on PATH, so the commands above name it in full"
                         f"{escape(activate)}[/dim]")
        lines.append("")
        return lines

    def _cacert(self) -> Path | None:
        """What a client must trust over HTTPS: the CA bundle the operator named, else the served
        certificate itself (enough when it is self-signed)."""
        tls_cert = self.config.gateway.tls_cert
        if tls_cert is None:
            return None
        return self.shell.ca_bundle or tls_cert.absolute()


def _url_for_certificate(url: str, cert: Path) -> str:
    """``url`` with its host replaced by ``localhost`` when the certificate holds that name and not
    the host's address; unchanged when it holds the address, or cannot be read."""
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]  # stdlib, no extra dependency
    except (OSError, ValueError, AttributeError, ssl.SSLError):
        return url
    names = {value for _, value in decoded.get("subjectAltName", ())}
    names |= {value for rdn in decoded.get("subject", ()) for key, value in rdn if key == "commonName"}
    if parts.hostname in names or "localhost" not in names:
        return url
    return parts._replace(netloc=f"localhost:{parts.port}" if parts.port else "localhost").geturl()


def _command(label: str, command: str, indent: int = 4) -> str:
    return f"{' ' * indent}{label + ':':<7} {escape(command)}"


def _saved_as(handler: HandlerDescription) -> str | None:
    """Where a suggested call saves a binary answer: the handler's name with its media type's extension."""
    if handler.binary_media_type is None:
        return None
    import mimetypes

    return handler.name + (mimetypes.guess_extension(handler.binary_media_type.split(";")[0].strip()) or ".bin")


def _curl(url: str, body: dict[str, Any] | None, auth: bool, cacert: Path | None, *, stream: bool = False,
          output: str | None = None) -> str:
    # -N: print a stream's items as they arrive rather than when curl's buffer fills
    words = ["curl", "-sN" if stream else "-s", *(["--cacert", str(cacert)] if cacert else []),
             *(["-o", output] if output else []), url]
    if body is not None:
        words += ["-H", "content-type: application/json"]
    command = shlex.join(words)
    if auth:  # double quotes: the shell fills in the token
        command += ' -H "authorization: Bearer $STEADY_TOKEN"'
    if body is not None:
        command += f" -d {shlex.quote(json.dumps(body))}"
    return command


def first_call(handlers: dict[str, HandlerDescription]) -> tuple[HandlerDescription, dict[str, Any]] | None:
    """The call to suggest: the first handler with an example, else the first one a body can be
    made for from its input schema; None when there is neither."""
    for described in handlers.values():
        if described.example is not None and not described.files:
            return described, described.example
    for described in handlers.values():
        if described.files:  # an upload: no JSON body to suggest (the OpenAPI document describes it)
            continue
        body = sample_body(described.input_schema)
        if body is not None:
            return described, body
    return None


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
