"""The ``steady`` command line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import ConfigError, SteadyError
from .printable import for_terminal

# Piped output (scripts, logs) is not squeezed to 80 columns.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False)

STATE_DIR_OPTION = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=Path(".steady"), show_default=True,
    help="State directory of the running instance.",
)
STATUS_KEYS = ("kind", "deployment", "id", "pid", "state", "inflight", "requests", "restarts", "revision", "node")


def fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="steadyserve")
def main() -> None:
    """steadyserve: model services that stay up."""


@main.command()
@click.argument("target")
@click.option("--replicas", "-r", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--gateways", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Gateway processes sharing the port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Public port (0 picks a free one).")
@click.option("--lb", "policy", type=click.Choice(["least_request", "round_robin", "consistent_hash"]),
              default="least_request", show_default=True, help="Load-balancing policy.")
@click.option("--hash-key", help="For consistent_hash: 'header:<name>' or 'json:<field>'.")
@click.option("--timeout-s", type=click.FloatRange(min=0.001), default=30.0, show_default=True,
              help="Per-request timeout at the gateway.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=16 * 1024 * 1024, show_default=True)
@click.option("--no-batching", is_flag=True, help="Run batched handlers one call at a time.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Threads per replica running sync handlers.")
@click.option("--handler-timeout-s", type=click.FloatRange(min=0.001),
              help="One handler call inside a replica at most (default: --timeout-s).")
@click.option("--max-ongoing", type=click.IntRange(1, 10_000),
              help="Calls one replica works on at once (default: 8, or twice the largest batch).")
@click.option("--max-queued", type=click.IntRange(0, 100_000), default=1024, show_default=True,
              help="Calls waiting at the gateways for a free replica; beyond it calls are shed (503).")
@click.option("--queue-timeout-s", type=click.FloatRange(min=0.001), default=2.0, show_default=True,
              help="A call waits at most this long for a free replica.")
@click.option("--adaptive", is_flag=True, help="Limit each replica's concurrency by its measured latency.")
@click.option("--api-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Control API port (0 picks a free one; the CLI finds it in the state dir).")
@click.option("--auth", is_flag=True, help="Require API tokens (see `steady token create`).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM certificate.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM private key.")
@STATE_DIR_OPTION
def serve(target: str, state_dir: Path, no_batching: bool, api_port: int, auth: bool, **options: Any) -> None:
    """Serve TARGET (PATH[:Class]) with replicas behind the gateway."""
    from .control.serve import check_gateway_port, check_port, serve_spec

    def build(recovering: bool) -> tuple[Any, Any, dict[str, dict[str, str]]]:
        options["port"] = check_gateway_port(options["host"], options["port"], recovering, state_dir)
        name, spec = serve_spec(target, batching=not no_batching, **options)
        if not auth and not _is_loopback(options["host"]):
            raise ConfigError(f"--host {options['host']} exposes the service beyond this machine;"
                              " add --auth (and create tokens with `steady token create`)")
        config, specs = _resolve(spec, Path.cwd(), state_dir, check_port("127.0.0.1", api_port),
                                 default_deployment=name, auth_required=auth)
        hint = "stop this instance (Ctrl-C) and start `steady serve` again"
        return config.model_copy(update={"apply_hint": hint}), specs, {}

    _run_platform(build, state_dir)


@main.command()
@click.option("--file", "-f", "spec_file", type=click.Path(path_type=Path), default=Path("steady.yaml"),
              show_default=True, help="Deployment spec.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), help="Override gateway.port of the spec.")
@click.option("--api-port", type=click.IntRange(0, 65535), default=8081, show_default=True,
              help="Control API port (0 picks a free one).")
@click.option("--no-auth", is_flag=True, help="Accept calls without tokens (loopback addresses only).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM certificate (overrides gateway.tls_cert).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PEM private key.")
@click.option("--ray-address", metavar="ADDRESS",
              help="Run replicas as actors on this Ray cluster (overrides backend:; needs steadyserve[ray]).")
@STATE_DIR_OPTION
def up(spec_file: Path, port: int | None, api_port: int, no_auth: bool, tls_cert: Path | None,
       tls_key: Path | None, ray_address: str | None, state_dir: Path) -> None:
    """Run every deployment of a spec file behind one gateway."""
    from .control.secrets import read_secret_values
    from .control.serve import check_gateway_port, check_port
    from .control.spec import BackendSpec, GatewaySpec, key_location, load_spec

    if ray_address is not None and not ray_address.strip():
        fail("--ray-address needs the cluster's address: HOST:PORT, ray://HOST:PORT or auto")

    def build(recovering: bool) -> tuple[Any, Any, dict[str, dict[str, str]]]:
        spec = load_spec(spec_file)
        if ray_address is not None:
            spec = spec.model_copy(update={"backend": BackendSpec(
                kind="ray", address=ray_address, namespace=spec.backend.namespace)})
        wanted = spec.gateway.port if port is None else port
        update: dict[str, Any] = {"port": check_gateway_port(spec.gateway.host, wanted, recovering, state_dir)}
        if tls_cert is not None or tls_key is not None:
            update |= {"tls_cert": tls_cert, "tls_key": tls_key}
        gateway = GatewaySpec.model_validate({**spec.gateway.model_dump(), **update})
        spec = spec.model_copy(update={"gateway": gateway})
        if no_auth and not _is_loopback(spec.gateway.host):
            raise ConfigError(f"{spec_file}: --no-auth is only allowed when gateway.host is a loopback"
                              f" address, not {spec.gateway.host}")
        base_dir = spec_file.resolve().parent
        secrets = {name: read_secret_values(name, dep, base_dir, os.environ, str(spec_file))
                   for name, dep in spec.deployments.items()}
        config, specs = _resolve(spec, base_dir, state_dir, check_port("127.0.0.1", api_port),
                                 auth_required=not no_auth, where=lambda name: (
                                     f"{key_location(spec_file, ('deployments', name, 'service'))}:"
                                     f" deployments.{name}.service"))
        hint = f"steady deploy -f {spec_file} --state-dir {state_dir}"
        return config.model_copy(update={"apply_hint": hint}), specs, secrets

    _run_platform(build, state_dir)


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve(spec: Any, base_dir: Path, state_dir: Path, api_port: int, default_deployment: str | None = None,
             auth_required: bool = False, where: Any = None) -> tuple[Any, Any]:
    from .control.config import resolve_platform

    return resolve_platform(spec, base_dir, state_dir, api_port, default_deployment, auth_required, where=where)


def _run_platform(build: Any, state_dir: Path) -> None:
    from .control.serve import check_state_dir_free, run_platform
    from .ui import ServeConsole, recorded_state

    try:
        recovering = check_state_dir_free(state_dir)
        config, specs, secrets = build(recovering)
    except ConfigError as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    # A recovering controller keeps the recorded state, not the file's: the console shows what runs.
    shown, services = recorded_state(config, specs, state_dir) if recovering else (config, specs)
    ui = ServeConsole(console, shown, services, state_dir)
    ui.start(recovering)
    try:
        run_platform(config, ui.on_event, ui.on_all_ready, recover=recovering, secrets=secrets)
    finally:
        ui.stop()


API_URL_OPTION = click.option("--api-url", help="Control API (default: $STEADY_API_URL, else the running instance's).")
CACERT_OPTION = click.option(
    "--cacert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM CA bundle to trust for HTTPS, e.g. a self-signed server certificate"
         " (default: $STEADY_CA_BUNDLE, else the default CA store).",
)


def _api(method: str, path: str, state_dir: Path, api_url: str | None, body: Any = None,
         cacert: Path | None = None, context: str = "") -> Any:
    """A control API call: over TCP with $STEADY_TOKEN when a URL is named, else over the
    running instance's private Unix socket (its file permissions stand for a token).
    ``context`` prefixes a refusal (``steady.yaml:3: deployments.echo``)."""
    import httpx

    from_env = api_url is None and _env_url("STEADY_API_URL") is not None
    if api_url is None:
        api_url = _env_url("STEADY_API_URL")
    headers: dict[str, str] = {}
    if api_url is None:
        local = _local_api_socket(state_dir)
        client = httpx.Client(transport=httpx.HTTPTransport(uds=str(local)), timeout=120)
        base, where, url = "http://steady", f"the control socket {local}", None
    else:
        token = os.environ.get("STEADY_TOKEN")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(timeout=120, verify=_verify(cacert))
        base, url = api_url.rstrip("/"), api_url
        where = f"the control API at {api_url}{' (from $STEADY_API_URL)' if from_env else ''}"
    try:
        with client:
            response = client.request(method, f"{base}{path}", json=body, headers=headers)
    except httpx.HTTPError as exc:
        fail(_unreachable(exc, where, url, cacert))
    if response.status_code >= 400:
        try:
            doc = response.json()
            message = doc.get("error", response.text)
            if doc.get("fields"):
                message += ": " + "; ".join(f"{f['field']}: {f['problem']}" for f in doc["fields"])
        except ValueError:
            message = response.text
        fail(f"{context + ': ' if context else ''}{response.status_code}: {message}"
             f"{_api_token_hint(response.status_code) if url is not None else ''}")
    return response.json()


def _api_token_hint(status: int) -> str:
    """A refused control-API call over TCP: where the token comes from, or which role it needs."""
    if status == 401:
        return ("\nthe control API over TCP needs a token in $STEADY_TOKEN: a viewer's to read, a deployer's or"
                " admin's to change (`steady token create --role viewer --name NAME` where the controller runs)")
    if status == 403:
        return "\nreading needs a viewer, deployer or admin token; changes a deployer or admin token"
    return ""


def _local_api_socket(state_dir: Path) -> Path:
    from .control.private_dirs import check_private_dir

    db = _open_db(state_dir)
    try:
        meta = db.meta()
    finally:
        db.close()
    recorded = meta.get("api_socket")
    if not recorded or meta.get("status") != "running":
        fail(f"no running steadyserve instance in {state_dir}/ (start one with `steady up` or `steady serve`,"
             " or name a remote one with --api-url and $STEADY_TOKEN)")
    local = Path(recorded)
    try:
        check_private_dir(local.parent)  # a socket someone else could have put there is not ours
    except ConfigError as exc:
        fail(f"refusing the control socket {local}: {exc}")
    return local


def _verify(cacert: Path | None) -> Any:
    """What httpx verifies a TLS server with: --cacert, else $STEADY_CA_BUNDLE, else the system's."""
    from .trust import httpx_verify

    return httpx_verify(cacert)


