"""The tracker service on a real broker: it reads every topic it should, in whatever order events come."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from schemas.envelope import Event, event_headers, event_key, event_value
from schemas.events import DossierStatusChanged, DossierStatusChangedData
from schemas.status import NationalStatus
from schemas.topics import DOSSIER_RECEIVED, DOSSIER_STATUS, HANDOFF_OUTCOME, all_topics, requests_topic
from services.runtime.shell.topics_admin import ensure_topics
from services.tracker.app import TrackerSettings, build_app
from tests.factories import dossier_received, outcome_for
from tests.unit.test_tracker import requested

pytestmark = pytest.mark.kafka


async def wait_for(
    http: httpx.AsyncClient, path: str, done: Callable[[Any], bool], within_s: float = 60.0
) -> Any:
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        answer = await http.get(path)
        if answer.status_code == 200:
            last = answer.json()
            if done(last):
                return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} did not get there within {within_s} s; last answer: {last}")


async def test_the_tracker_projects_events_from_every_topic(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, all_topics(topic_prefix))
    settings = TrackerSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, data_dir=tmp_path, staff_sign_in="off"
    )
    app = build_app(settings)

    received = dossier_received("9.900001")
    check = requested(received, "check_dossier", received.occurred_at)
    done = outcome_for(check, "completed")
    data = DossierStatusChangedData.model_validate(
        {
            "dossier_code": received.data.dossier_code,
            "procedure_code": received.data.procedure_code,
            "status": NationalStatus.IN_PROGRESS,
            "previous_status": NationalStatus.ACCEPTED,
            "holder": "land",
            "clock_paused": False,
        },
        strict=False,
    )
    in_progress = DossierStatusChanged.create(data=data, producer="router", caused_by=received)
    # The outcome first, the receipt last: the tracker must not depend on the order across topics.
    sends: list[tuple[str, Event]] = [
        (topic_prefix + HANDOFF_OUTCOME, done),
        (requests_topic("land", topic_prefix), check),
        (topic_prefix + DOSSIER_STATUS, in_progress),
        (topic_prefix + DOSSIER_RECEIVED, received),
    ]

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as http:
            assert (await http.get("/ready")).status_code == 200
            await producer.start()
            try:
                for topic, event in sends:
                    headers = [(k, v.encode()) for k, v in event_headers(event).items()]
                    await producer.send_and_wait(
                        topic, event_value(event), key=event_key(event), headers=headers
                    )
            finally:
                await producer.stop()

            d = await wait_for(
                http,
                f"/dossiers/{received.dossier_id}",
                lambda d: (
                    d["received_at"] is not None and d["status"] is not None and len(d["timeline"]) == 4
                ),
            )
            stats = (await http.get("/stats")).json()

    assert d["status"]["code"] == 4 and d["holder"] == "land"
    assert d["dossier_code"] == received.data.dossier_code
    assert [(leg["step_id"], leg["state"]) for leg in d["legs"]] == [("check_dossier", "completed")]
    assert d["legs"][0]["requested_at"] is not None
    assert d["applicant"] == "*********345"
    assert stats["totals"]["dossiers"] == 1
    assert (tmp_path / "tracker.db").exists()
