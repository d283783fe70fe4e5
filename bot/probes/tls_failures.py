"""TLS failures recognised cheaply: a refused certificate (explained by `certs`) or a failed handshake."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


class CertificateRejected(Exception):
    """An HTTPS request failed because the server's certificate did not verify."""

    def __init__(self, url: str, server_name: str, error: ssl.SSLCertVerificationError):
        super().__init__(f"{url}: {error.verify_message}")
        self.url = url
        self.server_name = server_name
        self.error = error


def rejection(exc: httpx.ConnectError) -> CertificateRejected | None:
    """The certificate refusal behind an httpx connect error, if that is what it was."""
    error = _verify_error(exc)
    if error is None:
        return None
    try:
        request = exc.request
    except RuntimeError:  # an error raised outside a request carries none
        return None
    server_name = request.extensions.get("sni_hostname") or request.url.host
    return CertificateRejected(str(request.url), str(server_name), error)


def _verify_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    cause: BaseException | None = exc
    for _ in range(10):
        if cause is None:
            return None
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


# What a failed handshake's OpenSSL reason means to the person reading the verdict.
_HANDSHAKE_REASONS = {
    "WRONG_VERSION_NUMBER": "the server does not speak TLS there (a plain-HTTP port?)",
    "RECORD_LAYER_FAILURE": "the server does not speak TLS there (a plain-HTTP port?)",
    "PACKET_LENGTH_TOO_LONG": "the server does not speak TLS there (a plain-HTTP port?)",
    "UNSUPPORTED_PROTOCOL": "the server offers no TLS 1.2 or newer",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the server offers no TLS 1.2 or newer",
    "NO_PROTOCOLS_AVAILABLE": "the server offers no TLS 1.2 or newer",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "TLS handshake failed: the server and deploybot share no protocol or cipher",
    "NO_SHARED_CIPHER": "TLS handshake failed: the server and deploybot share no protocol or cipher",
    "TLSV1_UNRECOGNIZED_NAME": "the server does not serve the name asked for (SNI unrecognized)",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection during the TLS handshake",
}


def handshake_reason(error: ssl.SSLError) -> str:
    """A failed TLS handshake (other than a refused certificate) in plain words."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate rejected: {error.verify_message}"
    if isinstance(error, ssl.SSLEOFError):
        return _HANDSHAKE_REASONS["UNEXPECTED_EOF_WHILE_READING"]
    reason = str(error.reason or "")
    return _HANDSHAKE_REASONS.get(reason, f"TLS handshake failed: {reason or error}")
