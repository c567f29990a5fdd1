"""Pinning "now" in tests: instants in Vietnam, the real clock moved there, the machine's zone set.

Code under test that reads the real clock (``datetime.now``, ``date.today``, ``time.time``) is
moved with :func:`travel`; code that takes a clock is given :func:`fixed`. :func:`machine_zone`
sets the zone the process believes it is in, so a test shows that Vietnam's day is used whatever
the zone of the machine running it: at 00:01 in Vietnam it is still the day before in Los Angeles,
at 23:59 it is already the next day in Kiritimati.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import time_machine

from schemas.workdays import VN_TZ

# Far on either side of Vietnam (UTC+7): UTC-8/-7 and UTC+14.
LOS_ANGELES = "America/Los_Angeles"
KIRITIMATI = "Pacific/Kiritimati"
MACHINE_ZONES = (LOS_ANGELES, KIRITIMATI)


def vn(year: int, month: int, day: int, hour: int = 9, minute: int = 0, second: int = 0) -> dt.datetime:
    """An instant given by Vietnam's wall clock."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=VN_TZ)


def fixed(moment: dt.datetime) -> Callable[[], dt.datetime]:
    """A clock that always answers ``moment``."""
    return lambda: moment


@contextmanager
def machine_zone(name: str) -> Iterator[None]:
    """Make the process's local zone ``name`` (as ``TZ`` does), and restore it afterwards."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@contextmanager
def travel(moment: dt.datetime, *, tick: bool = True) -> Iterator[None]:
    """Move the real clock to ``moment``; it ticks on from there unless ``tick`` is False.

    The destination is handed over as a timestamp: time-machine would otherwise set ``TZ`` to the
    destination's zone, and code reading the machine's local date would pass by luck.
    """
    with time_machine.travel(moment.timestamp(), tick=tick):
        yield
