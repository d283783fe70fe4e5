"""Probe timing beside Prometheus blackbox_exporter, on the same loopback targets, in one run.

Usage: python -m bench.probes
Reports, for deploybot and for Debian's prometheus-blackbox-exporter (its own probe_duration_seconds):
- the per-probe overhead (reported time minus the target's own handling time) of 200 ms targets,
  one at a time and 20 at once (goals: at most 1.5x and 3x the exporter's);
- the reported time of a 2 ms endpoint alone and inside a 40-probe suite (goal: within 5 ms of the
  target's own timing), and how often a `max_ms: 50` budget on it fails;
- the suite's wall time against its slowest probe (goal: at most 1.2x). Timed probes and bursts run alone,
  one after another, after the others, so a 40-probe suite's floor is its slowest ordinary probe plus
  each timed probe's own duration (measured alone, right after the suite, on fresh paths): a suite
  cannot take less. Their wire times alone (the earlier floor) leave out the latency probe's warm-up
  request and the client's work between requests a probe must send one after another, which the
  per-probe overhead figures measure; that ratio is printed too.
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
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import TypeAdapter

from bot.probes import Variables, Verdict, run_all, run_probe, turn
from bot.probes.specs import ProbeSpec
from bot.probes.web import shared_clients, warm_clients
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
    burst: defaultdict[str, int] = defaultdict(int)
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
                with lock:  # each path its own limit, kept once reached: requests still in flight are limited too
                    burst[parts.path] += 1
                    status = 429 if burst[parts.path] > BURST_LIMIT else 200
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
    for _ in range(100):  # the target notes a request's time just after answering it
        if timings := _ASK.get(f"{base}/timings", params={"path": path}).json():
            return float(timings[-1])
        time.sleep(0.01)
    raise RuntimeError(f"the target has no timing for {path}")


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


# One event loop for every suite, as in `deploybot run`; each suite still gets its own clients and connections.
_LOOP = asyncio.Runner()


def ours(specs: dict[str, dict[str, Any]]) -> tuple[dict[str, Verdict], float]:
    """deploybot's verdicts for a suite, and the suite's wall time in ms."""
    parsed = {name: SPEC.validate_python(spec) for name, spec in specs.items()}  # deploybot parses on loading

    async def timed() -> tuple[dict[str, Verdict], float]:
        started = time.perf_counter()
        verdicts = await run_all(parsed, VARIABLES)
        return verdicts, (time.perf_counter() - started) * 1000

    return _LOOP.run(timed())


def alone(spec: dict[str, Any]) -> tuple[Verdict, float]:
    """One probe run as a suite runs a timed one (alone, its client ready), and its own duration in ms."""
    parsed = SPEC.validate_python(spec)

    async def timed() -> tuple[Verdict, float]:
        async with shared_clients():
            warm_clients([parsed])
            started = time.perf_counter()
            verdict = await run_probe(parsed, VARIABLES)
            return verdict, (time.perf_counter() - started) * 1000

    return _LOOP.run(timed())


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
    load_before = os.getloadavg()[0]
    with targets_process() as url, blackbox_exporter(binary) if binary else nullcontext("") as exporter:
        ours({"warm-up": {"kind": "http", "url": f"{url}/fast/warm-up"}})  # imports, the TLS trust store
        if exporter:
            through_blackbox(exporter, [f"{url}/fast/bb-warm-up"])
        # Each figure alternates deploybot and the exporter, so both meet the same load on the machine.
        m = Measured()
        for r in range(3):  # ordinary probes of 200 ms targets, 20 at once
            paths = [f"/slow/together-{r}-{n}" for n in range(PROBES)]
            verdicts, wall = ours({p: {"kind": "http", "url": url + p} for p in paths})
            m.together += gap([verdicts[p].ms for p in paths], [served_ms(url, p) for p in paths])
            m.walls.append(wall)
            m.slowest.append(max(v.ms for v in verdicts.values()))
            if exporter:
                paths = [f"/slow/bb-together-{r}-{n}" for n in range(PROBES)]
                reported = through_blackbox(exporter, [url + p for p in paths])
                m.theirs["together"] += gap(reported, [served_ms(url, p) for p in paths])
        for n in range(PROBES):  # the same, one at a time
            path = f"/slow/alone-{n}"
            m.alone += gap([ours({path: {"kind": "http", "url": url + path}})[0][path].ms], [served_ms(url, path)])
            if exporter:
                path = f"/slow/bb-alone-{n}"
                m.theirs["alone"].append(through_blackbox(exporter, [url + path])[0] - served_ms(url, path))
        for n in range(ROUNDS):  # the 2 ms endpoint under a 50 ms budget, alone
            path = f"/fast/alone-{n}"
            verdict = ours({path: {"kind": "http", "url": url + path, "max_ms": 50}})[0][path]
            m.fast_alone.append(verdict.ms - served_ms(url, path))
            m.fast_alone_failed += not verdict.ok
            if exporter:
                path = f"/fast/bb-alone-{n}"
                m.theirs["fast alone"].append(through_blackbox(exporter, [url + path])[0] - served_ms(url, path))
        for n in range(ROUNDS):  # ... and inside a 40-probe suite
            specs = forty(url, f"suite{n}")
            verdicts, wall = ours(specs)
            m.in_suite.append(verdicts["budget"].ms - served_ms(url, f"/fast/suite{n}-budget"))
            m.unbudgeted.append(verdicts["unbudgeted"].ms - served_ms(url, f"/fast/suite{n}-plain"))
            m.suite_failed += not verdicts["budget"].ok
            m.suite_walls.append(wall)
            timed = {name for name, spec in specs.items() if turn(SPEC.validate_python(spec))}
            slowest = max(v.ms for name, v in verdicts.items() if name not in timed)
            m.wire_floors.append(slowest + sum(verdicts[name].ms for name in timed))
            # The timed ones again, each alone on fresh paths, for their own durations.
            own = {name: alone(spec) for name, spec in forty(url, f"own{n}").items() if name in timed}
            m.floors.append(slowest + sum(took for _, took in own.values()))
            for name, (verdict, took) in own.items():
                m.timed[name].append((took, verdict.ms))
            m.burst_sent.append(verdicts["burst"].evidence["requests"])
            if exporter:
                paths = [f"/slow/bb-suite{n}-{k}" for k in range(SUITE - 1)] + [f"/fast/bb-suite{n}"]
                reported = through_blackbox(exporter, [url + p for p in paths])
                m.theirs["fast in suite"].append(reported[-1] - served_ms(url, paths[-1]))
    report(m, load_before)


@dataclass
class Measured:
    """Gaps (reported time minus the target's own), wall times and budget failures, per figure."""

    together: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    slowest: list[float] = field(default_factory=list)
    alone: list[float] = field(default_factory=list)
    fast_alone: list[float] = field(default_factory=list)
    fast_alone_failed: int = 0
    in_suite: list[float] = field(default_factory=list)
    unbudgeted: list[float] = field(default_factory=list)
    suite_failed: int = 0
    suite_walls: list[float] = field(default_factory=list)
    floors: list[float] = field(default_factory=list)
    wire_floors: list[float] = field(default_factory=list)
    timed: defaultdict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    burst_sent: list[int] = field(default_factory=list)
    theirs: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def report(m: Measured, load_before: float) -> None:
    print(
        f"machine: {os.cpu_count()} cores shared with other work (1-minute load average {load_before:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end), Python {platform.python_version()}"
    )
    if max(load_before, os.getloadavg()[0]) > (os.cpu_count() or 1):
        print("note: the machine was busier than its cores (other work running): these figures are noisy; rerun quiet")
    print("gap = a probe's reported time minus the target's own handling time of that request (from its log)")
    print(f"{'':<66}{'deploybot':>11}{'blackbox':>11}{'ratio':>7}  goal")
    for label, values, key, goal in (
        ("per-probe overhead, one at a time: median gap", m.alone, "alone", "≤ 1.5x"),
        (f"per-probe overhead, {PROBES} at once: median gap", m.together, "together", "≤ 3x"),
        ("2 ms endpoint (http, max_ms 50) alone: median gap", m.fast_alone, "fast alone", "≤ 5 ms"),
        (
            f"2 ms endpoint (http, max_ms 50) in a {SUITE}-probe suite: median gap",
            m.in_suite,
            "fast in suite",
            "≤ 5 ms",
        ),
    ):
        ours_ms, theirs = statistics.median(values), m.theirs.get(key)
        theirs_ms = statistics.median(theirs) if theirs else None
        times = f"{ours_ms / theirs_ms:>6.1f}x" if theirs_ms and theirs_ms > 0 else f"{'-':>7}"
        shown = f"{theirs_ms:>8.1f} ms" if theirs_ms is not None else f"{'-':>11}"
        print(f"{label:<66}{ours_ms:>8.1f} ms{shown}{times}  {goal}")
    print(f"  worst gaps of the 2 ms endpoint: alone deploybot {max(m.fast_alone):+.1f} ms, in the suite "
          f"{max(m.in_suite):+.1f} ms; its 50 ms budget failed {m.fast_alone_failed}/{ROUNDS} alone and "
          f"{m.suite_failed}/{ROUNDS} in the suite")  # fmt: skip
    print(f"  the same endpoint without a budget runs with the suite's ordinary probes: median gap "
          f"{statistics.median(m.unbudgeted):+.1f} ms, worst {max(m.unbudgeted):+.1f} ms")  # fmt: skip
    if not m.theirs:
        print("  prometheus-blackbox-exporter is not installed: no side-by-side figures (apt install it)")
    else:
        print(f"  blackbox in the suite: the 2 ms endpoint probed at once with {SUITE - 1} 200 ms ones (it has no "
              "latency or burst probes)")  # fmt: skip
    ratio = statistics.median(w / s for w, s in zip(m.walls, m.slowest, strict=True))
    print(
        f"suite wall time, {PROBES} ordinary probes: median {statistics.median(m.walls):.0f} ms, slowest probe's "
        f"reported time {statistics.median(m.slowest):.0f} ms, ratio {ratio:.2f} (goal ≤ 1.2)"
    )
    ratio40 = statistics.median(w / f for w, f in zip(m.suite_walls, m.floors, strict=True))
    wire40 = statistics.median(w / f for w, f in zip(m.suite_walls, m.wire_floors, strict=True))
    print(
        f"suite wall time, {SUITE} probes (32 ordinary, a burst limited after {BURST_LIMIT} requests, a 20-request "
        f"latency probe, a budget): median {statistics.median(m.suite_walls):.0f} ms, {ratio40:.2f}x the slowest "
        "ordinary probe plus the timed ones' own durations, as they run alone after the others (goal ≤ 1.2); "
        f"{wire40:.2f}x that probe plus the timed ones' wire times only"
    )
    print("  timed probes alone, own duration / reported (wire) time, medians: " + ", ".join(
        f"{name} {statistics.median(t for t, _ in runs):.0f} / {statistics.median(w for _, w in runs):.0f} ms"
        for name, runs in sorted(m.timed.items())
    ) + f"; the suite's burst sent {min(m.burst_sent)}-{max(m.burst_sent)} requests")  # fmt: skip


if __name__ == "__main__":
    main()
