"""The agent is a pure core: importing it pulls in neither Django nor torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import edge_agent

REPO_ROOT = Path(edge_agent.__file__).resolve().parent.parent

CHECK = """
import sys
import edge_agent.cli, edge_agent.simulate, edge_agent.runner, edge_agent.power
import edge_agent.manifest, edge_agent.modelstore, edge_agent.download, edge_agent.health
import edge_agent.deploy, edge_agent.status, edge_agent.inference, edge_agent.nudge
import edge_agent.simrollout
forbidden = sorted(m for m in sys.modules if m.split(".")[0] in ("django", "torch"))
print(",".join(forbidden))
"""


def test_the_agent_imports_neither_django_nor_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == ""
