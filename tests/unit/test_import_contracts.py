"""The import contracts in pyproject.toml hold on the tree, and each one fails when an import breaks it.

Each broken case runs ``lint-imports`` on a copy of the tree with one forbidden import added, so the
contracts are shown to catch what they are there to catch (a contract that cannot fail checks nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "connectors", "services", "tests")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"{len(contracts)} kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("contract", "module", "forbidden_import"),
    [
        ("schemas-standalone", "schemas/values.py", "import services.runtime.consume.ids"),
        ("connectors-below-services", "connectors/land/client.py", "import services.runtime.observe.metrics"),
        ("deployed-services-no-tooling", "services/intake/intake.py", "import services.tools.stack.stack"),
        ("deployed-services-no-tooling", "services/router/handlers.py", "import tests.factories"),
        (
            "deployed-services-no-tooling",
            "services/runtime/consume/consumer.py",
            "import connectors.sandbox_kit.store",
        ),
        ("agency-connectors-no-tooling", "connectors/tax/client.py", "import connectors.tax.sandbox.app"),
        ("agency-connectors-no-tooling", "connectors/__init__.py", "import connectors.testing.conformance"),
        ("services-independent", "services/router/handlers.py", "import services.tracker.views"),
    ],
)
def test_an_import_that_breaks_a_contract_fails_the_check(
    tmp_path: Path, contract: str, module: str, forbidden_import: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    assert _lint_imports(tmp_path, "--contract", contract).returncode == 0, (
        "the copy keeps it before the edit"
    )

    with (tmp_path / module).open("a", encoding="utf-8") as source:
        source.write(f"\n{forbidden_import}\n")
    result = _lint_imports(tmp_path, "--contract", contract)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert forbidden_import.split()[-1] in result.stdout  # the report names the forbidden module
