"""Personal data never leaves through a side channel: after a run with sample traffic, poison records,
a badly signed event and refused hand-ins, none of the sample citizens' ids, names or addresses is in
any log line, any ``/metrics`` page, any dead-letter context header or any HTTP error body.

Personal fields (``schemas``): a person's ``citizen_id``, ``full_name``, ``date_of_birth``, ``address``
and ``residence_address``; ``child_full_name``; and every form value (``form``, which holds persons).
Dead-letter *payloads* keep them (the record is kept whole for replay): ``lienthong dlq show`` masks
them unless ``--unmask``."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from schemas.envelope import event_headers, event_key
from schemas.topics import DOSSIER_RECEIVED
from services.runtime.failures import dead_letter_replay
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Traffic
from tests.factories import dossier_received
from tests.stack_helpers import wait_for, wait_until_closed

PERSONAL_KEYS = (
    "citizen_id",
    "full_name",
    "address",
    "residence_address",
    "child_full_name",
    "date_of_birth",
)


def personal_values(value: Any, key: str | None = None) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from personal_values(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from personal_values(item, key)
    elif key in PERSONAL_KEYS and isinstance(value, str) and len(value) >= 8:
        yield value


def refused_hand_ins(submission: dict[str, Any]) -> list[dict[str, Any]]:
    """Hand-ins intake refuses, each still carrying the citizen's data."""
    wrong_year = copy.deepcopy(submission)
    wrong_year["applicant"]["date_of_birth"] = "1931-01-01"
    bad_id = copy.deepcopy(submission)
    bad_id["applicant"]["citizen_id"] = bad_id["applicant"]["full_name"]  # a name where an id goes
    no_form = copy.deepcopy(submission)
    no_form["form"] = {"husband": submission["form"]["husband"]}
    unknown = copy.deepcopy(submission) | {"procedure_code": "1.999999"}
    return [wrong_year, bad_id, no_form, unknown]


async def test_no_output_of_a_run_carries_the_citizens_data(stack: LocalStack, traffic: Traffic) -> None:
    dossiers = [
        await traffic.marriage(),
        await traffic.land_transfer(),
        await traffic.land_transfer(wrong_owner=True),
    ]
    await wait_until_closed(traffic, stack.tracker_url, dossiers, within_s=90)
    secrets = {v for d in dossiers for v in personal_values(d.form)}

    # Refused hand-ins: their error bodies.
    submission = traffic.samples.marriage()
    secrets |= set(personal_values(submission["form"])) | set(personal_values(submission["applicant"]))
    bodies: list[str] = []
    async with httpx.AsyncClient(timeout=10.0) as http:
        for index, body in enumerate(refused_hand_ins(submission)):
            answer = await http.post(
                f"{stack.intake_url}/dossiers", json=body, headers={"Idempotency-Key": f"refused-{index}"}
            )
            assert 400 <= answer.status_code < 500, answer.text
            bodies.append(answer.text)

    # Poison carrying personal data, and an unsigned event: their dead-letter headers.
    event = dossier_received("9.900005", form=submission["form"])
    secrets |= set(personal_values(json.loads(event.model_dump_json())))
    document = json.loads(event.model_dump_json())
    document["data"]["applicant"]["citizen_id"] = document["data"]["applicant"]["full_name"]
    poison = json.dumps(document).encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    await producer.start()
    try:
        topic = stack.topic_prefix + DOSSIER_RECEIVED
        for name, value in (("schema", poison), ("unsigned", event.model_dump_json().encode())):
            headers = event_headers(event) | {"test-personal": name}
            await producer.send_and_wait(
                topic, value, key=event_key(event), headers=[(k, v.encode()) for k, v in headers.items()]
            )
    finally:
        await producer.stop()

    async def letters() -> list[dead_letter_replay.DeadLetter]:
        found = await dead_letter_replay.read_dead_letters(stack.bootstrap_servers, stack.topic_prefix)
        return [x for x in found if "test-personal" in x.headers]

    async def both_dead_lettered() -> bool:
        return len(await letters()) >= 2

    await wait_for(both_dead_lettered, 30, "dead-lettering of the personal poison")
    assert any(len(v) == 12 and v.isdigit() for v in secrets), "the sample ids were collected"

    outputs: dict[str, str] = {f"HTTP error body {i}": text for i, text in enumerate(bodies)}
    for letter in await letters():
        context = {k: v for k, v in letter.headers.items() if k.startswith("kafka_dlt-")}
        outputs[f"dead-letter headers of {letter.headers['test-personal']}"] = json.dumps(
            context, ensure_ascii=False
        )
    async with httpx.AsyncClient(timeout=10.0) as http:
        for name, process in stack.processes.items():
            assert process.health_url is not None
            answer = await http.get(process.health_url.removesuffix("/health") + "/metrics")
            if answer.status_code == 200:
                outputs[f"/metrics of {name}"] = answer.text
    assert sum(k.startswith("/metrics") for k in outputs) >= 4, "every service's metrics were read"
    for path in sorted(stack.log_dir.glob("*.log")):
        outputs[f"log {path.name}"] = path.read_text(encoding="utf-8", errors="replace")
    leaks = {where: sorted(s for s in secrets if s in text) for where, text in outputs.items()}
    assert not {k: v for k, v in leaks.items() if v}, leaks
