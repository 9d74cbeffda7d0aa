"""The gateway's request path: resolve the deployment, authorise, run the call's flow.

Every decision of a call lives in ``flow.call_flow`` (sans I/O); this module
performs the I/O it asks for: sending to a replica, queueing, re-reading the
routing table, and turning the result into bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..auth import Action, TokenRecord, bearer, check, split_token
from ..caller import CALLER_HEADER
from ..errors import UpstreamError
from ..metrics.exposition import CONTENT_TYPE
from ..printable import AUDIT_TARGET_MAX_CHARS, printable
from ..types import Clock
from ..wire.http11 import (
    REPLICA_KEY_HEADER,
    TIMEOUT_HEADER,
    Request,
    StreamReply,
    json_response,
    response,
    valid_request_id,
)
from ..wire.upstream import UpstreamPool, UpstreamStream
from .access_log import AccessLog
from .flow import (
    Answered,
    Call,
    Failed,
    Flow,
    Forward,
    Outcome,
    Refreshed,
    Result,
    Send,
    Wait,
    Woken,
    call_flow,
)
from .metrics import NONE, CallNote, GatewayMetrics
from .openai import (
    CHAT_PATH,
    MODELS_PATH,
    PREFIX,
    ChatTarget,
    chat_target,
    model_entry,
    models,
    reshape_error,
)
from .outcomes import RevisionOutcomes
from .ratelimit import LocalLimiter, RateLimiter
from .refusals import STATUS_NAMES, RefusalKey, RefusalLog, source_host, status_name
from .routes import RoutingTable, ServiceRoute
from .runtime import ServiceRuntime, UpstreamReplica
from .sharedcells import Counters, LocalCounters
from .streaming import StreamRelay, client_head
from .v2 import Answer, route_v2

_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"te",
     b"upgrade", b"proxy-connection", b"expect"}
)
_NO_REPLICA_HEADER = b"x-steady-replica: none\r\n"
_PUBLIC_PATHS = frozenset({b"/v2/health/live", b"/v2/health/ready"})  # for load balancers' checks
DEPLOYMENT_HEADER = b"x-steady-deployment"
METRICS_PATH = b"/metrics"  # the instance's one scrape target (a deployment's handlers never take it)
# Replicas' probes are the controller's; a replica's own metrics are in /metrics (which needs a reading role).
_INTERNAL_ROUTES = frozenset({"healthz", "readyz", "metrics"})


class Gateway:
    def __init__(
        self,
        gateway_id: str,
        clock: Clock = time.monotonic,
        refresh: Callable[[], bool] = lambda: False,
        pool_factory: Callable[[str], UpstreamPool] = UpstreamPool,
        limiter: RateLimiter | None = None,
        refusal_counts: Counters | None = None,
        wall_clock: Clock = time.time,
        metrics: GatewayMetrics | None = None,
        access: AccessLog | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self._pool_factory = pool_factory  # a unit test passes a fake
        # Re-reads the routing table now; called before answering "no replica",
        # so a replica the controller already reports ready is never refused.
        self.refresh = refresh
        self.clock = clock
        self.table = RoutingTable()
        self.services: dict[str, ServiceRuntime] = {}
        self.inflight = 0
        self.requests = 0
        self.shed = 0
        # Per deployment, since this process started: calls that arrived, and of them shed (the autoscaler's demand).
        self.arrived: dict[str, int] = {}
        self.shed_by: dict[str, int] = {}
        self._ids = itertools.count(1)
        # Recent ejections, reported through the admin endpoint; the controller
        # turns them into events (it stays the only writer of the state DB).
        self.ejections: deque[dict[str, Any]] = deque(maxlen=64)
        self._ejection_seq = itertools.count(1)
        self.tokens: dict[str, TokenRecord] = {}
        self._rng = random.Random()
        # Token rate limits: shared by all gateway processes on the machine when main.py passes
        # a SharedLimiter; this process's own otherwise.
        self.limiter: RateLimiter = limiter if limiter is not None else LocalLimiter()
        # Refused calls: counted in windows, reported through stats() like ejections; the controller
        # writes them to the audit log. The counters (shared memory, per slot) outlive this process.
        self.wall_clock = wall_clock
        self.refusal_counts: Counters = refusal_counts if refusal_counts is not None else LocalCounters(STATUS_NAMES)
        self.refusals = RefusalLog()
        self.refusals.close(self.refusal_counts.read())  # tells the controller where this process starts
        self.instance = os.urandom(4).hex()  # tells the controller this process from its successor
        self._id_prefix = f"{gateway_id}-{self.instance}-"
        # What this process saw of each revision, for rollout judgement: deployment -> revision -> counts.
        self.outcomes: dict[str, dict[int, RevisionOutcomes]] = {}
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.access = access if access is not None else AccessLog(gateway_id, write=lambda data: None)

    # --- routing table -------------------------------------------------------
    def apply_table(self, table: RoutingTable) -> None:
        # By endpoint and credential: on a network a new replica may get a gone one's port.
        known = {(r.endpoint, r.credential): r for s in self.services.values() for r in s.replicas}
        services: dict[str, ServiceRuntime] = {}
        now = self.clock()
        for name, route in table.services.items():
            replicas = [known.pop((r.endpoint, r.credential)) if (r.endpoint, r.credential) in known
                        else UpstreamReplica(r.id, r.generation, r.endpoint, r.revision, self._pool_factory(r.endpoint),
                                             r.credential)
                        for r in route.replicas]
            runtime = ServiceRuntime(name, route, replicas, self.outcomes.setdefault(name, {}), now)
            old = self.services.get(name)
            if old is not None:
                runtime.inherit(old)
            services[name] = runtime
        for gone in known.values():
            gone.pool.close()  # in-flight requests finish; idle connections go
        self.services = services
        self.table = table
        self.metrics.know(services)
        self.tokens = {i: TokenRecord(i, t.name, t.role, t.digest, t.rate_per_s, t.burst)
                       for i, t in table.tokens.items()}
        self.limiter.forget(set(self.tokens))
        for runtime in services.values():
            runtime.wake_all()  # queued calls look again: there may be new replicas or limits

    # --- request path ------------------------------------------------------------
    def _resolve(self, request: Request) -> tuple[ServiceRuntime | None, str]:
        path = request.path.decode("utf-8", "replace").strip("/")
        chosen = request.header(DEPLOYMENT_HEADER)
        if chosen is not None:  # the header names the deployment; the path is the handler
            return self.services.get(chosen.decode("utf-8", "replace")), path
        default = self.table.default_service
        if default is not None and default in self.services and "/" not in path:
            return self.services[default], path
        service, _, handler = path.partition("/")
        return self.services.get(service), handler

    def _resolve_v2(self, request: Request) -> tuple[ServiceRuntime | None, str, Answer | None]:
        # A deployment scaled to zero takes calls (they wait for its first replica): ready for a load balancer.
        ready = {name: bool(rt.replicas) or rt.route.cold_start_timeout_s is not None
                 for name, rt in self.services.items()}
        decision = route_v2(request.path.decode("utf-8", "replace").strip("/"), ready)
        if isinstance(decision, Answer):
            return None, "", decision
        service = self.services[decision.service]
        return service, service.route.v2_handler or "", None

    def _resolve_openai(self, request: Request, request_id: bytes) -> ChatTarget | bytes:
        """``/v1/...``: the deployment a chat completion is for, or the gateway's own answer."""
        path = request.path.rstrip(b"/")
        extra = b"x-request-id: " + request_id + b"\r\n" + _NO_REPLICA_HEADER
        routes = {name: rt.route for name, rt in self.services.items()}
        if path == MODELS_PATH or path.startswith(MODELS_PATH + b"/"):
            if request.method != b"GET":
                return self._error(405, request_id, "/v1/models answers GET", extra=b"allow: GET, HEAD\r\n")
            if path == MODELS_PATH:
                return json_response(200, models(routes), extra_headers=extra)
            name = path[len(MODELS_PATH) + 1:].decode("utf-8", "replace")
            if name in routes and routes[name].chat_handler:
                return json_response(200, model_entry(name), extra_headers=extra)
            return self._error(404, request_id, f"the model {name!r} does not exist", param="model")
        if path != CHAT_PATH:
            return self._error(404, request_id, f"no OpenAI route {request.path.decode(errors='replace')!r};"
                               " served: /v1/models, /v1/chat/completions")
        if request.method != b"POST":
            return self._error(405, request_id, "/v1/chat/completions answers POST", extra=b"allow: POST\r\n")
        target = chat_target(request.body, routes)
        if isinstance(target, ChatTarget):
            return target
        return self._error(target.status, request_id, target.message, param=target.param)

    def _on_ejected(self, service: ServiceRuntime, replica: UpstreamReplica, error: str, period_s: float) -> None:
        self.ejections.append({
            "seq": next(self._ejection_seq), "ts": time.time(), "service": service.name,
            "replica": replica.id, "generation": replica.generation, "period_s": round(period_s, 3),
            "times": replica.outlier.times_ejected, "last_error": error,
        })
        self.metrics.ejected(service.name)

    async def handle(self, request: Request) -> bytes | StreamReply:
        self.requests += 1
        self.inflight += 1
        note = CallNote()
        started = time.perf_counter()
        response: bytes | StreamReply = b""
        try:
            response = await self._proxy(request, note, started)
            if type(response) is bytes:
                note.status = _status_of(response)
                if note.status >= 400 and request.path.startswith(PREFIX):  # OpenAI clients read their own shape
                    response = _reshaped_for_openai(response, note.status)
            return response
        finally:
            if type(response) is bytes:  # a stream is counted when it ends (_stream_ended)
                self.inflight -= 1
                duration_s = time.perf_counter() - started
                self.metrics.call(note, duration_s)
                self.access.call(request.method, request.path, note, duration_s, len(request.body), len(response))

    def _stream(self, request: Request, result: Forward, service: ServiceRuntime, note: CallNote,
                request_id: bytes, started: float) -> StreamReply:
        """The replica answered with a stream: pass it on as it comes."""
        stream: UpstreamStream = result.response
        first_chunk_s = time.perf_counter() - started
        note.status = stream.status

        def ended(relay: StreamRelay, outcome: str) -> None:
            self.inflight -= 1
            if outcome != "complete":  # the client saw 200 and then an error event, or left
                note.status = {"client_gone": 499, "timed_out": 504, "handler_error": 500}.get(outcome, 502)
            duration_s = relay.duration_s()
            # For the revision's rollout judgement, as any call: a stream that broke off failed.
            relay.service.outcomes_of(relay.replica.revision).observe(
                first_chunk_s, outcome not in ("complete", "client_gone"))
            self.metrics.call(note, first_chunk_s)  # a stream's latency is its time to first chunk
            self.metrics.stream(note, outcome, first_chunk_s, relay.chunks, duration_s)
            self.access.call(request.method, request.path, note, duration_s, len(request.body),
                             len(stream.head) + relay.bytes_out)

        relay = StreamRelay(stream, service, result.replica, note, request_id=request_id, started=started,
                            first_chunk_s=first_chunk_s, chunked=request.chunked_ok, clock=self.clock, on_end=ended,
                            openai=request.path.startswith(PREFIX))
        return StreamReply(stream.status, client_head(stream.head, request.chunked_ok), relay,
                           close_after=not request.chunked_ok)

    def _request_id(self, request: Request) -> bytes:
        """The caller's id if it is a sane token; otherwise a new one replaces it."""
        request_id = request.header(b"x-request-id")
        if request_id is not None and valid_request_id(request_id):
            return request_id
        new_id = (self._id_prefix + str(next(self._ids))).encode()
        request.headers = [(k, v) for k, v in request.headers if k != b"x-request-id"]
        request.headers.append((b"x-request-id", new_id))
        return new_id

    async def _proxy(self, request: Request, note: CallNote, started: float) -> bytes | StreamReply:
        request_id = self._request_id(request)
        note.request_id = request_id.decode("latin-1")
        if request.path == METRICS_PATH:
            note.counted = False
            return self._metrics(request, request_id)
        caller: TokenRecord | None = None
        if self.table.auth_required and request.path not in _PUBLIC_PATHS:
            allowed = self._authorize(request, request_id)
            if isinstance(allowed, bytes):
                return allowed
            caller = allowed
        upstream_url: bytes | None = None
        if request.path.startswith(b"/v2"):
            service, handler, answer = self._resolve_v2(request)
            if answer is not None:
                return json_response(answer.status, answer.body, extra_headers=b"x-request-id: " + request_id
                                     + b"\r\n" + _NO_REPLICA_HEADER)
        elif request.path.startswith(PREFIX):
            routed = self._resolve_openai(request, request_id)
            if isinstance(routed, bytes):
                return routed
            service, handler, upstream_url = self.services[routed.deployment], routed.handler, CHAT_PATH
        else:
            service, handler = self._resolve(request)
        if service is None:
            return self._error(404, request_id, f"no service for path {request.path.decode(errors='replace')!r}"
                               f"; services: {', '.join(sorted(self.services)) or 'none yet'}")
        note.deployment = service.name
        note.handler = handler if handler in service.route.handlers else "unknown"
        if handler in _INTERNAL_ROUTES:  # replicas' probes are for the controller, not for callers
            return self._error(404, request_id, f"/{handler} is internal; load balancers use /v2/health/live"
                               " and /v2/health/ready, Prometheus scrapes /metrics")
        if not service.replicas and service.route.cold_start_timeout_s is not None \
                and not _served_at_zero(service.route, request, handler):
            # Scaled to zero: a call no replica would serve must not wake one (nor cost its owner).
            handlers = sorted(service.route.handlers)
            return self._error(404, request_id, f"no handler {handler!r}; this service has: {', '.join(handlers)}",
                               handlers=handlers)
        self.arrived[service.name] = self.arrived.get(service.name, 0) + 1
        now = self.clock()
        timeout_s = service.route.timeout_s
        asked = request.timeout_s()  # a caller may ask for less than the deployment's timeout_s
        if asked is not None:
            timeout_s = min(timeout_s, asked)
        # Replicas serve /<handler>; V2 paths go through as they are.
        if upstream_url is None:
            upstream_url = request.url if _is_v2(request) else _handler_url(request, handler)
        head, tail = _encode_upstream(request, upstream_url, self.table.auth_required,
                                      caller if service.route.forward_identity else None)
        call = Call(key=service.key_of(request) if service.key_of is not None else None,
                    idempotent=service.idempotent.get(handler, True), started_at=now, deadline=now + timeout_s)
        result = await self._run(call_flow(service, call, self._on_ejected, self._rng.random() * 100), head, tail,
                                 dechunk=not request.chunked_ok)
        note.attempts = result.attempts
        if isinstance(result, Forward):
            note.revision = str(result.replica.revision)
            note.replica = result.replica.id
            if type(result.response) is UpstreamStream:
                return self._stream(request, result, self.services.get(service.name, service), note, request_id,
                                    started)
            return result.response  # type: ignore[no-any-return]
        if result.details.get("shed"):
            self.shed += 1
            self.shed_by[service.name] = self.shed_by.get(service.name, 0) + 1
            note.shed = True
        if result.replica is not None:
            note.replica = result.replica
            note.revision = next((str(r.revision) for r in service.replicas if r.id == result.replica), NONE)
        extra = b"retry-after: %d\r\n" % result.retry_after_s if result.retry_after_s is not None else b""
        details = {k: v for k, v in result.details.items() if k != "shed"}
        return self._error(result.status, request_id, result.message, extra=extra, replica=result.replica,
                           **details)

    async def _run(self, flow: Flow, head: bytes, tail: bytes, dechunk: bool = False) -> Result:
        """Perform the I/O the flow asks for until it returns its result."""
        holding: ServiceRuntime | None = None  # a replica slot of this deployment is taken
        try:
            action = next(flow)
            while True:
                outcome: Outcome
                if isinstance(action, Send):
                    holding = action.service
                    outcome = await self._send(action, head, tail, dechunk)
                elif isinstance(action, Wait):
                    outcome = await self._wait(action)
                else:
                    changed = self.refresh()
                    outcome = Refreshed(self.services.get(action.service) if changed else None, self.clock())
                try:
                    action = flow.send(outcome)
                finally:
                    if holding is not None:  # the flow has given the slot back: the next in line may go
                        holding.wake_one()
                        holding = None
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            flow.close()  # a cancelled call still gives its replica slot back ...
            if holding is not None:
                holding.wake_one()  # ... and lets the next in line have it

    async def _wait(self, wait: Wait) -> Woken:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = wait.service.waiters
        waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, max(0.0, wait.until - self.clock()))
        except TimeoutError:
            pass
        finally:
            if waiter in waiters:  # timed out or cancelled: leave the line (a woken one already has)
                waiters.remove(waiter)
        return Woken(self.clock(), self.services.get(wait.service.name))

    async def _send(self, send: Send, head: bytes, tail: bytes, dechunk: bool = False) -> Answered | Failed:
        data = head + send.replica.key_header + TIMEOUT_HEADER + b": %d\r\n" % max(1, int(send.timeout_s * 1000)) + tail
        try:
            response = await send.replica.pool.request(data, send.timeout_s, dechunk)
        except UpstreamError as err:
            return Failed(err, self.clock(), self.services.get(send.service.name))
        if type(response) is UpstreamStream:
            return Answered(response.status, response, self.clock(), stream=True)
        return Answered(response.status, response.raw, self.clock())  # type: ignore[union-attr]
    def _authorize(self, request: Request, request_id: bytes) -> bytes | TokenRecord | None:
        """The caller's token if the call may proceed; else the 401/403/429 answer."""
        verdict = check(request.header(b"authorization"), self.tokens, Action.INVOKE)
        if verdict.status != 200:
            self._refused(request, verdict.status, verdict.token.name if verdict.token else "-", verdict.reason)
            extra = b"www-authenticate: Bearer\r\n" if verdict.status == 401 else b""
            return self._error(verdict.status, request_id, verdict.reason, extra=extra)
        token = verdict.token
        if token is not None and token.rate_per_s:
            wait_s = self.limiter.take(token.id, token.rate_per_s, token.burst or 1, self.clock())
            if wait_s > 0:
                self._refused(request, 429, token.name, "rate limit exceeded")
                return self._error(429, request_id, f"rate limit of token {token.name!r} exceeded",
                                   extra=b"retry-after: %d\r\n" % max(1, math.ceil(wait_s)))
        return token

    def _refused(self, request: Request, status: int, actor: str, reason: str) -> None:
        self.refusal_counts.add(status_name(status))  # first: it is what the audit's totals rest on
        key = RefusalKey(actor, source_host(request.peer), status, reason)
        self.refusals.add(key, printable(request.path.decode("utf-8", "replace"), AUDIT_TARGET_MAX_CHARS),
                          self.wall_clock(), self.clock())

    def roll_refusals(self, window_s: float) -> None:
        """Close the window of refused calls once it is ``window_s`` old (main.py calls this often)."""
        if self.refusals.due(self.clock(), window_s):
            self.refusals.close(self.refusal_counts.read())

    def _metrics(self, request: Request, request_id: bytes) -> bytes:
        """``/metrics`` of the whole instance (with access control on: a token allowed to read)."""
        if request.method != b"GET":  # a HEAD arrives as a GET; the server leaves out the body
            return self._error(405, request_id, "/metrics answers GET and HEAD", extra=b"allow: GET, HEAD\r\n")
        if self.table.auth_required:
            verdict = check(request.header(b"authorization"), self.tokens, Action.READ)
            if verdict.status != 200:
                self._refused(request, verdict.status, verdict.token.name if verdict.token else "-", verdict.reason)
                extra = b"www-authenticate: Bearer\r\n" if verdict.status == 401 else b""
                return self._error(verdict.status, request_id, verdict.reason, extra=extra)
        return response(200, self.metrics.exposition(self.services), content_type=CONTENT_TYPE,
                        extra_headers=b"x-request-id: " + request_id + b"\r\n" + _NO_REPLICA_HEADER)

    def _error(self, status: int, request_id: bytes, message: str, extra: bytes = b"",
               replica: str | None = None, **details: object) -> bytes:
        replica_header = _NO_REPLICA_HEADER if replica is None else b"x-steady-replica: %s\r\n" % replica.encode()
        body = {"error": message, "request_id": request_id.decode(), **details}
        if replica is not None:
            body["replica"] = replica
        return json_response(status, body, extra_headers=b"x-request-id: " + request_id + b"\r\n"
                             + replica_header + extra)

    def stats(self) -> dict[str, object]:
        return {"gateway": self.gateway_id, "instance": self.instance, "inflight": self.inflight,
                "requests": self.requests, "shed": self.shed, "table_version": self.table.version,
                "replicas": {s: [r.id for r in rt.replicas] for s, rt in self.services.items()},
                "queued": {s: len(rt.waiters) for s, rt in self.services.items()},
                "demand": {s: [n, self.shed_by.get(s, 0)] for s, n in self.arrived.items()},
                "limits": {s: {r.id: rt.limit_of(r) for r in rt.replicas} for s, rt in self.services.items()},
                "revisions": {s: {str(rev): o.to_json() for rev, o in by_rev.items()}
                              for s, by_rev in self.outcomes.items()},
                "ejections": list(self.ejections), "refusals": self.refusals.report()}


