"""Changes proposed for files this harness does not own, measured side by side with the shipped code.

:class:`BatchCommitConsumer` is the change proposed for ``EventConsumer.subscribe``
(services/runtime/consumer.py): a batch subscriber that handles each record of a poll in order, exactly
as today, and commits the Kafka offsets once per batch instead of once per record. The guarantees are
unchanged: offsets are committed only after every record of the batch was committed to the store; if
any record fails, FastStream seeks every partition of the batch back to its earliest record (nack), and
the records already handled are skipped by the event-id dedupe when they come again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.runtime.consumer import EventConsumer, Handler
from services.runtime.records import ReceivedRecord, raw_body

MAX_BATCH = 500


class BatchCommitConsumer(EventConsumer):
    def subscribe(
        self, broker: KafkaBroker, topics: Sequence[str], handler: Handler, *, description: str
    ) -> None:
        @broker.subscriber(
            *topics,
            group_id=self.group_id,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
            batch=True,
            max_records=MAX_BATCH,
            batch_timeout_ms=100,
            decoder=raw_body,
            description=description,
        )
        async def consume(body: Any, message: KafkaMessage) -> None:
            raw = message.raw_message
            records = raw if isinstance(raw, tuple) else (raw,)
            for record in records:
                await self.process(ReceivedRecord.from_consumer_record(record, self.group_id), handler)