def _unreachable(exc: Exception, where: str, url: str | None, cacert: Path | None) -> str:
    from .trust import tls_failure_message

    message = tls_failure_message(exc, url, cacert) if url is not None else None
    return message or f"cannot reach {where}: {exc} (is the instance running?)"


def _open_db(state_dir: Path) -> Any:
    from .control.statedb import StateDB

    try:
        return StateDB.open_existing(state_dir)
    except FileNotFoundError:
        fail(f"no steadyserve state in {state_dir}/ (start one with `steady up -f FILE` or `steady serve PATH`,"
             " or name a running one with --state-dir, or a remote one with --api-url)")


def _state_dir_given() -> bool:
    """Whether --state-dir was on the command line: then it names the instance, whatever
    $STEADY_URL / $STEADY_API_URL say (printed hints name their instance that way)."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source("state_dir") == ParameterSource.COMMANDLINE


def _env_url(name: str) -> str | None:
    return None if _state_dir_given() else os.environ.get(name)


def _remote(api_url: str | None) -> str | None:
    """The control API to read from instead of the local state dir, if one is named."""
    return api_url or _env_url("STEADY_API_URL")


def status_rows(state_dir: Path, api_url: str | None = None, cacert: Path | None = None) -> list[dict[str, Any]]:
    if _remote(api_url):
        rows = _api("GET", "/v1/replicas", state_dir, _remote(api_url), cacert=cacert)
    else:
        db = _open_db(state_dir)
        try:
            rows = db.public_processes()
        finally:
            db.close()
    now = time.time()
    result = []
    for r in rows:
        uptime_s = round(now - r["started_at"], 1) if r["started_at"] else None
        result.append({**{k: r.get(k) for k in STATUS_KEYS}, "uptime": _format_uptime(uptime_s),
                       "uptime_s": uptime_s, "last_error": r["last_error"],
                       "routes_version": r["routes_version"]})
    return result


def _format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def status(state_dir: Path, as_json: bool, api_url: str | None, cacert: Path | None) -> None:
    """Replicas and gateway processes of the running instance."""
    rows = status_rows(state_dir, api_url, cacert)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    remote = _remote(api_url)
    table = Table(title=f"steadyserve — {for_terminal(remote or state_dir)}")  # what was asked: a remote API or a state dir
    on_cluster = any(r["node"] for r in rows)  # replicas on Ray nodes: say which node each runs on
    columns = ["kind", "deployment", "id", *(["node"] if on_cluster else []), "pid", "state", "in-flight",
               "requests", "restarts", "rev", "uptime"]
    for column in columns:
        table.add_column(column, no_wrap=True, min_width=min(len(column), 8))
    table.add_column("last error", overflow="fold")
    colours = {"ready": "green", "crash_loop": "red", "unhealthy": "yellow", "backoff": "yellow"}
    for r in rows:
        state = r["state"]
        node = [for_terminal((r["node"] or "-")[:12])] if on_cluster else []  # Ray node ids: 56 hex digits
        table.add_row(r["kind"], r["deployment"] or "-", r["id"], *node, str(r["pid"] or "-"),
                      f"[{colours.get(state, 'white')}]{state}[/]", str(r["inflight"]), str(r["requests"]),
                      str(r["restarts"]), str(r["revision"] or "-"), r["uptime"], for_terminal(r["last_error"] or ""))
    console.print(table)
    scaling = _autoscaling_table(state_dir, api_url, cacert)
    if scaling is not None:
        console.print(scaling)


def _autoscaling_table(state_dir: Path, api_url: str | None, cacert: Path | None) -> Table | None:
    """Each autoscaled deployment: its load, mode, forecast, budget and the last change with its reason
    (from the control API; nothing when the instance is not running)."""
    try:
        deployments = _api("GET", "/v1/deployments", state_dir, _remote(api_url), cacert=cacert)
    except SystemExit:
        return None
    rows = [d for d in deployments if isinstance(d, dict) and d.get("autoscaling")]
    if not rows:
        return None
    table = Table(title="autoscaling")
    for column in ("deployment", "replicas", "bounds", "load / target", "mode", "cold start"):
        table.add_column(column, no_wrap=True)
    table.add_column("last change and why, forecast, capacity", overflow="fold", min_width=30)
    for d in rows:
        a = d["autoscaling"]
        load = "-" if a.get("load") is None else f"{a['load']:.3g}"
        lines = [for_terminal(a.get("last_change") or f"no change yet ({a.get('reason')})")]
        if a.get("predictive") and a["predictive"] != "off":
            lines.append(for_terminal(f"forecast: {a['predictive']}"))
        if a.get("capacity"):
            lines.append(f"[yellow]{for_terminal('capacity: ' + a['capacity'])}[/]")
        cold = "-" if a.get("cold_start_s") is None else f"{a['cold_start_s']:.1f}s"
        table.add_row(d["name"], f"{a['desired']} ({d.get('ready', 0)} ready)", f"{a['min']}..{a['max']}",
                      f"{load} / {a['target']:g} {a['metric']}", a["mode"], cold,
                      "\n".join(lines))
    return table


@main.command()
@click.option("--limit", "-n", type=click.IntRange(1), default=50, show_default=True)
@click.option("--type", "event_type", help="Only events of this type (e.g. crash_loop).")
@click.option("--json", "as_json", is_flag=True)
@API_URL_OPTION
@CACERT_OPTION
@STATE_DIR_OPTION
def events(state_dir: Path, limit: int, event_type: str | None, as_json: bool, api_url: str | None,
           cacert: Path | None) -> None:
    """The event log: state changes, oldest first (the newest --limit of them)."""
    from .control.statedb import Event

    if _remote(api_url):
        from urllib.parse import urlencode

        query = "/v1/events?" + urlencode({"limit": limit, **({"type": event_type} if event_type else {})})
        items = [Event(**e) for e in _api("GET", query, state_dir, _remote(api_url), cacert=cacert)]
    else:
        db = _open_db(state_dir)
        try:
            items = db.events(limit=limit, type=event_type)
        finally:
            db.close()
    if as_json:
        click.echo(json.dumps([e.__dict__ for e in items], indent=2))
        return
    table = Table()
    for column in ("time", "kind", "deployment", "subject", "type"):
        table.add_column(column, no_wrap=True)
    table.add_column("message", overflow="fold", min_width=30)
    for e in items:
        table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts)), e.kind, e.deployment or "-",
                      e.subject, e.type, for_terminal(e.message))
    console.print(table)


def _resolve_url(url: str | None, state_dir: Path) -> str:
    if url:
        return url.rstrip("/")
    if _env_url("STEADY_URL"):
        return str(_env_url("STEADY_URL")).rstrip("/")
    db = _open_db(state_dir)
    try:
        return str(db.meta()["url"])
    finally:
        db.close()


def _token_hint(status: int, state_dir: Path) -> str:
    """What to do about a 401 from the gateway: where a token comes from, or why this one failed."""
    if status != 401:
        return ""
    if os.environ.get("STEADY_TOKEN"):
        return ("\nthe token in $STEADY_TOKEN was refused: revoked, mistyped, or made for another instance"
                " (`steady token list` shows this instance's tokens)")
    return ("\nthis gateway needs a token: create one with `steady token create --role invoker --name NAME"
            f" --state-dir {state_dir}` and `export STEADY_TOKEN=<the printed token>`")


@main.command()
@click.argument("names", nargs=-1, required=True, metavar="[DEPLOYMENT] HANDLER")
@click.option("--json", "payload", default="{}", show_default=True,
              help="JSON object body, or for a batched handler a JSON array of them.")
@click.option("--file", "files", multiple=True, metavar="NAME=PATH",
              help="Upload a file as parameter NAME (multipart/form-data; --json fields go along). Repeatable.")
@click.option("--stream", "stream", is_flag=True, help="Print a streaming handler's items as they arrive.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the answer's body to this file (for a binary answer such as an image).")
@click.option("--url", help="Gateway URL (default: $STEADY_URL, else the running instance's).")
@click.option("--timeout-s", type=float, default=60.0, show_default=True)
@CACERT_OPTION
@STATE_DIR_OPTION
def call(names: tuple[str, ...], payload: str, files: tuple[str, ...], stream: bool, output: Path | None,
         url: str | None, timeout_s: float, cacert: Path | None, state_dir: Path) -> None:
    """Call a handler through the gateway and print the JSON answer.

    With `steady serve` the deployment may be left out. A streaming handler's items are
    printed one per line as they arrive (with --stream; without it, once it ends).
    """
    if len(names) > 2:
        fail(f"expected [DEPLOYMENT] HANDLER, got {len(names)} names: {' '.join(names)}")
    handler = "/".join(n.strip("/") for n in names)
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as exc:
        fail(f"--json is not valid JSON: {exc}")
    if not (isinstance(body, dict) or (isinstance(body, list) and all(isinstance(e, dict) for e in body))):
        fail("--json must be a JSON object, e.g. '{\"message\": \"hi\"}', or for a batched handler a JSON"
             " array of them (many calls in one request)")
    uploads = _uploads(files)
    if uploads and not isinstance(body, dict):
        fail("--file goes with a --json object of the other fields, not an array")
    import httpx

    from .trust import httpx_verify, tls_failure_message

    base = _resolve_url(url, state_dir)
    headers = {}
    if os.environ.get("STEADY_TOKEN"):
        headers["authorization"] = f"Bearer {os.environ['STEADY_TOKEN']}"
    if uploads:
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
        request: dict[str, Any] = {"files": uploads, "data": fields}
    else:
        request = {"content": json.dumps(body).encode(), "headers": {**headers, "content-type": "application/json"}}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(headers=headers, verify=httpx_verify(cacert)) as client:
        while True:
            try:
                sent = client.build_request("POST", f"{base}/{handler.lstrip('/')}",
                                            timeout=max(0.1, deadline - time.monotonic()), **request)
                response = client.send(sent, stream=True)
            except httpx.HTTPError as exc:
                source = " (from $STEADY_URL)" if not url and _env_url("STEADY_URL") else ""
                fail(tls_failure_message(exc, base, cacert)
                     or f"cannot reach {base}{source}: {exc} (is the instance running?)")
            if response.status_code == 503:
                response.read()
            wait_s = _cold_start_wait(response)
            if wait_s is None or time.monotonic() + wait_s >= deadline or uploads:
                break
            response.close()
            # Scaled to zero and still starting: the call never reached a replica, so it is safe to send again.
            err_console.print(f"the deployment is starting from zero replicas; trying again in {wait_s:g}s")
            time.sleep(wait_s)
        try:
            _print_answer(response, base, stream, output, state_dir)
        finally:
            response.close()


def _uploads(files: tuple[str, ...]) -> dict[str, tuple[str, bytes, str]]:
    import mimetypes

    uploads = {}
    for spec in files:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            fail(f"--file {spec!r}: write NAME=PATH, e.g. --file image=seven.png")
        file = Path(path.removeprefix("@")).expanduser()
        try:
            data = file.read_bytes()
        except OSError as exc:
            fail(f"--file {name}: cannot read {file}: {exc.strerror or exc}")
        uploads[name] = (file.name, data, mimetypes.guess_type(file.name)[0] or "application/octet-stream")
    return uploads


def _print_answer(response: Any, base: str, stream: bool, output: Path | None, state_dir: Path) -> None:
    """Print (or save) what the gateway answered; streams item by item as they arrive."""
    import httpx

    from .client_streams import ItemDecoder, is_json, lines_of, stream_format

    if response.status_code >= 400:
        response.read()
        detail = response.text
        try:
            detail = json.dumps(json.loads(detail))
        except ValueError:
            pass
        fail(f"{response.status_code} {response.reason_phrase}: {detail}{_token_hint(response.status_code, state_dir)}")
    content_type = response.headers.get("content-type", "")
    fmt = stream_format(content_type)
    try:
        if output is not None:
            with open(output, "wb") as out:
                for data in response.iter_bytes():
                    out.write(data)
            err_console.print(f"wrote {output} ({content_type}, {output.stat().st_size} bytes)")
            return
        if "transfer-encoding" in response.headers and fmt != "raw":
            decoder = ItemDecoder(fmt)
            items = []
            for line in lines_of(response.iter_text()):
                for item in decoder.feed(line):
                    if stream:
                        click.echo(json.dumps(item))
                    else:
                        items.append(item)
            items += decoder.finish()
            if not stream:
                click.echo(json.dumps(items, indent=2))
            return
        if is_json(content_type):
            response.read()
            click.echo(json.dumps(response.json(), indent=2))
            return
        if sys.stdout.isatty() and not content_type.startswith("text/"):
            fail(f"the answer is {content_type or 'binary'}, not JSON: save it with --output FILE")
        for data in response.iter_bytes():
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
    except SteadyError as exc:  # the stream ended with an error event
        fail(f"the stream broke off: {exc}")
    except httpx.HTTPError as exc:
        fail(f"the answer from {base} broke off: {exc}")
    except ValueError:
        fail(f"{base} answered {response.status_code} with a body that is not JSON")


def _cold_start_wait(response: Any) -> float | None:
    """Seconds to wait before sending again, for a 503 that says the deployment is starting from zero."""
    if response.status_code != 503:
        return None
    try:
        starting = response.json().get("cold_start") is True
        wait_s = float(response.headers.get("retry-after", "2"))
    except (ValueError, AttributeError):
        return None
    return min(max(wait_s, 0.1), 30.0) if starting else None


def run() -> None:
    # Everything steady writes (state DB, logs, sockets, backups) and every process it starts
    # is private to the operator: other local users must not read tokens, secrets or audit rows.
    os.umask(0o077)
    try:
        main()
    except SteadyError as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C before the controller took over its signals
        err_console.print("interrupted")
        sys.exit(130)


# Registers the management commands on `main`; imported last because it uses the above.
from . import cli_admin, cli_alerts, cli_dashboard, cli_logs, cli_report, cli_simulate, cli_state  # noqa: E402,F401

if __name__ == "__main__":
    # Run through the package module, on which cli_admin registered its commands.
    from steadyserve.cli import run as _run

    _run()
