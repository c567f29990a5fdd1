"""The kit's sample forms: the golden examples with new people, valid, and never the same person twice."""

from __future__ import annotations

from datetime import date, timedelta

from connectors.testing import SampleForms, people_in
from schemas.forms import FormKind, validate_form

TODAY = date(2026, 3, 11)


def every_form(samples: SampleForms) -> dict[FormKind, dict[str, object]]:
    return {
        FormKind.LAND_TRANSFER: samples.land_transfer(samples.parcel_id(), samples.person(), 120.5),
        FormKind.FIRST_LAND_CERTIFICATE: samples.first_land_certificate(
            samples.parcel_id(), samples.person(), 200.0
        ),
        FormKind.MARRIAGE: samples.marriage(),
        FormKind.BIRTH: samples.birth(),
        FormKind.DEATH: samples.death(),
        FormKind.HOUSEHOLD_BUSINESS: samples.household_business(),
    }


def test_every_sample_is_a_valid_form_of_its_kind() -> None:
    for kind, form in every_form(SampleForms(seed=1, today=lambda: TODAY)).items():
        validate_form(kind, form)


def test_no_two_forms_share_a_person() -> None:
    samples = SampleForms(seed=1, today=lambda: TODAY)
    people = [{cid for cid, _ in people_in(form)} for _ in range(50) for form in every_form(samples).values()]
    assert sum(len(ids) for ids in people) == len(set().union(*people))


def test_recent_facts_are_counted_back_from_vietnams_today() -> None:
    samples = SampleForms(seed=1, today=lambda: TODAY)
    births = [date.fromisoformat(samples.birth()["child_date_of_birth"]) for _ in range(100)]
    deaths = [date.fromisoformat(samples.death()["date_of_death"]) for _ in range(100)]
    assert all(TODAY - timedelta(days=40) <= born <= TODAY - timedelta(days=3) for born in births)
    assert all(TODAY - timedelta(days=20) <= died <= TODAY - timedelta(days=1) for died in deaths)


def test_the_same_seed_gives_the_same_forms() -> None:
    assert every_form(SampleForms(seed=7, today=lambda: TODAY)) == every_form(
        SampleForms(seed=7, today=lambda: TODAY)
    )
