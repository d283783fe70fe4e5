"""Why a server's certificate was refused, in plain words, read from the chain the server presented.

Imported only once a certificate has been refused: parsing certificates costs ~0.1 s of imports.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import ssl
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from bot.probes.tls_failures import CertificateRejected

# OpenSSL verify codes (x509_vfy.h) that mean "no trusted authority vouches for this chain". OpenSSL says
# 20 both for an unknown root and for a missing intermediate: only the presented chain tells them apart.
_TRUST_CODES = {2, 18, 19, 20, 21}
_HOSTNAME_MISMATCH = 62
_VALIDITY_CODES = {9, 10}  # not yet valid, expired


async def explain_rejection(rejected: CertificateRejected, ca_file: str | None) -> tuple[str, dict[str, Any]]:
    """The plain reason and evidence for a refused certificate of an HTTPS URL."""
    parts = urlsplit(rejected.url)
    host = parts.hostname or ""
    return await explain(host, parts.port or 443, rejected.server_name, rejected.error, ca_file)


async def explain(
    host: str, port: int, server_name: str, error: ssl.SSLCertVerificationError, ca_file: str | None
) -> tuple[str, dict[str, Any]]:
    """Why the certificate at host:port failed verification for `server_name`, and what it looks like."""
    evidence: dict[str, Any] = {
        "server_name": server_name,
        "verify_code": error.verify_code,
        "verify_error": error.verify_message,
    }
    try:
        chain = await presented_chain(host, port, server_name)
    except (OSError, ValueError):
        # The server went away between the two handshakes: say what OpenSSL said.
        return f"certificate rejected: {error.verify_message}", evidence
    if not chain:
        return f"certificate rejected: {error.verify_message}", evidence
    leaf = chain[0]
    evidence.update(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc.isoformat(),
        not_after=leaf.not_valid_after_utc.isoformat(),
        names=certificate_names(leaf),
        chain=[c.subject.rfc4514_string() for c in chain],
    )
    now = datetime.now(UTC)
    problems = _validity(leaf, now)
    if not problems and error.verify_code in _VALIDITY_CODES:
        # The leaf is in date: then one of the intermediates it was sent with is not.
        for cert in chain[1:]:
            problems += _validity(cert, now, f"intermediate certificate {cert.subject.rfc4514_string()}")
    if not matches(leaf, server_name):
        shown = ", ".join(certificate_names(leaf)) or "no name"
        problems.append(f"name mismatch: the certificate is for {shown}, not {server_name}")
    elif error.verify_code == _HOSTNAME_MISMATCH:
        problems.append(f"name mismatch: the certificate is not valid for {server_name}")
    if error.verify_code in _TRUST_CODES:
        problems.append(_trust_problem(chain, ca_file))
    if not problems:
        problems.append(f"certificate rejected: {error.verify_message}")
    return "; ".join(problems), evidence


@functools.cache
def _unverified() -> ssl.SSLContext:
    # Only to read what the server presents; no verdict ever rests on this handshake alone.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def presented_chain(host: str, port: int, server_name: str) -> list[x509.Certificate]:
    """The certificates the server sends, leaf first, without verifying them."""
    _, writer = await asyncio.open_connection(host, port, ssl=_unverified(), server_hostname=server_name)
    try:
        ders = _chain_der(writer.get_extra_info("ssl_object"))
    finally:
        writer.close()
    return [x509.load_der_x509_certificate(der) for der in ders]


def _chain_der(ssl_object: Any) -> list[bytes]:
    public = getattr(ssl_object, "get_unverified_chain", None)
    if public is not None:  # Python 3.13 and later: a list of DER bytes
        return [bytes(der) for der in public() or []]
    # Python 3.11 and 3.12 have the same call on the private object, returning certificate objects.
    certificates = ssl_object._sslobj.get_unverified_chain() or []
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in certificates]  # type: ignore[attr-defined]


def _validity(cert: x509.Certificate, now: datetime, what: str = "certificate") -> list[str]:
    if now > cert.not_valid_after_utc:
        days = (now - cert.not_valid_after_utc).days
        ago = "today" if days == 0 else "1 day ago" if days == 1 else f"{days} days ago"
        return [f"{what} expired on {cert.not_valid_after_utc.date()} ({ago})"]
    if now < cert.not_valid_before_utc:
        return [f"{what} is not yet valid: valid from {cert.not_valid_before_utc.date()}"]
    return []


def _trust_problem(chain: list[x509.Certificate], ca_file: str | None) -> str:
    leaf = chain[0]
    if _self_signed(leaf):
        hint = "add it to ca_file if you mean to trust it" if ca_file is None else f"it is not in ca_file {ca_file}"
        return f"self-signed certificate ({leaf.subject.rfc4514_string()}): no authority vouches for it ({hint})"
    path = [leaf]
    while (parent := _issuer_in(path[-1], chain)) is not None and parent not in path:
        path.append(parent)
    top = path[-1]
    if top is leaf:
        issuer = leaf.issuer.rfc4514_string()
        sent = "only its own certificate" if len(chain) == 1 else "no certificate of the leaf's issuer"
        return (
            f"incomplete chain: the server sends {sent}, and its issuer {issuer} is not in the trust store "
            "(send the intermediate certificates; if that issuer is your own CA, set ca_file to it)"
        )
    authority = top.subject if _self_signed(top) else top.issuer
    hint = "set ca_file to its certificate" if ca_file is None else f"ca_file {ca_file} does not hold it"
    return f"issued by an authority the trust store does not know: {authority.rfc4514_string()} ({hint})"


def _issuer_in(cert: x509.Certificate, chain: list[x509.Certificate]) -> x509.Certificate | None:
    return next((c for c in chain if c is not cert and c.subject == cert.issuer and _signed_by(cert, c)), None)


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer and _signed_by(cert, cert)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    # Callers have matched the names already; the signature tells a stale look-alike from the real issuer.
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return False
    except (TypeError, ValueError, UnsupportedAlgorithm):  # a key or padding cryptography cannot check
        return True
    return True


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The names and addresses a certificate is for (its subjectAltName, else its common name)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(v) for v in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return [*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))]


def matches(cert: x509.Certificate, name: str) -> bool:
    """Whether the certificate is valid for `name` (a host name or an IP address), as browsers decide."""
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    for pattern in certificate_names(cert):
        if address is not None:
            if pattern == str(address):
                return True
        elif _name_matches(pattern.lower().rstrip("."), name.lower().rstrip(".")):
            return True
    return False


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        # A wildcard stands for exactly one whole left-most label.
        label, _, rest = name.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == name
