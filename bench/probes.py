"""Probe suite concurrency: 20 probes against loopback targets that answer in 200 ms.

Usage: python -m bench.probes
Prints the suite's wall time, its slowest probe and their ratio (target: at most 1.2). Where Debian's
prometheus-blackbox-exporter is installed, the same targets go through it too, side by side, and the
per-probe overhead (probe time beyond the target's 200 ms) of each is compared.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
from pydantic import TypeAdapter

from bot.probes import Variables, run_all
from bot.probes.specs import ProbeSpec
from tests.probe_servers import http_server

DELAY = 0.2
PROBES = 20


def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    time.sleep(DELAY)
    return 200, {"Content-Type": "application/json"}, b'{"status": "ok"}'


@contextmanager
def blackbox_exporter(binary: str) -> Iterator[str]:
    """Debian's prometheus-blackbox-exporter on a loopback port with one http_2xx module."""
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "blackbox.yml"
        config.write_text("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
        port = free_port()
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    httpx.get(f"{url}/-/healthy", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def through_blackbox(exporter: str, targets: list[str]) -> list[float]:
    """Each target probed through the exporter, all at once; the exporter's own probe_duration_seconds, in ms."""

    def probe(target: str) -> float:
        answer = httpx.get(f"{exporter}/probe", params={"target": target, "module": "http_2xx"}, timeout=10).text
        assert re.search(r"^probe_success 1$", answer, re.MULTILINE), answer[:500]
        found = re.search(r"^probe_duration_seconds ([0-9.e+-]+)$", answer, re.MULTILINE)
        assert found is not None
        return float(found.group(1)) * 1000

    with ThreadPoolExecutor(len(targets)) as pool:
        return list(pool.map(probe, targets))


def main() -> None:
    adapter = TypeAdapter(ProbeSpec)
    with http_server(route) as url:
        specs = {f"probe-{n}": adapter.validate_python({"kind": "http", "url": f"{url}/{n}"}) for n in range(PROBES)}
        asyncio.run(run_all({"warm-up": specs["probe-0"]}, Variables("bench", {}, {})))  # imports, TLS trust store
        started = time.perf_counter()
        verdicts = asyncio.run(run_all(specs, Variables("bench", {}, {})))
        wall = (time.perf_counter() - started) * 1000
        binary = shutil.which("prometheus-blackbox-exporter")
        blackbox: list[float] | None = None
        if binary:
            with blackbox_exporter(binary) as exporter:
                targets = [f"{url}/{n}" for n in range(PROBES)]
                through_blackbox(exporter, targets[:1])  # warm-up
                blackbox = through_blackbox(exporter, targets)
    slowest = max(v.ms for v in verdicts.values())
    failed = sum(not v.ok for v in verdicts.values())
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{PROBES} http probes, targets answer in {DELAY * 1000:.0f} ms, {failed} failed")
    print(f"suite wall time {wall:.0f} ms · slowest probe {slowest:.0f} ms · ratio {wall / slowest:.2f} (target ≤ 1.2)")
    print(f"run one after another they would take ≥ {PROBES * DELAY * 1000:.0f} ms")
    if blackbox is None:
        print("prometheus-blackbox-exporter is not installed: no side-by-side comparison (apt install it)")
        return
    ours = statistics.median(v.ms for v in verdicts.values()) - DELAY * 1000
    theirs = statistics.median(blackbox) - DELAY * 1000
    print(
        f"same {PROBES} targets, all at once, per-probe time beyond the target's {DELAY * 1000:.0f} ms (median): "
        f"deploybot {ours:.1f} ms · blackbox-exporter {theirs:.1f} ms · overhead ratio {ours / theirs:.2f}"
    )
    print(
        f"median probe: deploybot {statistics.median(v.ms for v in verdicts.values()):.1f} ms, "
        f"blackbox-exporter {statistics.median(blackbox):.1f} ms (its own probe_duration_seconds)"
    )


if __name__ == "__main__":
    main()
