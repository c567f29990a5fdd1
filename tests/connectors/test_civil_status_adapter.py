"""The civil-status connector against the civil-status registry sandbox."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from connectors.base import Completed
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from connectors.testing import SampleForms
from schemas.values import Sex
from schemas.workdays import vn_today
from tests.connectors.conftest import CivilSandbox, handoff

REGISTRATION_KEYS = {"registration_no", "registered_on", "book_no"}


def marriage(samples: SampleForms) -> dict[str, Any]:
    form: dict[str, Any] = samples.marriage()
    return form


async def test_marriage_is_registered(civil: CivilSandbox, samples: SampleForms) -> None:
    form = marriage(samples)
    done = await civil.connector.handle(
        handoff("register_marriage", "marriage", form, procedure_code="9.900005")
    )
    assert isinstance(done, Completed)
    assert set(done.result) == REGISTRATION_KEYS
    assert done.reference == done.result["registration_no"]
    assert done.reference is not None and done.reference.startswith("KH-")
    assert date.fromisoformat(done.result["registered_on"])
    held = await civil.client.get_marriage(form["wife"]["citizen_id"])
    assert held is not None and held.registration_no == done.reference
    assert held.husband.birth_date.isoformat() == form["husband"]["date_of_birth"]


async def test_an_underage_marriage_is_rejected(civil: CivilSandbox, samples: SampleForms) -> None:
    form = marriage(samples)
    form["husband"] = samples.person(Sex.MALE, date(vn_today().year - 19, 1, 1))
    with pytest.raises(AgencyRejected, match="chưa đủ 20 tuổi") as rejected:
        await civil.connector.handle(handoff("register_marriage", "marriage", form))
    assert rejected.value.code == "CHUA_DU_TUOI"
    assert await civil.count("marriages") == 0


async def test_a_second_marriage_is_rejected(civil: CivilSandbox, samples: SampleForms) -> None:
    form = marriage(samples)
    assert isinstance(await civil.connector.handle(handoff("register_marriage", "marriage", form)), Completed)
    other = {**marriage(samples), "husband": form["husband"]}
    with pytest.raises(AgencyRejected, match="đang có đăng ký kết hôn") as rejected:
        await civil.connector.handle(handoff("register_marriage", "marriage", other))
    assert rejected.value.code == "DA_KET_HON"


async def test_a_redelivered_marriage_is_registered_once(civil: CivilSandbox, samples: SampleForms) -> None:
    request = handoff("register_marriage", "marriage", marriage(samples))
    first = await civil.connector.handle(request)
    assert await civil.connector.handle(request) == first
    assert await civil.count("marriages") == 1


async def test_birth_registration_hands_on_the_child_personal_id(
    civil: CivilSandbox, samples: SampleForms
) -> None:
    form = samples.birth()
    request = handoff("register_birth", "birth", form, procedure_code="9.900003")
    done = await civil.connector.handle(request)
    assert isinstance(done, Completed)
    assert set(done.result) == REGISTRATION_KEYS | {"child_personal_id"}
    personal_id = done.result["child_personal_id"]
    assert len(personal_id) == 12 and personal_id.isdigit()
    assert personal_id[4:6] == form["child_date_of_birth"][2:4]
    assert await civil.connector.handle(request) == done
    [birth] = (await civil.http.get("/_sandbox/records/births")).json()["records"]
    assert birth["so_dinh_danh_ca_nhan"] == personal_id
    assert birth["gioi_tinh"] == ("Nam" if form["child_sex"] == "male" else "Nu")
    assert birth["cha_so_dinh_danh"] == form["father"]["citizen_id"]


async def test_birth_without_a_declared_father(civil: CivilSandbox, samples: SampleForms) -> None:
    form = {**samples.birth(), "father": None}
    done = await civil.connector.handle(handoff("register_birth", "birth", form))
    assert isinstance(done, Completed)


async def test_death_is_registered_once(civil: CivilSandbox, samples: SampleForms) -> None:
    form = samples.death()
    request = handoff("register_death", "death", form, procedure_code="1.011537")
    done = await civil.connector.handle(request)
    assert isinstance(done, Completed)
    assert set(done.result) == REGISTRATION_KEYS and done.reference and done.reference.startswith("KT-")
    assert await civil.connector.handle(request) == done, "a redelivery"
    with pytest.raises(AgencyRejected, match="đã được đăng ký khai tử"):
        await civil.connector.handle(handoff("register_death", "death", form))  # a second dossier
    assert await civil.count("deaths") == 1


async def test_an_unavailable_registry_is_agency_unavailable(
    civil: CivilSandbox, samples: SampleForms
) -> None:
    await civil.faults(failure_rate=1)
    with pytest.raises(AgencyUnavailable):
        await civil.connector.handle(handoff("register_marriage", "marriage", marriage(samples)))


async def test_a_garbled_registry_reply_is_a_protocol_error(
    civil: CivilSandbox, samples: SampleForms
) -> None:
    await civil.faults(malformed_rate=1)
    with pytest.raises(AgencyProtocolError):
        await civil.connector.handle(handoff("register_marriage", "marriage", marriage(samples)))
