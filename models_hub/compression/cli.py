"""Command line: ``python -m models_hub compress|task|inspect``.

Works without the server. Exit codes: 0 success, 2 bad arguments or a refused input (the
message names the field), 1 anything else. A refused input leaves no output folder behind:
the pipeline writes into a scratch folder beside ``--out`` and renames it at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models_hub.compression.data import load_data
from models_hub.compression.errors import CompressionError
from models_hub.compression.measure import DeviceProfile
from models_hub.compression.pipeline import CompressOptions, compress, inspect_model
from models_hub.compression.recipes import STEPS, parse_recipe


class UsageError(Exception):
    """Bad input from the command line; the message names the argument."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (UsageError, CompressionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m models_hub", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("compress", help="make and measure compressed variants of a model")
    run.add_argument(
        "model", help="an ONNX file, a TorchScript archive, or a torch model saved whole"
    )
    run.add_argument(
        "--recipe",
        required=True,
        help=f"steps joined by '+': {', '.join(STEPS)} (prune needs :RATIO)",
    )
    run.add_argument(
        "--calib", required=True, help="calibration data (.npz with x, and y for fine-tuning)"
    )
    run.add_argument(
        "--eval",
        required=True,
        dest="evaluation",
        help="held-out data (.npz with x and, for accuracy, y)",
    )
    run.add_argument(
        "--train", help="fine-tuning data for pruning and the search (default: --calib)"
    )
    run.add_argument("--out", required=True, help="output folder (new, or empty)")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a recipe parameter; VALUE is JSON or text (repeatable)",
    )
    run.add_argument("--devices", help="JSON list of device profiles {name, gflops, power_busy_w}")
    run.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load a whole-model pickle with any classes (your own files only)",
    )
    run.add_argument(
        "--refuse-slower", action="store_true", help="fail if a variant is slower than the original"
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(run=_compress)

    task = commands.add_parser("task", help="write a built-in task: a trained teacher and its data")
    task.add_argument("name", choices=("digits", "textures"))
    task.add_argument("--out", required=True, help="output folder")
    task.add_argument("--arch", choices=("small-cnn", "resnet18-style"), default="small-cnn")
    task.add_argument("--epochs", type=int, default=10)
    task.add_argument("--seed", type=int, default=0)
    task.set_defaults(run=_task)

    show = commands.add_parser("inspect", help="validate a model file and describe it")
    show.add_argument("model")
    show.add_argument("--input-shape", help="one sample's shape, as 1,16,16 (torch models need it)")
    show.add_argument("--trust-pickle", action="store_true")
    show.set_defaults(run=_inspect)
    return parser


def _compress(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out: {out} exists and is not an empty folder")
    recipe = parse_recipe(args.recipe)
    options = CompressOptions(
        parameters=_parameters(args.param),
        device_profiles=_device_profiles(args.devices)
        if args.devices
        else CompressOptions().device_profiles,
        exporter=args.exporter,
        trust_pickle=args.trust_pickle,
        refuse_slower=args.refuse_slower,
        seed=args.seed,
    )
    calib = load_data(args.calib, "calib")
    evaluation = load_data(args.evaluation, "eval")
    train_data = load_data(args.train, "train") if args.train else None
    if not Path(args.model).is_file():
        raise UsageError(f"model: no file {args.model}")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".compress-", dir=out.parent))
    try:
        report = compress(
            args.model,
            recipe,
            calib,
            evaluation,
            scratch,
            options,
            train_data=train_data,
            on_progress=None if args.quiet else _print_progress,
        )
        if out.exists():
            out.rmdir()
        scratch.rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(summary(report))
    print(f"wrote {out / 'report.json'}")


def _print_progress(fraction: float, message: str) -> None:
    print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr)


def _parameters(pairs: Sequence[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param: '{pair}' is not NAME=VALUE")
        try:
            parameters[name] = json.loads(text)
        except json.JSONDecodeError:
            parameters[name] = text
    return parameters


def _device_profiles(path: str) -> tuple[DeviceProfile, ...]:
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"--devices: cannot read {path}: {error}") from error
    if not isinstance(entries, list) or not entries:
        raise UsageError(
            "--devices: a non-empty JSON list of {name, gflops, power_busy_w} is needed"
        )
    profiles = []
    for index, entry in enumerate(entries):
        try:
            profile = DeviceProfile(
                str(entry["name"]), float(entry["gflops"]), float(entry["power_busy_w"])
            )
        except (TypeError, KeyError, ValueError) as error:
            raise UsageError(
                f"--devices[{index}]: needs name, gflops and power_busy_w ({error})"
            ) from error
        if not profile.gflops > 0 or not profile.power_busy_w >= 0:
            raise UsageError(
                f"--devices[{index}]: gflops must be above 0 and power_busy_w at least 0"
            )
        profiles.append(profile)
    return tuple(profiles)


def summary(report: dict[str, Any]) -> str:
    """The report as a table: one row per variant."""
    rows = [
        ("variant", "accuracy", "delta", "size KB", "MFLOPs", "p50 1T ms", "speedup 1T", "pareto")
    ]
    for variant in report["variants"]:
        accuracy = variant["accuracy"]
        delta = variant.get("accuracy_delta")
        rows.append(
            (
                variant["name"],
                "-" if accuracy is None else f"{100 * accuracy:.2f}%",
                "" if delta is None else f"{delta:+.2f}",
                f"{variant['size_bytes'] / 1024:.1f}",
                f"{variant['flops'] / 1e6:.2f}",
                f"{variant['latency_ms']['1_thread']['p50']:.3f}",
                f"{variant['speedup']['1_thread']:.2f}x" if "speedup" in variant else "",
                "*" if variant["pareto_optimal"] else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    for variant in report["variants"]:
        lines += [f"note ({variant['name']}): {note}" for note in variant["notes"]]
    return "\n".join(lines)


def _task(args: argparse.Namespace) -> None:
    from models_hub.compression.builtin import write_task

    if not 1 <= args.epochs <= 200:
        raise UsageError("--epochs: from 1 to 200")
    info = write_task(args.name, Path(args.out), args.arch, args.epochs, args.seed)
    print(json.dumps(info, indent=2))


def _inspect(args: argparse.Namespace) -> None:
    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(part) for part in args.input_shape.split(","))
        except ValueError:
            raise UsageError(
                f"--input-shape: '{args.input_shape}' is not a list like 1,16,16"
            ) from None
        if not shape or min(shape) < 1:
            raise UsageError("--input-shape: every dimension must be at least 1")
    if not Path(args.model).is_file():
        raise UsageError(f"model: no file {args.model}")
    info = inspect_model(args.model, shape, args.trust_pickle)
    print(
        json.dumps(
            {
                "framework": info.framework,
                **info.signature,
                "params": info.params,
                "flops": info.flops,
                "operators": list(info.operators),
            },
            indent=2,
        )
    )
