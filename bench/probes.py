"""Probe suite concurrency: 20 probes against loopback targets that answer in 200 ms.

Usage: python -m bench.probes
Prints the suite's wall time, its slowest probe and their ratio (target: at most 1.2). Where Debian's
prometheus-blackbox-exporter is installed, the same targets go through it too, side by side, and the
per-probe overhead (probe time beyond the target's 200 ms) of each is compared.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import platform
import re
import shutil
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
from tests.test_process import free_port

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
            wait_until_up(f"{url}/-/healthy")
            yield url
        finally:
            process.terminate()
            process.wait(10)


def wait_until_up(url: str) -> None:
    """Poll `url` until something answers (at most 10 s)."""
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)


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


def serve_targets(port: int) -> None:
    """The targets, in their own process: sharing deploybot's interpreter (and GIL) would slow both."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            status, headers, body = route("GET", self.path, {})
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    Server(("127.0.0.1", port), Handler).serve_forever()


@contextmanager
def targets_process() -> Iterator[str]:
    port = free_port()
    process = multiprocessing.Process(target=serve_targets, args=(port,), daemon=True)
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/ready")
        yield url
    finally:
        process.terminate()
        process.join(5)


def main() -> None:
    adapter = TypeAdapter(ProbeSpec)
    with targets_process() as url:
        specs = {f"probe-{n}": adapter.validate_python({"kind": "http", "url": f"{url}/{n}"}) for n in range(PROBES)}
        asyncio.run(run_all({"warm-up": specs["probe-0"]}, Variables("bench", {}, {})))  # imports, TLS trust store
        started = time.perf_counter()
        verdicts = asyncio.run(run_all(specs, Variables("bench", {}, {})))
        wall = (time.perf_counter() - started) * 1000
        alone = [asyncio.run(run_all({"one": spec}, Variables("bench", {}, {})))["one"].ms for spec in specs.values()]
        binary = shutil.which("prometheus-blackbox-exporter")
        blackbox: list[float] | None = None
        blackbox_alone: list[float] = []
        if binary:
            with blackbox_exporter(binary) as exporter:
                targets = [f"{url}/{n}" for n in range(PROBES)]
                through_blackbox(exporter, targets[:1])  # warm-up
                blackbox = through_blackbox(exporter, targets)
                blackbox_alone = [through_blackbox(exporter, [target])[0] for target in targets]
    slowest = max(v.ms for v in verdicts.values())
    failed = sum(not v.ok for v in verdicts.values())
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{PROBES} http probes, targets answer in {DELAY * 1000:.0f} ms, {failed} failed")
    print(f"suite wall time {wall:.0f} ms · slowest probe {slowest:.0f} ms · ratio {wall / slowest:.2f} (target ≤ 1.2)")
    print(f"run one after another they would take ≥ {PROBES * DELAY * 1000:.0f} ms")
    if blackbox is None:
        print("prometheus-blackbox-exporter is not installed: no side-by-side comparison (apt install it)")
        return
    print("side by side with prometheus-blackbox-exporter (its own probe_duration_seconds), same targets:")
    for label, ours_ms, theirs_ms in (
        ("one at a time", alone, blackbox_alone),
        (f"{PROBES} at once", [v.ms for v in verdicts.values()], blackbox),
    ):
        ours, theirs = statistics.median(ours_ms) - DELAY * 1000, statistics.median(theirs_ms) - DELAY * 1000
        print(
            f"  {label}: median time beyond the target's {DELAY * 1000:.0f} ms: deploybot {ours:.1f} ms, "
            f"blackbox-exporter {theirs:.1f} ms · per-probe overhead ratio {ours / theirs:.1f}"
        )


if __name__ == "__main__":
    main()
