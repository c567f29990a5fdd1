"""``lienthong login|logout``: sign in on the command line (OAuth 2.0 device authorization grant).

``login`` asks the provider (``LIENTHONG_OIDC_ISSUER``, else the running local stack's) for a code,
prints where to type it, waits until the person signed in there, and stores the token for the
operator commands (``lienthong dlq replay``, ``lienthong dlq show --unmask``), readable by its owner
only (:mod:`services.runtime.auth.cli_token`). ``logout`` forgets it.
"""

from __future__ import annotations

import typer

from services.runtime.auth import cli_token
from services.tools.stack.discovery import running_stacks, state_dir


def issuer_or_stack(given: str | None) -> str | None:
    """The provider: the option, else ``LIENTHONG_OIDC_ISSUER``, else the running local stack's."""
    issuer = given or cli_token.CliTokenSettings().oidc_issuer
    if issuer:
        return issuer
    for stack in running_stacks(state_dir()):
        if stack.oidc_issuer:
            return stack.oidc_issuer
    return None


def login(
    issuer_option: str | None = typer.Option(
        None, "--issuer", help="The provider (default: $LIENTHONG_OIDC_ISSUER, else the running stack's)."
    ),
) -> None:
    """Sign in with the provider in a browser (device code); the token is kept for operator commands."""
    issuer = issuer_or_stack(issuer_option)
    if issuer is None:
        typer.echo("no provider to sign in with: set LIENTHONG_OIDC_ISSUER or give --issuer", err=True)
        raise typer.Exit(2)
    try:
        code = cli_token.start_device_login(issuer)
        where = code.verification_uri_complete or code.verification_uri
        typer.echo(f"To sign in, open {where} and enter the code {code.user_code}")
        typer.echo(f"(waiting up to {code.expires_in_s / 60:.0f} minutes for the sign-in…)", err=True)
        answer = cli_token.finish_device_login(issuer, code)
    except cli_token.TokenError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    path = cli_token.store(issuer, answer)
    typer.echo(f"signed in; the token is kept in {path} (readable by you only)")


def logout() -> None:
    """Forget the token `lienthong login` stored."""
    if cli_token.forget():
        typer.echo("signed out: the stored token is removed")
    else:
        typer.echo("no stored token")
