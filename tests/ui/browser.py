"""Debian's chromium and chromedriver for the browser tests: found, installed when missing, or skipped.

When they are not on the machine, the test installs them with apt-get (as root). If that is not
possible the test fails under CI (``CI=true``: the artefact is required there) and is skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGES = ("chromium", "chromium-driver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
)


@dataclass(frozen=True)
class Chromium:
    browser: Path
    driver: Path


def _found() -> Chromium | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return Chromium(Path(browser), Path(driver)) if browser and driver else None


def _install() -> str:
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "not root: cannot apt-get install"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr[-500:]}"
    return ""


def unavailable(reason: str) -> None:
    message = f"the browser test needs {' and '.join(PACKAGES)} and selenium: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def chromium() -> Chromium:
    """The system chromium and its driver, installing them first if they are missing."""
    found = _found()
    if found is None:
        problem = _install()
        found = _found()
        if found is None:
            unavailable(problem or "installed, but still not found on PATH")
    assert found is not None
    return found
