"""Where notifications go: the platform-level ``notifications:`` of the spec file.

    notifications:
      webhooks:                           # Alertmanager's webhook JSON, firing and resolved
        - url: http://127.0.0.1:9000/hook
          name: oncall                    # "receiver" in the payload
      alertmanager_url: http://127.0.0.1:9093   # or let an Alertmanager route them (/api/v2/alerts)
      external_url: https://steady.example.com:8081   # links in notifications (the control API)

Deliveries retry with exponential backoff and jitter, off the controller's loop.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .model import Strict


def check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} must be an http:// or https:// URL with a host")
    if any(c.isspace() for c in value) or not value.isprintable():
        raise ValueError(f"{value!r} must not contain spaces or control characters")
    return value


class WebhookTarget(Strict):
    url: str = Field(description="receives Alertmanager's webhook JSON (POST)")
    name: str = Field(default="steady", min_length=1, max_length=100,
                      description="the receiver name in the payload")
    send_resolved: bool = True
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="one delivery attempt at most")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)


class NotificationSettings(Strict):
    webhooks: list[WebhookTarget] = Field(default=[], max_length=16)
    alertmanager_url: str | None = Field(
        default=None, description="an Alertmanager's base URL: alerts are POSTed to <url>/api/v2/alerts")
    alertmanager_timeout_s: float = Field(default=5.0, gt=0, le=60)
    external_url: str = Field(default="", description="where people can look: externalURL, generatorURL")
    max_attempts: int = Field(default=6, ge=1, le=100, description="delivery attempts per notification")
    backoff_initial_s: float = Field(default=0.5, gt=0, le=60)
    backoff_max_s: float = Field(default=30.0, gt=0, le=3600)
    queue_size: int = Field(default=1000, ge=1, le=100_000,
                            description="notifications waiting per target; beyond it the oldest is dropped")
    resend_interval_s: float = Field(
        default=60.0, gt=0, le=3600,
        description="firing alerts are sent to Alertmanager again this often (it resolves them otherwise)")

    @field_validator("alertmanager_url")
    @classmethod
    def _alertmanager_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, value: str) -> str:
        return value if value == "" else check_http_url(value)

    @model_validator(mode="after")
    def _backoff_ordered(self) -> NotificationSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(f"backoff_max_s ({self.backoff_max_s:g}) must be >= backoff_initial_s"
                             f" ({self.backoff_initial_s:g})")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks) or self.alertmanager_url is not None
