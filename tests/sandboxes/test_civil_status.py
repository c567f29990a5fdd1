"""Civil-status registry sandbox, in process, through its client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.civil_status.client import (
    BirthDeclaration,
    CivilStatusClient,
    DeathDeclaration,
    Declarant,
    Parent,
    Person,
)
from connectors.civil_status.sandbox.app import create_app
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from tests.clock import LOS_ANGELES, MACHINE_ZONES, machine_zone, travel, vn
from tests.sandboxes.helpers import BASE_URL, asgi_client, records

# Every test runs on Tuesday 10 March 2026 at noon in Vietnam (the registry's clock is the real one).
TODAY = date(2026, 3, 10)


@pytest.fixture(autouse=True)
def registry_day() -> Iterator[None]:
    with travel(vn(2026, 3, 10, 12, 0)):
        yield


def years_ago(years: int, days: int = 0) -> date:
    return TODAY.replace(year=TODAY.year - years) - timedelta(days=days)


HUSBAND = Person(full_name="Trần Văn Minh", birth_date=years_ago(28), citizen_id="079090001234")
WIFE = Person(full_name="Lê Thị Thu", birth_date=years_ago(25), citizen_id="079195005678")


@dataclass
class Civil:
    client: CivilStatusClient
    http: httpx.AsyncClient


@pytest.fixture
async def civil() -> AsyncIterator[Civil]:
    app = create_app(":memory:")
    async with (
        CivilStatusClient(BASE_URL, transport=httpx.ASGITransport(app=app)) as client,
        asgi_client(app) as http,
    ):
        yield Civil(client, http)


async def test_marriage_is_registered_and_can_be_looked_up(civil: Civil) -> None:
    registration = await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="m1")
    assert registration.registered_on == TODAY
    assert registration.registration_no.startswith("KH-")
    marriage = await civil.client.get_marriage(WIFE.citizen_id)
    assert marriage is not None
    assert (marriage.husband, marriage.wife) == (HUSBAND, WIFE)
    assert marriage.registration_no == registration.registration_no
    assert await civil.client.get_marriage("079000000000") is None


@pytest.mark.parametrize("zone", MACHINE_ZONES)
@pytest.mark.parametrize(
    ("moment", "day"),
    [(vn(2026, 3, 10, 23, 59), date(2026, 3, 10)), (vn(2026, 3, 11, 0, 1), date(2026, 3, 11))],
    ids=["23:59", "00:01"],
)
async def test_registration_date_is_vietnams_day_in_any_machine_zone(
    civil: Civil, zone: str, moment: datetime, day: date
) -> None:
    with machine_zone(zone), travel(moment):
        registration = await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="late")
    assert registration.registered_on == day
    assert registration.registration_no.startswith(f"KH-{day.year}-")


async def test_of_age_from_the_first_minute_of_the_birthday_in_vietnam(civil: Civil) -> None:
    # 00:01 on 11 March 2026 in Vietnam is still 10 March in Los Angeles: he is 20 in Vietnam.
    husband = HUSBAND.model_copy(update={"birth_date": date(2006, 3, 11)})
    with machine_zone(LOS_ANGELES), travel(vn(2026, 3, 11, 0, 1)):
        registration = await civil.client.register_marriage(husband, WIFE, idempotency_key="birthday")
    assert registration.registered_on == date(2026, 3, 11)


async def test_wire_format_uses_vietnamese_keys_and_dmy_dates(civil: Civil) -> None:
    await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="m1")
    answer = (await civil.http.get(f"/api/ho-tich/ket-hon/{HUSBAND.citizen_id}")).json()
    assert answer["chong"]["ngay_sinh"] == HUSBAND.birth_date.strftime("%d/%m/%Y")
    assert answer["ngay_dang_ky"] == TODAY.strftime("%d/%m/%Y")


@pytest.mark.parametrize(
    ("husband_age_days", "wife_age_days"),
    [((20, 1), (25, 0)), ((25, 0), (18, 1))],
    ids=["man-one-day-under-20", "woman-one-day-under-18"],
)
async def test_under_age_marriage_is_rejected(
    civil: Civil, husband_age_days: tuple[int, int], wife_age_days: tuple[int, int]
) -> None:
    # Born one day later than the birthday that makes them of age: still under age today.
    husband = HUSBAND.model_copy(
        update={"birth_date": years_ago(husband_age_days[0]) + timedelta(husband_age_days[1])}
    )
    wife = WIFE.model_copy(update={"birth_date": years_ago(wife_age_days[0]) + timedelta(wife_age_days[1])})
    with pytest.raises(AgencyRejected) as rejected:
        await civil.client.register_marriage(husband, wife, idempotency_key="young")
    assert rejected.value.code == "CHUA_DU_TUOI"
    assert "Luật Hôn nhân và gia đình 2014" in rejected.value.reason
    assert await records(civil.http, "marriages") == []


async def test_exactly_of_age_on_the_birthday_may_marry(civil: Civil) -> None:
    husband = HUSBAND.model_copy(update={"birth_date": years_ago(20)})
    wife = WIFE.model_copy(update={"birth_date": years_ago(18)})
    await civil.client.register_marriage(husband, wife, idempotency_key="birthday")


async def test_someone_already_married_cannot_marry_again(civil: Civil) -> None:
    await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="m1")
    other = Person(full_name="Phạm Thị Lan", birth_date=years_ago(30), citizen_id="079192009999")
    with pytest.raises(AgencyRejected) as rejected:
        await civil.client.register_marriage(HUSBAND, other, idempotency_key="m2")
    assert rejected.value.code == "DA_KET_HON"


async def test_same_key_replays_and_different_body_is_refused(civil: Civil) -> None:
    first = await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="m1")
    assert await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="m1") == first
    other = WIFE.model_copy(update={"full_name": "Lê Thị Thu Hà"})
    with pytest.raises(AgencyProtocolError) as reused:
        await civil.client.register_marriage(HUSBAND, other, idempotency_key="m1")
    assert reused.value.status_code == 422
    assert len(await records(civil.http, "marriages")) == 1


def marriage_body(**chong: Any) -> dict[str, Any]:
    person = {"ho_ten": "A", "ngay_sinh": "01/01/1990", "so_dinh_danh": "079090001234"}
    return {"chong": {**person, **chong}, "vo": {**person, "so_dinh_danh": "079195005678"}}


@pytest.mark.parametrize("bad", ["1990-01-01", "1/1/1990", "31/02/1990", "hôm qua"])
async def test_dates_not_dd_mm_yyyy_are_400_naming_the_field(civil: Civil, bad: str) -> None:
    answer = await civil.http.post("/api/ho-tich/ket-hon", json=marriage_body(ngay_sinh=bad))
    assert answer.status_code == 400
    assert answer.json()["ma_loi"] == "NGAY_KHONG_HOP_LE"
    assert answer.json()["truong"] == "chong.ngay_sinh"
    assert "chong.ngay_sinh" in answer.json()["mo_ta"]


async def test_other_invalid_fields_are_400_too(civil: Civil) -> None:
    answer = await civil.http.post("/api/ho-tich/ket-hon", json=marriage_body(so_dinh_danh="123"))
    assert answer.status_code == 400
    assert answer.json()["truong"] == "chong.so_dinh_danh"


def birth(name: str = "Trần Minh An") -> BirthDeclaration:
    return BirthDeclaration(
        child_name=name,
        birth_date=TODAY - timedelta(days=3),
        sex="female",
        birth_place="Bệnh viện Từ Dũ, TP. Hồ Chí Minh",
        mother=Parent(full_name=WIFE.full_name, citizen_id=WIFE.citizen_id),
        father=Parent(full_name=HUSBAND.full_name, citizen_id=HUSBAND.citizen_id),
    )


async def test_birth_registration_issues_a_personal_id(civil: Civil) -> None:
    registration = await civil.client.register_birth(birth(), idempotency_key="b1")
    personal_id = registration.personal_id
    assert len(personal_id) == 12 and personal_id.startswith("079")
    assert personal_id[3] == "3"  # born in the 2000s, female
    assert personal_id[4:6] == f"{birth().birth_date.year % 100:02d}"
    with pytest.raises(AgencyRejected) as twice:
        await civil.client.register_birth(birth(), idempotency_key="b2")
    assert twice.value.code == "DA_DANG_KY_KHAI_SINH"
    twin = await civil.client.register_birth(birth("Trần Minh Anh"), idempotency_key="b3")
    assert twin.personal_id != personal_id


def death(person: Person = HUSBAND) -> DeathDeclaration:
    return DeathDeclaration(
        deceased=person,
        death_date=TODAY - timedelta(days=1),
        death_place="TP. Hồ Chí Minh",
        declarant=Declarant(full_name=WIFE.full_name, citizen_id=WIFE.citizen_id, relationship="vợ"),
    )


async def test_death_is_registered_once(civil: Civil) -> None:
    registration = await civil.client.register_death(death(), idempotency_key="d1")
    assert registration.registration_no.startswith("KT-")
    with pytest.raises(AgencyRejected) as twice:
        await civil.client.register_death(death(), idempotency_key="d2")
    assert twice.value.code == "DA_DANG_KY_KHAI_TU"
    with pytest.raises(AgencyRejected) as married:
        await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="m-dead")
    assert married.value.code == "DA_CHET"
    assert len(await records(civil.http, "deaths")) == 1


async def test_faults_reach_the_client_as_unavailable(civil: Civil) -> None:
    await civil.http.put("/_sandbox/faults", json={"down_for_s": 30})
    with pytest.raises(AgencyUnavailable) as down:
        await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="m1")
    assert down.value.retry_after and down.value.retry_after >= 1
    await civil.http.delete("/_sandbox/faults")
    await civil.client.register_marriage(HUSBAND, WIFE, idempotency_key="m1")
