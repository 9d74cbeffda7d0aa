"""Which CA bundle the tools trust, and how a TLS failure is worded. The failures are real:
made by connecting httpx and urllib to small HTTP(S) servers on 127.0.0.1 (tls_helpers)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tls_helpers import http_server, make_certificate

from steadyserve.errors import ConfigError
from steadyserve.trust import (
    CaBundle,
    classify,
    httpx_verify,
    resolve_ca_bundle,
    speaks_tls,
    ssl_context,
    tls_failure_message,
)


@pytest.fixture(autouse=True)
def _no_bundle_from_the_environment(monkeypatch):
    monkeypatch.delenv("STEADY_CA_BUNDLE", raising=False)


@pytest.fixture
def cert(tmp_path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


def failure(get: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:  # noqa: B017 - whichever the library raises
        get()
    return info.value


def via_httpx(url: str, verify: object = True) -> Callable[[], object]:
    return lambda: httpx.get(url, verify=verify, timeout=10)  # type: ignore[arg-type]


def via_urllib(url: str, cafile: Path | None = None) -> Callable[[], object]:
    import ssl

    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    return lambda: urllib.request.urlopen(url, timeout=10, context=context)


# --- which bundle ---------------------------------------------------------------------------
@pytest.mark.parametrize(("explicit", "environ", "expected"), [
    ("/a.pem", {"STEADY_CA_BUNDLE": "/b.pem"}, CaBundle(Path("/a.pem"), "--cacert")),
    (None, {"STEADY_CA_BUNDLE": "/b.pem"}, CaBundle(Path("/b.pem"), "$STEADY_CA_BUNDLE")),
    (None, {"STEADY_CA_BUNDLE": ""}, CaBundle(None, "")),
    (None, {}, CaBundle(None, "")),
])
def test_explicit_bundle_beats_the_environment_which_beats_the_default(explicit, environ, expected):
    assert resolve_ca_bundle(explicit, environ) == expected


def test_no_bundle_leaves_httpx_its_default_store():
    assert httpx_verify(None) is True


def test_a_missing_bundle_is_a_config_error_naming_where_it_came_from(tmp_path):
    with pytest.raises(ConfigError, match=r"\$STEADY_CA_BUNDLE .*nope.pem: cannot read"):
        ssl_context(resolve_ca_bundle(None, {"STEADY_CA_BUNDLE": str(tmp_path / "nope.pem")}))


def test_a_bundle_without_certificates_is_a_config_error(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no usable PEM certificate"):
        httpx_verify(junk)


# --- what failed, and what to do ------------------------------------------------------------
def test_the_named_bundle_makes_a_self_signed_server_trusted(cert):
    with http_server(cert) as port:
        assert httpx.get(f"https://127.0.0.1:{port}/", verify=httpx_verify(cert[0]), timeout=10).json() == {"ok": True}


@pytest.mark.parametrize("library", ["httpx", "urllib"])
def test_an_untrusted_certificate_says_so_and_names_cacert_and_the_environment(cert, library):
    with http_server(cert) as port:
        url = f"https://127.0.0.1:{port}"
        exc = failure(via_httpx(url) if library == "httpx" else via_urllib(url))
    message = tls_failure_message(exc, url)
    assert message is not None
    assert message.startswith("TLS error: the certificate of 127.0.0.1:") and "not trusted" in message
    assert "self-signed certificate" in message
    assert "--cacert FILE" in message and "STEADY_CA_BUNDLE=FILE" in message


def test_a_bundle_that_does_not_vouch_for_the_server_is_named(tmp_path, cert):
    other, _ = make_certificate(tmp_path, name="other")
    with http_server(cert) as port:
        url = f"https://127.0.0.1:{port}"
        exc = failure(via_httpx(url, httpx_verify(other)))
    message = tls_failure_message(exc, url, other)
    assert message is not None and f"not trusted by the CA bundle {other} (from --cacert)" in message


def test_the_sdk_names_its_own_setting(cert):
    with http_server(cert) as port:
        url = f"https://127.0.0.1:{port}"
        message = tls_failure_message(failure(via_httpx(url)), url, option="Client(cacert=...)")
    assert message is not None and "pass Client(cacert=...) or set STEADY_CA_BUNDLE=FILE" in message


@pytest.mark.parametrize("library", ["httpx", "urllib"])
def test_a_certificate_for_another_name_is_a_name_mismatch(cert, library):
    with http_server(cert) as port:  # the certificate lists 127.0.0.1 only
        url = f"https://localhost:{port}"
        exc = failure(via_httpx(url, httpx_verify(cert[0])) if library == "httpx" else via_urllib(url, cert[0]))
    message = tls_failure_message(exc, url, cert[0])
    assert message is not None and "is not valid for the name 'localhost'" in message
    assert "subjectAltName" in message


def test_an_expired_certificate_says_so(tmp_path):
    expired = make_certificate(tmp_path, name="expired", valid_days=-1)
    with http_server(expired) as port:
        url = f"https://127.0.0.1:{port}"
        exc = failure(via_httpx(url, httpx_verify(expired[0])))
    assert (found := classify(exc)) is not None and found.kind == "expired"
    message = tls_failure_message(exc, url, expired[0])
    assert message is not None and "outside its validity period" in message and "expired" in message


@pytest.mark.parametrize("library", ["httpx", "urllib"])
def test_https_to_a_plain_http_server_says_use_http(library):
    with http_server() as port:
        url = f"https://127.0.0.1:{port}"
        exc = failure(via_httpx(url) if library == "httpx" else via_urllib(url))
    message = tls_failure_message(exc, url)
    assert message is not None and "does not speak TLS" in message
    assert f"Use http://127.0.0.1:{port} instead of https://" in message


@pytest.mark.parametrize("library", ["httpx", "urllib"])
def test_http_to_a_tls_server_says_use_https(cert, library):
    with http_server(cert) as port:
        url = f"http://127.0.0.1:{port}"
        exc = failure(via_httpx(url) if library == "httpx" else via_urllib(url))
        message = tls_failure_message(exc, url)  # confirmed by a handshake while the server is up
    assert message is not None and f"Use https://127.0.0.1:{port}" in message


def test_a_refused_connection_is_not_a_tls_problem():
    with http_server() as port:
        pass  # closed again: nothing listens on the port now
    url = f"http://127.0.0.1:{port}"
    assert tls_failure_message(failure(via_httpx(url)), url) is None
    assert tls_failure_message(failure(via_httpx(f"https://127.0.0.1:{port}")), f"https://127.0.0.1:{port}") is None


def test_the_probe_tells_a_tls_port_from_a_plain_one(cert):
    with http_server(cert) as tls_port, http_server() as plain_port:
        assert speaks_tls("127.0.0.1", tls_port)
        assert not speaks_tls("127.0.0.1", plain_port)
