"""`python -m benchmarks.fleet` (`make bench`): a simulated fleet heartbeating the real server.

What runs, all on this machine over loopback:

1. a fresh PostgreSQL database, migrated, with M agents enrolled in bulk
   (`benchmarks.fleet_setup`, a subprocess: this process never loads Django);
2. the production stack: uvicorn serving `controlplane.asgi` on PostgreSQL with the Redis
   channel layer, as a subprocess (see `server_command` for the choice of options);
3. a lean asyncio load generator in this process (`benchmarks.loadgen`): one heartbeat per
   agent to bring the fleet online, then an open-loop run at the target rate, then a step
   series of rates to find the knee.

It reports offered and sustained heartbeats/s, latency percentiles (from each heartbeat's
scheduled send time, so queueing counts), errors by status, and the CPU of the server,
PostgreSQL, Redis, the load generator and everything else on the machine; it writes
`benchmarks/results/fleet.json` and `fleet.md`. Every phase is bounded; it stops itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from benchmarks import loadgen
from edge_agent.cli import positive_float, positive_int

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK_DIR = ROOT / "var" / "bench"
PYTHON = sys.executable
HOST = "127.0.0.1"
LOG_MARKER = "## Optimisation log"
DEFAULT_POSTGRES = os.environ.get(
    "TRIAD_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"
)


# --- command line ---------------------------------------------------------------------------
def non_negative_float(text: str) -> float:
    if text.strip() in {"0", "0.0"}:
        return 0.0
    return positive_float(text)


def rate_list(text: str) -> list[float]:
    if text.strip().lower() in {"", "none"}:
        return []
    return [positive_float(part) for part in text.split(",")]


def postgres_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in {"postgres", "postgresql"} or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not a postgres://user@host:port/db URL")
    return text


def redis_url(text: str) -> str:
    if urlsplit(text).scheme not in {"redis", "rediss", "unix"}:
        raise argparse.ArgumentTypeError(f"{text!r} is not a redis:// URL")
    return text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fleet",
        description="Simulated agents heartbeating the real server on PostgreSQL + Redis.",
    )
    parser.add_argument("--agents", type=positive_int, default=10_000, help="enrolled agents")
    parser.add_argument(
        "--rate", type=positive_float, default=1000.0, help="heartbeats/s of the main run"
    )
    parser.add_argument(
        "--duration", type=positive_float, default=60.0, help="measured seconds of the main run"
    )
    parser.add_argument(
        "--warmup", type=non_negative_float, default=10.0, help="unmeasured seconds first"
    )
    parser.add_argument(
        "--steps",
        type=rate_list,
        default=[250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0],
        help="comma-separated rates for the step series, or 'none' "
        "(default: 250,500,1000,1500,2000,2500)",
    )
    parser.add_argument(
        "--step-duration", type=positive_float, default=20.0, help="measured seconds per step"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="uvicorn worker processes (one a core)"
    )
    parser.add_argument(
        "--connections",
        type=positive_int,
        default=512,
        help="most keep-alive connections the generator opens",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=10.0, help="per-heartbeat timeout, s"
    )
    parser.add_argument(
        "--postgres",
        type=postgres_url,
        default=DEFAULT_POSTGRES,
        help="a maintenance-database URL; the benchmark database is created next to it",
    )
    parser.add_argument("--database", default="triad_bench", help="benchmark database name")
    parser.add_argument(
        "--redis", type=redis_url, default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--label", default="current", help="what this run measures (shown in the results)"
    )
    parser.add_argument(
        "--record-baseline",
        action="store_true",
        help="store this run as the baseline that later results are compared with",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="~20 s smoke run (by default 1000 agents, 200/s for 10 s, no steps); "
        "results are not written",
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database after")
    # --quick changes the defaults only, so `--quick --agents 500` still means 500 agents.
    quick, _ = parser.parse_known_args(argv)
    if quick.quick:
        parser.set_defaults(
            agents=1000, rate=200.0, duration=10.0, warmup=2.0, steps=[], step_duration=5.0
        )
    options = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", options.database):
        parser.error(f"--database {options.database!r} must be a lower-case SQL identifier")
    for rate in [options.rate, *options.steps]:
        interval = options.agents / rate
        if interval < 1:
            parser.error(
                f"{rate:g} heartbeats/s from {options.agents} agents means more than one "
                "heartbeat per agent per second; enroll more agents (--agents)"
            )
    return options


# --- processes and CPU ------------------------------------------------------------------
@dataclass
class CpuSnapshot:
    at: float
    groups: dict[str, dict[int, float]]  # group -> pid -> cpu seconds
    machine_busy: float


class CpuMeter:
    """CPU seconds of process groups (server, PostgreSQL, Redis, generator) between marks."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.me = psutil.Process()

    def _groups(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {
            "server": [],
            "postgres": [],
            "redis": [],
            "loadgen": [self.me],
        }
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.server_pid)
            groups["server"] = [root, *root.children(recursive=True)]
        for process in psutil.process_iter(["name"]):
            name = process.info["name"] or ""
            if name.startswith("postgres"):
                groups["postgres"].append(process)
            elif name.startswith("redis-server"):
                groups["redis"].append(process)
        return groups

    def snapshot(self) -> CpuSnapshot:
        seconds: dict[str, dict[int, float]] = {}
        for group, processes in self._groups().items():
            seconds[group] = {}
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    times = process.cpu_times()
                    seconds[group][process.pid] = times.user + times.system
        total = psutil.cpu_times()
        busy = total.user + total.nice + total.system + total.irq + total.softirq + total.steal
        return CpuSnapshot(time.monotonic(), seconds, busy)

    @staticmethod
    def percent(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
        """Percent of one core per group over the interval; `machine` is all cores summed."""
        wall = end.at - start.at
        result = {}
        for group, after in end.groups.items():
            before = start.groups.get(group, {})
            # A process started during the interval counts in full; one that ended is lost
            # (the server's and PostgreSQL's connections are persistent, so this is rare).
            used = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
            result[group] = 100 * used / wall
        result["machine"] = 100 * (end.machine_busy - start.machine_busy) / wall
        result["other"] = result["machine"] - sum(
            result[g] for g in ("server", "postgres", "redis", "loadgen")
        )
        return {key: round(value, 1) for key, value in result.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_command(port: int, workers: int) -> list[str]:
    """uvicorn as production runs it on one machine.

    - one worker process per core: heartbeats are served on the event loop without thread
      hops (devices/ingest.py), so a process keeps a core busy by itself and more processes
      would only add context switches (3 workers measured slower at 1500/s than 2);
    - uvloop and httptools: the C event loop and HTTP parser, the fastest uvicorn ships;
    - no access log (the load balancer logs requests) and no lifespan (Django has none);
    - a keep-alive timeout longer than a load balancer's idle upstream connections, so the
      server never closes a connection the balancer is about to reuse.
    """
    return [
        PYTHON, "-m", "uvicorn", "controlplane.asgi:application",
        "--host", HOST, "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
        "--no-access-log", "--log-level", "warning",
        "--timeout-keep-alive", "75", "--backlog", "4096",
    ]  # fmt: skip


@contextlib.contextmanager
def running_server(env: dict[str, str], workers: int, log: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            server_command(port, workers),
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_server(port, process, timeout_s=60)
            yield port, process.pid
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def wait_for_server(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    # Not controlplane.demo's: importing controlplane would load Celery and Django here.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer within {timeout_s:.0f} s")


# --- database -------------------------------------------------------------------------------
# The server connects as a role of its own, capped well below the shared PostgreSQL's
# max_connections, so that a misbehaving server (say, one leaking connections) fails in this
# benchmark instead of locking every other user of the database out.
ROLE_CONNECTION_LIMIT = 60


def database_url(maintenance_url: str, name: str, role: str | None = None) -> str:
    parts = urlsplit(maintenance_url)
    netloc = parts.netloc
    if role is not None:
        netloc = f"{role}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, "/" + name, "", ""))


def sql(maintenance_url: str, *statements: str, database: str | None = None) -> list[Any]:
    import psycopg

    url = database_url(maintenance_url, database) if database else maintenance_url
    rows: list[Any] = []
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            cursor = connection.execute(statement)  # type: ignore[call-overload]
            if cursor.description:
                rows = cursor.fetchall()
    return rows


def recreate_database(maintenance_url: str, name: str) -> None:
    """A fresh database named `name`, owned by a login role of the same name."""
    sql(
        maintenance_url,
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') "
        f"THEN CREATE ROLE {name} LOGIN; END IF; END$$",
        f"ALTER ROLE {name} CONNECTION LIMIT {ROLE_CONNECTION_LIMIT}",
        f"CREATE DATABASE {name} OWNER {name}",
    )


def prepare_fleet(env: dict[str, str], agents: int, seed: int) -> list[str]:
    out = WORK_DIR / "credentials.txt"
    subprocess.run(
        [PYTHON, "-m", "benchmarks.fleet_setup", "--agents", str(agents), "--out", str(out),
         "--seed", str(seed)],
        cwd=ROOT, env=env, check=True, timeout=600,
    )  # fmt: skip
    credentials = out.read_text().split()
    out.unlink()
    return credentials


# --- one measured run -----------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarise(
    record: loadgen.RunRecord, warmup: float, duration: float, cpu: dict[str, float]
) -> dict[str, Any]:
    window = [o for o in record.outcomes if warmup <= o.scheduled < warmup + duration]
    latencies = sorted(o.latency_s * 1000 for o in window)
    lags = sorted(o.lag_s * 1000 for o in window)
    statuses = Counter(o.status for o in window)
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    ok_in_window = sum(
        1
        for o in record.outcomes
        if o.status.startswith("2") and warmup <= o.done_at < warmup + duration
    )
    return {
        "offered_per_s": round(len(window) / duration, 1),
        "sustained_per_s": round(ok_in_window / duration, 1),
        "sent": len(window),
        "ok": ok,
        "errors": {status: n for status, n in sorted(statuses.items()) if status != "200"},
        "unfinished": record.unfinished,
        "latency_ms": {
            name: round(percentile(latencies, q), 1)
            for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))
        },
        "generator_lag_p99_ms": round(percentile(lags, 0.99), 1),
        "peak_connections": record.peak_connections,
        "cpu_percent": cpu,
    }


def measure(
    agents: Sequence[loadgen.Agent],
    options: argparse.Namespace,
    port: int,
    meter: CpuMeter,
    rate: float,
    warmup: float,
    duration: float,
    seed: int,
) -> tuple[dict[str, Any], int]:
    """One open-loop run; returns its summary and how many heartbeats got a 200 in all."""
    interval = len(agents) / rate
    schedule = loadgen.periodic_schedule(len(agents), interval, warmup + duration, seed)
    marks: list[CpuSnapshot] = []

    async def run() -> loadgen.RunRecord:
        loop = asyncio.get_running_loop()
        begin = loop.time() + 0.2
        loop.call_at(begin + warmup, lambda: marks.append(meter.snapshot()))
        loop.call_at(begin + warmup + duration, lambda: marks.append(meter.snapshot()))
        record = await loadgen.run_open_loop(
            agents,
            schedule,
            host=HOST,
            port=port,
            max_connections=options.connections,
            request_timeout_s=options.timeout,
            drain_timeout_s=options.timeout + 2,
            start=begin,
        )
        # The last answers may come before the window closes: wait for its CPU snapshot.
        await asyncio.sleep(max(0.0, begin + warmup + duration - loop.time()) + 0.05)
        return record

    record = run_loop(run())
    cpu = CpuMeter.percent(marks[0], marks[1])
    summary = summarise(record, warmup, duration, cpu)
    summary.update(rate=rate, interval_s=round(interval, 2), duration_s=duration)
    summary["postgres_processes"] = len(marks[1].groups["postgres"])
    answered = sum(o.status == "200" for o in record.outcomes)
    return summary, answered


def run_loop(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def describe(result: dict[str, Any]) -> str:
    lat, cpu = result["latency_ms"], result["cpu_percent"]
    errors = ", ".join(f"{k}: {v}" for k, v in result["errors"].items()) or "none"
    return (
        f"offered {result['offered_per_s']:.0f}/s sustained {result['sustained_per_s']:.0f}/s | "
        f"p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} max {lat['max']} ms | "
        f"errors {errors} | CPU% server {cpu['server']} pg {cpu['postgres']} "
        f"redis {cpu['redis']} gen {cpu['loadgen']} other {cpu['other']}"
    )


# --- results ----------------------------------------------------------------------------
def machine_facts(maintenance_url: str) -> dict[str, Any]:
    version, autovacuum, synchronous_commit = (
        sql(maintenance_url, f"SHOW {name}")[0][0]
        for name in ("server_version", "autovacuum", "synchronous_commit")
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "devices", "controlplane"],
        cwd=ROOT, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit + ("+changes" if dirty else ""),
        "cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "postgres": version,
        "postgres_settings": f"autovacuum={autovacuum}, synchronous_commit={synchronous_commit}",
        "os": platform.platform(),
    }


def write_results(report: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / "fleet.json", RESULTS / "fleet.md"
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    if not report.get("baseline") and previous.get("baseline"):
        report["baseline"] = previous["baseline"]
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    log = ""
    if md_path.exists():
        text = md_path.read_text()
        if LOG_MARKER in text:
            log = text[text.index(LOG_MARKER) :]
    md_path.write_text(render_markdown(report) + ("\n" + log if log else ""))


def table(rows: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = [
        "| run | offered/s | sustained/s | p50 ms | p90 ms | p99 ms | max ms | errors "
        "| server CPU % | Postgres CPU % | Redis CPU % | generator CPU % | other CPU % |",
        "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for name, r in rows:
        lat, cpu = r["latency_ms"], r["cpu_percent"]
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        if r.get("unfinished"):
            errors += f", unfinished: {r['unfinished']}"
        lines.append(
            f"| {name} | {r['offered_per_s']:.0f} | {r['sustained_per_s']:.0f} | {lat['p50']} "
            f"| {lat['p90']} | {lat['p99']} | {lat['max']} | {errors} | {cpu['server']} "
            f"| {cpu['postgres']} | {cpu['redis']} | {cpu['loadgen']} | {cpu['other']} |"
        )
    return lines


def online_line(report: dict[str, Any]) -> list[str]:
    online = report.get("fleet_online")
    if not online:
        return []
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(online["answers"].items()))
    return [
        f"Bringing the fleet online (each agent's first heartbeat, closed loop over 32 "
        f"connections): {online['seconds']} s ({answers}).",
        "",
    ]


def check_line(report: dict[str, Any]) -> list[str]:
    check = report.get("check")
    if not check:
        return []
    return [
        f"Check: {check['heartbeats_answered_200']} heartbeats answered 200, "
        f"{unanswered(report)} unanswered (timed out or cut off), "
        f"{check['telemetry_rows_stored']} telemetry rows stored ({check_verdict(report)}).",
        "",
    ]


def unanswered(report: dict[str, Any]) -> int:
    """Heartbeats whose errors carry no HTTP status: the client never saw an answer."""
    runs = [report["main"], *report["steps"]]
    return sum(n for run in runs for kind, n in run["errors"].items() if not kind.isdigit())


def check_verdict(report: dict[str, Any]) -> str:
    """Every 200 must be stored; a heartbeat the client gave up on may or may not be."""
    check = report["check"]
    answered, stored = check["heartbeats_answered_200"], check["telemetry_rows_stored"]
    return "ok" if answered <= stored <= answered + unanswered(report) else "MISMATCH"


def section(title: str, report: dict[str, Any]) -> list[str]:
    config = report["config"]
    rows = [(f"main {report['main']['rate']:g}/s", report["main"])]
    rows += [(f"step {step['rate']:g}/s", step) for step in report.get("steps", [])]
    return [
        f"## {title}: {report['label']}",
        "",
        f"{config['agents']} agents, main run {config['duration_s']:g} s after "
        f"{config['warmup_s']:g} s warm-up, steps {config['step_duration_s']:g} s each; "
        f"uvicorn {config['workers']} workers; commit {report['machine']['commit']}, "
        f"{report['machine']['date']}.",
        "",
        *online_line(report),
        *table(rows),
        "",
        *check_line(report),
        "",
    ]


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# Fleet benchmark: heartbeat ingestion",
        "",
        "Written by `make bench` (`python -m benchmarks.fleet`). Simulated agents heartbeat the",
        "real server (uvicorn + Django on PostgreSQL, Redis channel layer) over loopback, one",
        "telemetry sample per heartbeat, open loop: latency runs from each heartbeat's scheduled",
        "send time to its answer, so queueing counts. CPU is percent of one core (the machine",
        f"has {machine['cores']}); *other* is everything else that ran on the machine meanwhile.",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Python {machine['python']}, PostgreSQL {machine['postgres']} "
        f"({machine.get('postgres_settings', '')}), {machine['os']}.",
        "",
        "Target: 1,000 heartbeats/s with p99 under 250 ms, load generator on the same machine.",
        "",
        *section("Current", report),
    ]
    baseline = report.get("baseline")
    if baseline and baseline is not report:
        lines += section("Baseline", baseline)
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    db_url = database_url(options.postgres, options.database, role=options.database)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DATABASE_URL": db_url,
        "REDIS_URL": options.redis,
        "TRIAD_CHANNEL_PREFIX": f"triad-bench-{os.getpid()}",
        "TRIAD_VAR_DIR": str(WORK_DIR.relative_to(ROOT)),
        "TRIAD_LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "false",
    }
    machine = machine_facts(options.postgres)
    started = time.monotonic()
    print(f"fleet benchmark: {options.agents} agents, database {options.database}", flush=True)
    recreate_database(options.postgres, options.database)
    try:
        credentials = prepare_fleet(env, options.agents, options.seed)
        print(f"  enrolled {len(credentials)} agents ({time.monotonic() - started:.0f} s)")
        report = run_all(options, env, credentials, machine)
        telemetry_rows = sql(
            options.postgres, "SELECT count(*) FROM devices_telemetry", database=options.database
        )[0][0]
    finally:
        if not options.keep_db:
            sql(options.postgres, f"DROP DATABASE IF EXISTS {options.database} WITH (FORCE)")
    report["check"] = {
        "heartbeats_answered_200": report.pop("answered_200"),
        "telemetry_rows_stored": telemetry_rows,
    }
    print(f"  check: {report['check']} ({check_verdict(report)})", flush=True)
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    if options.quick:
        print("(--quick: results not written)")
        return
    if options.record_baseline:
        report["baseline"] = {k: v for k, v in report.items() if k != "baseline"}
    write_results(report)
    print(f"wrote {RESULTS / 'fleet.json'} and {RESULTS / 'fleet.md'}")


def run_all(
    options: argparse.Namespace,
    env: dict[str, str],
    credentials: list[str],
    machine: dict[str, Any],
) -> dict[str, Any]:
    log = WORK_DIR / "server.log"
    with running_server(env, options.workers, log) as (port, server_pid):
        agents = loadgen.make_agents(credentials, HOST, port, options.seed)
        meter = CpuMeter(server_pid)
        began = time.monotonic()
        prime = run_loop(loadgen.run_closed_loop(agents, host=HOST, port=port, concurrency=32))
        online_s = round(time.monotonic() - began, 1)
        print(f"  fleet online: {prime} in {online_s} s", flush=True)
        answered = prime.get("200", 0)

        main_run, count = measure(
            agents, options, port, meter, options.rate, options.warmup, options.duration,
            options.seed,
        )  # fmt: skip
        print(f"  main {options.rate:g}/s: {describe(main_run)}", flush=True)
        answered += count
        steps = []
        for index, rate in enumerate(options.steps):
            step, count = measure(
                agents, options, port, meter, rate, min(options.warmup, 5.0),
                options.step_duration, options.seed + 1 + index,
            )  # fmt: skip
            print(f"  step {rate:g}/s: {describe(step)}", flush=True)
            steps.append(step)
            answered += count
    server_errors = sum(
        line.startswith(("ERROR", "Traceback")) or " ERROR " in line
        for line in log.read_text(errors="replace").splitlines()
    )
    return {
        "label": options.label,
        "machine": machine,
        "config": {
            "agents": options.agents,
            "workers": options.workers,
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "step_duration_s": options.step_duration,
            "connections": options.connections,
            "server": " ".join(server_command(0, options.workers)[2:]),
        },
        "fleet_online": {"seconds": online_s, "answers": prime},
        "main": main_run,
        "steps": steps,
        "server_log_errors": server_errors,
        "answered_200": answered,
    }


if __name__ == "__main__":
    main()
