"""Errors raised by connector clients when they talk to an agency system.

The tree (the runtime classifies by class, never by message)::

    ConnectorError
    ├── AgencyRejected        business: the agency answered "no" with a reason
    │                         (a 422 rejection body, a rejected job). Never retried;
    │                         the dossier goes back to the citizen with the reason.
    ├── AgencyUnavailable     transient: 5xx, 429, timeout, refused or dropped connection,
    │                         a job the agency itself failed. Retried with backoff, then
    │                         delayed tiers, then the dead-letter topic.
    └── AgencyProtocolError   permanent: the conversation broke the contract — an
                              unparseable or incomplete reply, or a request the agency
                              could not accept (400, an idempotency key reused with a
                              different body). Not retried: a human must look.
"""

from __future__ import annotations

__all__ = ["AgencyProtocolError", "AgencyRejected", "AgencyUnavailable", "ConnectorError"]


class ConnectorError(Exception):
    """Base of every error a connector client raises."""

    def __init__(self, message: str, *, agency: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.agency = agency
        self.status_code = status_code

    def __str__(self) -> str:
        prefix = f"[{self.agency}] " if self.agency else ""
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        return f"{prefix}{self.message}{status}"


class AgencyRejected(ConnectorError):
    """The agency refused the request for a business reason.

    ``reason`` is the agency's own words (often Vietnamese); ``reason_en`` an English
    rendering when the agency gives one; ``code`` its machine-readable code.
    """

    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        reason_en: str | None = None,
        agency: str = "",
        status_code: int | None = None,
    ) -> None:
        super().__init__(reason, agency=agency, status_code=status_code)
        self.reason = reason
        self.code = code
        self.reason_en = reason_en


class AgencyUnavailable(ConnectorError):
    """The agency could not answer now; trying again later may succeed.

    ``retry_after`` carries the agency's ``Retry-After`` hint in seconds, when given.
    """

    def __init__(
        self,
        message: str,
        *,
        agency: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, agency=agency, status_code=status_code)
        self.retry_after = retry_after


class AgencyProtocolError(ConnectorError):
    """The reply (or our request) does not follow the agency's contract."""
