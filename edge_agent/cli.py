"""Command line: ``python -m edge_agent enroll|run|simulate``.

Exit codes: 0 success, 1 runtime failure (server refused or unreachable, not enrolled),
2 bad arguments, 3 the credential was rejected while running (re-enroll the device).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from edge_agent.client import (
    AgentClient,
    AgentError,
    CredentialRejected,
    EnrollmentRejected,
    RetryableError,
    enroll_body,
    format_field_errors,
)
from edge_agent.fleet_model import TIERS
from edge_agent.state import (
    SPOOL_FILE,
    AgentState,
    AgentStateFile,
    StateError,
    default_state_dir,
    ensure_private_dir,
    load_agent_state,
    save_agent_state,
)

if TYPE_CHECKING:
    from edge_agent.deploy import Reconciler
    from edge_agent.inference import InferenceStats, InputStream

log = logging.getLogger("edge_agent")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CREDENTIAL_REJECTED = 0, 1, 2, 3


# --- argument types: each raises ArgumentTypeError, which argparse reports with the flag.


def server_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http(s)://host[:port] URL, got {value!r}")
    return value.rstrip("/")


def non_empty(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value!r}")
    return number


def npz_stream(value: str) -> InputStream:
    from edge_agent.inference import load_stream

    try:
        return load_stream(Path(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip(), val


def agent_indexes(value: str) -> frozenset[int]:
    """``0,3`` -> {0, 3}: agent indexes of a simulation."""
    try:
        indexes = frozenset(int(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected agent indexes like 0,3, got {value!r}"
        ) from None
    if any(index < 0 for index in indexes):
        raise argparse.ArgumentTypeError(f"agent indexes are not negative, got {value!r}")
    return indexes


def tier_mix(value: str) -> dict[str, int]:
    """``cloud:2,edge:4,end:10`` -> {"cloud": 2, "edge": 4, "end": 10}."""
    mix: dict[str, int] = {}
    for part in value.split(","):
        tier, sep, count = part.strip().partition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected TIER:COUNT items, got {part!r}")
        if tier not in TIERS:
            raise argparse.ArgumentTypeError(f"unknown tier {tier!r} (expected {', '.join(TIERS)})")
        if tier in mix:
            raise argparse.ArgumentTypeError(f"tier {tier!r} given twice")
        try:
            mix[tier] = int(count)
        except ValueError:
            raise argparse.ArgumentTypeError(f"count for {tier!r} is not an integer") from None
        if mix[tier] < 0:
            raise argparse.ArgumentTypeError(f"count for {tier!r} is negative")
    if sum(mix.values()) == 0:
        raise argparse.ArgumentTypeError("the mix has no agents")
    return mix


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_agent", description="Triad edge agent: enroll, run, simulate."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add_arguments, summary in (
        ("enroll", _add_enroll, "enroll this device with a token"),
        ("run", _add_run, "heartbeat with real measurements, forever"),
        ("simulate", _add_simulate, "simulate a fleet of agents"),
    ):
        command = commands.add_parser(name, help=summary)
        add_arguments(command)
        # Checks across several flags report through the subcommand's own usage line.
        command.set_defaults(command_parser=command)
    return parser


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where credentials and the spool live (default: $TRIAD_AGENT_STATE_DIR "
        "or ~/.triad-agent)",
    )


def _add_enroll(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", type=server_url, required=True, help="control plane URL")
    parser.add_argument("--token", type=non_empty, required=True, help="enrollment token")
    parser.add_argument("--name", type=non_empty, default=None, help="default: host name")
    parser.add_argument(
        "--tier",
        choices=TIERS,
        default=None,
        help="default: guessed from the hardware (<=4 cores and <=8 GiB: end; "
        ">=32 cores: cloud; else edge)",
    )
    parser.add_argument("--label", type=label, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--location", default=None)
    _add_state_dir(parser)


def _add_run(parser: argparse.ArgumentParser) -> None:
    _add_state_dir(parser)
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=None,
        help="seconds between samples; overrides the server's heartbeat_interval_s",
    )
    parser.add_argument(
        "--max-queue",
        type=positive_int,
        default=100_000,
        help="most samples kept while the server is away; the oldest go first",
    )
    parser.add_argument(
        "--model-quota-bytes",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="most bytes the deployed models may take (the active one and the new one); "
        "default: only the free disk space limits them",
    )
    parser.add_argument(
        "--stream",
        type=npz_stream,
        default=None,
        metavar="PATH.npz",
        help="inputs for the active model: x (float32, samples on axis 0) and optional y "
        "(integer labels, for the accuracy metric), cycled; default: random inputs",
    )
    parser.add_argument(
        "--inference-rate",
        type=positive_float,
        default=10.0,
        metavar="HZ",
        help="inferences per second on the active model (default 10)",
    )


def _add_simulate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", type=server_url, required=True, help="control plane URL")
    parser.add_argument("--token", type=non_empty, required=True, help="enrollment token")
    parser.add_argument(
        "--count", type=positive_int, default=None, help="agents; default: the mix's sum"
    )
    parser.add_argument("--mix", type=tier_mix, required=True, metavar="cloud:N,edge:N,end:N")
    _add_state_dir(parser)
    parser.add_argument("--interval", type=positive_float, default=None)
    parser.add_argument("--duration", type=positive_float, default=None, help="stop after S s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--faulty",
        type=agent_indexes,
        default=frozenset(),
        metavar="I,J,...",
        help="agents (by index, from 0) whose model health checks always fail, with "
        "reason health_check_failed: for benchmarks and tests of rollouts that must stop",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "simulate":
        _check_simulation_size(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO; the agent logs the events that matter itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    state_dir: Path = args.state_dir or default_state_dir()
    handlers = {"enroll": enroll_command, "run": run_command, "simulate": simulate_command}
    return handlers[args.command](args, state_dir)


def _check_simulation_size(args: argparse.Namespace) -> None:
    total = sum(args.mix.values())
    if args.count is not None and args.count != total:
        args.command_parser.error(
            f"argument --mix: counts sum to {total} but --count is {args.count}"
        )
    beyond = sorted(index for index in args.faulty if index >= total)
    if beyond:
        args.command_parser.error(
            f"argument --faulty: no agent {beyond[0]} in a simulation of {total} "
            f"(indexes run from 0 to {total - 1})"
        )


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def enroll_command(args: argparse.Namespace, state_dir: Path) -> int:
    from edge_agent.hardware import guess_tier, measure_profile

    profile = measure_profile()
    tier = args.tier or guess_tier(profile)
    body = enroll_body(
        token=args.token,
        name=args.name or socket.gethostname(),
        tier=tier,
        hardware=profile.to_json(),
        labels=dict(args.label),
        location=args.location,
    )
    try:
        with AgentClient(args.server) as client:
            result = client.enroll(body)
    except EnrollmentRejected as exc:
        details = "\n  ".join(format_field_errors(exc.errors))
        return _fail(f"enrollment rejected by the server:\n  {details}")
    except CredentialRejected as exc:
        return _fail(f"enrollment refused ({exc.status} {exc.code}): {exc.detail}")
    except RetryableError as exc:
        return _fail(f"cannot enroll at {args.server}: {exc}")
    except AgentError as exc:
        return _fail(str(exc))
    state = AgentState(
        server=args.server,
        device_id=result.device_id,
        credential=result.credential,
        heartbeat_interval_s=result.heartbeat_interval_s,
        hardware=profile.to_json(),
        tier=tier,
        signing=result.signing,
    )
    path = save_agent_state(ensure_private_dir(state_dir), state)
    print(f"enrolled as {tier} device; state in {path}", file=sys.stderr)
    print(result.device_id)  # stdout carries the id alone, for scripts
    return EXIT_OK


def run_command(args: argparse.Namespace, state_dir: Path) -> int:
    from edge_agent.nudge import NudgeListener
    from edge_agent.power import choose_power_source
    from edge_agent.runner import AgentRunner, RunnerConfig, RunOutcome, StopToken
    from edge_agent.spool import Spool
    from edge_agent.telemetry import TelemetrySampler

    try:
        state_file = AgentStateFile(state_dir, load_agent_state(state_dir))
    except StateError as exc:
        return _fail(str(exc))
    state = state_file.state
    hardware = state.hardware
    power = choose_power_source(
        float(hardware.get("power_idle_w", 5.0)), float(hardware.get("power_busy_w", 20.0))
    )
    config = RunnerConfig(
        interval_s=args.interval or state.heartbeat_interval_s,
        interval_is_override=args.interval is not None,
    )

    def remember_interval(interval_s: float) -> None:
        state_file.update(heartbeat_interval_s=interval_s)

    stop = StopToken()
    stop.install_signal_handlers()
    with (
        Spool(state_dir / SPOOL_FILE, args.max_queue) as spool,
        AgentClient(state.server, state.credential) as client,
        model_services(args, state_dir, state_file) as (reconciler, inference_stats),
    ):
        log.info("device %s reporting to %s (power: %s)", state.device_id, state.server, power.name)
        runner = AgentRunner(
            client,
            spool,
            TelemetrySampler(power, inference_stats),
            config,
            stop,
            random.Random(),
            on_interval_change=remember_interval,
            on_order=reconciler.offer,
            on_profile=reconciler.offer_profile,
        )
        with NudgeListener(state.server, state.credential, runner.nudge):
            outcome = runner.run()
    if outcome is RunOutcome.CREDENTIAL_REJECTED:
        return _fail(
            "the server rejected this device's credential; enroll again with a new token",
            EXIT_CREDENTIAL_REJECTED,
        )
    return EXIT_OK


@contextmanager
def model_services(
    args: argparse.Namespace, state_dir: Path, state_file: AgentStateFile
) -> Iterator[tuple[Reconciler, InferenceStats]]:
    """The threads that follow model orders and serve the model, stopped on the way out.

    Each has its own HTTP client: a download streaming on one connection must not hold
    up a status report or a heartbeat on another.
    """
    from edge_agent.deploy import Reconciler
    from edge_agent.inference import InferenceService, InferenceStats
    from edge_agent.modelstore import ModelStore
    from edge_agent.status import StatusReporter

    state = state_file.state
    store = ModelStore(state_dir, args.model_quota_bytes)
    with ExitStack() as stack:
        inference = InferenceService(args.inference_rate, args.stream, InferenceStats()).start()
        stack.callback(inference.stop)
        reports_client = stack.enter_context(AgentClient(state.server, state.credential))
        models_client = stack.enter_context(AgentClient(state.server, state.credential))
        profiles_client = stack.enter_context(AgentClient(state.server, state.credential))
        reporter = StatusReporter(reports_client.report_model_status).start()
        stack.callback(reporter.stop)
        profile_reporter = StatusReporter(profiles_client.report_profile_result, key="run_id")
        stack.callback(profile_reporter.start().stop)
        reconciler = Reconciler(
            store,
            state.trust_store(),
            models_client,
            reporter,
            profile_results=profile_reporter,
            on_trust_change=lambda trust: state_file.update(signing=trust.to_signing_json()),
            on_active_change=inference.use,
        )
        inference.use(store.active())  # before the reconciler may switch
        reconciler.start()
        stack.callback(reconciler.stop)
        yield reconciler, inference.stats


def simulate_command(args: argparse.Namespace, state_dir: Path) -> int:
    from edge_agent.simulate import SimConfig, run_simulation

    config = SimConfig(
        server=args.server,
        token=args.token,
        mix=args.mix,
        state_dir=ensure_private_dir(state_dir),
        interval_s=args.interval,
        duration_s=args.duration,
        seed=args.seed,
        faulty=args.faulty,
    )

    async def simulate() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        stats = await run_simulation(config, stop, report=lambda line: print(line, flush=True))
        if stats.stopped_agents == stats.total:
            reason = stats.fatal_reasons[0] if stats.fatal_reasons else "unknown"
            return _fail(f"every simulated agent stopped; first reason: {reason}")
        return EXIT_OK

    return asyncio.run(simulate())
