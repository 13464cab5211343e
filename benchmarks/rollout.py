"""`python -m benchmarks.rollout` (`make bench`): signed rollouts to a simulated fleet.

What runs, all on this machine over loopback, for each fleet size N:

1. a fresh PostgreSQL database, migrated; an operator, an enrollment token and two versions
   of a synthetic ONNX model per artifact size (`benchmarks.rollout_setup`, a subprocess:
   this process never loads Django; the models are `benchmarks.synthetic`'s padded linear
   classifiers, real ONNX files of the size wanted whose predictions mean nothing);
2. the production stack: uvicorn serving `controlplane.asgi` on PostgreSQL with the Redis
   channel layer (one worker: the simulator needs the other core);
3. `python -m edge_agent simulate` with N agents, each of which downloads every byte of
   each artifact with its own requests and verifies its size, hash and signature (the
   simulator keeps one copy per artifact and health-checks it once: see its docstring).

Each rollout is created through the operators' API (creating is approving: the canary is
ordered at once) with a 10 % canary and batches of 30 %, and timed until the API says
every device runs the new model. Then, on the largest fleet and artifact, the simulator
restarts with one canary agent faulty (`--faulty`): that rollout must stop after its canary
and restore the previous model on every device that got the new one.

It reports the time to all N, the bytes the server wrote (from /proc: artifacts plus every
other answer) against N x the artifact, and the server's CPU; it writes
`benchmarks/results/rollout.json` and `rollout.md`. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.fleet import (
    DEFAULT_POSTGRES,
    PYTHON,
    RESULTS,
    ROOT,
    database_url,
    postgres_url,
    recreate_database,
    redis_url,
    running_server,
)
from edge_agent.cli import positive_int

WORK_DIR = ROOT / "var" / "bench-rollout"
DATABASE = "triad_bench_rollout"
CANARY_PERCENT, BATCH_PERCENT = 10, 30
FAULTY_AGENT = 3  # sim-end-0003: in the canary (the first 10 % by name) of any N >= 10
ROLLOUT_TIMEOUT_S = 900.0


def int_list(text: str) -> list[int]:
    return [positive_int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rollout", description=__doc__)
    parser.add_argument("--agents", type=int_list, default=[10, 100], metavar="N,N")
    parser.add_argument("--sizes-mb", type=int_list, default=[5, 50], metavar="MB,MB")
    parser.add_argument("--postgres", type=postgres_url, default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--redis", type=redis_url, default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
    )
    parser.add_argument(
        "--no-failure-run", action="store_true", help="skip the faulty-canary rollout"
    )
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    return parser.parse_args(argv)


# --- processes ---------------------------------------------------------------------------
@dataclass
class ServerMeter:
    """The server's CPU seconds and bytes written (sockets included) between two marks."""

    pid: int

    def read(self) -> tuple[float, int]:
        root = psutil.Process(self.pid)
        cpu, written = 0.0, 0
        for process in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                cpu += times.user + times.system
                written += process.io_counters().write_chars
        return cpu, written


