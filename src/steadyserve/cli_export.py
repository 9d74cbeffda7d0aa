"""`steady export kubernetes`: the spec as Kubernetes manifests, a Dockerfile and the steps to apply them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from .cli import _open_db, console, err_console, fail
from .errors import ConfigError
from .printable import for_terminal


@click.command("kubernetes")
@click.option("--file", "-f", "spec_file", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("steady.yaml"), show_default=True, help="Deployment spec.")
@click.option("--output", "-o", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("k8s"),
              show_default=True, help="Directory for the manifests, the Dockerfile and NEXT_STEPS.md.")
@click.option("--image", default="steady-app:latest", show_default=True,
              help="The image every pod runs (build it with the Dockerfile written here).")
@click.option("--namespace", "-n", help="Put every object in this namespace (default: kubectl's).")
@click.option("--no-auth", is_flag=True, help="Gateways accept calls without tokens (a cluster-internal service).")
@click.option("--tokens-from", type=click.Path(path_type=Path, file_okay=False),
              help="Write the active tokens' digests of this state dir to tokens.json (for the gateways' Secret).")
def export_kubernetes(spec_file: Path, out_dir: Path, image: str, namespace: str | None, no_auth: bool,
                      tokens_from: Path | None) -> None:
    """Kubernetes manifests for every deployment of a spec, and the steadyserve gateway in front of them."""
    from .cli_alerts import deployment_alerting
    from .control.config import resolve_platform
    from .control.spec import key_location, load_spec
    from .kube.export import ROLLBACK_NOTE, TOKENS_FILE, ExportSettings, export_files, not_exported

    try:
        spec = load_spec(spec_file)
        base_dir = spec_file.resolve().parent
        config, _ = resolve_platform(spec, base_dir, base_dir / ".steady", 0, where=lambda name: (
            f"{key_location(spec_file, ('deployments', name, 'service'))}: deployments.{name}.service"))
        settings = ExportSettings(image=image, namespace=namespace, auth_required=not no_auth,
                                  grace_s=config.grace_s)
        alerting = {name: deployment_alerting(dep) for name, dep in spec.deployments.items()}
        files = export_files(config.deployments, spec.gateway, base_dir, out_dir.resolve(), settings, alerting,
                             tokens_written=tokens_from is not None)
    except ConfigError as exc:
        fail(str(exc))
        return
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        return
    table = Table(title=f"written to {for_terminal(out_dir)}")
    table.add_column("file")
    table.add_column("holds", overflow="fold")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            _write(out_dir / name, text.encode(), 0o644)
            table.add_row(name, _kinds(text) if name.endswith(".yaml") else "")
        if tokens_from is not None:
            _write_tokens(tokens_from, out_dir / TOKENS_FILE)
            table.add_row(TOKENS_FILE, f"digests of the active tokens of {for_terminal(tokens_from)} (mode 600)")
    except OSError as exc:
        fail(f"cannot write to {out_dir}: {exc.strerror or exc} ({exc.filename or out_dir}); pick another -o DIR")
        return
    console.print(table)
    for dep in config.deployments:
        for note in not_exported(dep):
            err_console.print(f"note: {escape(dep.name)}: {escape(note)}", soft_wrap=True)
    err_console.print(f"note: {ROLLBACK_NOTE}", soft_wrap=True)
    err_console.print(f"next: {escape(str(out_dir / 'NEXT_STEPS.md'))}", soft_wrap=True)


def _kinds(text: str) -> str:
    import yaml  # type: ignore[import-untyped,unused-ignore]

    return ", ".join(str(doc.get("kind")) for doc in yaml.safe_load_all(text) if isinstance(doc, dict))


def _write_tokens(state_dir: Path, path: Path) -> None:
    """{id: {name, role, digest, rate_per_s, burst}}: what a gateway checks tokens against (never a token)."""
    db = _open_db(state_dir)
    try:
        tokens = {t["id"]: {"name": t["name"], "role": t["role"], "digest": t["digest"],
                            "rate_per_s": t["rate_per_s"] or None, "burst": t["burst"] or None} for t in db.tokens()}
    finally:
        db.close()
    _write(path, json.dumps(tokens, indent=1).encode(), 0o600)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Never through a symlink planted in the output directory; the mode set even on an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def register(export_group: click.Group) -> None:
    export_group.add_command(export_kubernetes)
