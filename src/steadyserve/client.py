"""``steadyserve.Client``: call deployments through the gateway.

    client = Client()                       # STEADY_URL (else http://127.0.0.1:8080) / STEADY_TOKEN
    client.call("digits", "predict", pixels=[...])
    client.digits.predict(pixels=[...])     # the same, attribute style
    client.my_svc.coef()                    # deployment "my-svc": names have hyphens, attributes underscores
    client.call_many("digits", "predict", [{"pixels": [...]}, {"pixels": [...]}])  # many calls, one request
    for token in client.stream("chat", "generate", prompt="Hi"):  # a generator handler's items, as they come
        print(token)
    client.call("images", "classify", image=open("seven.png", "rb"))  # bytes, files: sent as multipart

Idempotent calls are retried on retryable failures (503, 429, 502/504,
connection errors) with exponential backoff and full jitter, waiting at least
what ``Retry-After`` asks. Non-idempotent calls are retried only when the
failure proves the request was not executed (no connection, 503, 429).

For a gateway with a self-signed or private-CA certificate, ``Client(cacert="ca.pem")`` or
``$STEADY_CA_BUNDLE`` names the CA bundle to trust. A TLS failure (untrusted certificate, name
mismatch, http:// vs https://) is a ConfigError saying so, and is not retried: it would fail
the same way again.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from .client_streams import ItemDecoder, binary_answer, is_json, lines_of, multipart_parts, stream_format
from .errors import (
    ConfigError,
    ConnectionFailed,
    Forbidden,
    GatewayError,
    HandlerFailed,
    InvalidInput,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    RequestError,
    RetryableError,
    ServiceUnavailable,
    SteadyError,
    StreamInterrupted,
    Unauthorized,
    UnknownHandler,
)
from .trust import httpx_verify, tls_failure_message

DEFAULT_URL = "http://127.0.0.1:8080"  # where `steady serve` and `steady up` listen by default
DEFAULT_API_URL = "http://127.0.0.1:8081"  # `steady up`'s control API by default (`steady serve` picks a port)

_BY_STATUS: dict[int, type[RequestError]] = {
    401: Unauthorized, 403: Forbidden, 404: UnknownHandler, 405: MethodNotAllowed,
    413: PayloadTooLarge, 422: InvalidInput,
}


def retry_delay_s(attempt: int, retry_after_s: float | None, base_s: float, cap_s: float,
                  rng: random.Random) -> float:
    """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
    jittered = rng.uniform(0, min(cap_s, base_s * 2 ** attempt))
    return max(jittered, retry_after_s or 0.0)


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare here; fall back to our own backoff


def error_from_response(response: httpx.Response) -> SteadyError:
    """Translate an error response into the typed error tree."""
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:500]}
    if not isinstance(body, dict):
        body = {"error": str(body)}
    message = str(body.get("error") or f"HTTP {response.status_code}")
    details = {k: v for k, v in body.items() if k != "error"}
    status = response.status_code
    if status in _BY_STATUS:
        return _BY_STATUS[status](message, **details)
    if status == 429:
        return RateLimited(message, _retry_after(response.headers), **details)
    if status == 503:
        return ServiceUnavailable(message, _retry_after(response.headers), **details)
    if status in (502, 504):
        return GatewayError(message, _retry_after(response.headers), **details)
    if status == 500 and "error_id" in body:
        return HandlerFailed(message, str(body["error_id"]))
    if 400 <= status < 500:
        return RequestError(message, **details)
    return GatewayError(message, None, **details)


def _transport_error(exc: httpx.TransportError, url: str) -> SteadyError:
    """A failure short of an HTTP answer (TLS failures are told apart before this)."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ConnectionFailed(f"cannot connect to {url}: {exc}", before_sending=True)
    if isinstance(exc, httpx.TimeoutException):
        return GatewayError(f"no answer from {url} in time: {exc}")
    return ConnectionFailed(f"connection to {url} failed: {exc}")


def _path(deployment: str, handler: str) -> str:
    return f"/{deployment.replace('_', '-')}/{handler}"  # names never hold "_": my_svc serves as my-svc


def _body(inputs: Mapping[str, Any] | list[Any]) -> dict[str, Any]:
    """httpx keyword arguments for a call's inputs: JSON, or multipart when they hold uploads."""
    if isinstance(inputs, Mapping):
        parts = multipart_parts(inputs)
        if parts is not None:
            files, fields = parts
            return {"files": files, "data": fields}
    return {"json": inputs}