def _reshaped_for_openai(response: bytes, status: int) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    shaped = reshape_error(status, body)
    if shaped is body:
        return response
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-length:")]
    return b"\r\n".join(lines) + b"\r\ncontent-length: %d\r\n\r\n" % len(shaped) + shaped


def _status_of(response: bytes) -> int:
    """The status code of an HTTP/1.1 response (``HTTP/1.1 200 OK``)."""
    try:
        return int(response[9:12])
    except (ValueError, TypeError):
        return 0


def _is_platform_token(value: bytes) -> bool:
    token = bearer(value)
    return token is not None and split_token(token) is not None


def _served_at_zero(route: ServiceRoute, request: Request, handler: str) -> bool:
    """Whether a replica would serve this call: a handler it has, its OpenAPI document, its V2 model."""
    if _is_v2(request):
        return route.v2_handler is not None
    return handler in route.handlers or handler == "openapi.json"


def _is_v2(request: Request) -> bool:
    return request.path.startswith(b"/v2")


def _handler_url(request: Request, handler: str) -> bytes:
    _, sep, query = request.url.partition(b"?")
    return b"/" + handler.encode() + sep + query


def _encode_upstream(request: Request, url: bytes, auth_required: bool = False,
                     caller: TokenRecord | None = None) -> tuple[bytes, bytes]:
    """The upstream request in two parts; each attempt puts its own deadline header between them.

    Platform tokens never reach replica code: with auth on, the authorization header is one;
    with auth off, one that looks like a platform token is dropped too. ``caller``: the
    deployment asked to know who called (name and role; never the token).
    """
    parts = [request.method, b" ", url, b" HTTP/1.1\r\n"]
    for name, value in request.headers:
        if name in _HOP_BY_HOP or name == TIMEOUT_HEADER or name == CALLER_HEADER or name == REPLICA_KEY_HEADER:
            continue
        if name == b"authorization" and (auth_required or _is_platform_token(value)):
            continue
        parts += (name, b": ", value, b"\r\n")
    if caller is not None:
        parts += (CALLER_HEADER, b": name=", caller.name.encode("latin-1", "replace"), b"; role=",
                  caller.role.encode(), b"\r\n")
    return b"".join(parts), b"content-length: %d\r\n\r\n" % len(request.body) + request.body
