"""Real servers on 127.0.0.1 for the probes to check: HTTP, HTTPS with generated certificates, and DNS."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
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
        """A server context whose certificate is valid, expired, future, self_signed, wrong_host, no_chain,
        with_root (the root sent too), old_intermediate (sent with an expired intermediate) or soon; or a valid
        one offered over TLS 1.1 at most (old_tls)."""
        now = datetime.datetime.now(datetime.UTC)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if state == "old_tls":  # a valid certificate, but nothing newer than TLS 1.1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.TLSv1
                context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
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
        elif state == "old_intermediate":
            path = self.folder / "old-intermediate.pem"
            chain = leaf.cert_chain_pems[0].bytes() + self._expired_intermediate(now)
            path.write_bytes(leaf.private_key_pem.bytes() + chain)
            context.load_cert_chain(path)
        elif state == "with_root":
            path = self.folder / "with-root.pem"
            chain = b"".join(pem.bytes() for pem in leaf.cert_chain_pems) + self.ca.cert_pem.bytes()
            path.write_bytes(leaf.private_key_pem.bytes() + chain)
            context.load_cert_chain(path)
        else:
            leaf.configure_cert(context)
        return context

    def _expired_intermediate(self, now: datetime.datetime) -> bytes:
        # The same intermediate (subject and key), re-signed by the root with a validity that ended yesterday.
        current = self.intermediate._certificate
        builder = (
            x509.CertificateBuilder()
            .subject_name(current.subject)
            .issuer_name(current.issuer)
            .public_key(current.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=100))
            .not_valid_after(now - datetime.timedelta(days=1))
        )
        for extension in current.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        certificate = builder.sign(self.ca._private_key, hashes.SHA256())
        return certificate.public_bytes(serialization.Encoding.PEM)


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


@contextmanager
def dns_server(records: dict[tuple[str, str], list[str]]) -> Iterator[str]:
    """Answer DNS queries over UDP on a free loopback port from `records` ((name, type) -> values); yields host:port.

    A name with no record of the asked type gets an empty answer; an unknown name gets NXDOMAIN.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    stopping = threading.Event()
    names = {name for name, _ in records}

    def serve() -> None:
        while True:
            data, peer = sock.recvfrom(4096)
            if stopping.is_set():
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            kind = dns.rdatatype.to_text(question.rdtype)
            if values := records.get((name, kind)):
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", kind, *values))
            elif name not in names:
                response.set_rcode(dns.rcode.NXDOMAIN)
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"{address[0]}:{address[1]}"
    finally:
        stopping.set()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"stop", address)
        thread.join(5)
        sock.close()
