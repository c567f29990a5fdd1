"""The generated deployment files as a whole: what the generators give, writing it, and comparing it
with the files in a checkout (every file under deploy/k8s is generated; so are the Compose files)."""

from __future__ import annotations

from pathlib import Path

from services.tools.deploy import compose, k8s

ROOT = Path(__file__).resolve().parents[3]


def generated() -> dict[Path, str]:
    return {**k8s.render(), **compose.render()}


def write_files(root: Path) -> list[Path]:
    """Write every generated file under ``root`` and remove the files of deploy/k8s it no longer has."""
    files = generated()
    for stale in sorted((root / k8s.K8S_DIR).rglob("*.yaml")):
        if stale.relative_to(root) not in files:
            stale.unlink()
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    return sorted(files)


def stale_files(root: Path) -> list[str]:
    """A sentence per generated file that is missing or differs under ``root``, and per file of
    deploy/k8s that the generator does not make."""
    files = generated()
    problems = []
    for path, text in sorted(files.items()):
        on_disk = root / path
        if not on_disk.is_file():
            problems.append(f"{path} is missing: run `python -m services.tools.deploy write`")
        elif on_disk.read_text(encoding="utf-8") != text:
            problems.append(f"{path} differs from its generator: run `python -m services.tools.deploy write`")
    for extra in sorted((root / k8s.K8S_DIR).rglob("*")):
        if extra.is_file() and extra.relative_to(root) not in files:
            problems.append(
                f"{extra.relative_to(root)} is not generated: add it to services/tools/deploy/k8s.py"
            )
    return problems
