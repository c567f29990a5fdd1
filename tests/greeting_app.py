"""A minimal FastStream app for the foundation tests: a pydantic model in, a derived model out."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, Field


class Greeting(BaseModel):
    dossier_code: str
    holder: str


class GreetingForwarded(BaseModel):
    dossier_code: str
    holder: str
    hops: int = Field(ge=1)


def wire(broker: KafkaBroker, source: str, target: str) -> None:
    publisher = broker.publisher(target)

    @broker.subscriber(
        source, group_id=f"{source}-forwarder", ack_policy=AckPolicy.ACK, auto_offset_reset="earliest"
    )
    async def forward(greeting: Greeting) -> None:
        await publisher.publish(
            GreetingForwarded(dossier_code=greeting.dossier_code, holder=greeting.holder.upper(), hops=1),
            key=greeting.dossier_code.encode(),
        )
