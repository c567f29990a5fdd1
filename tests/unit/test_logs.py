"""Logs never carry a citizen's id, name, address or date of birth, and JSON lines parse."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from services.runtime.observe.logs import (
    MASKED,
    configure_logging,
    handoff_log_fields,
    make_handler,
    mask_text,
)

CITIZEN_ID = "001085012345"
NAME = "Nguyễn Văn An"
ADDRESS = "12 Lê Lợi, Hà Nội"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    logger = logging.getLogger("test.logs")
    handler = make_handler("intake", stream, console=False)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_citizen_id_in_a_message_shows_only_its_last_three_digits(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("looked up %s", CITIZEN_ID)
    logger.warning(f"applicant {CITIZEN_ID} refused")
    text = stream.getvalue()
    assert CITIZEN_ID not in text
    assert [entry["message"] for entry in lines(stream)] == [
        "looked up *********345",
        "applicant *********345 refused",
    ]


def test_personal_fields_given_as_extra_or_inside_arguments_never_appear(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    person = {"citizen_id": CITIZEN_ID, "full_name": NAME, "address": ADDRESS, "date_of_birth": "1985-03-02"}
    logger.info("submission %s", {"applicant": person, "procedure_code": "9.900005"})
    logger.info(
        "dossier received",
        extra={"full_name": NAME, "citizen_id": CITIZEN_ID, "form": {"wife": person}, "dossier_id": "d-1"},
    )
    text = stream.getvalue()
    for secret in (CITIZEN_ID, NAME, ADDRESS, "1985-03-02"):
        assert secret not in text
    first, second = lines(stream)
    assert "9.900005" in str(first["message"])
    assert second["full_name"] == MASKED and second["citizen_id"] == "*********345"
    assert second["form"] == MASKED and second["dossier_id"] == "d-1"


def test_an_exception_echoing_a_citizens_input_is_masked(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        raise ValueError(f"1 validation error\n  input_value='{NAME}', id {CITIZEN_ID}")
    except ValueError:
        logger.exception("handling failed")
    text = stream.getvalue()
    assert NAME not in text and CITIZEN_ID not in text
    (entry,) = lines(stream)
    assert "input_value=[masked]" in str(entry["exception"])


def test_json_lines_carry_the_envelope_fields_and_the_handoff_fields(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    fields = handoff_log_fields(
        dossier_id="0c9a7e55",
        correlation_id="c-1",
        agency="tax",
        action="assess_obligations",
        step="settled",
        outcome="completed",
        duration_s=0.1234,
    )
    logger.info("handoff %s: %s", "settled", "completed", extra=fields)
    (entry,) = lines(stream)
    assert {"ts", "level", "service", "logger", "message"} <= entry.keys()
    assert entry["service"] == "intake" and entry["level"] == "info" and entry["logger"] == "test.logs"
    assert entry["duration_ms"] == 123.4 and entry["agency"] == "tax" and entry["outcome"] == "completed"


def test_longer_digit_runs_are_not_citizen_ids() -> None:
    assert mask_text("offset 1234567890123 and id 001085012345.") == (
        "offset 1234567890123 and id *********345."
    )


def test_the_console_format_is_readable_and_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setenv("LIENTHONG_LOG_FORMAT", "console")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("tracker", stream=stream)
        logging.getLogger("services.test").info("owner %s", CITIZEN_ID, extra={"agency": "land"})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    line = stream.getvalue()
    assert "tracker services.test: owner *********345" in line and "agency=land" in line
    assert not line.startswith("{")
