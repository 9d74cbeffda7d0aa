"""Request dispatch inside a replica: routes, validation, handler calls, errors."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from ..batching import Batcher, split_outputs
from ..errors import HandlerFailed, InvalidInput, MethodNotAllowed, RequestError, UnknownHandler
from ..service import HandlerSpec, Service
from ..wire.http11 import Request, json_response, response
from . import v2
from .metrics import ReplicaMetrics
from .openapi import openapi_document

log = logging.getLogger("steadyserve.replica")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: bytes = b""

DRAINING_HEADER = b"x-steady-draining: 1\r\n"


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "(body)",
            "problem": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False)
    ]


def _to_json_default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class ReplicaApp:
    def __init__(
        self,
        service: Service,
        specs: dict[str, HandlerSpec],
        *,
        replica_id: str,
        service_name: str,
        executor: Executor,
        metrics: ReplicaMetrics,
        batching: bool = True,
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
        self._executor = executor
        self._batching = batching
        self._replica_header = b"x-steady-replica: " + replica_id.encode() + b"\r\n"
        self._handlers_list = sorted(specs)
        self._batchers: dict[str, Batcher] = {}
        self._openapi: bytes | None = None
        self._v2_spec = next((s for s in specs.values() if s.options.v2), None)
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
                on_batch=self.metrics.batch_size.labels(name).observe,
                translate_error=functools.partial(self._handler_failed, name),
            )
            batcher.start()
            self._batchers[name] = batcher

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # --- entry point from the HTTP server -----------------------------------
    async def handle(self, request: Request) -> bytes:
        request_id = request.header(b"x-request-id") or uuid.uuid4().hex.encode()
        extra = b"x-request-id: " + request_id + b"\r\n" + self._replica_header
        path = request.path
        if path.startswith(b"/v2/"):
            return await self._v2(request, request_id, extra)
        name = path[1:].decode("utf-8", "replace")
        spec = self.specs.get(name)
        if spec is None:
            return self._builtin(name, request, extra)
        return await self._tracked(spec, request_id, extra, self._call(spec, request, request_id))

    async def _tracked(self, spec: HandlerSpec, request_id: bytes, extra: bytes,
                       call: Coroutine[Any, Any, Reply]) -> bytes:
        """Run one handler call with in-flight accounting, metrics and the draining check."""
        if self.draining or not self.ready:
            call.close()
            # Never executed: the gateway may retry it elsewhere, even if not idempotent.
            state = "draining" if self.draining else "not ready yet"
            return json_response(503, {"error": f"replica {self.replica_id} is {state}"},
                                 extra_headers=extra + DRAINING_HEADER)
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
        self.metrics.observe(spec.name, reply.status, time.perf_counter() - started)
        return response(reply.status, reply.body, content_type=reply.content_type,
                        extra_headers=extra + reply.headers)

    async def _call(self, spec: HandlerSpec, request: Request, request_id: bytes) -> Reply:
        try:
            kwargs = self._parse_input(spec, request)
            result = await self._invoke(spec, kwargs)
            return Reply(200, self._serialise(spec, result))
        except RequestError as err:
            return Reply(err.status, orjson.dumps(err.to_json()))
        except Exception as exc:  # user code: translated once, logged with an error id
            failed = self._handler_failed(spec.name, exc, request_id)
            return Reply(500, orjson.dumps({"error": str(failed), "error_id": failed.error_id}))

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
            return await self._tracked(spec, request_id, extra, self._v2_infer(model, spec, request, request_id))
        return json_response(404, {"error": f"no V2 route {request.path.decode(errors='replace')}"},
                             extra_headers=extra)

    async def _v2_infer(self, model: str, spec: HandlerSpec, request: Request, request_id: bytes) -> Reply:
        try:
            length = request.header(v2.HEADER_LENGTH)
            infer = v2.decode_request(request.body, int(length) if length else None,
                                      tuple(spec.input_model.model_fields))
            calls = []
            for i, row in enumerate(infer.rows):
                try:
                    calls.append(self._invoke(spec, spec.input_model.model_validate(row).__dict__))
                except ValidationError as exc:
                    for call in calls:
                        call.close()
                    raise InvalidInput(f"row {i} of the batch is invalid", fields=_field_errors(exc)) from exc
            results = await asyncio.gather(*calls)
            body, header_length = v2.encode_response(model, infer, [self._to_jsonable(spec, r) for r in results])
        except RequestError as err:
            return Reply(400, orjson.dumps(err.to_json()))  # the protocol answers bad requests with 400
        except Exception as exc:
            failed = self._handler_failed(spec.name, exc, request_id)
            return Reply(500, orjson.dumps({"error": str(failed), "error_id": failed.error_id}))
        if header_length is None:
            return Reply(200, body)
        return Reply(200, body, b"application/octet-stream",
                     b"inference-header-content-length: %d\r\n" % header_length)

    def _to_jsonable(self, spec: HandlerSpec, result: Any) -> Any:
        if spec.output_adapter is not None:
            return spec.output_adapter.dump_python(self._checked(spec, result), mode="json")
        return orjson.loads(self._serialise(spec, result))  # untyped: orjson knows numpy

    def _parse_input(self, spec: HandlerSpec, request: Request) -> dict[str, Any]:
        if request.method == b"GET":
            if not spec.allows_get:
                raise MethodNotAllowed(
                    f"handler {spec.name!r} has required arguments; use POST with a JSON body",
                    required=list(spec.required_params),
                )
            body = b"{}"
        elif request.method == b"POST":
            body = request.body or b"{}"
        else:
            raise MethodNotAllowed(f"method {request.method.decode()} not allowed; use POST")
        try:
            model = spec.input_model.model_validate_json(body)
        except ValidationError as exc:
            errors = _field_errors(exc)
            if errors and errors[0]["type"] == "json_invalid":
                raise InvalidInput(f"request body is not valid JSON: {errors[0]['problem']}") from exc
            raise InvalidInput(f"invalid input for handler {spec.name!r}", fields=errors) from exc
        return model.__dict__

    async def _invoke(self, spec: HandlerSpec, kwargs: dict[str, Any]) -> Any:
        batcher = self._batchers.get(spec.name)
        if batcher is not None:
            return await batcher.submit(kwargs)
        if spec.options.batch is not None:  # batching switched off: a batch of one
            columns = {k: [v] for k, v in kwargs.items()}
            self.metrics.batch_size.labels(spec.name).observe(1)
            outputs = await self._run_batch(spec, columns)
            return split_outputs(outputs, 1, spec.name)[0]
        method = getattr(self.service, spec.name)
        if spec.is_async:
            return await method(**kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(method, **kwargs))

    async def _run_batch(self, spec: HandlerSpec, columns: dict[str, list[Any]]) -> Any:
        method = getattr(self.service, spec.name)
        if spec.is_async:
            return await method(**columns)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(method, **columns))

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

    def _serialise(self, spec: HandlerSpec, result: Any) -> bytes:
        if spec.output_adapter is not None:
            return spec.output_adapter.dump_json(self._checked(spec, result))
        return orjson.dumps(result, default=_to_json_default, option=orjson.OPT_SERIALIZE_NUMPY)

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
        route: Callable[[], bytes] | None = {
            "healthz": self._healthz,
            "readyz": self._readyz,
            "metrics": self._metrics,
            "openapi.json": self._openapi_json,
        }.get(name)
        if route is not None:
            if request.method == b"GET":
                return route()
            err: RequestError = MethodNotAllowed(f"/{name} only answers GET")
            return json_response(err.status, err.to_json(), extra_headers=extra)
        err = UnknownHandler(
            f"no handler {name!r}; this service has: {', '.join(self._handlers_list)}",
            handlers=self._handlers_list,
        )
        return json_response(err.status, err.to_json(), extra_headers=extra)

    def stats(self) -> dict[str, Any]:
        return {"replica": self.replica_id, "ready": self.ready, "draining": self.draining,
                "inflight": self.inflight, "requests": self.requests, "errors": self.errors}

    def _healthz(self) -> bytes:
        try:
            healthy = bool(self.service.health())
            problem = None if healthy else "health() returned False"
        except Exception as exc:  # a broken health check is an unhealthy replica
            healthy, problem = False, f"health() raised {type(exc).__name__}: {exc}"
        body = {"status": "ok" if healthy else "unhealthy", **self.stats()}
        if problem:
            body["problem"] = problem
        return json_response(200 if healthy else 503, body)

    def _readyz(self) -> bytes:
        ok = self.ready and not self.draining
        return json_response(200 if ok else 503, {"ready": ok, **self.stats()})

    def _metrics(self) -> bytes:
        self.metrics.inflight.set(self.inflight)
        return response(200, self.metrics.exposition(), content_type=b"text/plain; version=0.0.4")

    def _openapi_json(self) -> bytes:
        if self._openapi is None:
            self._openapi = orjson.dumps(openapi_document(self.service_name, self.specs))
        return response(200, self._openapi)
