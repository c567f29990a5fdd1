"""The start-up check that a service's topics are kept in more than one copy.

``acks=all`` waits for every in-sync replica; on a topic with replication factor 1 that is one broker,
so losing that broker's disk loses every record the bus acknowledged there. The local stack runs on a
single broker on purpose (``LIENTHONG_LOCAL_STACK=1``); anywhere else such a topic is a deployment
mistake, and :func:`single_copy_topics` names it in the service's log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from schemas.topics import MAX_DEFAULT_REPLICATION_FACTOR
from services.runtime.shell.settings import KafkaSettings, client_security_options
from services.runtime.shell.topics_admin import replication_factors

log = logging.getLogger(__name__)


async def single_copy_topics(
    settings: KafkaSettings, topics: Iterable[str], *, timeout_s: float = 10.0
) -> list[str]:
    """The topics among ``topics`` (full names, prefix included) that the cluster keeps in one copy.

    Logs one warning naming them and what to do. In the local stack (``settings.local_stack``) the
    cluster is not asked and nothing is returned. Topics the cluster does not have are not reported.
    When the cluster cannot be asked within ``timeout_s``, logs a warning saying so and returns ``[]``:
    the check never stops a service from starting.
    """
    if settings.local_stack:
        return []
    wanted = set(topics)
    if not wanted:
        return []
    try:
        async with asyncio.timeout(timeout_s):
            factors = await _replication_factors(settings, timeout_s)
    except (KafkaError, OSError, TimeoutError) as error:
        log.warning(
            "could not check how many copies the cluster keeps of this service's topics: %r",
            error,
            extra={"action": "replication_check", "outcome": "unknown"},
        )
        return []
    single = sorted(name for name in wanted if factors.get(name) == 1)
    if single:
        log.warning(
            "%d topics of this service are kept in one copy only (replication factor 1), so a"
            " single broker's loss loses their acknowledged records: %s. Recreate them with"
            " `lienthong topics create --replication-factor %d` on an empty cluster, or raise their"
            " replication with a partition reassignment (kafka-reassign-partitions.sh); set"
            " LIENTHONG_LOCAL_STACK=1 only on a local stack.",
            len(single),
            ", ".join(single),
            MAX_DEFAULT_REPLICATION_FACTOR,
            extra={"action": "replication_check", "outcome": "single_copy", "topics": single},
        )
    return single


async def _replication_factors(settings: KafkaSettings, timeout_s: float) -> dict[str, int]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="lienthong-replication-check",
        request_timeout_ms=int(timeout_s * 1000),
        **client_security_options(settings),
    )
    try:
        await admin.start()
        # Every topic, not the named ones: naming a missing topic may auto-create it.
        return replication_factors(await admin.describe_topics())
    finally:
        await admin.close()
