"""Tests that need a tool only a system package gives (cron, chromium, nginx, podman, ...).

On a developer's machine a missing tool skips the test with one line naming the package that
brings it; under CI=true it fails instead, so CI can never silently test less.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(message: str) -> None:
    """Skip the test saying `message`, or fail it under CI=true."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing tool fails the run instead of skipping)")
    pytest.skip(message)


def require_tool(tool: str, apt_package: str | None = None) -> str:
    """The path of `tool`; when it is not on PATH, `missing()` with the install command."""
    path = shutil.which(tool)
    if path is None:
        missing(f"{tool} not installed: sudo apt-get install -y {apt_package or tool}")
    return path  # type: ignore[return-value]
