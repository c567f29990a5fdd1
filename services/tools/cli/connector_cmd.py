"""``lienthong connector new <agency>``: a new connector package that passes the conformance kit at once.

It writes ``connectors/<agency>/`` (adapter with settings and a placeholder action, client, sandbox)
and ``tests/connectors/test_<agency>_conformance.py`` from ``connectors/_template/``, then prints the
test command and, for an agency ``schemas.agencies`` does not know yet, the lines to add there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

import typer

import connectors
from schemas.agencies import AGENCY_ACTIONS, Agency

app = typer.Typer(help="Create and check connectors (see connectors/README.md).", no_args_is_help=True)

TEMPLATES = Path(connectors.__file__).resolve().parent / "_template"
AGENCY_ID = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
PLACEHOLDER_ACTION = "record_placeholder"
UNKNOWN_AGENCY_PORT = 8299
LINE_LENGTH = 110  # ruff's, in pyproject.toml
# template → where it goes, relative to the repository root ({agency} is filled in)
FILES = {
    "__init__.py.tmpl": "connectors/{agency}/__init__.py",
    "adapter.py.tmpl": "connectors/{agency}/adapter.py",
    "client.py.tmpl": "connectors/{agency}/client.py",
    "sandbox__init__.py.tmpl": "connectors/{agency}/sandbox/__init__.py",
    "sandbox__main__.py.tmpl": "connectors/{agency}/sandbox/__main__.py",
    "sandbox_app.py.tmpl": "connectors/{agency}/sandbox/app.py",
    "test_conformance.py.tmpl": "tests/connectors/test_{agency}_conformance.py",
}


class ScaffoldError(Exception):
    pass


@dataclass(frozen=True)
class Scaffolded:
    agency: str
    files: list[Path]
    test_command: str
    known_agency: bool


def _imports(*lines: tuple[str, str]) -> str:
    """``from module import names`` lines as ruff's isort writes them: by module name, wrapped when long."""
    return "\n".join(_import(module, names) for module, names in sorted(lines, key=lambda m: m[0]))


def _import(module: str, names: str) -> str:
    line = f"from {module} import {names}"
    if len(line) <= LINE_LENGTH:
        return line
    return f"from {module} import (\n" + "".join(f"    {name},\n" for name in names.split(", ")) + ")"


def _values(agency: str) -> dict[str, str]:
    camel = "".join(part.capitalize() for part in agency.split("_"))
    known = agency in Agency._value2member_map_
    if known:
        member = f"Agency.{Agency(agency).name}"
        action = sorted(AGENCY_ACTIONS[Agency(agency)])[0]
        port = 8200 + list(Agency).index(Agency(agency))
    else:
        member = f'"{agency}"  # type: ignore[assignment]  # then: Agency.{agency.upper()}'
        action, port = PLACEHOLDER_ACTION, UNKNOWN_AGENCY_PORT
    package = f"connectors.{agency}"
    return {
        "agency": agency,
        "Agency": camel,
        "AGENCY": agency.upper(),
        "action": action,
        "port": str(port),
        "agency_member": member,
        "adapter_imports": _imports(
            (
                "connectors",
                "AgencyProtocolError, AgencySettings, Completed, HandoffRequest, HandoffResult, "
                "HttpConnector, parse_form",
            ),
            (f"{package}.client", f"AGENCY, {camel}Client"),
            ("schemas.agencies", "Agency"),
        ),
        "main_imports": _imports(
            (f"{package}.sandbox.app", "create_app"), ("connectors.sandbox_kit.runner", "run")
        ),
        "test_imports": _imports(
            (f"{package}.adapter", f"{camel}Connector, {camel}Settings"),
            (f"{package}.sandbox.app", "create_app"),
            ("connectors", "Connector, HandoffRequest"),
            (
                "connectors.testing",
                "ConformanceCase, ConnectorConformance, Kit, KitEnvironment, RejectionCase",
            ),
        ),
    }


def scaffold(agency: str, root: Path) -> Scaffolded:
    """Write the package and its conformance test under ``root`` (a checkout of this repository)."""
    if not AGENCY_ID.match(agency):
        raise ScaffoldError(
            f"{agency!r} is not an agency id: lower-case letters, digits and _, e.g. demo_agency"
        )
    if not (root / "connectors").is_dir() or not (root / "tests" / "connectors").is_dir():
        raise ScaffoldError(f"{root} is not a Liên Thông checkout (no connectors/ and tests/connectors/)")
    targets = {name: root / target.format(agency=agency) for name, target in FILES.items()}
    existing = [path for path in targets.values() if path.exists()]
    if existing:
        raise ScaffoldError(f"not overwriting {', '.join(str(p.relative_to(root)) for p in existing)}")
    values = _values(agency)
    for name, path in targets.items():
        imports = {
            "adapter.py.tmpl": values["adapter_imports"],
            "sandbox__main__.py.tmpl": values["main_imports"],
            "test_conformance.py.tmpl": values["test_imports"],
        }.get(name, "")
        text = Template((TEMPLATES / name).read_text(encoding="utf-8")).substitute(values, imports=imports)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    test = targets["test_conformance.py.tmpl"].relative_to(root)
    return Scaffolded(
        agency,
        sorted(targets.values()),
        f".venv/bin/pytest {test.as_posix()}",
        agency in Agency._value2member_map_,
    )


def next_steps(done: Scaffolded) -> list[str]:
    """What to do after scaffolding (connectors/README.md says the same at length)."""
    a = done.agency
    steps = []
    if not done.known_agency:
        steps += [
            f"To run {a} in the bus, declare it (connectors/README.md, step 6):",
            f'  schemas/agencies.py:   {a.upper()} = "{a}"  in Agency, and',
            f"                         Agency.{a.upper()}: frozenset({{...}})  in AGENCY_ACTIONS",
            f"  connectors/{a}/adapter.py:  agency = Agency.{a.upper()}",
            f'  connectors/registry.py:    Agency.{a.upper()}: "connectors.{a}.adapter:'
            f'{_values(a)["Agency"]}Connector"',
            "  schemas/data/procedures.yaml: a procedure whose route has a step with agency "
            f"{a}; then `lienthong catalog check`",
        ]
    steps.append(
        "Replace the placeholder action with the agency's real ones (adapter, client, sandbox, test)."
    )
    return steps


@app.command()
def new(
    agency: str = typer.Argument(..., help="The agency id, e.g. demo_agency (lower case, digits, _)."),
    root: Path = typer.Option(
        Path("."), "--root", help="The repository checkout to write into.", file_okay=False
    ),
) -> None:
    """Create connectors/<agency>/ and its conformance test from the template; all tests pass at once."""
    try:
        done = scaffold(agency, root.resolve())
    except ScaffoldError as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    for path in done.files:
        typer.echo(f"created {path.relative_to(root.resolve()).as_posix()}")
    typer.echo("")
    typer.echo("Run the conformance kit against it:")
    typer.secho(f"  {done.test_command}", bold=True)
    typer.echo("")
    for line in next_steps(done):
        typer.echo(line)
