"""Delivers notifications off the caller's thread: a bounded queue and a worker per target.

    notifier = Notifier.from_settings(settings, on_outcome=report)
    notifier.notify(evaluation.transitions, now)     # O(alerts): builds the JSON, enqueues, returns
    notifier.refresh(evaluation.firing, now)         # Alertmanager only: keep firing alerts alive
    notifier.close(timeout_s=2.0)

Each target (a webhook URL, an Alertmanager) has its own FIFO queue and thread, so a dead
receiver delays nobody else and one receiver gets firing before resolved. A failed attempt
(transport error, timeout, 408/425/429, 5xx) is retried after an exponential backoff with
jitter, at least the receiver's ``Retry-After``; other 4xx are not (the receiver rejects the
payload itself). A full queue drops its oldest notification, counted and logged. Every
outcome, drops included, goes to ``on_outcome``: called on a worker thread (or, for a drop,
the caller's), so hand it to your loop (``loop.call_soon_threadsafe``).

No credentials are sent anywhere: URLs are reported with their user info and query removed.
"""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from .. import __version__
from .evaluate import AlertState, Phase
from .notifyspec import NotificationSettings
from .webhook import alertmanager_alerts, webhook_payload

log = logging.getLogger(__name__)

TargetKind = Literal["webhook", "alertmanager"]
Verdict = Literal["delivered", "retry", "give_up"]
ALERTMANAGER_PATH = "/api/v2/alerts"
_RETRYABLE = frozenset({408, 425, 429})


# --- decisions (pure) ----------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_s: float = 0.5
    max_s: float = 30.0


def backoff_s(failed_attempts: int, policy: RetryPolicy, unit_random: float,
              retry_after_s: float | None = None) -> float:
    """The wait after ``failed_attempts`` failures: half of ``initial * 2**(n-1)`` (capped) plus a
    random other half ("equal jitter": it grows, and receivers are not hit in step), at least
    the receiver's Retry-After, at most ``max_s``."""
    ceiling = min(policy.max_s, policy.initial_s * 2.0 ** max(0, failed_attempts - 1))
    wait_s = ceiling / 2 + ceiling / 2 * unit_random
    if retry_after_s is not None:
        wait_s = max(wait_s, retry_after_s)
    return min(wait_s, policy.max_s)


def judge(status: int | None) -> Verdict:
    """What an attempt's answer means; None: no answer (connection failed, timed out)."""
    if status is None or status in _RETRYABLE or status >= 500:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    return "give_up"


def retry_after_s(header: str | None) -> float | None:
    """``Retry-After`` in seconds (its date form is ignored: receivers of webhooks send seconds)."""
    if header is None:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def redact_url(url: str) -> str:
    """``url`` without user info, query or fragment: fit for events and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --- messages -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    kind: TargetKind
    url: str  # what is POSTed to
    name: str = "steady"  # the webhook receiver's name in the payload
    timeout_s: float = 5.0
    send_resolved: bool = True

    @property
    def shown(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class Delivery:
    target: Target
    body: bytes
    about: str  # "firing digits/SteadyHighErrorRatio, ...": what the outcome names
    keys: tuple[str, ...] = ()  # the alerts' keys ("<deployment>/<alertname>")


@dataclass(frozen=True)
class DeliveryOutcome:
    target: str  # the redacted URL
    kind: TargetKind
    about: str
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None
    dropped: bool = False  # never attempted: the queue was full, or the notifier closed
    keys: tuple[str, ...] = ()  # the alerts it was about: "<deployment>/<alertname>"

    @property
    def deployment(self) -> str:
        """The deployment all its alerts are of ("" if several): for an event's deployment."""
        found = {key.split("/", 1)[0] for key in self.keys}
        return found.pop() if len(found) == 1 else ""

    def describe(self) -> str:
        if self.delivered:
            return f"{self.about} delivered to {self.target} ({self.attempts} attempt(s))"
        why = self.error or (f"HTTP {self.status}" if self.status is not None else "not attempted")
        return f"{self.about} not delivered to {self.target} after {self.attempts} attempt(s): {why}"


