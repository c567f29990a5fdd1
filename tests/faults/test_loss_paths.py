"""The paths an operator recovers on, against the real broker and real sandbox processes: none of them
may lose a dossier or wedge a partition.

- a record whose headers are not UTF-8, polled among healthy records, is dead-lettered alone (router,
  connector and tracker);
- a dead letter replayed while its agency still fails is dead-lettered again, and completes when
  replayed once the agency is back;
- an agency answer that does not fit the outcome contract is dead-lettered after one call;
- a circuit breaker whose probe gets an unreadable answer closes again once the agency is healthy;
- an outcome of a step the router's catalog no longer has is dead-lettered, and the dossiers behind it
  on the same partition keep moving; an outcome for a dossier no router holds is dead-lettered too;
- a pending job whose polls keep failing is dead-lettered with its story, and replay completes it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from schemas.agencies import Agency
from schemas.catalog import load_catalog
from schemas.envelope import Event, event_headers, event_key, event_value
from schemas.events import HandoffOutcomeData, HandoffReported, OutcomeKind, parse_event
from schemas.topics import DOSSIER_RECEIVED, DOSSIER_STATUS, HANDOFF_OUTCOME, MAIN_PARTITIONS, requests_topic
from services.runtime.failures import dead_letter_records
from services.runtime.failures.dead_letter_replay import DeadLetter
from services.runtime.trust import keys
from services.runtime.trust.signing import CE_KEYID, CE_SIGNATURE, Signer
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Submitted, Traffic
from tests.stack_helpers import (
    SHORT_TIERS,
    assert_all_running,
    clear_faults,
    dead_letters_of,
    lienthong_dlq_replay,
    received_count,
    records,
    running_stack,
    sample_traffic,
    set_faults,
    wait_for,
    wait_until_closed,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

UNDECODABLE = b"\xff\xfe not text"
ENV = SHORT_TIERS | {
    "LIENTHONG_POLL_FAILURE_BUDGET": "3",
    "LIENTHONG_POLL_RETRY_S": "0.2",
    # A land job outlasts the connector's wait for it: it is pending and polled, long enough to break.
    "LAND_SANDBOX_JOB_SECONDS": "3",
    "LIENTHONG_LAND_WAIT_S": "0.2",
}
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(kafka_bootstrap, tmp_path_factory, "loss", **ENV) as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    async with sample_traffic(stack) as generator:
        yield generator


def partition_of(key: str) -> int:
    """The partition Kafka's default partitioner gives a key (aiokafka's and the Java client's)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % MAIN_PARTITIONS


def signed(stack: LocalStack, producer: str, event: Event) -> Record:
    """``event`` as its producer would write it, signed with the stack's key for ``producer``."""
    signer = Signer(keys.load_signing_key(keys.private_key_path(stack.private_keys_dir, producer)))
    event = signer.sign(event)
    headers = event_headers(event) | {CE_SIGNATURE: event.signature or "", CE_KEYID: event.key_id or ""}
    return event_key(event), event_value(event), [(k, v.encode()) for k, v in headers.items()]


