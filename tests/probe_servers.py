"""Real servers on 127.0.0.1 for the probes to check: plain HTTP, and HTTPS with generated certificates."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Answer = tuple[int, dict[str, str], bytes]
Route = Callable[[str, str, dict[str, str]], Answer]  # (method, path, headers) -> answer


@contextmanager
def http_server(route: Route, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Serve `route` on a free loopback port; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body = route(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_OPTIONS = do_HEAD = _any

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # bursts of probes connect at once

    server = Server(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def ok(body: bytes = b"ok", **headers: str) -> Route:
    return lambda method, path, h: (200, {"Content-Type": "text/plain", **headers}, body)


class Certificates:
    """A CA with an intermediate, and server certificates in every state a TLS probe must name."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ca = trustme.CA()
        self.intermediate = self.ca.create_child_ca()
        self.ca_file = str(folder / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)

    def context(self, state: str) -> ssl.SSLContext:
        """A server context whose certificate is valid, expired, future, self_signed, wrong_host, no_chain or soon."""
        now = datetime.datetime.now(datetime.UTC)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if state == "self_signed":
            cert_pem, key_pem = _self_signed("localhost")
            cert_path, key_path = self.folder / "self.pem", self.folder / "self.key"
            cert_path.write_bytes(cert_pem)
            key_path.write_bytes(key_pem)
            context.load_cert_chain(cert_path, key_path)
            return context
        windows = {
            "valid": (now - datetime.timedelta(days=1), now + datetime.timedelta(days=90)),
            "expired": (now - datetime.timedelta(days=90), now - datetime.timedelta(days=1)),
            "future": (now + datetime.timedelta(days=2), now + datetime.timedelta(days=90)),
            "soon": (now - datetime.timedelta(days=1), now + datetime.timedelta(days=10)),
            "no_chain": (now - datetime.timedelta(days=1), now + datetime.timedelta(days=90)),
        }
        identity = "wrong.example" if state == "wrong_host" else "localhost"
        not_before, not_after = windows.get(state, windows["valid"])
        leaf = self.intermediate.issue_cert(identity, not_before=not_before, not_after=not_after)
        if state == "no_chain":
            # Serve the leaf alone: the client cannot reach the CA without the intermediate.
            path = self.folder / "leaf-only.pem"
            path.write_bytes(leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes())
            context.load_cert_chain(path)
        else:
            leaf.configure_cert(context)
        return context


def _self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
