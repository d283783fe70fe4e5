"""Probe timing beside Prometheus blackbox_exporter, on the same loopback targets, in one run.

Usage: python -m bench.probes
Reports, for deploybot and for Debian's prometheus-blackbox-exporter (its own probe_duration_seconds):
- the per-probe overhead (reported time minus the target's own handling time) of 200 ms targets,
  one at a time and 20 at once (goals: at most 1.5x and 3x the exporter's);
- the reported time of a 2 ms endpoint alone and inside a 40-probe suite (goal: within 5 ms of the
  target's own timing), and how often a `max_ms: 50` budget on it fails;
- the suite's wall time against its slowest probe (goal: at most 1.2x; with timed probes, which run
  alone after the others, against the slowest ordinary probe plus the timed ones).
"""

from __future__ import annotations

import asyncio
import json
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
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import TypeAdapter

from bot.probes import Variables, Verdict, run_all, turn
from bot.probes.specs import ProbeSpec
from tests.test_process import free_port

DELAY = 0.2  # the ordinary targets
FAST = 0.002  # the endpoint whose time is reported
PROBES = 20
SUITE = 40
ROUNDS = 15
BURST_LIMIT = 100
SPEC = TypeAdapter(ProbeSpec)
VARIABLES = Variables("bench", {}, {})


def serve_targets(port: int) -> None:
    """The targets, in their own process, each request's own handling time kept by path."""
    import http.server
    import threading

    timings: dict[str, list[float]] = {}
    burst = [0]
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # As production servers do: else a reused connection's body waits ~40 ms for the client's delayed ACK.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            started = time.perf_counter()
            parts = urlsplit(self.path)
            status, body = 200, b'{"status": "ok"}'
            if parts.path == "/timings":
                with lock:
                    body = json.dumps(timings.get(parse_qs(parts.query)["path"][0], [])).encode()
            elif parts.path.startswith("/slow"):
                time.sleep(DELAY)
            elif parts.path.startswith("/fast"):
                time.sleep(FAST)
            elif parts.path.startswith("/burst"):
                with lock:
                    burst[0] += 1
                    status = 429 if burst[0] % (BURST_LIMIT + 1) == 0 else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if parts.path != "/timings":
                with lock:
                    timings.setdefault(parts.path, []).append((time.perf_counter() - started) * 1000)

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

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


def wait_until_up(url: str) -> None:
    """Poll `url` until something answers (at most 10 s)."""
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)


_ASK = httpx.Client(timeout=10)  # one client: building one per question costs tens of ms of CPU


def served_ms(base: str, path: str) -> float:
    """The target's own handling time of the last request to `path`."""
    return float(_ASK.get(f"{base}/timings", params={"path": path}).json()[-1])


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


def ours(specs: dict[str, dict[str, Any]]) -> tuple[dict[str, Verdict], float]:
    """deploybot's verdicts for a suite, and the suite's wall time in ms (the event loop's start excluded)."""

    async def timed() -> tuple[dict[str, Verdict], float]:
        started = time.perf_counter()
        verdicts = await run_all({name: SPEC.validate_python(spec) for name, spec in specs.items()}, VARIABLES)
        return verdicts, (time.perf_counter() - started) * 1000

    return asyncio.run(timed())


def forty(url: str, tag: str) -> dict[str, dict[str, Any]]:
    """A 40-probe suite like the shipped checklist's: the 2 ms endpoint under a 50 ms budget among the rest."""
    specs: dict[str, dict[str, Any]] = {
        f"slow-{n}": {"kind": "http", "url": f"{url}/slow/{tag}-{n}"} for n in range(SUITE - 8)
    }
    specs.update(
        {
            "budget": {"kind": "http", "url": f"{url}/fast/{tag}-budget", "max_ms": 50},
            "unbudgeted": {"kind": "http", "url": f"{url}/fast/{tag}-plain"},
            "latency": {"kind": "latency", "url": f"{url}/fast/{tag}-latency", "requests": 20, "p95_ms": 50},
            "burst": {"kind": "rate_limit", "url": f"{url}/burst/{tag}", "max_requests": 150, "within": 15},
            "headers": {"kind": "headers", "url": f"{url}/slow/{tag}-headers"},
            "cors": {"kind": "cors", "url": f"{url}/slow/{tag}-cors"},
            "tcp": {"kind": "tcp", "host": "127.0.0.1", "port": int(url.rsplit(":", 1)[1])},
            "dns": {"kind": "dns", "name": "localhost"},
        }
    )
    assert len(specs) == SUITE
    return specs


