"""`python -m controlplane.demo`: the whole system on one machine, with a simulated fleet.

Starts the ASGI server, a Celery worker, Celery beat, a simulated fleet and one real agent
(`demo-camera`, serving whatever model is rolled out to it on the digits test split), each
as its own process, on the embedded defaults unless DATABASE_URL / REDIS_URL say otherwise.
Ctrl-C (or SIGTERM) stops them all.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CELERY_WORKER = (
    "-m celery --quiet -A controlplane worker --loglevel warning --concurrency 1"
    " --without-gossip --without-mingle -Q celery,compression"
)
CELERY_BEAT = "-m celery --quiet -A controlplane beat --loglevel warning"


def manage(*args: str) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return result.stdout


def wait_for_server(
    url: str, timeout_s: float = 60, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until `url` answers /healthz; give up early if `process` (the server) exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer on {url} within {timeout_s:.0f} s")


def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    print(f"  starting {name}: {' '.join(args)}", flush=True)
    # A process group of its own, so Ctrl-C in the terminal reaches only this supervisor,
    # which then stops each child in order.
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)


def stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for name, process in reversed(processes.items()):
        if process.poll() is None:
            print(f"  stopping {name}", flush=True)
            # The leader only: each program stops its own children (Celery's pool) in order.
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


EXIT_CREDENTIAL_REJECTED = 3  # edge_agent.cli's
DEMO_AGENT_DIR = ROOT / os.environ.get("TRIAD_VAR_DIR", "var") / "demo-agent"


def real_agent(url: str, token: str) -> list[str]:
    """The command of one real agent, `demo-camera`: enrolled once (its state persists
    with the database's), it serves the model rolled out to it on the digits test split
    and reports inference counts, latency and accuracy."""
    stream = DEMO_AGENT_DIR / "digits-test.npz"
    if not stream.exists():
        from models_hub.compression.tasks import load_task

        DEMO_AGENT_DIR.mkdir(parents=True, exist_ok=True)
        # The split register_builtin_task registers as "digits test split" (seed 0).
        load_task("digits", 0).test.save(stream)
    if not (DEMO_AGENT_DIR / "agent.json").exists():
        subprocess.run(
            [PYTHON, "-m", "edge_agent", "enroll", "--server", url, "--token", token,
             "--state-dir", str(DEMO_AGENT_DIR), "--name", "demo-camera", "--tier", "end",
             "--label", "role=demo"],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    return [PYTHON, "-m", "edge_agent", "run", "--state-dir", str(DEMO_AGENT_DIR),
            "--stream", str(stream), "--inference-rate", "5"]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m controlplane.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--mix",
        default="cloud:2,edge:4,end:8",
        help="simulated fleet per tier (default: %(default)s)",
    )
    parser.add_argument("--interval", type=int, default=5, help="heartbeat interval, seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    url = f"http://{options.host}:{options.port}"
    env = {**os.environ, "TRIAD_HEARTBEAT_INTERVAL_S": str(options.interval)}
    os.environ.update(env)
    print("Preparing the database…", flush=True)
    manage("migrate", "--noinput")
    print("Users (passwords are new each run):", flush=True)
    print(manage("bootstrap", "--users"), end="", flush=True)
    # A workload ready to schedule: one camera per simulated end device.
    manage("create_workload", "--template", "video-pipeline", "--param", "cameras=8",
           "--name", "Junction cameras (demo)", "--if-missing")  # fmt: skip
    # A model to compress: the digits teacher (trained in seconds) and its data sets.
    manage("register_builtin_task", "digits", "--if-missing")
    count = sum(int(part.split(":")[1]) for part in options.mix.split(","))
    token = manage(
        "create_enrollment_token", "--uses", str(count + 1), "--expires", "1h",
        "--name", "demo fleet",
    ).strip()  # fmt: skip

    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        server = f"--host {options.host} --port {options.port} --log-level warning"
        processes["server"] = start(
            "ASGI server",
            [PYTHON, *f"-m uvicorn controlplane.asgi:application {server}".split()],
            env,
        )
        processes["worker"] = start("Celery worker", [PYTHON, *CELERY_WORKER.split()], env)
        processes["beat"] = start("Celery beat", [PYTHON, *CELERY_BEAT.split()], env)
        wait_for_server(url, process=processes["server"])
        fleet_dir = ROOT / os.environ.get("TRIAD_VAR_DIR", "var") / "simulated-fleet"
        fleet = f"--server {url} --token {token} --count {count} --mix {options.mix}"
        fleet_args = f"-m edge_agent simulate {fleet} --state-dir {fleet_dir}"
        processes["fleet"] = start("simulated fleet", [PYTHON, *fleet_args.split()], env)
        processes["agent"] = start("real agent", real_agent(url, token), env)
        print(f"\nTriad is running: open {url}/ and log in as operator or admin.", flush=True)
        print("Press Ctrl-C to stop.\n", flush=True)
        while not stopping:
            for name, process in processes.items():
                if name == "agent" and process.poll() == EXIT_CREDENTIAL_REJECTED:
                    # A database made anew since it enrolled: enroll it again.
                    (DEMO_AGENT_DIR / "agent.json").unlink(missing_ok=True)
                    processes["agent"] = start("real agent", real_agent(url, token), env)
                elif process.poll() is not None:
                    print(f"  {name} exited with {process.returncode}; stopping", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        stop_all(processes)
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
