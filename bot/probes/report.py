"""`deploybot probe`: run a checklist's probes from a terminal or CI, as a table or JSON."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict

from bot.checklists import Template
from bot.config import DeployConfig
from bot.probes import Variables, Verdict, run_all


def probe_table(template: Template, config: DeployConfig, environment: str) -> list[dict[str, object]]:
    """Run every probe of `template` against `environment`; one row per probed item, in checklist order."""
    specs = {item.id: item.probe for item in template.items if item.probe is not None}
    variables = Variables(environment, config.variables(environment), os.environ)
    verdicts: dict[str, Verdict] = asyncio.run(run_all(specs, variables))
    return [{"item": item_id, "kind": specs[item_id].kind, **asdict(verdicts[item_id])} for item_id in specs]


def render(rows: list[dict[str, object]], as_json: bool) -> str:
    if as_json:
        return json.dumps(rows, indent=2, default=str)
    widths = [max([len(h)] + [len(str(r[k])) for r in rows]) for h, k in (("item", "item"), ("kind", "kind"))]
    lines = [f"{'item':<{widths[0]}}  {'kind':<{widths[1]}}  verdict  {'ms':>7}  reason"]
    for row in rows:
        verdict = "pass" if row["ok"] else "FAIL"
        lines.append(
            f"{row['item']!s:<{widths[0]}}  {row['kind']!s:<{widths[1]}}  {verdict:<7}  {row['ms']!s:>7}  "
            f"{row['reason']}"
        )
    failed = sum(not r["ok"] for r in rows)
    lines.append(f"{len(rows)} probe(s), {failed} failed")
    return "\n".join(lines)
