"""The same app in FastStream's in-memory test broker: fast checks of wiring and validation."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from tests.greeting_app import wire


async def test_forwarder_publishes_the_derived_model() -> None:
    broker = KafkaBroker()
    wire(broker, "in", "out")

    @broker.subscriber("out")
    async def sink(body: dict[str, object]) -> None: ...

    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish({"dossier_code": "LT-1", "holder": "tax"}, "in")
        sink.mock.assert_called_once_with({"dossier_code": "LT-1", "holder": "TAX", "hops": 1})


async def test_invalid_model_is_refused_not_forwarded() -> None:
    broker = KafkaBroker()
    wire(broker, "in", "out")

    @broker.subscriber("out")
    async def sink(body: dict[str, object]) -> None: ...

    async with TestKafkaBroker(broker) as test_broker:
        with pytest.raises(Exception, match="holder"):
            await test_broker.publish({"dossier_code": "LT-1"}, "in")
        sink.mock.assert_not_called()
