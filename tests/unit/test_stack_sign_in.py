"""What the local stack tells intake, the tracker and the sandboxes about signing in and about the
fault endpoints, and what `lienthong run` prints about it (no process started here)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV
from schemas.agencies import Agency
from services.tools.cli.main import app as cli
from services.tools.localoidc.errors import ProviderError
from services.tools.stack import run as stack_run
from services.tools.stack.signin import CLIENTS_FILE, SignIn, demo_users, sign_in_lines
from services.tools.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts

ISSUER = "http://127.0.0.1:18080/realms/lienthong"


def defined(tmp_path: Path, **options: object) -> LocalStack:
    stack = LocalStack(
        "127.0.0.1:1",
        tmp_path / "stack",
        ports=StackPorts.free(DEFAULT_AGENCIES),
        **options,  # type: ignore[arg-type]
    )
    stack._define()  # the processes and their settings, none started
    return stack


def env_of(stack: LocalStack, name: str) -> dict[str, str]:
    return stack.processes[name].env


def owner_only(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_with_a_provider_intake_requires_client_tokens_and_the_page_signs_staff_in(tmp_path: Path) -> None:
    stack = defined(tmp_path, oidc_issuer=ISSUER)
    intake = env_of(stack, "intake")
    assert intake["LIENTHONG_OIDC_ISSUER"] == ISSUER
    assert Path(intake["LIENTHONG_OIDC_CLIENTS_FILE"]) == CLIENTS_FILE
    tracker = env_of(stack, "tracker")
    assert tracker["LIENTHONG_STAFF_SIGN_IN"] == "on"
    assert tracker["LIENTHONG_OIDC_ISSUER"] == ISSUER
    assert tracker["LIENTHONG_OIDC_CLIENT_ID"] == "supervision-page"
    assert tracker["LIENTHONG_PUBLIC_URL"] == stack.tracker_url
    secret = Path(tracker["LIENTHONG_SESSION_SECRET_FILE"])
    assert owner_only(secret) and len(secret.read_text().strip()) >= 32
    assert stack.sign_in == SignIn(ISSUER)


def test_without_sign_in_intake_and_the_page_are_told_so_whatever_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIENTHONG_OIDC_ISSUER", ISSUER)  # inherited from the shell: not taken
    stack = defined(tmp_path, sign_in=False, oidc_issuer=ISSUER)
    assert env_of(stack, "intake")["LIENTHONG_OIDC_ISSUER"] == ""
    assert env_of(stack, "tracker")["LIENTHONG_STAFF_SIGN_IN"] == "off"
    assert env_of(stack, "tracker")["LIENTHONG_OIDC_ISSUER"] == ""
    assert stack.sign_in is None


def test_only_the_sandboxes_get_the_admin_token_kept_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "a-token-of-the-shell")
    stack = defined(tmp_path, sign_in=False)
    token = stack.sandbox_admin_token
    assert owner_only(stack.sandbox_admin_token_file) and token != "a-token-of-the-shell"
    for name in stack.processes:
        given = env_of(stack, name)[ADMIN_TOKEN_ENV]
        assert given == (token if name.startswith("sandbox-") else ""), name
    assert stack.sandbox_admin_headers() == {"Authorization": f"Bearer {token}"}
    again = LocalStack("127.0.0.1:1", tmp_path / "stack", agencies=[Agency.LAND], sign_in=False)
    assert again.sandbox_admin_token == token, "kept across restarts of the stack"


def test_the_summary_says_how_to_sign_in_with_the_demo_users() -> None:
    text = "\n".join(sign_in_lines("http://127.0.0.1:8002", SignIn(ISSUER)))
    assert "http://127.0.0.1:8002/giam-sat" in text and ISSUER in text
    for user in ("viewer1/viewer1-demo", "operator1/operator1-demo", "auditor1/auditor1-demo"):
        assert user in text
    assert "demo credentials" in text
    assert [u.username for u in demo_users()] == ["viewer1", "operator1", "auditor1"]


def test_without_sign_in_the_summary_says_so_loudly() -> None:
    (line,) = sign_in_lines("http://127.0.0.1:8002", None)
    assert "OFF" in line and "--no-sign-in" in line and "anyone" in line
    assert "SIGN-IN OFF" in stack_run.SIGN_IN_OFF


def test_run_is_signed_in_by_default_and_no_sign_in_is_a_documented_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[stack_run.RunOptions] = []

    def fake_run(options: stack_run.RunOptions, echo: object) -> None:
        seen.append(options)

    monkeypatch.setattr(stack_run, "run", fake_run)
    runner = CliRunner()
    assert runner.invoke(cli, ["run", "--work-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(cli, ["run", "--work-dir", str(tmp_path), "--no-sign-in"]).exit_code == 0
    assert [o.sign_in for o in seen] == [True, False]
    assert "--no-sign-in" in runner.invoke(cli, ["run", "--help"], terminal_width=200).output


def test_run_stops_in_one_sentence_when_the_provider_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_java(options: stack_run.RunOptions, echo: object) -> None:
        raise ProviderError("Keycloak needs Java 21 or newer and none was found.\nmore detail")

    monkeypatch.setattr(stack_run, "run", no_java)
    result = CliRunner().invoke(cli, ["run", "--work-dir", str(tmp_path)])
    assert result.exit_code == 1
    message = result.output.strip()
    assert "\n" not in message
    assert "Java 21" in message and "--no-sign-in" in message