def gap(reported: list[float], served: list[float]) -> list[float]:
    return [r - s for r, s in zip(reported, served, strict=True)]


def describe(values: list[float]) -> str:
    return f"median {statistics.median(values):+.1f} ms, worst {max(values, key=abs):+.1f} ms"


def main() -> None:
    binary = shutil.which("prometheus-blackbox-exporter")
    with targets_process() as url:
        ours({"warm-up": {"kind": "http", "url": f"{url}/fast/warm-up"}})  # imports, the TLS trust store
        # Ordinary probes of 200 ms targets: 20 at once (three rounds), then one at a time.
        together_gap, walls, slowest = [], [], []
        for r in range(3):
            paths = [f"/slow/together-{r}-{n}" for n in range(PROBES)]
            verdicts, wall = ours({p: {"kind": "http", "url": url + p} for p in paths})
            together_gap += gap([verdicts[p].ms for p in paths], [served_ms(url, p) for p in paths])
            walls.append(wall)
            slowest.append(max(v.ms for v in verdicts.values()))
        alone_gap = []
        for n in range(PROBES):
            path = f"/slow/alone-{n}"
            alone_gap += gap([ours({path: {"kind": "http", "url": url + path}})[0][path].ms], [served_ms(url, path)])
        # The 2 ms endpoint under a 50 ms budget: alone, and inside a 40-probe suite.
        fast_alone, fast_alone_failed = [], 0
        for n in range(ROUNDS):
            path = f"/fast/alone-{n}"
            verdict = ours({path: {"kind": "http", "url": url + path, "max_ms": 50}})[0][path]
            fast_alone.append(verdict.ms - served_ms(url, path))
            fast_alone_failed += not verdict.ok
        in_suite, unbudgeted, suite_failed, suite_walls, floors = [], [], 0, [], []
        for n in range(ROUNDS):
            specs = forty(url, f"suite{n}")
            verdicts, wall = ours(specs)
            in_suite.append(verdicts["budget"].ms - served_ms(url, f"/fast/suite{n}-budget"))
            unbudgeted.append(verdicts["unbudgeted"].ms - served_ms(url, f"/fast/suite{n}-plain"))
            suite_failed += not verdicts["budget"].ok
            suite_walls.append(wall)
            spec_of = {name: SPEC.validate_python(spec) for name, spec in specs.items()}
            floors.append(
                max(v.ms for name, v in verdicts.items() if not turn(spec_of[name]))
                + sum(v.ms for name, v in verdicts.items() if turn(spec_of[name]))
            )
        theirs: dict[str, list[float]] = {}
        if binary:
            with blackbox_exporter(binary) as exporter:
                through_blackbox(exporter, [f"{url}/fast/bb-warm-up"])
                theirs["together"] = []
                for r in range(3):
                    paths = [f"/slow/bb-together-{r}-{n}" for n in range(PROBES)]
                    reported = through_blackbox(exporter, [url + p for p in paths])
                    theirs["together"] += gap(reported, [served_ms(url, p) for p in paths])
                paths = [f"/slow/bb-alone-{n}" for n in range(PROBES)]
                theirs["alone"] = [through_blackbox(exporter, [url + p])[0] - served_ms(url, p) for p in paths]
                paths = [f"/fast/bb-alone-{n}" for n in range(ROUNDS)]
                theirs["fast alone"] = [through_blackbox(exporter, [url + p])[0] - served_ms(url, p) for p in paths]
                theirs["fast in suite"] = []
                for n in range(ROUNDS):
                    paths = [f"/slow/bb-suite{n}-{k}" for k in range(SUITE - 1)] + [f"/fast/bb-suite{n}"]
                    reported = through_blackbox(exporter, [url + p for p in paths])
                    theirs["fast in suite"].append(reported[-1] - served_ms(url, paths[-1]))
    report(together_gap, alone_gap, walls, slowest, fast_alone, fast_alone_failed, in_suite, unbudgeted, suite_failed,
           suite_walls, floors, theirs)  # fmt: skip


