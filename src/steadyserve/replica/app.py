"""Request dispatch inside a replica: routes, validation, handler calls, errors."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from pydantic import ValidationError

from ..batching import Batcher, split_outputs
from ..caller import CALLER_HEADER, parse_caller_header, set_caller
from ..errors import (
    DeadlineExceeded,
    HandlerFailed,
    InvalidInput,
    MethodNotAllowed,
    RequestError,
    UnknownHandler,
)
from ..logs.format import set_request_id
from ..metrics.exposition import CONTENT_TYPE
from ..service import HandlerSpec, Service
from ..wire.http11 import Request, StreamReply, json_response, response
from . import v2
from .binary import binary_reply, is_binary_result, is_readable, read_file_like
from .inputs import field_errors, parse_input
from .metrics import ReplicaMetrics
from .openai_chat import CHAT_PATH, chat_completions
from .openapi import openapi_document
from .replies import Reply, Returned, to_json_default
from .streaming import ItemEncoder, open_stream
from .workers import NeverStarted, WorkerPool

log = logging.getLogger("steadyserve.replica")


DRAINING_HEADER = b"x-steady-draining: 1\r\nretry-after: 1\r\n"
OVERLOADED_HEADER = b"x-steady-overloaded: 1\r\nretry-after: 1\r\n"
WATCHDOG_INTERVAL_S = 0.05
HANDBACK_MARGIN_S, HANDBACK_SHARE = 1.0, 0.25  # before its deadline, an unstarted call is handed back
REPLY_MARGIN_S = 0.15  # a call bound by the gateway's deadline is answered this much before it


class _Bound:
    """When a call in flight must be given up."""

    __slots__ = ("expired", "handback_at", "limit_at", "on_worker", "shed", "started")

    def __init__(self, limit_at: float, on_worker: bool, handback_at: float) -> None:
        self.limit_at = limit_at  # time.monotonic()
        self.on_worker = on_worker  # runs on (or waits for) a worker thread of its own
        # Still waiting for a worker then: hand it back, so the gateway has time to try elsewhere.
        self.handback_at = handback_at
        self.started = False  # set by the worker thread that runs it
        self.expired = False
        self.shed = False  # handed back unstarted: it may go to another replica


class ReplicaApp:
    def __init__(
        self,
        service: Service,
        specs: dict[str, HandlerSpec],
        *,
        replica_id: str,
        service_name: str,
        workers: WorkerPool,
        metrics: ReplicaMetrics,
        batching: bool = True,
        handler_timeout_s: float = 30.0,
        stuck_grace_s: float = 5.0,
        max_ongoing: int | None = None,
    ) -> None:
        self.service = service
        self.specs = specs
        self.replica_id = replica_id
        self.service_name = service_name
        self.metrics = metrics
        self.ready = False
        self.draining = False
        self.inflight = 0
        self.requests = 0
        self.errors = 0  # answered 5xx
        self.handler_seconds = 0.0  # time in handler calls, all together (the controller watches its trend)
        self.handler_timeout_s = handler_timeout_s
        self.stuck_grace_s = stuck_grace_s
        self.max_ongoing = max_ongoing
        # Set when this replica cannot recover by itself (a stuck worker, MemoryError):
        # /healthz then asks the controller to replace it. A stuck replica is also not live;
        # after a MemoryError it keeps serving until its successor is ready.
        self.replace_reason: str | None = None
        self.stuck = False
        self.workers_exhausted = False  # every worker is still in a call that is past its timeout
        self.timeouts: deque[dict[str, Any]] = deque(maxlen=64)  # reported to the controller as events
        self._timeout_seq = itertools.count(1)
        self._workers = workers
        self._bounds: dict[asyncio.Task[Any], _Bound] = {}  # calls in flight, for the watchdog
        self._batching = batching
        self._replica_header = b"x-steady-replica: " + replica_id.encode() + b"\r\n"
        self._handlers_list = sorted(specs)
        self._batchers: dict[str, Batcher] = {}
        self._openapi: bytes | None = None
        self._v2_spec = next((s for s in specs.values() if s.options.v2), None)
        self._chat_spec = next((s for s in specs.values() if s.options.openai == "chat"), None)
        self._idle = asyncio.Event()
        self._idle.set()

    # --- lifecycle ----------------------------------------------------------
    def start_batchers(self) -> None:
        for name, spec in self.specs.items():
            if spec.options.batch is None or not self._batching:
                continue
            batcher = Batcher(
                name, spec.options.batch, list(spec.input_model.model_fields),
                functools.partial(self._run_batch, spec),
                on_batch=self.metrics.batch_observer(name),
                translate_error=functools.partial(self._handler_failed, name),
                batch_timeout_s=self.handler_timeout_s,
            )
            batcher.start()
            self._batchers[name] = batcher

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def check_workers(self, now: float) -> None:
        """Notice overdue and stuck workers (called periodically by ``watch``)."""
        overdue = self._workers.overdue(now, self.handler_timeout_s)
        exhausted = len(overdue) >= self._workers.size
        if exhausted and not self.workers_exhausted:
            # Calls waiting for a worker would wait out their deadline: hand them back now
            # (they never ran, so the gateway tries another replica).
            for task, bound in list(self._bounds.items()):
                if bound.on_worker and not bound.expired:
                    bound.expired = bound.shed = True
                    task.cancel()
        self.workers_exhausted = exhausted
        stuck = [c for c in overdue if now - c.started > self.handler_timeout_s + self.stuck_grace_s]
        if stuck and not self.stuck:
            self.stuck = True
            self.replace_reason = (f"{self._workers.describe(stuck[0], now)}, past handler_timeout_s"
                                   f" ({self.handler_timeout_s:g}s) + stuck_grace_s ({self.stuck_grace_s:g}s):"
                                   " the worker is stuck")
            log.error("replica %s must be replaced: %s", self.replica_id, self.replace_reason)

    async def watch(self) -> None:
        """Expire overdue calls and notice stuck workers, every ``WATCHDOG_INTERVAL_S``."""
        while True:
            now = time.monotonic()
            self.expire_overdue(now)
            self.check_workers(now)
            await asyncio.sleep(WATCHDOG_INTERVAL_S)

    # --- entry point from the HTTP server -----------------------------------
    async def handle(self, request: Request) -> bytes | StreamReply:
        request_id = request.header(b"x-request-id") or uuid.uuid4().hex.encode()
        extra = b"x-request-id: " + request_id + b"\r\n" + self._replica_header
        path = request.path
        if path.startswith(b"/v2/"):
            return await self._v2(request, request_id, extra)
        if path == CHAT_PATH and self._chat_spec is not None:
            return await chat_completions(self, self._chat_spec, request, request_id, extra, _deadline(request))
        name = path[1:].decode("utf-8", "replace")
        spec = self.specs.get(name)
        if spec is None:
            return self._builtin(name, request, extra)
        deadline = _deadline(request)
        if spec.stream is not None:
            return await self.streaming_call(spec, request, request_id, extra, deadline)
        return await self.tracked(spec, request_id, extra, self._call(spec, request, request_id, deadline))

    async def streaming_call(self, spec: HandlerSpec, request: Request, request_id: bytes, extra: bytes,
                         deadline: float | None, kwargs: dict[str, Any] | None = None,
                         encoder: ItemEncoder | None = None) -> bytes | StreamReply:
        """A generator handler's call: its slot is held until the stream ends (``stream_ended``)."""
        refusal = self._refusal(spec)
        if refusal is not None:
            return json_response(503, {"error": refusal[0]}, extra_headers=extra + refusal[1])
        started = time.perf_counter()
        if kwargs is None:
            try:
                parsed = self._arguments(spec, request, request_id)
                assert isinstance(parsed, dict)  # a generator handler is never batched
                kwargs = parsed
            except RequestError as err:
                reply = self._input_refusal(spec, err)
                self.metrics.observe(spec.name, reply.status, time.perf_counter() - started)
                return response(reply.status, reply.body, extra_headers=extra + reply.headers)
        self.inflight += 1
        self.requests += 1
        self._idle.clear()
        opened: StreamReply | Reply | None = None
        try:
            opened = await open_stream(self, spec, request, request_id, kwargs, deadline, extra, encoder)
        finally:
            if not isinstance(opened, StreamReply):  # failed before its first item (or the caller left)
                self.stream_ended(spec, opened.status if opened is not None else 499,
                                  time.perf_counter() - started)
        if isinstance(opened, StreamReply):
            return opened
        return response(opened.status, opened.body, content_type=opened.content_type,
                        extra_headers=extra + opened.headers)

    def stream_ended(self, spec: HandlerSpec, status: int, duration_s: float) -> None:
        """A streaming call is over (or never got its first item): its slot is free."""
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()
        if status >= 500:
            self.errors += 1
        self.handler_seconds += duration_s
        self.metrics.observe(spec.name, status, duration_s)

    @property
    def workers(self) -> WorkerPool:
        return self._workers

    def bound_of(self, task: asyncio.Task[Any] | None) -> _Bound | None:
        return self._bounds.get(task) if task is not None else None

    def _refusal(self, spec: HandlerSpec) -> tuple[str, bytes] | None:
        """Why this call must not start here (and the header telling the gateway it never ran)."""
        if self.draining or not self.ready:
            return f"replica {self.replica_id} is {'draining' if self.draining else 'not ready yet'}", DRAINING_HEADER
        if self.max_ongoing is not None and self.inflight >= self.max_ongoing:
            return (f"replica {self.replica_id} is at its limit of {self.max_ongoing} concurrent calls"
                    " (max_ongoing_requests)", OVERLOADED_HEADER)
        if self.workers_exhausted and not spec.is_async:
            return (f"replica {self.replica_id}: every worker is still running a call past its"
                    f" handler_timeout_s of {self.handler_timeout_s:g}s", OVERLOADED_HEADER)
        return None

    async def tracked(self, spec: HandlerSpec, request_id: bytes, extra: bytes,
                       call: Coroutine[Any, Any, Reply]) -> bytes:
        """Run one handler call with in-flight accounting, metrics and the admission checks."""
        refusal = self._refusal(spec)
        if refusal is not None:
            call.close()
            # Never executed: the gateway may retry it elsewhere, even if not idempotent.
            return json_response(503, {"error": refusal[0]}, extra_headers=extra + refusal[1])
        started = time.perf_counter()
        self.inflight += 1
        self.requests += 1
        self._idle.clear()
        try:
            reply = await call
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.set()
        if reply.status >= 500:
            self.errors += 1
        duration_s = time.perf_counter() - started
        self.handler_seconds += duration_s
        self.metrics.observe(spec.name, reply.status, duration_s)
        return response(reply.status, reply.body, content_type=reply.content_type,
                        extra_headers=extra + reply.headers)

    def _arguments(self, spec: HandlerSpec, request: Request,
                   request_id: bytes) -> dict[str, Any] | list[dict[str, Any]]:
        """The call's inputs (raises RequestError); from here the handler's task sees who called."""
        kwargs = parse_input(spec, request)
        # The handler's task (and the worker thread it may run on) sees who called.
        set_caller(parse_caller_header(request.header(CALLER_HEADER)))
        set_request_id(request_id.decode("ascii", "replace") if request_id else None)  # on its log records
        return kwargs

    @staticmethod
    def _input_refusal(spec: HandlerSpec, err: RequestError) -> Reply:
        if isinstance(err, MethodNotAllowed):
            allow = b"GET, HEAD, POST" if spec.allows_get else b"POST"
            return Reply(err.status, orjson.dumps(err.to_json()), headers=b"allow: " + allow + b"\r\n")
        return Reply(err.status, orjson.dumps(err.to_json()))

    async def _call(self, spec: HandlerSpec, request: Request, request_id: bytes, deadline: float | None) -> Reply:
        try:
            kwargs = self._arguments(spec, request, request_id)
        except RequestError as err:
            return self._input_refusal(spec, err)
        if isinstance(kwargs, list):
            return await self._bounded(spec, request_id, deadline, self._invoke_many(spec, kwargs, deadline),
                                       functools.partial(self._serialise_many, spec))
        return await self._bounded(spec, request_id, deadline, self._invoke(spec, kwargs, deadline),
                                   functools.partial(self._answer, spec))

    async def _bounded(self, spec: HandlerSpec, request_id: bytes, deadline: float | None,
                       invocation: Coroutine[Any, Any, Any], serialise: Callable[[Any], Reply | bytes]) -> Reply:
        """Await a handler invocation within the handler timeout and the call's deadline; its answer."""
        outcome = await self.bounded(spec, request_id, deadline, invocation)
        if isinstance(outcome, Reply):
            return outcome
        try:
            reply = serialise(outcome.value)
        except RequestError as err:
            return Reply(err.status, orjson.dumps(err.to_json()))
        except Exception as exc:  # the result does not match its annotation: the handler's bug
            return self._failed_reply(spec, exc, request_id)
        return reply if isinstance(reply, Reply) else Reply(200, reply)

    async def bounded(self, spec: HandlerSpec, request_id: bytes, deadline: float | None,
                      invocation: Coroutine[Any, Any, Any], *, limit_s: float | None = None) -> Returned | Reply:
        """Await ``invocation`` within ``limit_s`` (default handler_timeout_s) and the call's deadline:
        what it returned, or the error reply that says why it did not.

        Deadlines are ``time.monotonic()`` values (worker threads and the batcher check them
        too). Rather than a timer per call, the watchdog sweeps the calls in flight every
        ``WATCHDOG_INTERVAL_S`` and cancels the overdue ones: cheaper on the hot path, and a
        timeout a few tens of milliseconds late is fine.
        """
        now = time.monotonic()
        limit_at, by_deadline = now + (self.handler_timeout_s if limit_s is None else limit_s), False
        if deadline is not None and deadline < limit_at:
            # Answer a little before the gateway's own timer fires, so the caller (and the event
            # log) learn which handler overran, rather than a bare gateway timeout.
            margin_s = REPLY_MARGIN_S if deadline - now > 2 * REPLY_MARGIN_S else 0.0
            limit_at, by_deadline = deadline - margin_s, True
        if limit_at <= now:
            invocation.close()
            return Reply(504, orjson.dumps({"error": "the call's deadline passed before its handler started",
                                            "request_id": request_id.decode("ascii", "replace")}))
        task = asyncio.current_task()
        assert task is not None
        # A call bound by the gateway's deadline is handed back unstarted a little before it.
        margin_s = min(HANDBACK_MARGIN_S, HANDBACK_SHARE * (limit_at - now)) if by_deadline else 0.0
        bound = _Bound(limit_at, not spec.is_async and spec.options.batch is None, limit_at - margin_s)
        self._bounds[task] = bound
        try:
            return Returned(await invocation)
        except asyncio.CancelledError as exc:  # NeverStarted too
            if not bound.expired:
                raise  # the caller went away: not ours to answer
            task.uncancel()
            if isinstance(exc, NeverStarted) and (bound.shed or not by_deadline):
                # Provably not run: the gateway may try another replica, even if not idempotent.
                return Reply(503, orjson.dumps({"error": f"replica {self.replica_id}: {exc} within"
                                                f" handler_timeout_s ({self.handler_timeout_s:g}s)",
                                                "request_id": request_id.decode("ascii", "replace")}),
                             headers=OVERLOADED_HEADER)
            return self._timed_out(spec, request_id, by_deadline, limit_at - now)
        except RequestError as err:
            return Reply(err.status, orjson.dumps(err.to_json()))
        except DeadlineExceeded as exc:
            return Reply(504, orjson.dumps({"error": str(exc)}))
        except Exception as exc:  # user code: translated once, logged with an error id
            return self._failed_reply(spec, exc, request_id)
        finally:
            del self._bounds[task]

    def expire_overdue(self, now: float) -> None:
        """Cancel the calls whose handler timeout or deadline has passed (``time.monotonic()``)."""
        for task, bound in list(self._bounds.items()):
            if bound.expired:
                continue
            if now >= bound.limit_at:
                bound.expired = True
                task.cancel()
            elif bound.on_worker and not bound.started and now >= bound.handback_at:
                bound.expired = bound.shed = True  # cancelled while queued: NeverStarted, a retryable 503
                task.cancel()

    def _failed_reply(self, spec: HandlerSpec, exc: Exception, request_id: bytes) -> Reply:
        if isinstance(exc, MemoryError) and self.replace_reason is None:
            self.replace_reason = f"handler {spec.name!r} raised MemoryError"
        failed = self._handler_failed(spec.name, exc, request_id)
        return Reply(500, orjson.dumps({"error": str(failed), "error_id": failed.error_id}))

    def _timed_out(self, spec: HandlerSpec, request_id: bytes, by_deadline: bool, waited_s: float) -> Reply:
        if by_deadline:
            message = f"handler {spec.name!r} did not return before the call's deadline (waited {waited_s:.3g}s)"
        else:
            message = f"handler {spec.name!r} did not return within handler_timeout_s ({self.handler_timeout_s:g}s)"
        rid = request_id.decode("ascii", "replace")
        self.timeouts.append({"seq": next(self._timeout_seq), "ts": time.time(), "handler": spec.name,
                              "request_id": rid, "message": message})
        log.warning("%s request_id=%s", message, rid)
        return Reply(504, orjson.dumps({"error": message, "request_id": rid}))

    # --- Open Inference Protocol (KServe V2) ---------------------------------------
    async def _v2(self, request: Request, request_id: bytes, extra: bytes) -> bytes:
        parts = request.path.decode("utf-8", "replace").strip("/").split("/")
        if len(parts) >= 5 and parts[3] == "versions":
            parts = parts[:3] + parts[5:]  # one version per model: ignore it
        spec = self._v2_spec
        if len(parts) < 3 or parts[1] != "models" or spec is None:
            problem = ("this service declares no V2 entry point (mark one handler @handler(v2=True))"
                       if spec is None else f"no V2 route {request.path.decode(errors='replace')}")
            return json_response(404, {"error": problem}, extra_headers=extra)
        model = parts[2]
        if len(parts) == 3 and request.method == b"GET":
            return json_response(200, v2.model_metadata(model, spec), extra_headers=extra)
        if len(parts) == 4 and parts[3] == "ready":
            ready = self.ready and not self.draining
            return json_response(200 if ready else 503, {"ready": ready}, extra_headers=extra)
        if len(parts) == 4 and parts[3] == "infer" and request.method == b"POST":
            return await self.tracked(spec, request_id, extra,
                                       self._v2_infer(model, spec, request, request_id, _deadline(request)))
        return json_response(404, {"error": f"no V2 route {request.path.decode(errors='replace')}"},
                             extra_headers=extra)

    async def _v2_infer(self, model: str, spec: HandlerSpec, request: Request, request_id: bytes,
                        deadline: float | None) -> Reply:
        try:
            length = request.header(v2.HEADER_LENGTH)
            try:
                header_length = int(length) if length else None
            except ValueError as exc:
                raise InvalidInput(f"{v2.HEADER_LENGTH.decode()} must be a whole number") from exc
            infer = v2.decode_request(request.body, header_length, tuple(spec.input_model.model_fields))
            rows = []
            for i, row in enumerate(infer.rows):
                try:
                    rows.append(spec.input_model.model_validate(row).__dict__)
                except ValidationError as exc:
                    raise InvalidInput(f"row {i} of the batch is invalid", fields=field_errors(exc)) from exc
        except RequestError as err:
            return Reply(400, orjson.dumps(err.to_json()))  # the protocol answers bad requests with 400

        async def infer_all() -> list[Any]:
            return list(await asyncio.gather(*(self._invoke(spec, row, deadline) for row in rows)))

        def encode(results: list[Any]) -> Reply:
            try:
                body, header_length = v2.encode_response(model, infer, [self._to_jsonable(spec, r) for r in results])
            except RequestError as err:
                return Reply(400, orjson.dumps(err.to_json()))
            if header_length is None:
                return Reply(200, body)
            return Reply(200, body, b"application/octet-stream",
                         b"inference-header-content-length: %d\r\n" % header_length)

        return await self._bounded(spec, request_id, deadline, infer_all(), encode)

    def _to_jsonable(self, spec: HandlerSpec, result: Any) -> Any:
        if spec.output_adapter is not None:
            return spec.output_adapter.dump_python(self._checked(spec, result), mode="json")
        return orjson.loads(self._serialise(spec, result))  # untyped: orjson knows numpy

    async def _invoke(self, spec: HandlerSpec, kwargs: dict[str, Any], deadline: float | None = None) -> Any:
        batcher = self._batchers.get(spec.name)
        if batcher is not None:
            return await batcher.submit(kwargs, deadline=deadline)
        if spec.options.batch is not None:  # batching switched off: a batch of one
            columns = {k: [v] for k, v in kwargs.items()}
            self.metrics.observe_batch(spec.name, 1)
            outputs = await self._run_batch(spec, columns, deadline)
            return split_outputs(outputs, 1, spec.name)[0]
        method = getattr(self.service, spec.name)
        if spec.is_async:
            result = await method(**kwargs)
            if is_readable(result):  # an open file: read off the loop
                return await asyncio.to_thread(read_file_like, result, spec.media_type)
            return result
        return await self._workers.run(spec.name, functools.partial(_call_reading_files, method, kwargs, spec),
                                       deadline, self._bounds.get(asyncio.current_task()))  # type: ignore[arg-type]

    async def _invoke_many(self, spec: HandlerSpec, calls: list[dict[str, Any]],
                           deadline: float | None) -> list[Any]:
        """An array request's calls, each one call of the batched handler; outputs in order."""
        batcher = self._batchers.get(spec.name)
        if batcher is not None:
            return await batcher.submit_many(calls, deadline=deadline)
        return [await self._invoke(spec, kwargs, deadline) for kwargs in calls]  # batching off: one at a time

    async def _run_batch(self, spec: HandlerSpec, columns: dict[str, list[Any]], deadline: float | None = None) -> Any:
        method = getattr(self.service, spec.name)
        if spec.is_async:
            return await method(**columns)
        return await self._workers.run(spec.name, functools.partial(method, **columns), deadline)

    def _checked(self, spec: HandlerSpec, result: Any) -> Any:
        """The result validated against the return annotation; a mismatch is the handler's bug."""
        assert spec.output_adapter is not None
        try:
            return spec.output_adapter.validate_python(result)
        except ValidationError as exc:
            raise HandlerFailed(
                f"handler {spec.name!r} returned a value that does not match its"
                f" return annotation {spec.output_type!r}: {exc.errors(include_url=False)[0]['msg']}",
                uuid.uuid4().hex[:12],
            ) from exc

    def _answer(self, spec: HandlerSpec, result: Any) -> Reply | bytes:
        """One call's result as its answer: JSON, or the bytes of a bytes / File result."""
        if is_binary_result(spec, result):
            return binary_reply(spec, result)
        return self._serialise(spec, result)

    def _serialise(self, spec: HandlerSpec, result: Any) -> bytes:
        if spec.output_adapter is not None:
            return spec.output_adapter.dump_json(self._checked(spec, result))
        return orjson.dumps(result, default=to_json_default, option=orjson.OPT_SERIALIZE_NUMPY)

    def _serialise_many(self, spec: HandlerSpec, results: list[Any]) -> bytes:
        return b"[" + b",".join(self._serialise(spec, result) for result in results) + b"]"

    def _handler_failed(self, name: str, exc: Exception, request_id: bytes | None = None) -> HandlerFailed:
        if isinstance(exc, HandlerFailed):
            return exc
        error_id = uuid.uuid4().hex[:12]
        log.error(
            "handler %s failed error_id=%s request_id=%s: %s: %s",
            name, error_id, (request_id or b"-").decode(), type(exc).__name__, exc, exc_info=exc,
        )
        return HandlerFailed(f"handler {name!r} raised {type(exc).__name__}: {exc}", error_id)

    # --- built-in routes ----------------------------------------------------
    def _builtin(self, name: str, request: Request, extra: bytes) -> bytes:
        route: Callable[[bytes], bytes] | None = {
            "healthz": self._healthz,
            "readyz": self._readyz,
            "metrics": self._metrics,
            "openapi.json": self._openapi_json,
        }.get(name)
        if route is not None:
            if request.method == b"GET":
                return route(extra)
            err: RequestError = MethodNotAllowed(f"/{name} only answers GET")
            return json_response(err.status, err.to_json(), extra_headers=extra + b"allow: GET, HEAD\r\n")
        err = UnknownHandler(
            f"no handler {name!r}; this service has: {', '.join(self._handlers_list)}",
            handlers=self._handlers_list,
        )
        return json_response(err.status, err.to_json(), extra_headers=extra)

    @property
    def serving(self) -> bool:
        """In rotation: set up, not draining, and able to take calls."""
        return self.ready and not self.draining and not self.stuck and not self.workers_exhausted

    def stats(self) -> dict[str, Any]:
        now = asyncio.get_running_loop().time()
        return {"replica": self.replica_id, "ready": self.serving, "draining": self.draining,
                "inflight": self.inflight, "requests": self.requests, "errors": self.errors,
                "handler_seconds": round(self.handler_seconds, 6),
                "handler_timeouts": list(self.timeouts), **self._workers.stats(now)}

    def health_problem(self) -> str | None:
        """Why this replica is not alive and well (None: it is)."""
        problem = self.replace_reason if self.stuck else None
        if problem is None:
            try:
                healthy = bool(self.service.health())
                problem = None if healthy else "health() returned False"
            except Exception as exc:  # a broken health check is an unhealthy replica
                problem = f"health() raised {type(exc).__name__}: {exc}"
        return problem

    def _healthz(self, extra: bytes = b"") -> bytes:
        problem = self.health_problem()
        body = {"status": "ok" if problem is None else "unhealthy", **self.stats()}
        if problem is not None:
            body["problem"] = problem
        if self.replace_reason is not None:
            body["replace_reason"] = self.replace_reason
        return json_response(200 if problem is None else 503, body, extra_headers=extra)

    def _readyz(self, extra: bytes = b"") -> bytes:
        ok = self.serving
        return json_response(200 if ok else 503, {"ready": ok, **self.stats()}, extra_headers=extra)

    def metrics_response(self, extra: bytes = b"") -> bytes:
        return self._metrics(extra)

    def _metrics(self, extra: bytes = b"") -> bytes:
        self.metrics.set_inflight(self.inflight)
        return response(200, self.metrics.exposition(), content_type=CONTENT_TYPE,
                        extra_headers=extra)

    def _openapi_json(self, extra: bytes = b"") -> bytes:
        if self._openapi is None:
            self._openapi = orjson.dumps(openapi_document(self.service_name, self.specs))
        return response(200, self._openapi, extra_headers=extra)


def _call_reading_files(method: Callable[..., Any], kwargs: dict[str, Any], spec: HandlerSpec) -> Any:
    """A sync handler's call on its worker; an open file it returns is read there too."""
    result = method(**kwargs)
    return read_file_like(result, spec.media_type) if is_readable(result) else result


def _deadline(request: Request) -> float | None:
    """The call's deadline (``time.monotonic()``), from the time the gateway says is left."""
    left_s = request.timeout_s()
    return None if left_s is None else time.monotonic() + left_s
