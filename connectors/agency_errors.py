"""How an agency's HTTP answer becomes one of :mod:`connectors.errors`: one table, read by one function.

:func:`raise_for_agency_error` returns for an answer below 400 and otherwise raises the error of the
first row of :data:`ERROR_TABLE` that fits the answer's status and the code its body names:

==============================================================  ===================
the answer                                                      raises
==============================================================  ===================
429, or any 5xx                                                 AgencyUnavailable
code ``IDEMPOTENCY_KEY_IN_PROGRESS``: it still runs there       AgencyUnavailable
code ``IDEMPOTENCY_KEY_REUSED`` or ``IDEMPOTENCY_KEY_INVALID``  AgencyProtocolError
one of the agency's ``rejection_statuses``, with a code         AgencyRejected
any other 4xx (400, 404, a 409 or 422 without a code…)          AgencyProtocolError
==============================================================  ===================

Before there is an answer, :class:`connectors.agency_client.AgencyClient` makes a timeout and a
refused or dropped connection ``AgencyUnavailable``, and a reply it cannot decode ``AgencyProtocolError``.

Agencies differ in two things only, the parameters: which statuses carry a business refusal
(``rejection_statuses``: 422, 409 too for some, none where refusals come in a job or an envelope), and
where the error body names its code and the agency's words (``error_body``: :class:`JsonErrorBody`
with the agency's keys, or a reader of its own, such as the tax authority's ``<Loi>`` XML).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import httpx

from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable, ConnectorError
from connectors.idempotency_key import KEY_IN_PROGRESS, KEY_INVALID, KEY_REUSED

TRANSIENT_STATUSES: Final = frozenset({429, *range(500, 600)})
"""Statuses that say "not now": retrying later may succeed, whatever the body says."""

_EXCERPT = 300  # characters of a body quoted in an error


@dataclass(frozen=True)
class ErrorBody:
    """What an error answer says: the agency's machine-readable code (``""`` when it names none) and
    its own words (or the start of the body)."""

    code: str
    message: str


class ErrorBodyFormat(Protocol):
    """Where an agency's error body names its code and message. ``read`` never raises: a body it
    cannot read is ``ErrorBody("", <the start of the body>)``."""

    def read(self, response: httpx.Response) -> ErrorBody: ...


@dataclass(frozen=True)
class JsonErrorBody:
    """A JSON error object: the code under the first of ``code_keys`` present, the message likewise."""

    code_keys: Sequence[str] = ("code", "error")
    message_keys: Sequence[str] = ("message", "detail")

    def read(self, response: httpx.Response) -> ErrorBody:
        excerpt = response.text[:_EXCERPT]
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            return ErrorBody("", excerpt)
        if not isinstance(data, dict):
            return ErrorBody("", excerpt)
        return ErrorBody(_first_text(data, self.code_keys), _first_text(data, self.message_keys) or excerpt)


def _first_text(data: dict[str, object], keys: Sequence[str]) -> str:
    return next((str(data[key]) for key in keys if data.get(key) not in (None, "")), "")


@dataclass(frozen=True)
class ErrorRow:
    """One row of the table: the answers it covers, and the error they raise."""

    answer: str  # the row, as a person reads it
    error: type[ConnectorError]
    statuses: Collection[int] | None = None  # None: any error status
    codes: Collection[str] | None = None  # None: whatever code the body names
    business: bool = False  # only one of the agency's rejection statuses, with a code

    def covers(self, status: int, code: str, rejection_statuses: Collection[int]) -> bool:
        if self.statuses is not None and status not in self.statuses:
            return False
        if self.codes is not None and code not in self.codes:
            return False
        return not self.business or bool(code and status in rejection_statuses)


ERROR_TABLE: Final[tuple[ErrorRow, ...]] = (
    ErrorRow("429 or 5xx: the agency is overloaded or failing", AgencyUnavailable, TRANSIENT_STATUSES),
    ErrorRow(
        "the first request with this Idempotency-Key is still running there",
        AgencyUnavailable,
        codes={KEY_IN_PROGRESS},
    ),
    ErrorRow(
        "the Idempotency-Key was used with another body, or is malformed",
        AgencyProtocolError,
        codes={KEY_REUSED, KEY_INVALID},
    ),
    ErrorRow("a business refusal: a rejection status with the agency's code", AgencyRejected, business=True),
    ErrorRow("any other 4xx: a request the agency will never accept as sent", AgencyProtocolError),
)
"""The first row that covers an answer decides its error."""

JSON_ERROR_BODY: Final = JsonErrorBody()
"""``{"code" or "error": …, "message" or "detail": …}``: the sandbox kit's default, and RFC 7807's."""


def error_row(status: int, code: str, rejection_statuses: Collection[int] = ()) -> ErrorRow:
    """The row of :data:`ERROR_TABLE` for an error answer (``status`` ≥ 400)."""
    return next(row for row in ERROR_TABLE if row.covers(status, code, rejection_statuses))


def raise_for_agency_error(
    response: httpx.Response,
    *,
    agency: str,
    rejection_statuses: Collection[int] = (),
    error_body: ErrorBodyFormat = JSON_ERROR_BODY,
) -> None:
    """Raise the error :data:`ERROR_TABLE` gives for ``response``; return if it is not an error (< 400).

    ``rejection_statuses`` are the statuses this agency refuses with (its business "no", carrying a
    code); ``error_body`` reads the code and the agency's words from its error body. The error names
    ``agency`` and carries the status; a refusal carries the agency's code and words as its reason.
    """
    status = response.status_code
    if status < 400:
        return
    body = error_body.read(response)
    error = error_row(status, body.code, rejection_statuses).error
    if error is AgencyRejected:
        raise AgencyRejected(body.message or body.code, code=body.code, agency=agency, status_code=status)
    described = f"{_request_line(response)} answered {status}{f' {body.code}' if body.code else ''}: "
    described += body.message
    if error is AgencyUnavailable:
        raise AgencyUnavailable(
            described, agency=agency, status_code=status, retry_after=retry_after(response)
        )
    raise error(described, agency=agency, status_code=status)


def retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds, when it gives a number."""
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _request_line(response: httpx.Response) -> str:
    try:
        return f"{response.request.method} {response.request.url.path}"
    except RuntimeError:  # a response built by hand has no request
        return "the request"
