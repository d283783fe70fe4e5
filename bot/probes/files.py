"""File probes: secrets in an env file are strong and differ from development; a path is git-ignored."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from bot import logs
from bot.probes import ProbeError, Verdict
from bot.probes.specs import EnvFileProbe, GitignoredProbe


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as dotenv reads them: comments, `export`, and quotes handled."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


async def env_file(spec: EnvFileProbe) -> Verdict:
    path = Path(spec.path)
    if not path.is_file():
        raise ProbeError(f"{path} does not exist")
    production = read_env_file(path)
    development = read_env_file(Path(spec.development_path)) if spec.development_path else {}
    pattern = re.compile(spec.secret_pattern, re.IGNORECASE)
    secrets = sorted(k for k in production if pattern.search(k))
    logs.scrub(production[k] for k in secrets)  # they must never reach a log line, whatever happens next
    short = [k for k in secrets if len(production[k]) < spec.min_length]
    same = [k for k in secrets if k in development and development[k] == production[k]]
    # Evidence names keys and lengths only: values never leave the file.
    evidence = {"file": str(path), "secret_keys": secrets, "too_short": short, "same_as_development": same}
    problems = []
    if short:
        problems.append(f"shorter than {spec.min_length} characters: {', '.join(short)}")
    if same:
        problems.append(f"same value as development: {', '.join(same)}")
    if not secrets:
        problems.append("no secret-named keys found (check secret_pattern)")
    if problems:
        return Verdict(False, "; ".join(problems), evidence)
    return Verdict(True, f"{len(secrets)} secrets, all ≥ {spec.min_length} characters and unlike development", evidence)


async def gitignored(spec: GitignoredProbe) -> Verdict:
    git = shutil.which("git")
    if git is None:
        raise ProbeError("git is not installed where deploybot runs")
    process = await asyncio.create_subprocess_exec(
        git,
        "-C",
        spec.repo,
        "check-ignore",
        "--verbose",
        "--",
        spec.path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    evidence = {"repo": spec.repo, "path": spec.path}
    if process.returncode == 0:
        source = out.decode().split("\t")[0]
        return Verdict(True, f"{spec.path} is ignored ({source})", {**evidence, "rule": source})
    if process.returncode == 1:
        return Verdict(False, f"{spec.path} is NOT ignored by git in {spec.repo}", evidence)
    raise ProbeError(f"git check-ignore failed: {err.decode().strip()[:200]}")
