"""The foundation proof: a FastStream app on the real broker consumes a model and publishes another."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from services.runtime.kafka import make_broker
from services.runtime.settings import KafkaSettings
from tests.greeting_app import GreetingForwarded, wire


async def test_app_forwards_a_derived_model_over_the_real_broker(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    source, target = f"{topic_prefix}greetings", f"{topic_prefix}greetings.forwarded"
    broker = make_broker(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id="first-flow")
    wire(broker, source, target)
    reader = AIOKafkaConsumer(target, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    async with broker:
        await broker.start()
        await reader.start()
        try:
            await broker.publish({"dossier_code": "LT-261127-000001", "holder": "land"}, source, key=b"d1")
            record = await asyncio.wait_for(reader.getone(), timeout=30)
        finally:
            await reader.stop()
    forwarded = GreetingForwarded.model_validate_json(record.value)
    assert forwarded == GreetingForwarded(dossier_code="LT-261127-000001", holder="LAND", hops=1)
    assert record.key == b"LT-261127-000001"
