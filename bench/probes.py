"""Probe suite concurrency: 20 probes against loopback targets that answer in 200 ms.

Usage: python -m bench.probes
Prints the suite's wall time, its slowest probe and their ratio (target: at most 1.2).
"""

from __future__ import annotations

import asyncio
import os
import platform
import time

from pydantic import TypeAdapter

from bot.probes import Variables, run_all
from bot.probes.specs import ProbeSpec
from tests.probe_servers import http_server

DELAY = 0.2
PROBES = 20


def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    time.sleep(DELAY)
    return 200, {"Content-Type": "application/json"}, b'{"status": "ok"}'


def main() -> None:
    adapter = TypeAdapter(ProbeSpec)
    with http_server(route) as url:
        specs = {f"probe-{n}": adapter.validate_python({"kind": "http", "url": f"{url}/{n}"}) for n in range(PROBES)}
        asyncio.run(run_all({"warm-up": specs["probe-0"]}, Variables("bench", {}, {})))  # imports, TLS trust store
        started = time.perf_counter()
        verdicts = asyncio.run(run_all(specs, Variables("bench", {}, {})))
        wall = (time.perf_counter() - started) * 1000
    slowest = max(v.ms for v in verdicts.values())
    failed = sum(not v.ok for v in verdicts.values())
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{PROBES} http probes, targets answer in {DELAY * 1000:.0f} ms, {failed} failed")
    print(f"suite wall time {wall:.0f} ms · slowest probe {slowest:.0f} ms · ratio {wall / slowest:.2f} (target ≤ 1.2)")
    print(f"run one after another they would take ≥ {PROBES * DELAY * 1000:.0f} ms")


if __name__ == "__main__":
    main()
