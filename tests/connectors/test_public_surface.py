"""``connectors`` is the surface a connector developer imports from (httpx's way): its ``__all__`` is
guarded, every name in it is importable and documented, and production code never reaches the
sandbox or conformance kits."""

from __future__ import annotations

import ast
import inspect
import itertools
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import connectors

PACKAGE = Path(connectors.__file__).resolve().parent
# What a new connector needs (connectors/README.md, steps 2 and 3).
NEEDED = {
    "AgencyClient",
    "AgencyProtocolError",
    "AgencyRejected",
    "AgencySettings",
    "AgencyUnavailable",
    "Completed",
    "Connector",
    "ConnectorError",
    "HandoffRequest",
    "HandoffResult",
    "HttpConnector",
    "Pending",
    "Rejected",
    "WaitingOnCitizen",
    "earlier_result",
    "parse_form",
    "raise_for_agency_error",
}
# Test and local tooling: the sandbox kit (FastAPI, a store), the conformance kit (pytest), the services.
TOOLING = ("connectors.sandbox_kit", "connectors.testing", "services", "tests", "fastapi", "pytest")


def test_all_is_exactly_the_public_namespace_sorted() -> None:
    public = {
        name
        for name, value in vars(connectors).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert connectors.__all__ == sorted(connectors.__all__)  # as ruff (RUF022) keeps it
    assert set(connectors.__all__) == public
    assert set(connectors.__all__) >= NEEDED, sorted(NEEDED - set(connectors.__all__))


def _sources() -> dict[str, str]:
    """Each name of ``__all__`` → the module ``connectors/__init__.py`` imports it from."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    return {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


def _attribute_docstring(module: str, name: str) -> str | None:
    """The string literal right after ``name = …`` at the top of ``module`` (how an alias is documented)."""
    path = PACKAGE.parent.joinpath(*module.split(".")).with_suffix(".py")
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for node, after in itertools.pairwise(body):
        targets = node.targets if isinstance(node, ast.Assign) else []
        named = any(isinstance(t, ast.Name) and t.id == name for t in targets)
        if named and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            return str(after.value.value)
    return None


def test_every_exported_name_is_importable_and_documented() -> None:
    sources = _sources()
    undocumented = []
    for name in connectors.__all__:
        value = getattr(connectors, name)  # importable: the package really has it
        if inspect.isclass(value):
            doc = vars(value).get("__doc__") or ""
            doc = "" if doc.startswith(f"{name}(") else doc  # a dataclass's generated signature
        elif inspect.isfunction(value):
            doc = value.__doc__ or ""
        else:
            doc = _attribute_docstring(sources[name], name) or ""
        if not doc.strip():
            undocumented.append(name)
    assert undocumented == []


def _production_modules() -> list[Path]:
    """Every module of ``connectors`` but the sandboxes, the two kits and the template."""
    kits = {"sandbox_kit", "testing", "_template"}
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not kits & set(path.relative_to(PACKAGE).parts) and "sandbox" not in path.parent.parts
    ]


def test_production_code_imports_no_test_or_local_tooling() -> None:
    offending = []
    for path in _production_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offending += [
                f"{path.relative_to(PACKAGE.parent)}: {name}"
                for name in names
                if any(name == tool or name.startswith(f"{tool}.") for tool in TOOLING)
            ]
    assert offending == []


def test_importing_every_production_module_loads_no_tooling() -> None:
    modules = [
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in _production_modules()
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {{'fastapi', 'pytest', 'services'}}"
        " or m.startswith(('connectors.sandbox_kit', 'connectors.testing'))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout
