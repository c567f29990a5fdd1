"""The AsyncAPI document of a service, generated from its FastStream broker — never written by hand.

FastStream describes every subscriber and publisher of the broker (channels, operations, Kafka
bindings). Our subscribers hand their handler the record's raw bytes (the runtime parses events
itself, so that poison becomes a dead letter), so FastStream alone would show a binary payload: the
messages are then filled in from the event models of ``schemas.events`` by the topic's name — one
place that says which event travels on which topic (:func:`topic_events`). Records are CloudEvents
in binary content mode (:mod:`schemas.envelope`): a message's payload is the event's ``data`` model
and its headers the envelope's ``ce_*`` attributes. The JSON Schemas go to ``components/schemas``
under their class names (the headers as ``<Event>Headers``).

Each service serves its document at ``/asyncapi.json``; ``lienthong asyncapi export`` writes them to
``deploy/asyncapi/<service>.json`` and ``lienthong asyncapi check`` compares the two.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from importlib import metadata
from typing import Any, Final

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from schemas.envelope import (
    BINARY_OPTIONAL,
    BINARY_REQUIRED,
    CE_SCHEMAVERSION,
    CE_SPECVERSION,
    CE_TYPE,
    CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    SPECVERSION,
    Event,
)
from schemas.events import (
    DossierClosed,
    DossierReceived,
    DossierStatusChanged,
    HandoffReported,
    HandoffRequested,
)
from schemas.topics import (
    DLQ_SUFFIX,
    DOSSIER_CLOSED,
    DOSSIER_RECEIVED,
    DOSSIER_STATUS,
    HANDOFF_OUTCOME,
)

SCHEMA_VERSION: Final = "3.0.0"
DEAD_LETTER_SCHEMA: Final = "DeadLetter"
_REF_TEMPLATE: Final = "#/components/schemas/{model}"

_BY_TOPIC: Final[dict[str, type[Event]]] = {
    DOSSIER_RECEIVED: DossierReceived,
    DOSSIER_STATUS: DossierStatusChanged,
    DOSSIER_CLOSED: DossierClosed,
    HANDOFF_OUTCOME: HandoffReported,
}


def topic_events(topic: str) -> Sequence[type[Event]]:
    """The event models that travel on ``topic`` (any topic prefix); empty for a dead-letter topic
    or a topic of no event of ours."""
    if topic.endswith(DLQ_SUFFIX):
        return ()
    for name, model in _BY_TOPIC.items():
        if topic == name or topic.endswith("." + name):
            return (model,)
    parts = topic.split(".")
    if "handoff" in parts and ("requested" in parts or "retry" in parts):
        return (HandoffRequested,)  # handoff.<agency>.requested and its delayed-retry tiers
    return ()


def _version() -> str:
    try:
        return metadata.version("lienthong")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _dead_letter_schema() -> dict[str, Any]:
    return {
        "title": DEAD_LETTER_SCHEMA,
        "description": (
            "A record that could not be handled, copied byte for byte from its original topic; its "
            "story is in Spring Kafka's kafka_dlt-* headers (original topic, partition as a 4-byte and "
            "offset and timestamp as 8-byte big-endian integers, timestamp type, consumer group, "
            "exception class, cause, message and stack trace) and ours (kafka_dlt-lienthong-*: "
            "attempts, first and last failure time, error class)."
        ),
        "type": "string",
        "format": "binary",
    }


def _add_data_model(schemas: dict[str, Any], model: type[Event]) -> str:
    """The event's ``data`` model in ``schemas``; its name."""
    data_model = model.model_fields["data"].annotation
    assert isinstance(data_model, type)
    schema = data_model.model_json_schema(ref_template=_REF_TEMPLATE)
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas[data_model.__name__] = schema
    return data_model.__name__


def _add_headers(schemas: dict[str, Any], model: type[Event]) -> str:
    """The envelope of ``model`` as its record's CloudEvents headers, in ``schemas``; its name."""
    envelope = model.model_json_schema()["properties"]
    properties: dict[str, Any] = {
        CE_SPECVERSION: {"const": SPECVERSION, "description": "CloudEvents specification version."},
        CONTENT_TYPE: {"const": JSON_CONTENT_TYPE, "description": "The value is the data, as JSON."},
    }
    for field, header in (BINARY_REQUIRED | BINARY_OPTIONAL).items():
        properties[header] = {"type": "string", "description": envelope[field].get("description", "")}
    properties[CE_TYPE] |= {"const": model.EVENT_TYPE}
    properties[CE_SCHEMAVERSION] |= {"const": str(model.SCHEMA_VERSION)}
    name = f"{model.__name__}Headers"
    schemas[name] = {
        "type": "object",
        "title": name,
        "description": f"The envelope of {model.__name__}: CloudEvents binary-mode Kafka headers.",
        "properties": properties,
        "required": [CE_SPECVERSION, *BINARY_REQUIRED.values()],
    }
    return name


def _refs(names: list[str]) -> dict[str, Any]:
    refs = [{"$ref": _REF_TEMPLATE.format(model=n)} for n in names]
    return refs[0] if len(refs) == 1 else {"oneOf": refs}


def _fill_payloads(doc: dict[str, Any]) -> None:
    components = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    messages: dict[str, Any] = components.setdefault("messages", {})
    used_by_us: set[str] = set()
    for channel in doc.get("channels", {}).values():
        topic = str(channel.get("address", ""))
        models = topic_events(topic)
        message_headers: dict[str, Any] | None = None
        if models:
            payload = _refs([_add_data_model(schemas, m) for m in models])
            message_headers = _refs([_add_headers(schemas, m) for m in models])
            content_type = "application/json"
        elif topic.endswith(DLQ_SUFFIX):
            schemas[DEAD_LETTER_SCHEMA] = _dead_letter_schema()
            payload = {"$ref": _REF_TEMPLATE.format(model=DEAD_LETTER_SCHEMA)}
            content_type = "application/octet-stream"
        else:
            continue
        for reference in channel.get("messages", {}).values():
            name = str(reference.get("$ref", "")).rsplit("/", 1)[-1]
            message = messages.get(name)
            if message is None:
                continue
            old = str(message.get("payload", {}).get("$ref", "")).rsplit("/", 1)[-1]
            if old:
                used_by_us.add(old)
            message["payload"] = payload
            if message_headers is not None:
                message["headers"] = message_headers
            message["contentType"] = content_type
            message["correlationId"] = {"location": "$message.header#/ce_correlationid"}
    # FastStream's placeholder payloads (raw bytes) that no message uses any more
    still_used = json.dumps(messages)
    for name in used_by_us:
        if name in schemas and f'"{_REF_TEMPLATE.format(model=name)}"' not in still_used:
            del schemas[name]


def asyncapi_document(broker: KafkaBroker, service: str, *, description: str = "") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``service`` (a JSON-able dict, keys sorted)."""
    spec = AsyncAPI(
        broker,
        title=f"Liên Thông {service}",
        version=_version(),
        description=description or None,
        schema_version=SCHEMA_VERSION,
    )
    doc: dict[str, Any] = copy.deepcopy(spec.to_specification().to_jsonable())
    _fill_payloads(doc)
    normalised: dict[str, Any] = json.loads(json.dumps(doc, sort_keys=True, ensure_ascii=False))
    return normalised


def document_text(doc: dict[str, Any]) -> str:
    """How a document is committed: sorted keys, two-space indent, UTF-8, a final newline."""
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=2) + "\n"
