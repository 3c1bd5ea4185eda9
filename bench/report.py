#!/usr/bin/env python3
"""Turn bench/run's raw results (bench/results/) into the tables between the markers of
bench/README.md. Called by bench/run (which exports BENCH, OUT and the run's settings)."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

BENCH = Path(os.environ["BENCH"])
OUT = Path(os.environ["OUT"])
BEGIN, END = "<!-- BENCH:RESULTS:BEGIN -->", "<!-- BENCH:RESULTS:END -->"


def hyperfine(name: str) -> list[dict]:
    path = OUT / f"{name}.json"
    return json.loads(path.read_text())["results"] if path.exists() else []


def text(name: str) -> str:
    path = OUT / name
    return path.read_text() if path.exists() else ""


def stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def secs(values: list[float]) -> str:
    med, lo, hi = stats(values)
    unit, f = ("ms", 1000) if med < 1 else ("s", 1)
    digits = 0 if unit == "ms" and med * f >= 100 else (1 if unit == "ms" or med >= 10 else 2)
    return f"**{med * f:.{digits}f} {unit}** ({lo * f:.{digits}f}–{hi * f:.{digits}f})"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


rows = []
ORCH = [
    # (hyperfine export, scenario, target ratio compose/irisctl or None)
    ("noop-up", "1a. no-op `up` (all running and current) vs `docker-compose up -d`", 5),
    ("noop-up-build", "1a. no-op `up` vs `docker-compose up -d --build` (builds from cache)", 5),
    ("status", "1b. `irisctl status` (with its HTTP probes) vs `docker-compose ps`", 5),
    ("cold-start", "1c. cold start from `down` (images present) until all 4 healthy", None),
    ("source-change", "1d. one API source file changed: rebuild + recreate until healthy", None),
    ("down", "1e. `down` of a healthy stack", None),
]
lines = [
    "| scenario | irisctl: median (min–max) | docker-compose 1.29.2: median (min–max) "
    "| compose ÷ irisctl: ratio of the medians | median of the per-round ratios | target |",
    "|---|---|---|---|---|---|",
]
for name, title, target in ORCH:
    if not hyperfine(name):
        lines.append(f"| {title} | not measured in this run | | | | |")
        continue
    *ours, compose = hyperfine(name)
    for irisctl in ours:
        ratio = statistics.median(compose["times"]) / statistics.median(irisctl["times"])
        paired = statistics.median(c / i for c, i in zip(compose["times"], irisctl["times"], strict=True))
        diagnostic = "(diagnostic)" in irisctl["command"]
        goal = f"≥ {target}×: {verdict(ratio >= target)}" if target and not diagnostic else "–"
        what = title if irisctl is ours[0] else f"″ {irisctl['command'].replace(' (diagnostic)', '')} (diagnostic)"
        lines.append(
            f"| {what} | {secs(irisctl['times'])} | {secs(compose['times'])} "
            f"| **{ratio:.1f}×** | {paired:.1f}× | {goal} |"
        )
orchestration = "\n".join(lines)

memory = ["| command | peak RSS (GNU time, Maximum resident set size) |", "|---|---|"]
for line in text("memory.tsv").splitlines():
    what, kb = line.split("\t")
    memory.append(f"| `{what}` | {int(kb) / 1024:.1f} MiB |" if kb.isdigit() else f"| `{what}` | {kb} |")

recreated = text("recreated.txt").rstrip() or "not measured in this run"
final = []
for tool, after in (("irisctl", "ids-final-irisctl"), ("docker-compose", "ids-final-compose")):
    services = dict(line.split() for line in text(after).splitlines())
    final.append(f"{tool}: {len(services)} containers after all the source-change runs")
recreated += "\n" + "\n".join(final)


def cold_timeline(project: str) -> str:
    """Seconds from the first container start of the group's last run to each service's
    start and its first `healthy`."""
    events = []
    for line in text("cold-events.txt").splitlines():
        t, proj, service, action = line.split(" ", 3)
        if proj == project:
            events.append((int(t) / 1e9, service, action))
    last_start = {}
    for t, service, action in events:
        if action == "start":
            last_start[service] = t
    if not last_start:
        return "no events"
    t0 = min(last_start.values())
    parts = []
    for service in ("api", "prometheus", "grafana", "frontend"):
        if service not in last_start:
            continue
        start = last_start[service]
        healthy = next((t for t, s, a in events if s == service and t >= start and a.endswith("healthy") and "unhealthy" not in a), None)
        parts.append(f"{service} started +{start - t0:.1f} s, healthy +{healthy - t0:.1f} s" if healthy else f"{service} started +{start - t0:.1f} s")
    return "; ".join(parts)


timelines = "\n".join(
    f"- {tool}: {cold_timeline(project)}"
    for tool, project in (("irisctl", "irisctl-bench-irisctl"), ("docker-compose", "irisctl-bench-compose"))
)

# ---- API -------------------------------------------------------------------------------------
wrk: dict[tuple[str, int], list[dict]] = {}
for line in text("wrk.tsv").splitlines():
    which, conns, data = line.split("\t")
    wrk.setdefault((which, int(conns)), []).append(json.loads(data))
accuracy = {}
for line in text("accuracy.tsv").splitlines():
    which, data = line.split("\t")
    accuracy[which] = json.loads(data)


def num(values: list[float], digits: int) -> str:
    med, lo, hi = stats(values)
    return f"**{med:.{digits}f}** ({lo:.{digits}f}–{hi:.{digits}f})"


api = [
    "| connections | stack/api req/s | course req/s | throughput ratio (target ≥ 20×) "
    "| stack/api p50 / p99 ms | course p50 / p99 ms | p99 ratio (target ≤ 0.20) | errors |",
    "|---|---|---|---|---|---|---|---|",
]
diag = [
    "| connections | stack/api `--no-access-log` req/s | vs stack/api as built | vs course "
    "| p50 / p99 ms | p99 ratio vs course |",
    "|---|---|---|---|---|---|",
]
concurrencies = sorted(c for which, c in wrk if which == "api" and ("course", c) in wrk)
med = statistics.median
for c in concurrencies:
    a, k, n = wrk[("api", c)], wrk[("course", c)], wrk.get(("nolog", c), [])
    rps_a, rps_k = [r["rps"] for r in a], [r["rps"] for r in k]
    p99_a, p99_k = [r["p99_ms"] for r in a], [r["p99_ms"] for r in k]
    t_ratio = med(rps_a) / med(rps_k)
    l_ratio = med(p99_a) / med(p99_k)
    errors = sum(r["non2xx"] + r["socket_errors"] for r in a + k + n)
    api.append(
        f"| {c} | {num(rps_a, 0)} | {num(rps_k, 1)} | **{t_ratio:.1f}×** {verdict(t_ratio >= 20)} "
        f"| {med(r['p50_ms'] for r in a):.2f} / {num(p99_a, 2)} "
        f"| {med(r['p50_ms'] for r in k):.1f} / {num(p99_k, 1)} "
        f"| **{l_ratio:.3f}** {verdict(l_ratio <= 0.2)} | {errors} |"
    )
    if n:
        rps_n, p99_n = [r["rps"] for r in n], [r["p99_ms"] for r in n]
        diag.append(
            f"| {c} | {num(rps_n, 0)} | **{med(rps_n) / med(rps_a):.2f}×** | **{med(rps_n) / med(rps_k):.1f}×** "
            f"| {med(r['p50_ms'] for r in n):.2f} / {num(p99_n, 2)} | **{med(p99_n) / med(p99_k):.3f}** |"
        )
if not wrk:
    api.append("| not measured in this run | | | | | | | |")
acc = "Accuracy: not measured in this run." if "api" not in accuracy else (
    f"Held-out accuracy (the 45 flowers of the seed-42 stratified split, sent to each `/predict`): "
    f"stack/api **{accuracy['api']['correct']}/{accuracy['api']['total']} = {accuracy['api']['accuracy']:.4f}**, "
    f"course API **{accuracy['course']['correct']}/{accuracy['course']['total']} = {accuracy['course']['accuracy']:.4f}**"
    + (f" (stack/api `--no-access-log`: {accuracy['nolog']['correct']}/{accuracy['nolog']['total']})" if "nolog" in accuracy else "")
    + "."
)
mem_api = ", ".join(
    f"`{name}` {usage}" for name, usage in (line.split("\t") for line in text("api-memory.tsv").splitlines())
) or "not measured"

section = f"""{BEGIN}
<!-- Written by bench/run ({time.strftime('%Y-%m-%d %H:%M %Z')}); do not edit by hand. -->
{os.environ.get('INCOMPLETE', '')}Run of **{time.strftime('%Y-%m-%d')}** on {os.environ['MACHINE']}; irisctl at commit {os.environ['COMMIT']}.
Total run time {int(os.environ['ELAPSED']) // 60} min {int(os.environ['ELAPSED']) % 60} s. Runs per figure:
{os.environ['RUNS']} (no-op `up` against `up -d`, status), {os.environ['SLOW_RUNS']} (the others), wrk {os.environ['WRK_RUNS']} ×
{os.environ['WRK_SECONDS']} s per API and concurrency. **Absolute times are noisy on this machine (a CI run may share
the engine and the 2 cores); only the ratios, measured side by side in the same run, count.**

### 1. Orchestration: irisctl against docker-compose 1.29.2 (same images, same engine)

{orchestration}

Cold start, last run, from the engine's events (time from the first container start):

{timelines}

Only the API container is recreated when one of its source files changes (container IDs before → after):

```
{recreated}
```

{chr(10).join(memory)}

### 2. `POST /predict` (one flower) under wrk: stack/api against the course API replica

Both containers `--cpus {os.environ['CPUS']}` on the same pinned core, 512 MiB, read-only; wrk (2 threads, or 1 for
one connection) on the other core(s), {os.environ['WRK_SECONDS']} s per run, reaching each container's address directly.
Median (min–max) of {os.environ['WRK_RUNS']} runs; the two APIs alternate run by run.

{chr(10).join(api)}

Diagnostic, same run: stack/api's image with uvicorn's access log off (the proposed change, see below):

{chr(10).join(diag)}

{acc} Memory after the runs: {mem_api}.
{END}"""

readme = BENCH / "README.md"
current = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
head, _, rest = current.partition(BEGIN)
_, _, tail = rest.partition(END)
readme.write_text(head + section + tail)