async def produce(stack: LocalStack, topic: str, batch: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value, headers in batch:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def metric(url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``, from a service's /metrics."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(f"{url}/metrics")).text
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(label in line for label in wanted)
    )


async def letters_of(stack: LocalStack, dossier_id: str, agency: str | None = None) -> list[DeadLetter]:
    return [x for x in await dead_letters_of(stack, agency) if x.key == dossier_id.encode()]


async def tracker_view(stack: LocalStack, dossier_id: str) -> dict[str, Any] | None:
    """The dossier as the tracker shows it; None while the tracker has not seen it yet."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.get(f"{stack.tracker_url}/dossiers/{dossier_id}")
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


async def stuck_leg(stack: LocalStack, dossier_id: str) -> dict[str, Any] | None:
    """The dossier's dead-lettered leg (None while it has none)."""
    view = await tracker_view(stack, dossier_id)
    return next((leg for leg in view["legs"] if leg["stuck"]), None) if view else None


async def test_a_record_with_an_undecodable_header_is_dead_lettered_alone_on_every_consumer(
    stack: LocalStack, traffic: Traffic
) -> None:
    """Each bad record shares its partition (its key) with a healthy one and reaches its consumer in the
    same poll: the consumers are stopped while both are written. FastStream's own parser raised on the
    first such header and the whole poll was dropped, the healthy records with it."""
    prefix = stack.topic_prefix
    consumers = ["router", "connector-civil_status", "tracker"]
    for name in consumers:
        stack.processes[name].stop()
    try:
        marriages = [await traffic.marriage() for _ in range(3)]
        bad_topics = {
            "router": prefix + DOSSIER_RECEIVED,  # after the marriage's DossierReceived
            "connector": requests_topic(Agency.CIVIL_STATUS, prefix),  # before its request comes
            "tracker": prefix + DOSSIER_STATUS,  # before its status changes come
        }
        for marriage, (kind, topic) in zip(marriages, bad_topics.items(), strict=True):
            headers = [("x-note", UNDECODABLE), ("test-case", kind.encode())]
            await produce(stack, topic, [(marriage.dossier_id.encode(), b"{}", headers)])
        civil_requests = requests_topic(Agency.CIVIL_STATUS, prefix)
        before = await received_count(stack.bootstrap_servers, civil_requests)
        stack.restart("router")

        async def all_routed() -> bool:
            return await received_count(stack.bootstrap_servers, civil_requests) >= before + 3

        await wait_for(all_routed, 60, "routing of the three marriages polled with a bad record")
        stack.restart("connector-civil_status")
        stack.restart("tracker")
    finally:
        for name in consumers:
            if not stack.processes[name].is_running():
                stack.restart(name)
    await wait_until_closed(traffic, stack.tracker_url, marriages, within_s=90)

    async def three_dead_letters() -> bool:
        found = {x.headers.get("test-case") for x in await dead_letters_of(stack)}
        return {"router", "connector", "tracker"} <= found

    await wait_for(three_dead_letters, 30, "dead-lettering of every undecodable record")
    letters = {
        x.headers.get("test-case"): x for x in await dead_letters_of(stack) if "test-case" in x.headers
    }
    for kind, topic in bad_topics.items():
        letter = letters[kind]
        assert letter.error_class == "poison" and "not UTF-8" in letter.message, (kind, letter.message)
        assert letter.headers[dead_letter_records.ORIGINAL_TOPIC] == topic
        assert letter.undecodable["x-note"] == UNDECODABLE, "the dead letter keeps the header's bytes"
    assert_all_running(stack)


async def test_a_replay_while_the_agency_still_fails_is_dead_lettered_again_then_completes(
    stack: LocalStack, traffic: Traffic
) -> None:
    """The replay's copies on the delay tiers kept the replay id: before, they lost it, matched the
    first pass's dedupe keys and were skipped, so the replay vanished."""
    await set_faults(stack, Agency.CIVIL_STATUS, down_for_s=600)
    try:
        marriage = await traffic.marriage()

        async def dead_lettered(times: int) -> bool:
            return len(await letters_of(stack, marriage.dossier_id, "civil_status")) >= times

        await wait_for(lambda: dead_lettered(1), 60, "the first dead letter")
        (first,) = await letters_of(stack, marriage.dossier_id, "civil_status")
        replay = await lienthong_dlq_replay(stack, first.id)
        assert replay.returncode == 0 and "replayed 1," in replay.stdout, replay.stdout + replay.stderr
        await wait_for(lambda: dead_lettered(2), 60, "the replay's own dead letter (the agency still fails)")
    finally:
        await clear_faults(stack, Agency.CIVIL_STATUS)
    second = next(x for x in await letters_of(stack, marriage.dossier_id, "civil_status") if x.id != first.id)
    assert second.error_class == "transient" and int(second.headers[dead_letter_records.ATTEMPTS]) == 4
    assert (await stuck_leg(stack, marriage.dossier_id)) is not None, "the tracker shows it stuck again"

    again = await lienthong_dlq_replay(stack, first.id)
    assert "replayed 0, skipped 1" in again.stdout, again.stdout
    replay = await lienthong_dlq_replay(stack, second.id)
    assert "replayed 1," in replay.stdout, replay.stdout + replay.stderr
    (detail,) = (await wait_until_closed(traffic, stack.tracker_url, [marriage], within_s=60)).values()
    assert detail["result"] == "completed"
    wife = marriage.form["wife"]["citizen_id"]
    registered = [
        r for r in await records(stack, Agency.CIVIL_STATUS, "marriages") if r["vo_so_dinh_danh"] == wife
    ]
    assert len(registered) == 1


async def test_an_answer_that_does_not_fit_the_outcome_contract_is_dead_lettered_after_one_call(
    stack: LocalStack, traffic: Traffic
) -> None:
    """A registration number longer than the outcome contract allows: before, building the outcome
    raised outside the failure handling and the agency was called again every second, for ever."""
    connector_url = stack.url(stack.ports.connectors[Agency.CIVIL_STATUS])
    await set_faults(stack, Agency.CIVIL_STATUS, reply_patch={"so_dang_ky": "KH-" + "9" * 300})
    try:
        calls_before = await metric(connector_url, "lienthong_agency_calls_total", agency="civil_status")
        marriage = await traffic.marriage()

        async def stuck() -> bool:
            return await stuck_leg(stack, marriage.dossier_id) is not None

        await wait_for(stuck, 60, "the handoff's dead-lettering")
        await asyncio.sleep(3)  # long enough for the redeliveries of before (one a second) to show
        calls = await metric(connector_url, "lienthong_agency_calls_total", agency="civil_status")
    finally:
        await clear_faults(stack, Agency.CIVIL_STATUS)
    leg = await stuck_leg(stack, marriage.dossier_id)
    assert leg is not None and leg["error_class"] == "protocol"
    assert "does not fit the outcome contract" in leg["reason"]
    assert calls - calls_before == 1, "the agency was called once for the handoff"
    after = await traffic.marriage()
    (detail,) = (await wait_until_closed(traffic, stack.tracker_url, [after], within_s=60)).values()
    assert detail["result"] == "completed", "the agency's partition keeps flowing"


async def test_a_probe_answered_with_garbage_ends_and_the_circuit_closes_when_the_agency_is_back(
    stack: LocalStack, traffic: Traffic
) -> None:
    """A maintenance page served with status 200 answered the half-open probe: before, the probe never
    ended, the circuit stayed half-open and every later handoff was delayed, then dead-lettered."""
    connector_url = stack.url(stack.ports.connectors[Agency.CIVIL_STATUS])

    async def circuit(state: str) -> bool:
        labels = {"agency": "civil_status", "lienthong_circuit_state": state}
        return await metric(connector_url, "lienthong_circuit_state", **labels) == 1

    await set_faults(stack, Agency.CIVIL_STATUS, down_for_s=600)
    try:
        for _ in range(6):
            await traffic.marriage()
        await wait_for(lambda: circuit("open"), 60, "the circuit opening")
        protocol_before = len(
            [x for x in await dead_letters_of(stack, "civil_status") if x.error_class == "protocol"]
        )
        await set_faults(stack, Agency.CIVIL_STATUS, down_for_s=0, malformed_rate=1.0)

        async def probed_with_garbage() -> bool:
            letters = await dead_letters_of(stack, "civil_status")
            return len([x for x in letters if x.error_class == "protocol"]) > protocol_before

        await wait_for(probed_with_garbage, 60, "a probe answered with garbage")
    finally:
        await clear_faults(stack, Agency.CIVIL_STATUS)
    healthy = await traffic.marriage()
    (detail,) = (await wait_until_closed(traffic, stack.tracker_url, [healthy], within_s=60)).values()
    assert detail["result"] == "completed" and not detail["stuck"]
    await wait_for(lambda: circuit("closed"), 30, "the circuit closing")


async def test_a_pending_job_whose_polls_keep_failing_is_dead_lettered_with_its_story(
    stack: LocalStack, traffic: Traffic
) -> None:
    """Before, a poll that failed for good was tried again every 5 s, for ever, and the leg looked busy."""
    connector_url = stack.url(stack.ports.connectors[Agency.LAND])
    answered = await metric(connector_url, "lienthong_agency_calls_total", agency="land", result="ok")
    transfer = await traffic.land_transfer()

    async def pending() -> bool:  # the registry took the check job, which runs on (3 s)
        calls = await metric(connector_url, "lienthong_agency_calls_total", agency="land", result="ok")
        return calls > answered

    await wait_for(pending, 30, "the land check job pending", interval_s=0.05)
    await set_faults(stack, Agency.LAND, malformed_rate=1.0)  # every poll now gets an unreadable answer
    try:

        async def stuck() -> bool:
            return await stuck_leg(stack, transfer.dossier_id) is not None

        await wait_for(stuck, 60, "the land leg dead-lettered past its poll failure budget")
    finally:
        await clear_faults(stack, Agency.LAND)
    leg = await stuck_leg(stack, transfer.dossier_id)
    assert leg is not None and leg["agency"] == "land" and leg["error_class"] == "protocol"
    (letter,) = await letters_of(stack, transfer.dossier_id, "land")
    assert int(letter.headers[dead_letter_records.ATTEMPTS]) == 3, "three failed polls in a row, the budget"
    assert (
        letter.headers[dead_letter_records.FIRST_FAILURE] < letter.headers[dead_letter_records.LAST_FAILURE]
    )
    request = parse_event(letter.value, letter.headers)
    assert str(request.dossier_id) == transfer.dossier_id, "the dead letter holds the request as received"

    replay = await lienthong_dlq_replay(stack, letter.id)
    assert "replayed 1," in replay.stdout, replay.stdout + replay.stderr
    (detail,) = (await wait_until_closed(traffic, stack.tracker_url, [transfer], within_s=90)).values()
    assert detail["result"] == "completed"


async def test_an_outcome_for_a_dossier_no_router_holds_is_dead_lettered_and_counted(
    stack: LocalStack,
) -> None:
    router_url = stack.url(stack.ports.router)
    before = await metric(router_url, "lienthong_dead_letters_total", agency="none", error_class="poison")
    catalog = load_catalog()
    step = catalog.procedure("9.900005").route[0]
    orphan = HandoffReported.create(
        data=HandoffOutcomeData(
            handoff_id=uuid.uuid4(), step_id=step.id, agency=step.agency, action=step.action,
            kind=OutcomeKind.COMPLETED,
        ),
        producer="connector.civil_status",
        dossier_id=uuid.uuid4(),
    )  # fmt: skip
    await produce(
        stack, stack.topic_prefix + HANDOFF_OUTCOME, [signed(stack, "connector.civil_status", orphan)]
    )

    async def dead_lettered() -> bool:
        return bool(await letters_of(stack, str(orphan.dossier_id)))

    await wait_for(dead_lettered, 30, "the orphan outcome's dead letter")
    (letter,) = await letters_of(stack, str(orphan.dossier_id))
    assert letter.topic == stack.topic_prefix + HANDOFF_OUTCOME + ".dlq"
    assert letter.error_class == "poison" and "is being routed" in letter.message
    after = await metric(router_url, "lienthong_dead_letters_total", agency="none", error_class="poison")
    assert after == before + 1


async def test_an_outcome_of_a_step_the_catalog_lost_is_dead_lettered_and_its_partition_moves_on(
    stack: LocalStack, traffic: Traffic, tmp_path: Path
) -> None:
    """The router restarts on a catalog whose marriage step has a new id while a marriage waits for the
    civil-status connector (stopped meanwhile). Before, that marriage's outcome raised on every
    redelivery and stopped every dossier of its partition."""
    router, connector = stack.processes["router"], stack.processes["connector-civil_status"]
    connector.stop()
    try:
        held = await traffic.marriage()

        async def handed_off() -> bool:
            view = await tracker_view(stack, held.dossier_id)
            return bool(view and view["legs"])

        await wait_for(handed_off, 60, "the marriage handed to the civil-status registry")
        catalog = yaml.safe_load((Path(__file__).parents[2] / "schemas/data/procedures.yaml").read_text())
        for procedure in catalog["procedures"]:
            if procedure["code"] == "9.900005":
                procedure["route"][0]["id"] = "register_union"
        changed = tmp_path / "procedures.yaml"
        changed.write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
        router.env["LIENTHONG_CATALOG_PATH"] = str(changed)
        stack.restart("router")
    finally:
        stack.restart("connector-civil_status")
    try:
        behind: Submitted | None = None
        for _ in range(60):  # a marriage whose outcome shares the held one's partition
            candidate = await traffic.marriage()
            if partition_of(candidate.dossier_id) == partition_of(held.dossier_id):
                behind = candidate
                break
        assert behind is not None
        (detail,) = (await wait_until_closed(traffic, stack.tracker_url, [behind], within_s=90)).values()
        assert detail["result"] == "completed", "the partition behind the bad outcome keeps moving"

        async def dead_lettered() -> bool:
            letters = await letters_of(stack, held.dossier_id)
            return any(x.topic.endswith(HANDOFF_OUTCOME + ".dlq") for x in letters)

        await wait_for(dead_lettered, 60, "the held marriage's outcome dead-lettered")
        letter = next(x for x in await letters_of(stack, held.dossier_id) if x.topic.endswith(".dlq"))
        assert letter.error_class == "internal" and "no step 'register_marriage'" in letter.message
        outcome = parse_event(letter.value, letter.headers)
        assert isinstance(outcome, HandoffReported) and outcome.data.step_id == "register_marriage"
    finally:
        router.env.pop("LIENTHONG_CATALOG_PATH", None)
        stack.restart("router")
    assert_all_running(stack)