@contextlib.contextmanager
def simulator(
    env: dict[str, str], url: str, token: str, agents: int, faulty: int | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    args = [
        PYTHON, "-m", "edge_agent", "simulate", "--server", url, "--token", token,
        "--mix", f"end:{agents}", "--state-dir", str(WORK_DIR / "fleet"), "--seed", "0",
    ]  # fmt: skip
    if faulty is not None:
        args += ["--faulty", str(faulty)]
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def wait_for(check: Any, what: str, timeout_s: float, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")


# --- one rollout -------------------------------------------------------------------------
def rollout(api: httpx.Client, model_id: str, meter: ServerMeter) -> dict[str, Any]:
    """Deploy `model_id` to every end device; time it phase by phase until it ends."""
    cpu_before, written_before = meter.read()
    started = time.monotonic()
    created = api.post(
        "/api/v1/deployments/",
        json={
            "model": model_id,
            "target_kind": "tier",
            "tier": "end",
            "canary_percent": CANARY_PERCENT,
            "batch_percent": BATCH_PERCENT,
            "device_timeout_s": 600,
        },
    )
    created.raise_for_status()
    deployment_id = created.json()["id"]
    phases: dict[int, float] = {}

    def ended() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/api/v1/deployments/{deployment_id}/").json()
        phases.setdefault(body["phase"], round(time.monotonic() - started, 2))
        return body if body["status"] not in ("running", "paused", "rolling_back") else None

    final = wait_for(ended, "the rollout to end", ROLLOUT_TIMEOUT_S)
    seconds = time.monotonic() - started
    cpu_after, written_after = meter.read()
    targets = api.get(f"/api/v1/deployments/{deployment_id}/targets/").json()
    return {
        "deployment": deployment_id,
        "status": final["status"],
        "ended_reason": final["ended_reason"],
        "seconds": round(seconds, 2),
        "phase_released_at_s": phases,
        "counts": {state: n for state, n in final["counts"].items() if n},
        "server_cpu_s": round(cpu_after - cpu_before, 2),
        "server_written_bytes": written_after - written_before,
        "failed": sorted(
            (t["device_name"], t["reason"]) for t in targets if t["state"] == "failed"
        ),
    }


def bench_fleet(options: argparse.Namespace, agents: int) -> dict[str, Any]:
    """One fleet size: fresh database, server and simulator; a rollout per artifact size."""
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    WORK_DIR.mkdir(parents=True)
    recreate_database(options.postgres, DATABASE)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DATABASE_URL": database_url(options.postgres, DATABASE, role=DATABASE),
        "REDIS_URL": options.redis,
        "TRIAD_VAR_DIR": str(WORK_DIR.relative_to(ROOT)),
        "TRIAD_CHANNEL_PREFIX": f"bench-rollout-{os.getpid()}",
    }
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    setup = subprocess.run(
        [PYTHON, "-m", "benchmarks.rollout_setup", "--agents", str(agents),
         "--sizes-mb", *map(str, options.sizes_mb)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    made = json.loads(setup.stdout.strip().splitlines()[-1])
    runs: list[dict[str, Any]] = []
    with running_server(env, 1, WORK_DIR / "server.log") as (port, server_pid):
        url = f"http://127.0.0.1:{port}"
        meter = ServerMeter(server_pid)
        with contextlib.closing(operator_session(url, made["username"], made["password"])) as api:
            log = WORK_DIR / "simulator.log"
            with simulator(env, url, made["token"], agents, None, log):
                wait_online(api, agents)
                for size_mb in options.sizes_mb:
                    first = made["models"][str(size_mb)][0]
                    result = rollout(api, first["id"], meter)
                    runs.append({"agents": agents, "size_bytes": first["size_bytes"], **result})
                    print(describe(runs[-1]), flush=True)
            if agents == max(options.agents) and not options.no_failure_run:
                size_mb = max(options.sizes_mb)
                with simulator(env, url, made["token"], agents, FAULTY_AGENT, log):
                    wait_online(api, agents)
                    second = made["models"][str(size_mb)][1]
                    result = rollout(api, second["id"], meter)
                    runs.append(
                        {"agents": agents, "size_bytes": second["size_bytes"],
                         "faulty_agent": f"sim-end-{FAULTY_AGENT:04d}", **result}
                    )  # fmt: skip
                    print(describe(runs[-1]), flush=True)
    return {"agents": agents, "runs": runs}


def operator_session(url: str, username: str, password: str) -> httpx.Client:
    """An API client logged in through the login form, as a browser is. Not Basic auth:
    that runs the password hash (PBKDF2) at every poll, and the server's CPU would be the
    benchmark's own polling."""
    api = httpx.Client(base_url=url, timeout=30)
    page = api.get("/login/").text
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if match is None:
        raise SystemExit("no CSRF token on the login page")
    answer = api.post(
        "/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": match[1]},
        headers={"Referer": f"{url}/login/"},
    )
    if answer.status_code != 302:
        raise SystemExit(f"login failed: {answer.status_code}")
    api.headers["X-CSRFToken"] = api.cookies["csrftoken"]
    api.headers["Referer"] = f"{url}/"
    return api


def wait_online(api: httpx.Client, agents: int) -> None:
    def online() -> bool:
        body = api.get("/api/v1/devices/", params={"status": "online", "limit": 1}).json()
        return int(body["count"]) >= agents

    wait_for(online, f"{agents} simulated agents online", 300, interval_s=0.5)


def describe(run: dict[str, Any]) -> str:
    return (
        f"{run['agents']} agents, {run['size_bytes'] / 2**20:.0f} MiB: {run['status']} in "
        f"{run['seconds']} s; server wrote {run['server_written_bytes'] / 2**20:.0f} MiB, "
        f"CPU {run['server_cpu_s']} s; {run['counts']}"
    )


# --- results -----------------------------------------------------------------------------
def readme_table(report: dict[str, Any]) -> str:
    """The results table, as README.md shows it (tests/test_readme.py checks it is there)."""
    rows = [
        "| agents | artifact | outcome | time to all (s) | phases released at (s) | "
        "server wrote (MiB) | N x artifact (MiB) | server CPU (s) |",
        "|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    for run in runs_of(report):
        artifact_mib = run["size_bytes"] / 2**20
        phases = ", ".join(f"{t:g}" for t in run["phase_released_at_s"].values())
        faulty = f" (faulty {run['faulty_agent']})" if "faulty_agent" in run else ""
        rows.append(
            f"| {run['agents']} | {artifact_mib:.0f} MiB | {run['status']}{faulty} | "
            f"{run['seconds']:.1f} | {phases} | {run['server_written_bytes'] / 2**20:,.0f} | "
            f"{run['agents'] * artifact_mib:,.0f} | {run['server_cpu_s']:.1f} |"
        )
    return "\n".join(rows)


def runs_of(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [run for fleet in report["fleets"] for run in fleet["runs"]]


def render_markdown(report: dict[str, Any]) -> str:
    runs = runs_of(report)
    lines = [
        "# Rollout benchmark",
        "",
        f"Run on {report['machine']['cpus']} CPUs ({report['machine']['platform']}), "
        f"{report['finished_at']}. `python -m benchmarks.rollout`; see its docstring for what "
        "runs. Canary 10 %, then batches of 30 % of the fleet; time from the API call that "
        "creates (approves) the rollout until the API reports it ended.",
        "",
        readme_table(report),
        "",
    ]
    for run in runs:
        if "faulty_agent" in run:
            lines += [
                f"Faulty canary ({run['faulty_agent']}): {run['ended_reason']} Final states: "
                f"{run['counts']}; failed: {run['failed']}.",
                "",
            ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    fleets = [bench_fleet(options, agents) for agents in options.agents]
    report = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "canary_percent": CANARY_PERCENT,
        "batch_percent": BATCH_PERCENT,
        "fleets": fleets,
    }
    markdown = render_markdown(report)
    print(markdown)
    if options.write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "rollout.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "rollout.md").write_text(markdown)


if __name__ == "__main__":
    main()
