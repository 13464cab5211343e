"""`python -m benchmarks.profile_heartbeat`: where one heartbeat's server CPU goes.

Drives the ASGI application in-process (no sockets, no uvicorn) with heartbeats from
a fleet enrolled in a fresh PostgreSQL database, under cProfile, and prints the functions
that cost the most. The Redis channel layer is used when --redis is given, as in production.

    python -m benchmarks.profile_heartbeat --requests 2000 --sort tottime
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from typing import Any

from benchmarks import fleet, loadgen


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_heartbeat")
    parser.add_argument("--requests", type=fleet.positive_int, default=2000)
    parser.add_argument("--agents", type=fleet.positive_int, default=500)
    parser.add_argument("--postgres", type=fleet.postgres_url, default=fleet.DEFAULT_POSTGRES)
    parser.add_argument("--database", default="triad_profile")
    parser.add_argument("--redis", type=fleet.redis_url, default=None)
    parser.add_argument(
        "--mode",
        choices=["asgi", "sync"],
        default="asgi",
        help="asgi: the ASGI handler on an event loop (cProfile then sees only the loop's "
        "thread, not the per-request threads); sync: Django's test client in this thread, "
        "which shows the view's own CPU",
    )
    parser.add_argument("--sort", choices=["tottime", "cumulative"], default="tottime")
    parser.add_argument("--top", type=fleet.positive_int, default=40)
    parser.add_argument(
        "--no-profile", action="store_true", help="only time the requests (wall and CPU)"
    )
    parser.add_argument("--out", help="also dump the raw profile here (for snakeviz etc.)")
    return parser.parse_args()


async def drive(app: Any, requests: list[bytes]) -> list[int]:
    statuses = []
    for raw in requests:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in lines[1:])
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": raw.split(b" ", 1)[0].decode(),
            "scheme": "http",
            "path": raw.split(b" ", 2)[1].decode(),
            "raw_path": raw.split(b" ", 2)[1],
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive(messages: list[dict[str, Any]] = messages) -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        await app(scope, receive, send)
        statuses.append(sent[0]["status"])
    return statuses


def drive_sync(requests: list[bytes]) -> list[int]:
    from django.test import Client

    client = Client()
    statuses = []
    for raw in requests:
        head, _, body = raw.partition(b"\r\n\r\n")
        authorization = next(
            line.partition(b": ")[2].decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"authorization:")
        )
        response = client.post(
            loadgen.HEARTBEAT_PATH,
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION=authorization,
        )
        statuses.append(response.status_code)
    return statuses


def main() -> None:
    options = parse_args()
    fleet.recreate_database(options.postgres, options.database)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        DATABASE_URL=fleet.database_url(options.postgres, options.database, options.database),
        TRIAD_VAR_DIR="var/bench",
        TRIAD_LOG_LEVEL="WARNING",
    )
    if options.redis:
        os.environ["REDIS_URL"] = options.redis
        os.environ["TRIAD_CHANNEL_PREFIX"] = f"triad-profile-{os.getpid()}"
    else:
        os.environ.pop("REDIS_URL", None)
    try:
        import django
        from django.core.management import call_command
        from django.db import connections

        from benchmarks.fleet_setup import enroll_fleet

        django.setup()
        call_command("migrate", "--noinput", verbosity=0)
        credentials = enroll_fleet(options.agents, seed=1)
        connections.close_all()
        from controlplane.asgi import application as app

        agents = loadgen.make_agents(credentials, "127.0.0.1", 8000, seed=1)
        warm = [loadgen.heartbeat_request(agent, 0) for agent in agents]
        requests = [
            loadgen.heartbeat_request(agents[i % len(agents)], 1 + i // len(agents))
            for i in range(options.requests)
        ]
        # First heartbeats flip the devices online.
        statuses = asyncio.run(drive(app, warm)) if options.mode == "asgi" else drive_sync(warm)
        profiler = cProfile.Profile()
        began, cpu_began = time.perf_counter(), time.process_time()
        if not options.no_profile:
            profiler.enable()
        statuses = (
            asyncio.run(drive(app, requests)) if options.mode == "asgi" else drive_sync(requests)
        )
        profiler.disable()
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        connections.close_all()
    finally:
        fleet.sql(options.postgres, f"DROP DATABASE IF EXISTS {options.database} WITH (FORCE)")
    bad = [s for s in statuses if s != 200]
    print(
        f"{len(requests)} heartbeats, one at a time, in {elapsed:.2f} s "
        f"({'' if options.no_profile else 'under cProfile, '}all threads' CPU {cpu:.2f} s): "
        f"{1000 * elapsed / len(requests):.2f} ms wall, {1000 * cpu / len(requests):.2f} ms CPU "
        f"each; non-200: {len(bad)}"
    )
    if options.no_profile:
        return
    stats = pstats.Stats(profiler).strip_dirs().sort_stats(options.sort)
    stats.print_stats(options.top)
    if options.out:
        stats.dump_stats(options.out)


if __name__ == "__main__":
    main()