OnOutcome = Callable[[DeliveryOutcome], None]


def _about(states: Sequence[AlertState]) -> str:
    return ", ".join(f"{'firing' if s.phase in (Phase.FIRING, Phase.PENDING) else 'resolved'} {s.key}"
                     for s in states)


# --- one worker per target ---------------------------------------------------------------------
class _Worker:
    def __init__(self, target: Target, policy: RetryPolicy, queue_size: int, report: OnOutcome,
                 transport: httpx.BaseTransport | None, unit_random: Callable[[], float]) -> None:
        self.target = target
        self._policy = policy
        self._queue: deque[Delivery] = deque()
        self._queue_size = queue_size
        self._report = report
        self._transport = transport
        self._random = unit_random
        self._cond = threading.Condition()
        self._closing = False
        self._abort = threading.Event()
        self._busy = False
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name=f"notify-{target.kind}", daemon=True)
        self.thread.start()

    def put(self, delivery: Delivery) -> Delivery | None:
        """Enqueue; the oldest delivery it pushed out of a full queue, if any. Never waits."""
        with self._cond:
            if self._closing:
                return delivery
            dropped = self._queue.popleft() if len(self._queue) >= self._queue_size else None
            self._queue.append(delivery)
            if dropped is not None:
                self.dropped += 1
            self._cond.notify()
        return dropped

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def abort(self) -> list[Delivery]:
        """Stop now: waits between retries end, queued deliveries are handed back."""
        self._abort.set()
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            self._closing = True
            self._cond.notify_all()
        return left

    def _run(self) -> None:
        headers = {"content-type": "application/json", "user-agent": f"steadyserve/{__version__}"}
        with httpx.Client(transport=self._transport, timeout=self.target.timeout_s, headers=headers,
                          follow_redirects=False, trust_env=False) as client:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        return
                    delivery = self._queue.popleft()
                    self._busy = True
                try:
                    self._report(self._deliver(client, delivery))
                except Exception:  # noqa: BLE001 - a failing report must not end the worker
                    log.exception("notification outcome report failed")
                finally:
                    with self._cond:
                        self._busy = False

    def _deliver(self, client: httpx.Client, delivery: Delivery) -> DeliveryOutcome:
        status: int | None = None
        error: str | None = None
        attempts = 0
        while True:
            attempts += 1
            hint: float | None = None
            try:
                response = client.post(self.target.url, content=delivery.body)
                status, error = response.status_code, None
                hint = retry_after_s(response.headers.get("retry-after"))
            except httpx.HTTPError as exc:  # the one boundary: httpx's errors become an outcome
                status, error = None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            verdict = judge(status)
            if verdict == "delivered":
                return DeliveryOutcome(self.target.shown, self.target.kind, delivery.about, True, attempts, status,
                                       keys=delivery.keys)
            if verdict == "give_up" or attempts >= self._policy.max_attempts:
                break
            wait_s = backoff_s(attempts, self._policy, self._random(), hint)
            log.debug("notification to %s failed (%s); retry in %.2fs", self.target.shown, error or status, wait_s)
            if self._abort.wait(wait_s):
                error = (error or f"HTTP {status}") + "; given up: the notifier closed"
                break
        outcome = DeliveryOutcome(self.target.shown, self.target.kind, delivery.about, False, attempts, status, error,
                                  keys=delivery.keys)
        log.warning("%s", outcome.describe())
        return outcome


