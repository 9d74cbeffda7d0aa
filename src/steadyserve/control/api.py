"""The control API: JSON over HTTP on its own port, OpenAPI at /openapi.json.

Every mutating call changes the controller's desired state; the controller's
loop then reconciles (starts, rolls out, retires replicas). Errors are JSON
``{"error": ...}`` like the gateway's.

The audit log gets a row per accepted mutating call, named by what it did (deploy,
scale, rollback, delete); refused calls are aggregated (api_refusals.py). Targets are
stored sanitised and capped (``printable``): callers choose paths.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..auth import Action, TokenRecord, check
from ..errors import ConfigError
from ..logs.store import LOGS_DB_NAME
from ..printable import AUDIT_TARGET_MAX_CHARS, printable
from .api_alerts import alerts_router
from .api_logs import build_logs_router
from .api_observe import observe_router
from .api_refusals import RefusalAudit, RefusalKey
from .config import resolve_deployment
from .controller import Controller
from .dashboard import COOKIE, LOGINS_PATH, dashboard_router, logins_router, session_of
from .desired import ApplyResult
from .revisions import revision_changes
from .secrets import check_secret_value
from .sessions import Sessions
from .spec import DeploymentSpec, deployment_name_problem
from .supervision import ProcState

log = logging.getLogger(__name__)

_PUBLIC_PATHS = frozenset({"/healthz"})  # for load balancers; over TCP everything else needs a token
def audit_verb(method: str, path: str) -> str:
    """What a mutating call does, as the audit log names it."""
    if method == "DELETE":
        return "delete"
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if method == "POST" and last in ("scale", "rollback") else "deploy"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeploymentIn(_In):
    spec: DeploymentSpec
    replicas: int | None = Field(default=None, ge=1, le=64, description="override spec.replicas")
    secrets: dict[str, str] = Field(
        default={}, description="write-only: values of spec.secrets (omitted ones keep their stored value);"
        " never returned by any call", json_schema_extra={"writeOnly": True})

    @field_validator("secrets")
    @classmethod
    def _values_fit(cls, secrets: dict[str, str]) -> dict[str, str]:
        for name, value in secrets.items():
            try:
                check_secret_value(name, value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return secrets


class ScaleIn(_In):
    replicas: int = Field(ge=1, le=64)


class RollbackIn(_In):
    to_revision: int | None = Field(default=None, ge=1, description="default: the revision before the active one")


class DeploymentOut(BaseModel):
    name: str
    revision: int
    replicas: int
    ready: int
    target: str
    rolling_out_from: int | None
    deleting: bool
    spec: DeploymentSpec
    autoscaling: dict[str, Any] | None = Field(
        default=None, description="with replicas {min, max}: the autoscaler's load, mode, last decision and why,"
                                  " forecast, capacity (docs/autoscaling.md)")


class ApplyOut(BaseModel):
    name: str
    revision: int
    changed: bool = Field(description="created, a new revision is rolling out, the replica count changed, or"
                                      " settings only the controller uses changed (alerts, slo, prediction)")
    created: bool
    rolling_out: bool
    replicas: int
    settings_changed: list[str] = Field(default=[], description="of alerts, slo, prediction: changed, no rollout")


class ApiError(Exception):
    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def build_api(controller: Controller, base_dir: Path, local_actor: str | None = None,
              sessions: Sessions | None = None, secure_cookie: bool = False) -> FastAPI:
    """The control API app. ``local_actor``: served on the private Unix socket, whose file
    permissions are the authentication (as Docker's socket); otherwise every call needs a token,
    or, to read, a dashboard session (``sessions``, shared by the apps of one controller)."""
    app = FastAPI(title="steadyserve control API", version=__version__, docs_url=None, redoc_url=None)
    db = controller.db
    sessions = sessions if sessions is not None else Sessions()
    refusals = app.state.refusals = RefusalAudit(db)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        """Authenticate, authorise, and audit every mutating call and every refusal."""
        path = request.url.path
        if path in _PUBLIC_PATHS or path == "/ui" or path.startswith("/ui/"):
            return await call_next(request)  # the dashboard's page and login check for themselves
        # Minting a dashboard login grants no more than reading.
        action = Action.READ if request.method in ("GET", "HEAD") or path == LOGINS_PATH else Action.DEPLOY
        verb = audit_verb(request.method, path) if action == Action.DEPLOY else action.value
        host = request.client.host if request.client else "local socket"
        source = f"{host}:{request.client.port}" if request.client else host
        target = printable(f"{request.method} {path}", AUDIT_TARGET_MAX_CHARS)
        actor, role, token_id = local_actor or "-", "admin", None
        # A dashboard's cookie: reads only (GET), and only while the token it came from is not revoked.
        session = (session_of(request, sessions) if local_actor is None and request.method in ("GET", "HEAD")
                   else None)
        if session is not None and session.token_id is not None and session.token_id not in {
                t["id"] for t in db.tokens()}:
            sessions.end(request.cookies.get(COOKIE))
            session = None
        request.state.session = session is not None
        if session is not None:
            actor, role = session.name, session.role
        elif local_actor is None:
            tokens = {t["id"]: TokenRecord(t["id"], t["name"], t["role"], t["digest"]) for t in db.tokens()}
            verdict = check(request.headers.get("authorization"), tokens, action)
            if verdict.status != 200:
                refusals.add(RefusalKey(verdict.token.name if verdict.token else "-", verb, target, host,
                                        f"{verdict.status}: {verdict.reason}"))
                headers = {"www-authenticate": "Bearer"} if verdict.status == 401 else {}
                return JSONResponse({"error": verdict.reason}, status_code=verdict.status, headers=headers)
            actor = verdict.token.name if verdict.token else "-"
            role = verdict.token.role if verdict.token else "-"
            token_id = verdict.token.id if verdict.token else None
        request.state.actor, request.state.role, request.state.token_id = actor, role, token_id
        response = await call_next(request)
        if action == Action.DEPLOY:
            db.add_audit(actor, verb, target, source, str(response.status_code))
        return response

    @app.exception_handler(ApiError)
    async def _api_error(_: Any, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message, **exc.details}, status_code=exc.status)

    @app.exception_handler(ConfigError)
    async def _config_error(_: Any, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in e["loc"] if p != "body") or "(body)", "problem": e["msg"]}
                  for e in exc.errors()]
        return JSONResponse({"error": "invalid request", "fields": fields}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Any, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    def _get(name: str) -> Any:
        dep = controller.deployments.get(name)
        if dep is None:
            raise ApiError(404, f"no deployment {name!r}; deployments: "
                           f"{', '.join(sorted(controller.deployments)) or 'none'}")
        return dep

    def _out(name: str) -> DeploymentOut:
        dep = _get(name)
        ready = sum(1 for (k, d, _), m in controller.managed.items()
                    if k == "replica" and d == name and m.slot.state == ProcState.READY
                    and m.revision == dep.revision)
        return DeploymentOut(name=name, revision=dep.revision, replicas=dep.replicas, ready=ready,
                             target=dep.config.target, rolling_out_from=dep.previous_revision,
                             deleting=dep.deleting, spec=dep.config.spec,
                             autoscaling=controller.autoscaling_status(name))

    async def _resolve(name: str, spec: DeploymentSpec) -> Any:
        problem = deployment_name_problem(name)
        if problem is not None:
            raise ApiError(422, problem)
        try:  # imports user code: keep the event loop (and the probes) running
            config, _ = await asyncio.to_thread(resolve_deployment, name, spec, base_dir)
        except ConfigError as exc:
            raise ApiError(422, str(exc)) from exc
        return config

    @app.get("/v1/deployments", response_model=list[DeploymentOut])
    async def list_deployments() -> list[DeploymentOut]:
        return [_out(name) for name in sorted(controller.deployments)]

    @app.get("/v1/deployments/{name}", response_model=DeploymentOut)
    async def get_deployment(name: str) -> DeploymentOut:
        return _out(name)

    @app.post("/v1/deployments/{name}", response_model=ApplyOut, status_code=201)
    async def create_deployment(name: str, body: DeploymentIn) -> ApplyOut:
        if name in controller.deployments and not controller.deployments[name].deleting:
            raise ApiError(409, f"deployment {name!r} exists; update it with PUT")
        return _applied(name, controller.apply_deployment(await _resolve(name, body.spec), body.replicas,
                                                          body.secrets))

    @app.put("/v1/deployments/{name}", response_model=ApplyOut)
    async def apply_deployment(name: str, body: DeploymentIn) -> ApplyOut:
        """Create, or update with a rolling update to a new revision (an unchanged spec changes nothing)."""
        return _applied(name, controller.apply_deployment(await _resolve(name, body.spec), body.replicas,
                                                          body.secrets))

    def _applied(name: str, result: ApplyResult) -> ApplyOut:
        return ApplyOut(name=name, revision=result.revision, changed=result.changed, created=result.created,
                        rolling_out=result.rolling_out, replicas=result.replicas,
                        settings_changed=list(result.watching))

    @app.delete("/v1/deployments/{name}", status_code=202)
    async def delete_deployment(name: str) -> dict[str, str]:
        _get(name)
        controller.delete(name)
        return {"name": name, "status": "deleting"}

    @app.post("/v1/deployments/{name}/scale", response_model=DeploymentOut)
    async def scale(name: str, body: ScaleIn) -> DeploymentOut:
        dep = _get(name)
        if dep.config.spec.autoscaled:
            low, high = dep.config.spec.replica_bounds
            raise ApiError(409, f"{name} is autoscaled between {low} and {high} replicas; change replicas:"
                           " {min, max} in the spec and deploy it (`steady deploy -f FILE`)", replicas=dep.replicas)
        controller.scale(name, body.replicas)
        return _out(name)

    @app.get("/v1/deployments/{name}/revisions")
    async def revisions(name: str) -> list[dict[str, Any]]:
        rows = controller.db.revisions(name)
        if not rows:
            _get(name)
        active = controller.deployments[name].revision if name in controller.deployments else None
        previous = [None, *(r["spec"] for r in rows)]
        return [{"revision": r["revision"], "created_at": r["created_at"], "active": r["revision"] == active,
                 "changes": revision_changes(before, r["spec"]), **json.loads(r["spec"])}
                for r, before in zip(rows, previous, strict=False)]

    @app.post("/v1/deployments/{name}/rollback", response_model=ApplyOut)
    async def rollback(name: str, body: RollbackIn) -> ApplyOut:
        _get(name)
        try:
            return _applied(name, controller.rollback(name, body.to_revision))
        except LookupError as exc:
            raise ApiError(404, str(exc).strip("'\"")) from exc

    @app.get("/v1/routes")
    async def routes(request: Request) -> Response:
        """The routing table the gateways follow: for a gateway on another machine (``--discovery controller``)."""
        # It holds every replica's credential: an admin token (or the local socket), never a dashboard login.
        if request.state.role != "admin" or getattr(request.state, "session", False):
            raise ApiError(403, "the routing table holds the replicas' credentials: reading it needs an admin token")
        try:
            return Response(controller.routes_path.read_bytes(), media_type="application/json")
        except FileNotFoundError as exc:
            raise ApiError(503, "no routing table yet: the controller is starting") from exc

    @app.get("/v1/replicas")
    async def replicas() -> list[dict[str, Any]]:
        return controller.db.public_processes()

    @app.get("/v1/audit")
    async def audit(limit: int = Query(default=100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        return db.audit(limit)

    @app.get("/v1/events")
    async def events(limit: int = Query(default=100, ge=1, le=10_000), type: str | None = None) -> list[dict[str, Any]]:
        return [e.__dict__ for e in controller.db.events(limit=limit, type=type)]

    if controller.observer is not None:
        app.include_router(observe_router(controller.observer.history, db))
    app.include_router(build_logs_router(controller.config.state_dir / LOGS_DB_NAME))
    if controller.observer is not None:
        observer = controller.observer
        app.include_router(alerts_router(controller.alert_engine().store, lambda: observer.history, lambda: {
            name: dep.config.spec.slo for name, dep in controller.deployments.items() if dep.config.spec.slo}))
    app.include_router(dashboard_router(db, sessions, secure_cookie))
    app.include_router(logins_router(sessions))

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> str:
        return _docs_page(app.openapi())

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "time": time.time()}

    return app


def _docs_page(openapi: dict[str, Any]) -> str:
    """A self-contained page listing the API (no CDN: this machine may be offline)."""
    from html import escape

    rows = []
    for path, methods in openapi["paths"].items():
        for method, op in methods.items():
            rows.append(f"<tr><td><b>{method.upper()}</b></td><td><code>{escape(path)}</code></td>"
                        f"<td>{escape(op.get('summary', ''))}</td><td>{escape(op.get('description', '') or '')}</td></tr>")
    return (f"<!doctype html><title>{escape(openapi['info']['title'])}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:4px 12px;border-bottom:1px solid #ddd}</style>"
            f"<h1>{escape(openapi['info']['title'])} {escape(openapi['info']['version'])}</h1>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"
            f"<table>{''.join(rows)}</table>")
