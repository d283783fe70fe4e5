"""Network probes: TLS certificates, DNS answers, open TCP ports."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from datetime import UTC, datetime
from typing import Any

from dns.asyncresolver import Resolver
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.resolver import NXDOMAIN, LifetimeTimeout, NoAnswer, NoNameservers

from bot.probes import ProbeError, Unreachable, Verdict, describe_error, tls_failures
from bot.probes.specs import DnsProbe, TcpProbe, TlsProbe, host_port


@functools.cache
def _tls12_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def warm_up() -> None:
    """Load the system's trust store (tens of ms of CPU) before any `tls` probe's clock starts."""
    _tls12_context(None)


async def tls(spec: TlsProbe) -> Verdict:
    name = spec.server_name or spec.host
    context = _tls12_context(spec.ca_file)
    evidence: dict[str, object] = {"host": spec.host, "port": spec.port, "server_name": name}
    try:
        reader, writer = await asyncio.open_connection(spec.host, spec.port, ssl=context, server_hostname=name)
    except ssl.SSLCertVerificationError as exc:
        from bot.probes import certs  # only now: a refused certificate is the exception

        reason, details = await certs.explain(spec.host, spec.port, name, exc, spec.ca_file)
        return Verdict(False, reason, {**evidence, **details})
    except ssl.SSLError as exc:
        return Verdict(False, tls_failures.handshake_reason(exc), evidence)
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
    resolver, where = await _resolver(spec)
    evidence: dict[str, object] = {"name": spec.name, "type": spec.type, "server": where}
    try:
        # Give up a little before the probe's own deadline, so the verdict can say which server was silent.
        answer = await asyncio.wait_for(
            resolver.resolve(spec.name, spec.type, lifetime=spec.timeout, search=False), spec.timeout * 0.9
        )
    except NXDOMAIN:
        return Verdict(False, f"{spec.name} does not exist (NXDOMAIN from {where})", evidence)
    except NoAnswer:
        return Verdict(False, f"{spec.name} has no {spec.type} record ({where})", evidence)
    except (LifetimeTimeout, TimeoutError):
        return Verdict(False, f"no DNS answer from {where} within {spec.timeout:g} s", evidence)
    except NoNameservers as exc:
        return Verdict(False, f"{where} could not answer for {spec.name}: {exc}"[:300], evidence)
    values = sorted({_record_text(record) for record in answer})
    evidence["answers"] = values
    missing = [v for v in spec.expect if not _answered(v, values, spec.type)]
    if missing:
        shown = ", ".join(values)
        return Verdict(False, f"{spec.name} {spec.type} is {shown}, not {', '.join(missing)} ({where})", evidence)
    return Verdict(True, f"{spec.name} {spec.type} → {', '.join(values)} ({where})", evidence)


async def _resolver(spec: DnsProbe) -> tuple[Resolver, str]:
    if spec.server is None:
        # The resolvers of /etc/resolv.conf, and only DNS: /etc/hosts is not what the world sees.
        return Resolver(), "system resolver"
    try:
        host, port = host_port(spec.server, 53)
    except ValueError as exc:
        raise ProbeError(f"server: {exc}") from None
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise Unreachable(f"the DNS server {host} does not resolve: {exc.strerror}") from None
        address = str(infos[0][4][0])
    resolver = Resolver(configure=False)
    resolver.nameservers = [address]
    resolver.port = port
    return resolver, spec.server


def _record_text(record: Any) -> str:
    if isinstance(record, A | AAAA):
        return str(record.address)
    if isinstance(record, CNAME):
        return str(record.target.to_text(omit_final_dot=True))
    if isinstance(record, MX):
        return f"{record.preference} {record.exchange.to_text(omit_final_dot=True)}"
    if isinstance(record, TXT):
        return b"".join(record.strings).decode("utf-8", "replace")
    return str(record.to_text())


def _answered(expected: str, values: list[str], kind: str) -> bool:
    if kind in ("CNAME", "MX"):
        # Names compare without case or the final dot; an MX may be given without its preference.
        wanted = expected.lower().rstrip(".")
        return any(wanted in (v.lower(), v.lower().split(" ", 1)[-1]) for v in values)
    if kind in ("A", "AAAA"):
        try:
            return str(ipaddress.ip_address(expected)) in values
        except ValueError:
            return False
    return expected in values


async def tcp(spec: TcpProbe) -> Verdict:
    try:
        _, writer = await asyncio.open_connection(spec.host, spec.port)
    except OSError as exc:
        return Verdict(False, f"{spec.host}:{spec.port}: {describe_error(exc)}", {"host": spec.host, "port": spec.port})
    writer.close()
    return Verdict(True, f"{spec.host}:{spec.port} accepts connections", {"host": spec.host, "port": spec.port})
