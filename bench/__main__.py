"""Run every benchmark side by side and write bench/RESULTS.md: python -m bench [--postgres]."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
SUITES = [
    ("Acknowledgement latency and memory (deploybot, a bare Bolt app, one committing a row per click)", "bench.ack"),
    ("Burst on one run (30 clicks in a second, then 50 clicks/s for 10 s)", "bench.burst"),
    ("Probe timing beside blackbox_exporter (overhead; a 2 ms endpoint alone and in a 40-probe suite)", "bench.probes"),
    ("History scale (10,000 finished runs)", "bench.history"),
    ("Insights at scale (10,000 finished deployments, ~900,000 item states)", "bench.insights"),
    ("Pipeline gates (answer after the last tick through another replica; 200 waiting gates)", "bench.gates"),
    ("Pipeline gates through `deploybot ci` (two replicas on PostgreSQL; 200 waiting pipelines)", "bench.ci_gates"),
]


def main() -> None:
    postgres = "--postgres" in sys.argv[1:]
    sections = [
        "# deploybot benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.machine()}; databases: SQLite"
        + (" and PostgreSQL" if postgres else "")
        + ". Loopback only.",
        "Regenerate with `python -m bench" + (" --postgres" if postgres else "") + "`.",
    ]
    for title, module in SUITES:
        args = [sys.executable, "-m", module] + (["--postgres"] if postgres and module != "bench.probes" else [])
        print(f"== {title}", flush=True)
        result = subprocess.run(args, capture_output=True, text=True, timeout=1800)
        output = result.stdout.strip() or result.stderr.strip()[-2000:]
        print(output, flush=True)
        sections += ["", f"## {title}", "", output if module == "bench.ack" else f"```\n{output}\n```"]
    (HERE / "RESULTS.md").write_text("\n".join(sections) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
