"""Least-privilege access on the broker: one principal per service and connector, and the ACLs that give
each exactly the topics and consumer groups it uses (see :meth:`LocalKafkaBroker.add_acls`).

A connector's principal is ``connector-<agency>``: it reads and writes its own agency's topics (the
requests, their retry tiers and dead-letter topic share the ``handoff.<agency>.requested`` prefix),
writes outcomes, and uses its own consumer groups; it cannot read another agency's requests.

The tracker reads every topic it projects and, for its supervision page's replay button
(:mod:`services.runtime.failures.dead_letter_replay`), every dead-letter topic and the replay log: a
replay writes the record back to the topic it failed on and records itself on ``dlq.replays``. It
reads those without a consumer group. It records each replay its page makes on ``operator.actions``
(which it also reads and projects into the handoff log, dead-lettering what it refuses), and publishes
the log's signed head on ``audit.heads``. The CLI (``lienthong dlq``, ``lienthong audit verify``)
connects as the admin principal: it records its own actions and reads the anchored head as the admin.
"""

from __future__ import annotations

from schemas.agencies import Agency
from schemas.topics import (
    AUDIT_HEADS,
    DLQ_REPLAYS,
    DLQ_SUFFIX,
    DOSSIER_CLOSED,
    DOSSIER_RECEIVED,
    DOSSIER_STATUS,
    HANDOFF_OUTCOME,
    OPERATOR_ACTIONS,
    all_topics,
    requests_topic,
)
from services.tools.localkafka.broker import Acl


def connector_principal(agency: Agency | str) -> str:
    return f"connector-{Agency(agency).value}"


def _topics(principal: str, operation: str, *names: str) -> list[Acl]:
    return [Acl(principal, "topic", name, operation) for name in names]  # type: ignore[arg-type]


def _group(principal: str, name: str) -> Acl:
    return Acl(principal, "group", name, "read", prefixed=True)  # the group and its sub-groups


def service_acls(prefix: str = "") -> dict[str, list[Acl]]:
    """Every principal of the bus and its ALLOW rules, for topics named with ``prefix``."""
    received, outcome = prefix + DOSSIER_RECEIVED, prefix + HANDOFF_OUTCOME
    status, closed = prefix + DOSSIER_STATUS, prefix + DOSSIER_CLOSED
    all_requests = [requests_topic(a, prefix) for a in Agency]
    dead_letters = [t.name for t in all_topics(prefix) if t.name.endswith(DLQ_SUFFIX)]
    replayed_to = [name.removesuffix(DLQ_SUFFIX) for name in dead_letters]  # where a replay goes
    replays = prefix + DLQ_REPLAYS
    acls: dict[str, list[Acl]] = {
        "intake": _topics("intake", "write", received),
        "router": [
            *_topics("router", "read", received, outcome),
            *_topics(
                "router", "write", *all_requests, status, closed, received + DLQ_SUFFIX, outcome + DLQ_SUFFIX
            ),
            _group("router", prefix + "router"),
        ],
        "tracker": [
            *_topics("tracker", "read", received, outcome, status, closed, *all_requests),
            *_topics("tracker", "write", status + DLQ_SUFFIX, closed + DLQ_SUFFIX),
            _group("tracker", prefix + "tracker"),
            # the replay button
            *_topics("tracker", "read", *dead_letters, replays),
            *_topics("tracker", "write", *dict.fromkeys(replayed_to), replays),
            # who did it, in the chain: the page's actions, and the log's anchored head
            *_topics("tracker", "read", prefix + OPERATOR_ACTIONS, prefix + AUDIT_HEADS),
            *_topics("tracker", "write", prefix + AUDIT_HEADS, prefix + OPERATOR_ACTIONS + DLQ_SUFFIX),
        ],
    }
    for agency in Agency:
        principal = connector_principal(agency)
        own = requests_topic(agency, prefix)  # also the prefix of its retry tiers and its DLQ
        acls[principal] = [
            Acl(principal, "topic", own, "read", prefixed=True),
            Acl(principal, "topic", own, "write", prefixed=True),
            *_topics(principal, "write", outcome),
            _group(principal, prefix + principal),
        ]
    return acls
