"""What every benchmark case shares: the controller's concurrency, and small helpers to
time, count and read processes."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import re
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 16  # the controller's default --workers, and the lower bound's concurrency
RESYNC = 20.0


def mark(what: str) -> None:
    """A wall-clock mark on stdout, to find a phase in the controller's log."""
    print(f"    {dt.datetime.now(dt.UTC).isoformat(timespec='milliseconds')} {what}", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def kubeconfig_dict(text: str) -> dict[str, Any]:
    return dict(yaml.safe_load(text))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def bounded(calls: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def metric_sum(text: str, name: str, **match: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in match.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def writes_by_kind(before: str, after: str, landings: int) -> dict[str, float]:
    """moonlander_writes_total's increase per Landing, by "kind action"."""
    found: dict[str, float] = {}
    for text, sign in ((after, 1), (before, -1)):
        for action, kind, value in re.findall(
            r'^moonlander_writes_total\{action="(\w+)",kind="(\w+)"\} (\S+)$',
            text,
            re.MULTILINE,
        ):
            key = f"{kind} {action}"
            found[key] = found.get(key, 0.0) + sign * float(value)
    return {k: v / landings for k, v in sorted(found.items()) if v}


def proc_stats(pid: int) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return hwm / 1024, (int(fields[11]) + int(fields[12])) / ticks


def cpu_seconds(pid: int) -> float:
    """``utime+stime`` of a process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