def report(
    together: list[float],
    alone: list[float],
    walls: list[float],
    slowest: list[float],
    fast_alone: list[float],
    fast_alone_failed: int,
    in_suite: list[float],
    unbudgeted: list[float],
    suite_failed: int,
    suite_walls: list[float],
    floors: list[float],
    theirs: dict[str, list[float]],
) -> None:
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores (load average {load:.1f} when done), Python {platform.python_version()}")
    print("gap = reported time minus the target's own handling time of that request (its server's log)")
    ratio = statistics.median(w / s for w, s in zip(walls, slowest, strict=True))
    print(
        f"{PROBES} http probes of {DELAY * 1000:.0f} ms targets at once: suite wall time median "
        f"{statistics.median(walls):.0f} ms, slowest probe {statistics.median(slowest):.0f} ms, "
        f"ratio {ratio:.2f} (goal ≤ 1.2)"
    )
    ratio40 = statistics.median(w / f for w, f in zip(suite_walls, floors, strict=True))
    print(
        f"{SUITE}-probe suite (32 ordinary, a 150-request burst, a 20-request latency probe, budgets): wall time "
        f"median {statistics.median(suite_walls):.0f} ms, {ratio40:.2f}x the slowest ordinary probe plus the "
        "timed ones, which run alone after it (goal ≤ 1.2)"
    )
    if not theirs:
        print("prometheus-blackbox-exporter is not installed: no side-by-side comparison (apt install it)")
    bb = {key: statistics.median(values) for key, values in theirs.items()}
    print(f"{'':<44}{'deploybot':>12}{'blackbox':>12}{'ratio':>8}  goal")
    for label, values, key, goal in (
        ("overhead, one at a time (median gap)", alone, "alone", "≤ 1.5x"),
        (f"overhead, {PROBES} at once (median gap)", together, "together", "≤ 3x"),
    ):
        ours_ms = statistics.median(values)
        theirs_ms = bb.get(key)
        shown = f"{theirs_ms:>10.1f}ms{ours_ms / theirs_ms:>7.1f}x" if theirs_ms else f"{'-':>12}{'-':>8}"
        print(f"{label:<44}{ours_ms:>10.1f}ms{shown}  {goal}")
    print(f"2 ms endpoint, http max_ms 50, alone ({ROUNDS} runs): deploybot gap {describe(fast_alone)}, "
          f"budget failed {fast_alone_failed}/{ROUNDS}" + (f"; blackbox gap {describe(theirs['fast alone'])}"
          if theirs else ""))  # fmt: skip
    print(f"2 ms endpoint, http max_ms 50, in the {SUITE}-probe suite ({ROUNDS} runs): deploybot gap "
          f"{describe(in_suite)}, budget failed {suite_failed}/{ROUNDS}" + (
          f"; blackbox (same endpoint among {SUITE - 1} others at once) gap {describe(theirs['fast in suite'])}"
          if theirs else ""))  # fmt: skip
    print(f"  the same endpoint without a budget, so run with the others: deploybot gap {describe(unbudgeted)}")
    print("goal for the 2 ms endpoint: gap within 5 ms, alone and in the suite")


if __name__ == "__main__":
    main()
