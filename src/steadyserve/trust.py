"""Trust for the operator's tools: which CAs the CLI and the SDK trust, and what a TLS failure means.

    verify = httpx_verify(cacert)          # --cacert FILE > $STEADY_CA_BUNDLE > the default store
    try:
        response = httpx.post(url, json=body, verify=verify)
    except httpx.HTTPError as exc:
        message = tls_failure_message(exc, url, cacert)   # None: not a TLS problem
        fail(message or f"cannot reach {url}: {exc}")

A CA bundle is a PEM file holding the server's certificate (self-signed) or the CA that signed
it; like curl's ``--cacert`` it replaces the default store rather than adding to it. Without one,
httpx's default applies: ``$SSL_CERT_FILE`` / ``$SSL_CERT_DIR`` when set, else certifi's bundle.

A TLS failure is recognised in the exception chain (httpx, urllib and ssl all keep the
``ssl.SSLError`` there), classified by :func:`classify` (pure), and worded by
:func:`tls_failure_message`. The one case without an ``ssl.SSLError`` -- plain ``http://`` sent
to a TLS port, which the server just drops -- is confirmed by :func:`speaks_tls`, a TLS
handshake probe made only after such a failure.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx

from .errors import ConfigError

CA_BUNDLE_ENV = "STEADY_CA_BUNDLE"
PROBE_TIMEOUT_S = 2.0

# OpenSSL X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code) we word specifically.
_NOT_YET_VALID, _EXPIRED = 9, 10
_NAME_MISMATCH = {62, 63, 64}  # hostname, e-mail, IP address
# OpenSSL reasons meaning "what came back is not TLS": an http:// server answered a ClientHello.
_NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                    "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST"}

FailureKind = Literal["untrusted", "expired", "not_yet_valid", "name_mismatch", "not_tls", "expects_tls",
                      "handshake"]


@dataclass(frozen=True)
class CaBundle:
    """The CA bundle in force and where it was named; ``path=None`` means the default store."""

    path: Path | None
    source: str  # "--cacert", "$STEADY_CA_BUNDLE", or "" for the default store

    def describe(self) -> str:
        return f"the CA bundle {self.path} (from {self.source})" if self.path else "the default CA store"


@dataclass(frozen=True)
class TlsFailure:
    kind: FailureKind
    detail: str  # what OpenSSL said, e.g. "self-signed certificate"


def resolve_ca_bundle(cacert: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None,
                      *, explicit_source: str = "--cacert") -> CaBundle:
    """The explicit argument, else $STEADY_CA_BUNDLE, else the default store."""
    if cacert is not None and str(cacert):
        return CaBundle(Path(cacert), explicit_source)
    from_env = (os.environ if environ is None else environ).get(CA_BUNDLE_ENV, "")
    return CaBundle(Path(from_env), f"${CA_BUNDLE_ENV}") if from_env else CaBundle(None, "")


def ssl_context(bundle: CaBundle) -> ssl.SSLContext | Literal[True]:
    """A verifying context trusting ``bundle`` only; ``True`` (httpx's default) without one."""
    if bundle.path is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(bundle.path))
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise ConfigError(f"{bundle.source} {bundle.path} holds no usable PEM certificate:"
                          f" {exc.reason or exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{bundle.source} {bundle.path}: cannot read it ({exc.strerror or exc})") from exc


def httpx_verify(cacert: str | os.PathLike[str] | None = None) -> ssl.SSLContext | Literal[True]:
    """The ``verify=`` value for httpx; raises ConfigError for an unreadable bundle."""
    return ssl_context(resolve_ca_bundle(cacert))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        reason = getattr(current, "reason", None)  # urllib.error.URLError keeps the cause here
        current = reason if isinstance(reason, BaseException) else current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException) -> TlsFailure | None:
    """What went wrong in TLS, from the exception chain alone; None when no ssl error is in it."""
    for error in _chain(exc):
        if isinstance(error, ssl.SSLCertVerificationError):
            detail = str(error.verify_message or error.reason or error)
            code = error.verify_code
            if code in _NAME_MISMATCH:
                return TlsFailure("name_mismatch", detail)
            if code == _EXPIRED:
                return TlsFailure("expired", detail)
            if code == _NOT_YET_VALID:
                return TlsFailure("not_yet_valid", detail)
            return TlsFailure("untrusted", detail)
        if isinstance(error, ssl.SSLError):
            reason = str(error.reason or "")
            kind: FailureKind = "not_tls" if reason in _NOT_TLS_REASONS else "handshake"
            return TlsFailure(kind, reason.lower().replace("_", " ") or str(error))
    return None


def _dropped_early(exc: BaseException) -> bool:
    """The connection was closed or reset before an HTTP answer: what a TLS port does to plain HTTP."""
    dropped = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, ConnectionResetError,
               BrokenPipeError, http.client.RemoteDisconnected, http.client.BadStatusLine)
    return any(isinstance(error, dropped) for error in _chain(exc))


def speaks_tls(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TLS handshake with host:port completes (nothing is verified: this only asks 'TLS?')."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock, \
                context.wrap_socket(sock, server_hostname=host):
            return True
    except (OSError, ValueError):
        return False


def tls_failure_message(exc: BaseException, url: str, cacert: str | os.PathLike[str] | None = None, *,
                        option: str = "--cacert FILE",
                        probe: Callable[[str, int], bool] = speaks_tls) -> str | None:
    """A message naming the TLS problem behind ``exc`` and its fix, or None when it is not one.

    ``cacert`` is the explicit bundle the call was made with (the environment is read as for
    httpx_verify); ``option`` is how the caller names that setting, e.g. "Client(cacert=...)".
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    failure = classify(exc)
    if failure is None and parts.scheme == "http" and _dropped_early(exc) and probe(host, port):
        failure = TlsFailure("expects_tls", "the server speaks TLS")
    if failure is None:
        return None
    bundle = resolve_ca_bundle(cacert, explicit_source=option.removesuffix(" FILE"))
    where = f"{host}:{port}"
    detail = failure.detail.rstrip(".")
    trust_hint = (f"pass {option} or set {CA_BUNDLE_ENV}=FILE (a PEM file with the server's certificate"
                  " or the CA that signed it)")
    if failure.kind == "untrusted":
        if bundle.path is not None:
            return (f"TLS error: the certificate of {where} is not trusted by {bundle.describe()}: {detail}."
                    " That file must hold the server's certificate or the CA that signed it.")
        return (f"TLS error: the certificate of {where} is not trusted ({detail}). If the server uses a"
                f" self-signed or private-CA certificate, {trust_hint}.")
    if failure.kind == "name_mismatch":
        return (f"TLS error: the certificate of {where} is not valid for the name '{host}' ({detail})."
                " Put a name or address the certificate lists (its subjectAltName) in the URL, or"
                " re-issue the certificate for this name.")
    if failure.kind in ("expired", "not_yet_valid"):
        return (f"TLS error: the certificate of {where} is outside its validity period ({detail})."
                " Renew the server's certificate, or check this machine's clock.")
    if failure.kind == "not_tls":
        return (f"TLS error: {where} does not speak TLS ({detail}); it looks like a plain HTTP server."
                f" Use http://{where} instead of https://.")
    if failure.kind == "expects_tls":
        return (f"TLS error: {where} speaks TLS (HTTPS) but was called with http://. Use https://{where};"
                f" for a self-signed certificate also {trust_hint}.")
    return (f"TLS error: the TLS handshake with {where} failed ({detail}). Check that the server should be"
            " called with https:// and that its certificate and key are valid.")
