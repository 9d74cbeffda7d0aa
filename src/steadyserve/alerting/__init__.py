"""Alerting and SLOs: rules in the spec, evaluated over the controller's metrics history.

    spec (rulespec, slospec, notifyspec)  pydantic models the deployment spec embeds
      └─ rules.rules_for()                the effective rules of one deployment: built-ins,
           │                              the spec's own, SLO burn-rate rules (slo.py)
           ├─ expressions                 each expression: a value from History, and its PromQL
           ├─ evaluate.evaluate_all()     pure: history + rules + states + now -> states, transitions
           │    └─ engine.AlertEngine     the thin loop: store, events, notifications
           │         ├─ store.AlertStore      states and recent alerts in SQLite
           │         └─ notify.Notifier       webhooks / Alertmanager, retried off the caller's thread
           │              └─ webhook          Alertmanager's JSON shapes
           └─ export                      Prometheus rule file and promtool unit tests

Importing this package imports nothing: the spec models stay cheap to import (``rulespec``,
``slospec`` and ``notifyspec`` need only pydantic).
"""
