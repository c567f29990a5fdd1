"""The one table from an agency's HTTP answer to ``connectors.errors``, row by row."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from connectors import (
    AgencyProtocolError,
    AgencyRejected,
    AgencyUnavailable,
    ConnectorError,
    ErrorBody,
    JsonErrorBody,
    raise_for_agency_error,
)
from connectors.agency_errors import ERROR_TABLE
from connectors.idempotency_key import KEY_IN_PROGRESS, KEY_INVALID, KEY_REUSED

REFUSES_WITH_422 = frozenset({422})


def answer(status: int, body: Any = None, *, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    request = httpx.Request("POST", "http://agency.test/api/records")
    return httpx.Response(status, content=content, headers=headers, request=request)


def raised(response: httpx.Response, rejection_statuses: frozenset[int] = REFUSES_WITH_422) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        raise_for_agency_error(response, agency="demo", rejection_statuses=rejection_statuses)
    return caught.value


@pytest.mark.parametrize("status", [200, 201, 202, 204, 302])
def test_an_answer_below_400_is_not_an_error(status: int) -> None:
    raise_for_agency_error(answer(status), agency="demo", rejection_statuses=REFUSES_WITH_422)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, {}, AgencyUnavailable),
        (500, {}, AgencyUnavailable),
        (503, {"code": "BUSINESS_LOOKING", "message": "x"}, AgencyUnavailable),  # 5xx whatever it says
        (409, {"error": KEY_IN_PROGRESS, "message": "still running"}, AgencyUnavailable),
        (422, {"error": KEY_REUSED, "message": "other body"}, AgencyProtocolError),  # not a refusal
        (400, {"error": KEY_INVALID, "message": "too long"}, AgencyProtocolError),
        (422, {"code": "ALREADY_RECORDED", "message": "đã ghi nhận"}, AgencyRejected),
        (422, {"message": "no code"}, AgencyProtocolError),  # a refusal names its rule
        (409, {"code": "ALREADY_RECORDED"}, AgencyProtocolError),  # 409 is not this agency's refusal
        (400, {"code": "INVALID_REQUEST"}, AgencyProtocolError),
        (404, {"detail": "no such record"}, AgencyProtocolError),
        (422, b"<html>proxy error</html>", AgencyProtocolError),
    ],
)
def test_each_answer_raises_what_the_table_says(status: int, body: Any, error: type[ConnectorError]) -> None:
    failure = raised(answer(status, body))
    assert type(failure) is error
    assert failure.agency == "demo" and failure.status_code == status


def test_a_refusal_carries_the_agency_code_and_words() -> None:
    failure = raised(answer(422, {"code": "ALREADY_RECORDED", "message": "Đã ghi nhận trước đó"}))
    assert isinstance(failure, AgencyRejected)
    assert (failure.code, failure.reason) == ("ALREADY_RECORDED", "Đã ghi nhận trước đó")


def test_other_errors_say_which_call_and_what_the_agency_said() -> None:
    failure = raised(answer(422, {"error": KEY_REUSED, "message": "used with another body"}))
    assert failure.message == f"POST /api/records answered 422 {KEY_REUSED}: used with another body"


def test_unavailable_carries_the_retry_after_hint() -> None:
    failure = raised(answer(503, {}, headers={"Retry-After": "7"}))
    assert isinstance(failure, AgencyUnavailable) and failure.retry_after == 7.0


def test_an_agency_names_its_own_keys() -> None:
    registry = JsonErrorBody(code_keys=("ma_loi",), message_keys=("mo_ta",))
    response = answer(422, {"ma_loi": "DA_KET_HON", "mo_ta": "Đang có đăng ký kết hôn"})
    assert registry.read(response) == ErrorBody("DA_KET_HON", "Đang có đăng ký kết hôn")
    with pytest.raises(AgencyRejected) as refused:
        raise_for_agency_error(response, agency="civil_status", rejection_statuses={422}, error_body=registry)
    assert refused.value.code == "DA_KET_HON"


def test_a_body_that_cannot_be_read_is_quoted_not_raised() -> None:
    assert JsonErrorBody().read(answer(502, b"\xff\xfe not json")) == ErrorBody("", "�� not json")
    assert JsonErrorBody().read(answer(400, [1, 2])) == ErrorBody("", "[1, 2]")


def test_every_error_status_has_a_row() -> None:
    for status in range(400, 600):
        for code in ("", "SOME_RULE", KEY_IN_PROGRESS, KEY_REUSED):
            assert any(row.covers(status, code, REFUSES_WITH_422) for row in ERROR_TABLE)