def decode_answer(response: httpx.Response) -> Any:
    """The decoded JSON; a whole SSE or NDJSON stream's items as a list; anything else as a ``File``."""
    content_type = response.headers.get("content-type", "application/json")
    if is_json(content_type):
        return response.json()
    fmt = stream_format(content_type)
    if fmt != "raw":
        decoder = ItemDecoder(fmt)
        items = [item for line in lines_of([response.text]) for item in decoder.feed(line)]
        return items + decoder.finish()
    return binary_answer(response.content, response.headers)


def _never_executed(error: SteadyError) -> bool:
    return isinstance(error, (ServiceUnavailable, RateLimited)) or (
        isinstance(error, ConnectionFailed) and bool(error.details.get("before_sending")))


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        api_url: str | None = None,
        max_retries: int = 3,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        cacert: str | os.PathLike[str] | None = None,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        url = url or os.environ.get("STEADY_URL")
        self._url_hint = "" if url else " (the default gateway address: pass Client(url=...) or set STEADY_URL)"
        url = url or DEFAULT_URL
        token = token or os.environ.get("STEADY_TOKEN")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        api_url = api_url or os.environ.get("STEADY_API_URL")
        self._api_url_hint = "" if api_url else (
            " (the default control API address of `steady up`: pass Client(api_url=...) or set STEADY_API_URL)")
        self.api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self.max_retries = max_retries
        self._backoff = (backoff_base_s, backoff_max_s)
        self._sleep = sleep
        self._rng = rng or random.Random()
        if isinstance(verify, str):  # the older spelling of cacert=
            if cacert is not None:
                raise ConfigError("pass the CA bundle as cacert= only, not also as verify=")
            cacert = verify
        # cacert > $STEADY_CA_BUNDLE > the default store; verify=False turns checking off.
        self._cacert = cacert
        tls = httpx_verify(cacert) if verify is not False else False
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport,
                                  verify=tls)

    def call(self, deployment: str, handler: str, /, **inputs: Any) -> Any:
        """Call an idempotent handler with keyword inputs; returns the decoded JSON (a ``File`` for an
        answer that is not JSON, such as an image). Inputs that are bytes, ``File`` or open files go
        as ``multipart/form-data`` uploads."""
        return self.request(deployment, handler, inputs)

    def stream(self, deployment: str, handler: str, /, *, idempotent: bool = True, timeout_s: float | None = None,
               **inputs: Any) -> Iterator[Any]:
        """Call a generator handler; yields its items as they arrive (decoded JSON, or bytes for a
        raw stream). Retried like ``call`` only until the first item; a stream that breaks off
        later raises ``StreamInterrupted`` (or ``HandlerFailed`` if the handler raised)."""
        path = _path(deployment, handler)
        attempt = 0
        while True:
            try:
                yield from self._stream_once(path, inputs, timeout_s)
                return
            except RetryableError as error:
                if attempt >= self.max_retries or not (idempotent or _never_executed(error)):
                    raise
                self._sleep(retry_delay_s(attempt, error.retry_after_s, *self._backoff, self._rng))
                attempt += 1

    def _stream_once(self, path: str, inputs: dict[str, Any], timeout_s: float | None) -> Iterator[Any]:
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
        items = 0
        try:
            with self._http.stream("POST", path, timeout=timeout, **_body(inputs)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                content_type = response.headers.get("content-type", "")
                fmt = stream_format(content_type)
                if is_json(content_type):  # a handler that answers in one piece: its answer is the one item
                    response.read()
                    yield response.json()
                    return
                if fmt == "raw":
                    for data in response.iter_bytes():
                        items += 1
                        yield data
                    return
                decoder = ItemDecoder(fmt)
                for line in lines_of(response.iter_text()):
                    for item in decoder.feed(line):
                        items += 1
                        yield item
                for item in decoder.finish():
                    items += 1
                    yield item
        except httpx.TransportError as exc:
            if items == 0:
                self._raise_if_tls(exc, self.url)
                raise _transport_error(exc, self.url + self._url_hint) from exc
            raise StreamInterrupted(f"the stream from {self.url} broke off after {items} items: {exc}",
                                    items=items) from exc

    def call_many(self, deployment: str, handler: str, calls: Sequence[Mapping[str, Any]], /, *,
                  idempotent: bool = True, timeout_s: float | None = None) -> list[Any]:
        """Many calls of a batched handler in one request; returns their outputs, in order.

        Each element is one call's inputs (one item of each list parameter of the handler);
        a request may carry up to the handler's ``Batch(max_size)`` calls (more is
        ``PayloadTooLarge``). It is retried as a whole, as ``request`` retries one call.
        """
        if isinstance(calls, Mapping):
            raise TypeError("call_many takes a list of calls, a dict of inputs each; for one call use call()")
        elements: list[Any] = list(calls)
        for i, call in enumerate(elements):
            if not isinstance(call, Mapping):
                raise TypeError(f"call_many: element {i} is a {type(call).__name__}, not a dict of one call's inputs")
        body = [dict(call) for call in elements]
        if not body:
            return []
        return list(self.request(deployment, handler, body, idempotent=idempotent, timeout_s=timeout_s))

    def request(self, deployment: str, handler: str,
                inputs: dict[str, Any] | list[dict[str, Any]] | None = None, *,
                idempotent: bool = True, timeout_s: float | None = None) -> Any:
        """One call (a dict of inputs), or for a batched handler a list of calls in one request."""
        path = _path(deployment, handler)
        attempt = 0
        while True:
            try:
                return self._once(path, {} if inputs is None else inputs, timeout_s)
            except RetryableError as error:
                if attempt >= self.max_retries or not (idempotent or _never_executed(error)):
                    raise
                self._sleep(retry_delay_s(attempt, error.retry_after_s, *self._backoff, self._rng))
                attempt += 1

    def _once(self, path: str, inputs: dict[str, Any] | list[dict[str, Any]], timeout_s: float | None) -> Any:
        timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
        try:
            response = self._http.post(path, timeout=timeout, **_body(inputs))
        except httpx.TransportError as exc:
            self._raise_if_tls(exc, self.url)
            raise _transport_error(exc, self.url + self._url_hint) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return decode_answer(response)

    def _raise_if_tls(self, exc: httpx.TransportError, url: str) -> None:
        message = tls_failure_message(exc, url, self._cacert, option="Client(cacert=...)")
        if message is not None:
            raise ConfigError(message) from exc

    # --- management: mirrors the control API (needs api_url / STEADY_API_URL) --------------
    def _manage(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, f"{self.api_url}{path}", json=body)
        except httpx.TransportError as exc:
            self._raise_if_tls(exc, self.api_url)
            raise ConnectionFailed(f"cannot reach the control API at {self.api_url}{self._api_url_hint}: {exc}") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response.json()


    def deployments(self) -> list[dict[str, Any]]:
        return list(self._manage("GET", "/v1/deployments"))

    def get_deployment(self, name: str) -> dict[str, Any]:
        return dict(self._manage("GET", f"/v1/deployments/{name}"))

    def deploy(self, name: str, spec: dict[str, Any], replicas: int | None = None) -> dict[str, Any]:
        """Create, or update with a rolling update; ``spec`` is a deployment of steady.yaml."""
        return dict(self._manage("PUT", f"/v1/deployments/{name}", {"spec": spec, "replicas": replicas}))

    def scale(self, name: str, replicas: int) -> dict[str, Any]:
        return dict(self._manage("POST", f"/v1/deployments/{name}/scale", {"replicas": replicas}))

    def rollback(self, name: str, to_revision: int | None = None) -> dict[str, Any]:
        return dict(self._manage("POST", f"/v1/deployments/{name}/rollback", {"to_revision": to_revision}))

    def delete(self, name: str) -> None:
        self._manage("DELETE", f"/v1/deployments/{name}")

    def revisions(self, name: str) -> list[dict[str, Any]]:
        return list(self._manage("GET", f"/v1/deployments/{name}/revisions"))

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._manage("GET", f"/v1/events?limit={limit}"))

    def __getattr__(self, deployment: str) -> _Deployment:
        if deployment.startswith("_"):
            raise AttributeError(deployment)
        # Deployment names never hold "_" (a folder my_svc serves as my-svc); attributes cannot hold "-".
        return _Deployment(self, deployment.replace("_", "-"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Deployment:
    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self._name = name

    def __getattr__(self, handler: str) -> Callable[..., Any]:
        if handler.startswith("_"):
            raise AttributeError(handler)

        def call(**inputs: Any) -> Any:
            return self._client.request(self._name, handler, inputs)

        return call
