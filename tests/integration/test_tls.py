"""HTTPS on the gateway and the control API, with a certificate made here."""

from __future__ import annotations

import datetime
import ipaddress
import sqlite3
import ssl

import httpx
import pytest
from conftest import EXAMPLES

from steadyserve import Client

pytestmark = pytest.mark.integration


@pytest.fixture
def certificate(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "steadyserve test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_gateway_and_api_serve_https(serve, certificate):
    cert, key = certificate
    inst = serve(EXAMPLES / "echo", "--replicas", "1", "--gateways", "2", "--tls-cert", str(cert),
                 "--tls-key", str(key))
    url = f"https://127.0.0.1:{inst.port}"
    with Client(url, verify=str(cert)) as client:
        assert client.echo.echo(message="secret") == {"message": "secret"}
    with pytest.raises(httpx.ConnectError):  # an untrusted certificate is refused by the client
        httpx.post(f"{url}/echo", json={"message": "x"})
    with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP is not served on the TLS port
        httpx.post(f"http://127.0.0.1:{inst.port}/echo", json={"message": "x"})
    with sqlite3.connect(inst.state_dir / "state.db") as db:
        meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta["url"].startswith("https://") and meta["api_url"].startswith("https://")
    trust = ssl.create_default_context(cafile=str(cert))
    response = httpx.get(f"{meta['api_url']}/v1/deployments", verify=trust)
    assert response.status_code == 200 and response.json()[0]["name"] == "echo"
