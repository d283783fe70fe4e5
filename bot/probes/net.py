"""Network probes: TLS certificates, DNS answers, open TCP ports."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from datetime import UTC, datetime

from bot.probes import Unreachable, Verdict, describe_error
from bot.probes.specs import DnsProbe, TcpProbe, TlsProbe

# OpenSSL verify codes (x509_vfy.h) and what they mean to the person reading the verdict.
_VERIFY_REASONS = {
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "certificate is self-signed",
    19: "self-signed certificate in the chain",
    20: "incomplete chain: the issuer is unknown (is the server sending its intermediate certificates?)",
    21: "incomplete chain: the leaf's issuer cannot be verified (missing intermediate certificate)",
    62: "hostname mismatch",
}


@functools.cache
def _tls12_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def tls(spec: TlsProbe) -> Verdict:
    name = spec.server_name or spec.host
    context = _tls12_context(spec.ca_file)
    evidence: dict[str, object] = {"host": spec.host, "port": spec.port, "server_name": name}
    try:
        reader, writer = await asyncio.open_connection(spec.host, spec.port, ssl=context, server_hostname=name)
    except ssl.SSLCertVerificationError as exc:
        reason = _VERIFY_REASONS.get(exc.verify_code, exc.verify_message or str(exc))
        if exc.verify_code == 62:
            reason = f"hostname mismatch: the certificate is not valid for {name}"
        evidence["verify_code"] = exc.verify_code
        return Verdict(False, reason, evidence)
    except ssl.SSLError as exc:
        if "version" in str(exc).lower() or "protocol" in str(exc).lower():
            return Verdict(False, "the server offers no TLS 1.2 or newer", evidence)
        return Verdict(False, f"TLS handshake failed: {exc.reason or exc}", evidence)
    except OSError as exc:
        raise Unreachable(f"cannot connect to {spec.host}:{spec.port}: {describe_error(exc)}") from None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert()
        version = ssl_object.version()
    finally:
        writer.close()
        del reader
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
    days = (expires - datetime.now(UTC)).days
    evidence.update(
        protocol=version,
        expires=expires.date().isoformat(),
        days_left=days,
        issuer=_name(cert.get("issuer", ())),
        subject=_name(cert.get("subject", ())),
    )
    if days < spec.min_days:
        return Verdict(
            False, f"certificate expires {expires.date()} — in {days} days, fewer than {spec.min_days}", evidence
        )
    return Verdict(True, f"valid for {name}, {version}, expires {expires.date()} ({days} days)", evidence)


def _name(rdns: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    return ", ".join(f"{k}={v}" for rdn in rdns for k, v in rdn)


async def dns(spec: DnsProbe) -> Verdict:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(spec.name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        return Verdict(False, f"{spec.name} does not resolve: {exc.strerror}", {"name": spec.name})
    addresses = sorted({str(info[4][0]) for info in infos})
    evidence = {"name": spec.name, "addresses": addresses}
    missing = [a for a in spec.expect if a not in addresses]
    if missing:
        return Verdict(False, f"{spec.name} resolves to {', '.join(addresses)}, not {', '.join(missing)}", evidence)
    return Verdict(True, f"{spec.name} → {', '.join(addresses)}", evidence)


async def tcp(spec: TcpProbe) -> Verdict:
    try:
        _, writer = await asyncio.open_connection(spec.host, spec.port)
    except OSError as exc:
        return Verdict(False, f"{spec.host}:{spec.port}: {describe_error(exc)}", {"host": spec.host, "port": spec.port})
    writer.close()
    return Verdict(True, f"{spec.host}:{spec.port} accepts connections", {"host": spec.host, "port": spec.port})
