"""``lienthong connector new`` in a copy of the repository, then the test command it prints, passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.tools.cli.connector_cmd import ScaffoldError, scaffold

REPO = Path(__file__).resolve().parents[2]


def fresh_copy(tmp_path: Path) -> Path:
    """What a fresh clone holds, minus everything the scaffold does not need."""
    root = tmp_path / "clone"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
    for name in ("connectors", "schemas", "services", "tests"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_new_connector_passes_the_kit_from_the_first_minute(tmp_path: Path) -> None:
    root = fresh_copy(tmp_path)
    lienthong = [sys.executable, "-c", "from services.tools.cli.main import app; app()"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    made = subprocess.run(
        [*lienthong, "connector", "new", "demo_agency"], cwd=root, env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    assert (root / "connectors/demo_agency/sandbox/app.py").is_file()
    command = next(line.strip() for line in made.stdout.splitlines() if "pytest" in line)
    assert command == ".venv/bin/pytest tests/connectors/test_demo_agency_conformance.py"
    assert "DEMO_AGENCY" in made.stdout, "it says what to add to schemas/agencies.py"

    test_paths = command.split()[1:]  # the printed `.venv/bin/pytest …`, run by this interpreter in the copy
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", *test_paths, "-q", "-p", "no:cacheprovider"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert " passed" in ran.stdout
    assert not (REPO / "connectors/demo_agency").exists(), "nothing is written into this checkout"


def test_scaffold_refuses_to_overwrite_or_a_bad_id(tmp_path: Path) -> None:
    root = fresh_copy(tmp_path)
    with pytest.raises(ScaffoldError, match="not overwriting"):
        scaffold("land", root)
    with pytest.raises(ScaffoldError, match="not an agency id"):
        scaffold("Demo-Agency", root)
    with pytest.raises(ScaffoldError, match="not a Liên Thông checkout"):
        scaffold("demo_agency", tmp_path / "empty")
