"""HTTPS on the gateway and the control API, with a certificate made here."""

from __future__ import annotations

import json
import sqlite3
import ssl

import httpx
import pytest
from conftest import EXAMPLES
from tls_helpers import make_certificate

from steadyserve import Client
from steadyserve.errors import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture
def certificate(tmp_path):
    return make_certificate(tmp_path)


def test_gateway_and_api_serve_https(serve, certificate):
    cert, key = certificate
    inst = serve(EXAMPLES / "echo", "--replicas", "1", "--gateways", "2", "--tls-cert", str(cert),
                 "--tls-key", str(key))
    url = f"https://127.0.0.1:{inst.port}"
    with Client(url, verify=str(cert)) as client:
        assert client.echo.echo(message="secret") == {"message": "secret"}
    with Client(url, verify=False) as unchecked:  # checks off: the self-signed certificate is accepted
        assert unchecked.echo.echo(message="plain") == {"message": "plain"}
    with Client(url) as checked, pytest.raises(ConfigError, match="TLS error"):
        checked.echo.echo(message="x")
    with pytest.raises(httpx.ConnectError):  # an untrusted certificate is refused by the client
        httpx.post(f"{url}/echo", json={"message": "x"})
    with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP is not served on the TLS port
        httpx.post(f"http://127.0.0.1:{inst.port}/echo", json={"message": "x"})
    with sqlite3.connect(inst.state_dir / "state.db") as db:
        meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta["url"].startswith("https://") and meta["api_url"].startswith("https://")
    trust = ssl.create_default_context(cafile=str(cert))
    assert httpx.get(f"{meta['api_url']}/v1/deployments", verify=trust).status_code == 401  # TCP: tokens only
    viewer = inst.cli("token", "create", "--role", "viewer", "--name", "tls-viewer").stdout.strip()
    response = httpx.get(f"{meta['api_url']}/v1/deployments", verify=trust,
                         headers={"authorization": f"Bearer {viewer}"})
    assert response.status_code == 200 and response.json()[0]["name"] == "echo"


# --- trust for the operator's tools: --cacert / STEADY_CA_BUNDLE ------------------------------
@pytest.fixture
def https_echo(serve, certificate, monkeypatch):
    """An echo service served over HTTPS with a self-signed certificate; no CA bundle configured."""
    for name in ("STEADY_CA_BUNDLE", "STEADY_URL", "STEADY_API_URL", "STEADY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    cert, key = certificate
    inst = serve(EXAMPLES / "echo", "--replicas", "1", "--gateways", "1", "--tls-cert", str(cert),
                 "--tls-key", str(key))
    return inst, cert


def test_steady_call_trusts_the_named_ca_and_says_when_a_certificate_is_not_trusted(https_echo, monkeypatch):
    inst, cert = https_echo
    untrusted = inst.cli("call", "echo", "--json", '{"message": "hi"}')
    assert untrusted.returncode == 1
    assert f"TLS error: the certificate of 127.0.0.1:{inst.port} is not trusted" in untrusted.stderr
    assert "--cacert FILE" in untrusted.stderr and "STEADY_CA_BUNDLE=FILE" in untrusted.stderr
    assert "running" not in untrusted.stderr  # not mistaken for a server that is down

    with_option = inst.cli("call", "echo", "--json", '{"message": "hi"}', "--cacert", str(cert))
    assert with_option.returncode == 0, with_option.stderr
    assert json.loads(with_option.stdout) == {"message": "hi"}

    monkeypatch.setenv("STEADY_CA_BUNDLE", str(cert))
    with_env = inst.cli("call", "echo", "--json", '{"message": "env"}')
    assert with_env.returncode == 0, with_env.stderr
    assert json.loads(with_env.stdout) == {"message": "env"}


def test_steady_call_with_http_to_the_https_gateway_says_use_https(https_echo):
    inst, cert = https_echo
    plain = inst.cli("call", "echo", "--json", '{"message": "hi"}', "--url", f"http://127.0.0.1:{inst.port}",
                     "--cacert", str(cert))
    assert plain.returncode == 1
    assert f"speaks TLS (HTTPS) but was called with http://. Use https://127.0.0.1:{inst.port}" in plain.stderr


def test_client_trusts_the_named_ca_and_a_tls_failure_is_a_config_error(https_echo, monkeypatch):
    inst, cert = https_echo
    url = f"https://127.0.0.1:{inst.port}"
    sleeps: list[float] = []
    with Client(url, sleep=sleeps.append) as client, pytest.raises(ConfigError) as info:
        client.echo.echo(message="hi")
    assert "TLS error" in str(info.value) and "is not trusted" in str(info.value)
    assert "Client(cacert=...)" in str(info.value) and "STEADY_CA_BUNDLE=FILE" in str(info.value)
    assert sleeps == []  # not retried: it would fail the same way

    with Client(url, cacert=cert) as client:
        assert client.echo.echo(message="option") == {"message": "option"}
    monkeypatch.setenv("STEADY_CA_BUNDLE", str(cert))
    with Client(url) as client:
        assert client.echo.echo(message="env") == {"message": "env"}
    with Client(f"http://127.0.0.1:{inst.port}", sleep=sleeps.append) as client, \
            pytest.raises(ConfigError, match=f"Use https://127.0.0.1:{inst.port}"):
        client.echo.echo(message="plain")


def test_control_api_commands_take_cacert(https_echo):
    inst, cert = https_echo
    created = inst.cli("token", "create", "--role", "viewer", "--name", "ops")
    assert created.returncode == 0, created.stderr
    api_url = inst.meta()["api_url"]
    env_token = {"STEADY_TOKEN": created.stdout.strip()}
    trusted = _cli_with_env(env_token, "status", "--json", "--api-url", api_url, "--cacert", str(cert),
                            "--state-dir", str(inst.state_dir))
    assert trusted.returncode == 0, trusted.stderr
    assert {r["kind"] for r in json.loads(trusted.stdout)} == {"gateway", "replica"}
    untrusted = _cli_with_env(env_token, "status", "--api-url", api_url, "--state-dir", str(inst.state_dir))
    assert untrusted.returncode == 1
    host_port = api_url.removeprefix("https://").rstrip("/")
    assert f"TLS error: the certificate of {host_port} is not trusted" in untrusted.stderr
    assert "--cacert FILE" in untrusted.stderr


def _cli_with_env(env: dict[str, str], *args: str):
    import os
    import subprocess

    from conftest import STEADY

    return subprocess.run([*STEADY, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
