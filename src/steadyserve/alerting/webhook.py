"""Alertmanager's JSON shapes, built from alert states (pure).

- ``webhook_payload``: what Alertmanager POSTs to a webhook receiver (``version: "4"``), so a
  receiver written for Alertmanager takes our notifications unchanged;
- ``alertmanager_alerts``: the body of Alertmanager's own ``POST /api/v2/alerts``, so that an
  Alertmanager does the grouping, silencing and routing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from .evaluate import AlertState, Phase

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (FNV-1a 64 over sorted name, value pairs)."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + bytes([_SEPARATOR]):
                digest = ((digest ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def status_of(state: AlertState) -> str:
    return "firing" if state.phase in (Phase.FIRING, Phase.PENDING) else "resolved"


def webhook_alert(state: AlertState, generator_url: str = "") -> dict[str, Any]:
    labels = state.label_map
    return {
        "status": status_of(state),
        "labels": labels,
        "annotations": state.annotation_map,
        "startsAt": rfc3339(state.fired_at),
        "endsAt": rfc3339(state.resolved_at if state.phase == Phase.RESOLVED else None),
        "generatorURL": generator_url,
        "fingerprint": fingerprint(labels),
    }


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


def _group_key(group_labels: Mapping[str, str]) -> str:
    # As Alertmanager's root route writes it: "{}:{alertname=\"X\", deployment=\"d\"}".
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()))
    return f"{{}}:{{{inner}}}"


def webhook_payload(states: Sequence[AlertState], receiver: str, external_url: str = "",
                    group_by: Sequence[str] = ("alertname", "deployment")) -> dict[str, Any]:
    """One notification of Alertmanager's webhook format about ``states`` (one group)."""
    alerts = [webhook_alert(state, generator_url(external_url, state)) for state in states]
    labels = [a["labels"] for a in alerts]
    common_labels = _common(labels)
    group_labels = {k: common_labels[k] for k in group_by if k in common_labels}
    return {
        "version": "4",
        "groupKey": _group_key(group_labels),
        "truncatedAlerts": 0,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
    }


def generator_url(external_url: str, state: AlertState) -> str:
    """Where the alert can be looked at: the control API's alert list, when its URL is known."""
    if not external_url:
        return ""
    return f"{external_url.rstrip('/')}/v1/alerts?deployment={state.deployment}"


def alertmanager_alerts(states: Sequence[AlertState], now: float, valid_for_s: float,
                        external_url: str = "") -> list[dict[str, Any]]:
    """The body of Alertmanager's ``POST /api/v2/alerts``.

    A firing alert is valid ``valid_for_s`` from ``now`` (it is sent again before then, as
    Prometheus does, or Alertmanager resolves it); a resolved one ends when it resolved."""
    body = []
    for state in states:
        firing = status_of(state) == "firing"
        alert: dict[str, Any] = {
            "labels": state.label_map,
            "annotations": state.annotation_map,
            "startsAt": rfc3339(state.fired_at if state.fired_at is not None else state.evaluated_at),
            "endsAt": rfc3339(now + valid_for_s if firing else state.resolved_at),
        }
        url = generator_url(external_url, state)
        if url:
            alert["generatorURL"] = url
        body.append(alert)
    return body
