"""Certificates made in the test, and small real HTTP(S) servers on 127.0.0.1 to aim clients at."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def make_certificate(directory: Path, name: str = "cert", ip: str = "127.0.0.1",
                     valid_days: float = 1.0, dns: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate for ``ip``, or for the host name ``dns`` only (as `openssl req
    -subj /CN=localhost` makes them); valid_days < 0: already expired. (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"steadyserve test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=valid_days)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, not_after) - datetime.timedelta(days=2)).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(dns)] if dns else [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the stdlib's spelling
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_server(cert: tuple[Path, Path] | None = None) -> Iterator[int]:
    """A tiny HTTP server on 127.0.0.1 answering {"ok": true}; HTTPS with ``cert``. Yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    if cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
