"""A bootstrap list of several brokers (a real cluster's ``KAFKA_BOOTSTRAP_SERVERS``) reaches the
cluster through every client the services make. Before, FastStream handed the comma-separated string
to aiokafka as one host name, and no service could start on a multi-broker list."""

from __future__ import annotations

from services.runtime.shell.kafka import make_broker
from services.runtime.shell.settings import KafkaSettings
from services.tools.localkafka.process import free_port


async def test_a_list_whose_first_broker_is_down_still_reaches_the_cluster(kafka_bootstrap: str) -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}, {kafka_bootstrap}")
    broker = make_broker(settings, client_id="bootstrap-list")
    async with broker:
        await broker.start()
        assert await broker.ping(timeout=10)
