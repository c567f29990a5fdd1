"""Sample dossiers date births and deaths back from Vietnam's today, never the machine's."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from services.tools.stack.samples import SampleDossiers
from tests.clock import KIRITIMATI, LOS_ANGELES, machine_zone, travel, vn


def death_dates(samples: SampleDossiers, n: int = 300) -> list[date]:
    return [date.fromisoformat(samples.death()["form"]["date_of_death"]) for _ in range(n)]


def test_births_and_deaths_are_dated_back_from_the_given_day() -> None:
    samples = SampleDossiers(seed=1, today=lambda: date(2026, 3, 11))
    deaths = death_dates(samples)
    births = [date.fromisoformat(samples.birth()["form"]["child_date_of_birth"]) for _ in range(300)]
    assert (min(deaths), max(deaths)) == (date(2026, 2, 19), date(2026, 3, 10))  # 20 to 1 days before
    assert (min(births), max(births)) == (date(2026, 1, 30), date(2026, 3, 8))  # 40 to 3 days before


@pytest.mark.parametrize(
    ("zone", "moment", "yesterday"),
    [
        (LOS_ANGELES, vn(2026, 3, 11, 0, 1), date(2026, 3, 10)),  # still 10 March in Los Angeles
        (KIRITIMATI, vn(2026, 3, 10, 23, 59), date(2026, 3, 9)),  # already 11 March in Kiritimati
    ],
    ids=["00:01", "23:59"],
)
def test_by_default_the_day_is_vietnams_in_any_machine_zone(
    zone: str, moment: datetime, yesterday: date
) -> None:
    with machine_zone(zone), travel(moment):
        deaths = death_dates(SampleDossiers(seed=1))
    assert max(deaths) == yesterday  # the latest death a sample declares is yesterday in Vietnam


def test_household_businesses_of_one_run_never_share_a_name() -> None:
    """The registry refuses a name registered in the district already (409 NAME_TAKEN): a sample run
    whose names collided would see a dossier returned that should have completed."""
    samples = SampleDossiers(seed=3)
    names = [samples.household_business()["form"]["business_name"] for _ in range(2000)]
    assert len(set(names)) == len(names)
