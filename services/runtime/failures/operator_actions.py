"""Operator actions as events: who replayed or unmasked what, and why.

The tool a person acts through records the action, signed with its own key, as an
:class:`~schemas.events.OperatorActionRecorded` on ``operator.actions``: the tracker's supervision page
(producer ``tracker``) and the dead-letter tool (``lienthong dlq``, producer ``dlq-tool``). The tracker
appends every action to its hash-chained handoff log with the person's subject and reason
(:mod:`services.tracker.audit`); an action from any other producer is dead-lettered with error class
``authorization`` (:func:`schemas.authority.check_operator_action`).
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID, uuid4

from aiokafka import AIOKafkaProducer

from schemas.envelope import event_key, event_value, kafka_headers
from schemas.events import OperatorActionData, OperatorActionRecorded
from schemas.topics import OPERATOR_ACTIONS
from services.runtime.trust.signing import Signer

OperatorAction = OperatorActionData
"""What a person did (the event's data): see :class:`schemas.events.OperatorActionData`."""

NO_DOSSIER: Final = UUID(int=0)
"""The envelope's dossier id (and record key) of an action that concerns no dossier."""


def operator_action_event(action: OperatorAction, *, producer: str) -> OperatorActionRecorded:
    """The (unsigned) event that records ``action``, produced by ``producer``: keyed by the action's
    dossier, so a dossier's actions stay in order with each other."""
    dossier = UUID(action.dossier_id) if action.dossier_id is not None else NO_DOSSIER
    return OperatorActionRecorded(
        event_id=uuid4(),
        occurred_at=action.at,
        producer=producer,
        dossier_id=dossier,
        correlation_id=dossier,
        data=action,
    )


async def record_action(
    bootstrap_servers: str,
    action: OperatorAction,
    *,
    prefix: str = "",
    signer: Signer | None,
    producer: str | None = None,
    **kafka_options: Any,
) -> OperatorActionRecorded:
    """Publish ``action`` on ``operator.actions``, signed by ``signer`` (its producer is the event's;
    without a signer, ``producer`` names it and it goes out unsigned, for a setup that verifies
    nothing). Returns the event as published; raises if the broker does not take it."""
    if signer is not None:
        producer = signer.key.producer
    if producer is None:
        raise ValueError("record_action needs a signer or, for an unsigned setup, a producer")
    event = operator_action_event(action, producer=producer)
    if signer is not None:
        event = signer.sign(event)
    client = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True, **kafka_options
    )
    await client.start()
    try:
        await client.send_and_wait(
            prefix + OPERATOR_ACTIONS,
            event_value(event),
            key=event_key(event),
            headers=kafka_headers(event),
        )
    finally:
        await client.stop()
    return event