# --- the notifier ---------------------------------------------------------------------------
class Notifier:
    def __init__(self, targets: Sequence[Target], policy: RetryPolicy = RetryPolicy(), queue_size: int = 1000,
                 on_outcome: OnOutcome | None = None, external_url: str = "", alert_valid_for_s: float = 240.0,
                 transport: httpx.BaseTransport | None = None,
                 unit_random: Callable[[], float] = _random.random) -> None:
        """``alert_valid_for_s``: how long Alertmanager keeps a firing alert without hearing of it
        again (``refresh`` must come more often; Prometheus uses 4 times its resend interval)."""
        self.external_url = external_url
        self.alert_valid_for_s = alert_valid_for_s
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._workers = [_Worker(t, policy, queue_size, self._safe_report, transport, unit_random) for t in targets]
        self._closed = False

    @classmethod
    def from_settings(cls, settings: NotificationSettings, on_outcome: OnOutcome | None = None,
                      transport: httpx.BaseTransport | None = None) -> Notifier:
        targets = [Target("webhook", w.url, w.name, w.timeout_s, w.send_resolved) for w in settings.webhooks]
        if settings.alertmanager_url is not None:
            targets.append(Target("alertmanager", settings.alertmanager_url.rstrip("/") + ALERTMANAGER_PATH,
                                  timeout_s=settings.alertmanager_timeout_s))
        policy = RetryPolicy(settings.max_attempts, settings.backoff_initial_s, settings.backoff_max_s)
        return cls(targets, policy, settings.queue_size, on_outcome, settings.external_url,
                   4 * settings.resend_interval_s, transport)

    @property
    def targets(self) -> list[Target]:
        return [w.target for w in self._workers]

    @property
    def dropped(self) -> int:
        return sum(w.dropped for w in self._workers)

    def pending(self) -> int:
        return sum(w.pending() for w in self._workers)

    def idle(self) -> bool:
        return all(w.idle() for w in self._workers)

    def notify(self, transitions: Sequence[AlertState], now: float) -> None:
        """Queue notifications of alerts that fired or resolved; returns at once."""
        if not transitions or self._closed:
            return
        for worker in self._workers:
            target = worker.target
            if target.kind == "alertmanager":
                self._put(worker, transitions, alertmanager_alerts(transitions, now, self.alert_valid_for_s,
                                                                   self.external_url))
                continue
            for state in transitions:
                if state.phase == Phase.RESOLVED and not target.send_resolved:
                    continue
                self._put(worker, [state], webhook_payload([state], target.name, self.external_url))

    def refresh(self, firing: Sequence[AlertState], now: float) -> None:
        """Send Alertmanager the alerts still firing, before their endsAt passes."""
        if not firing or self._closed:
            return
        body = alertmanager_alerts(firing, now, self.alert_valid_for_s, self.external_url)
        for worker in self._workers:
            if worker.target.kind == "alertmanager":
                self._put(worker, firing, body)

    def _put(self, worker: _Worker, states: Sequence[AlertState], payload: object) -> None:
        pushed_out = worker.put(Delivery(worker.target, orjson.dumps(payload), _about(states),
                                         tuple(s.key for s in states)))
        if pushed_out is not None:
            log.warning("notification queue of %s full (%d dropped so far): dropped %s", worker.target.shown,
                        worker.dropped, pushed_out.about)
            self._safe_report(DeliveryOutcome(worker.target.shown, worker.target.kind, pushed_out.about, False, 0,
                                              error="dropped: the queue was full", dropped=True,
                                              keys=pushed_out.keys))

    def _safe_report(self, outcome: DeliveryOutcome) -> None:
        try:
            self._on_outcome(outcome)
        except Exception:  # noqa: BLE001 - the caller's callback must not break delivery
            log.exception("on_outcome failed for %s", outcome.describe())

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop taking notifications; deliver what is queued for up to ``timeout_s``, then give up
        on the rest (reported as dropped) and stop the workers."""
        self._closed = True
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.close()
        for worker in self._workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        for worker in self._workers:
            for left in worker.abort():
                self._safe_report(DeliveryOutcome(worker.target.shown, worker.target.kind, left.about, False, 0,
                                                  error="dropped: the notifier closed", dropped=True,
                                                  keys=left.keys))
        for worker in self._workers:
            worker.thread.join(worker.target.timeout_s + 1.0)
