"""Where a gateway learns its routing table and its replicas: one pluggable source.

- ``file`` (``TableFile``): the routing table the controller writes next to its state; a
  gateway on the controller's machine (local and Ray backends).
- ``controller``: the same table read from the control API (``GET /v1/routes``, an admin
  token in ``STEADY_TOKEN``): a gateway on another machine than its controller.
- ``dns``: on Kubernetes. The table's deployments and settings come from a file (a
  ConfigMap that `steady export kubernetes` writes); each deployment's replicas are the
  addresses its headless Service resolves to (Kubernetes lists only ready pods there),
  each called with the deployment's credential (``STEADY_REPLICA_KEY_<DEPLOYMENT>``); the
  tokens callers may use from a second file (a Secret of token digests, never tokens).

Every source answers ``poll()`` at once with a new table or None; the network ones fetch
on a thread of their own, so a slow DNS server or controller never stalls a call.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import httpx

from .routes import ReplicaRoute, RoutingTable, TableFile, TokenRoute

log = logging.getLogger("steadyserve.gateway")


class RouteSource(Protocol):
    def poll(self) -> RoutingTable | None:
        """The table if it changed since the last call, else None (never blocks)."""
        ...

    def close(self) -> None: ...


class Lookup(Exception):
    """A name could not be resolved for now (keep what was known)."""


MAX_TABLE_BYTES = 64 << 20  # a routing table from the controller; more is not one
Resolve = Callable[[str], list[str]]  # host name -> its addresses; raises Lookup on a passing failure


def resolve_host(host: str) -> list[str]:
    """The IPv4/IPv6 addresses of ``host``; none when the name does not exist (a Service with no ready pod)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return []
        raise Lookup(f"{host}: {exc.strerror}") from exc
    return sorted({str(info[4][0]) for info in infos})


def credential_env(deployment: str) -> str:
    return "STEADY_REPLICA_KEY_" + deployment.upper().replace("-", "_")


def dns_table(template: RoutingTable, addresses: Mapping[str, Sequence[str]], port: int,
              credentials: Mapping[str, str | None], version: int) -> RoutingTable:
    """``template`` with each deployment's replicas at ``addresses`` (pure)."""
    services = {}
    for name, route in template.services.items():
        replicas = tuple(
            ReplicaRoute(id=address.replace(".", "-").replace(":", "-"), generation=0,
                         endpoint=f"tcp:{address}:{port}" if ":" not in address else f"tcp:[{address}]:{port}",
                         credential=credentials.get(name))
            for address in sorted(addresses.get(name, ())))
        services[name] = route.model_copy(update={"replicas": replicas})
    return template.model_copy(update={"services": services, "version": version})


class _Polling(ABC):
    """Fetches a table on its own thread every ``interval_s``; ``poll`` hands over each new one."""

    def __init__(self, interval_s: float, what: str) -> None:
        self.interval_s = interval_s
        self.what = what
        self._latest: RoutingTable | None = None
        self._handed: RoutingTable | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failing: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"routes-{what}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @abstractmethod
    def fetch(self) -> RoutingTable | None:
        """The current table (None: none yet); raises to keep the previous one."""

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                table = self.fetch()
            except Exception as exc:  # noqa: BLE001 - keep serving with what was known, say so once
                message = f"{type(exc).__name__}: {exc}"
                if message != self._failing:
                    log.error("routes from %s: %s; keeping the previous table", self.what, message)
                    self._failing = message
            else:
                self._failing = None
                if table is not None:
                    with self._lock:
                        self._latest = table
            self._stop.wait(self.interval_s)

    def poll(self) -> RoutingTable | None:
        with self._lock:
            if self._latest is None or self._latest == self._handed:
                return None
            self._handed = self._latest
            return self._latest

    def close(self) -> None:
        self._stop.set()


class ControllerSource(_Polling):
    def __init__(self, api_url: str, token: str | None, interval_s: float = 0.5,
                 verify: str | bool = True) -> None:
        super().__init__(interval_s, "controller")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll
        self._client = httpx.Client(base_url=api_url.rstrip("/"), timeout=5.0, verify=verify,
                                    headers={"authorization": f"Bearer {token}"} if token else {})

    def fetch(self) -> RoutingTable | None:
        with self._client.stream("GET", "/v1/routes") as response:
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece
                if len(body) > MAX_TABLE_BYTES:
                    raise RuntimeError(f"GET /v1/routes answered more than {MAX_TABLE_BYTES >> 20} MiB")
        if response.status_code != 200:
            raise RuntimeError(f"GET /v1/routes answered {response.status_code}: {bytes(body[:200])!r}")
        return RoutingTable.model_validate_json(bytes(body))

    def close(self) -> None:
        super().close()
        self._client.close()


class DnsSource(_Polling):
    def __init__(self, template: TableFile, port: int, host_of: Callable[[str], str],
                 credential_of: Callable[[str], str | None] = lambda name: os.environ.get(credential_env(name)),
                 resolve: Resolve = resolve_host, interval_s: float = 2.0, tokens_file: Path | None = None) -> None:
        super().__init__(interval_s, "dns")
        self._template_file = template
        self._tokens_file = tokens_file
        self._template: RoutingTable | None = None
        self._port = port
        self._host_of = host_of
        self._credential_of = credential_of
        self._warned: set[str] = set()
        self._resolve = resolve
        self._known: dict[str, list[str]] = {}
        self._version = 0
        self._last: RoutingTable | None = None

    def fetch(self) -> RoutingTable | None:
        template = self._template_file.poll() or self._template
        if template is None:
            return None
        if self._tokens_file is not None:
            template = template.model_copy(update={"tokens": read_tokens(self._tokens_file)})
        for name in template.services:
            try:
                self._known[name] = self._resolve(self._host_of(name))
            except Lookup as exc:  # a passing failure: the replicas known stay
                log.warning("routes from dns: %s; keeping %d known replicas of %s", exc,
                            len(self._known.get(name, [])), name)
        credentials = {name: self._credential_of(name) for name in template.services}
        for name in sorted(n for n, key in credentials.items() if key is None and n not in self._warned):
            self._warned.add(name)
            log.warning("no %s in this gateway's environment: the replicas of %s will refuse its calls (401)",
                        credential_env(name), name)
        if self._last is None or dns_table(template, self._known, self._port, credentials,
                                           self._version) != self._last:
            self._version += 1
            self._last = dns_table(template, self._known, self._port, credentials, self._version)
        self._template = template
        return self._last


def read_tokens(path: Path) -> dict[str, TokenRoute]:
    """``{token id: {name, role, digest, ...}}``; a file that is missing or unusable raises (keep the last table)."""
    raw = json.loads(path.read_bytes())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object of tokens by id")
    return {str(token_id): TokenRoute.model_validate(token) for token_id, token in raw.items()}
