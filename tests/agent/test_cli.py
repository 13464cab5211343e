"""The command line: bad arguments exit 2 naming the flag; enroll stores a private file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edge_agent import hardware
from edge_agent.cli import main
from edge_agent.state import load_agent_state, write_private_json

from .standin import StandInControlPlane


@pytest.fixture(autouse=True)
def quick_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    # test_hardware measures for real; here the 0.3 s benchmark would only slow things.
    monkeypatch.setattr(hardware, "measure_gflops", lambda budget_s=0.3: 12.5)


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    return capsys.readouterr().err


SIM = ["simulate", "--server", "http://127.0.0.1:1", "--token", "t"]
ENROLL = ["enroll", "--server", "http://127.0.0.1:1", "--token", "t"]


@pytest.mark.parametrize(
    "mix",
    ["cloud:2,fog:1", "cloud", "cloud:x", "cloud:-1", "cloud:1,cloud:2", "cloud:0", ""],
)
def test_bad_mix_names_the_flag(capsys: pytest.CaptureFixture[str], mix: str) -> None:
    assert "argument --mix" in usage_error(capsys, [*SIM, "--mix", mix])


def test_mix_must_sum_to_count(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, [*SIM, "--mix", "cloud:2,edge:4", "--count", "5"])
    assert "--mix" in err and "--count is 5" in err


def test_missing_token_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--token" in usage_error(capsys, ["enroll", "--server", "http://127.0.0.1:1"])
    assert "--token" in usage_error(capsys, ["simulate", "--server", "http://x", "--mix", "end:1"])


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        ([*ENROLL, "--tier", "fog"], "--tier"),
        ([*ENROLL, "--label", "novalue"], "--label"),
        (["enroll", "--server", "ftp://x", "--token", "t"], "--server"),
        (["run", "--interval", "0"], "--interval"),
        (["run", "--interval", "abc"], "--interval"),
        (["run", "--max-queue", "0"], "--max-queue"),
        (["run", "--model-quota-bytes", "-1"], "--model-quota-bytes"),
        (["run", "--model-quota-bytes", "1e6"], "--model-quota-bytes"),
        (["run", "--inference-rate", "0"], "--inference-rate"),
        (["run", "--inference-rate", "fast"], "--inference-rate"),
        (["run", "--stream", "/nonexistent/stream.npz"], "--stream"),
        ([*SIM, "--mix", "end:1", "--duration", "-1"], "--duration"),
    ],
)
def test_bad_values_name_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    assert f"argument {flag}" in usage_error(capsys, argv)


def test_enroll_stores_a_private_state_file_and_prints_only_the_id(
    control_plane: StandInControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = tmp_path / "state"
    argv = [
        "enroll",
        "--server",
        control_plane.url,
        "--token",
        "tet_good",
        "--name",
        "cam-17",
        "--tier",
        "end",
        "--label",
        "site=junction-4",
        "--location",
        "Main St",
        "--state-dir",
        str(state_dir),
    ]
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        assert main(argv) == 0
    finally:
        os.umask(old_umask)
    out = capsys.readouterr().out
    path = state_dir / "agent.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    state = json.loads(path.read_text())
    assert set(state) == {
        "server",
        "device_id",
        "credential",
        "heartbeat_interval_s",
        "hardware",
        "tier",
        "signing",
    }
    assert state["signing"] == control_plane.signing_info()  # pinned for model orders
    assert out.strip() == state["device_id"]
    assert state["credential"] not in out
    sent = control_plane.enrollments[0]
    assert (sent["name"], sent["tier"], sent["labels"], sent["location"]) == (
        "cam-17",
        "end",
        {"site": "junction-4"},
        "Main St",
    )
    assert sent["hardware"]["cpu_cores"] >= 1


def test_enroll_with_a_server_that_signs_nothing_pins_no_key(
    control_plane: StandInControlPlane, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    control_plane.send_signing = False
    argv = ["enroll", "--server", control_plane.url, "--token", "tet_good"]
    assert main([*argv, "--state-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "agent.json").read_text())["signing"] is None
    assert "model orders will be refused" in caplog.text


def test_an_old_state_file_without_a_key_loads_and_trusts_nothing(tmp_path: Path) -> None:
    old = {"server": "http://x", "device_id": "d", "credential": "c", "heartbeat_interval_s": 10}
    write_private_json(tmp_path / "agent.json", old)
    state = load_agent_state(tmp_path)
    assert state.signing is None and not state.trust_store()


def test_state_dir_defaults_to_the_environment(
    control_plane: StandInControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAD_AGENT_STATE_DIR", str(tmp_path / "env-state"))
    assert main(["enroll", "--server", control_plane.url, "--token", "tet_good"]) == 0
    assert (tmp_path / "env-state" / "agent.json").exists()


def test_enroll_prints_the_servers_field_errors(
    control_plane: StandInControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "enroll",
        "--server",
        control_plane.url,
        "--token",
        "tet_expired",
        "--state-dir",
        str(tmp_path),
    ]
    assert main(argv) == 1
    assert "token: Enrollment token is invalid or has expired." in capsys.readouterr().err
    assert not (tmp_path / "agent.json").exists()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            401,
            {"detail": "Bad token.", "code": "authentication_failed"},
            "401 authentication_failed",
        ),
        (403, {"detail": "Forbidden.", "code": "permission_denied"}, "403 permission_denied"),
        (404, {"detail": "Not found."}, "unexpected 404"),
        (503, {"detail": "Unavailable."}, "503 from server"),
    ],
)
def test_enroll_reports_other_server_errors(
    control_plane: StandInControlPlane,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: dict[str, str],
    expected: str,
) -> None:
    control_plane.enroll_answer = (status, body)
    argv = [
        "enroll",
        "--server",
        control_plane.url,
        "--token",
        "tet_good",
        "--state-dir",
        str(tmp_path),
    ]
    assert main(argv) == 1
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "agent.json").exists()


def test_enroll_reports_an_unreachable_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "enroll",
                "--server",
                "http://127.0.0.1:9",
                "--token",
                "t",
                "--state-dir",
                str(tmp_path),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "cannot enroll at http://127.0.0.1:9" in err and "refused" in err


def test_run_without_enrollment_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--state-dir", str(tmp_path)]) == 1
    assert "enroll first" in capsys.readouterr().err


def test_private_write_replaces_atomically_and_tightens_a_wide_leftover(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    leftover = tmp_path / f".agent.json.{os.getpid()}.tmp"
    leftover.write_text("stale")
    leftover.chmod(0o644)
    write_private_json(path, {"credential": "a"})
    write_private_json(path, {"credential": "b"})
    assert json.loads(path.read_text()) == {"credential": "b"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not leftover.exists()
