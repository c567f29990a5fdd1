"""The national dossier status codes that provincial systems synchronise on.

Our events are richer than these ten codes (each agency leg has its own state), and the router
gives every dossier it routes exactly one of them at a time, announced by ``DossierStatusChanged``
(the receipt itself implies code 2). A reader may still meet a dossier before any status event of it
has reached it: the tracker counts such dossiers as ``unknown_status``. Each code says what it does
to the statutory clock.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final, NamedTuple


class ClockEffect(StrEnum):
    """What a status does to the statutory deadline clock."""

    NOT_STARTED = "not_started"  # submitted online, nobody has accepted it yet
    RUNNING = "running"
    PAUSED = "paused"  # waiting on the citizen: the days do not count
    STOPPED = "stopped"  # the agencies are done; the result waits at the desk
    FINAL = "final"  # the dossier is closed


class _StatusInfo(NamedTuple):
    vi: str
    en: str
    clock: ClockEffect


class NationalStatus(IntEnum):
    """Dossier status code used by the National Public Service Portal sync (1-10)."""

    SUBMITTED_ONLINE = 1
    ACCEPTED = 2
    REFUSED = 3
    IN_PROGRESS = 4
    SUPPLEMENT_REQUESTED = 5
    PAYMENT_REQUIRED = 6
    WITHDRAWN = 7
    STOPPED = 8
    PROCESSED = 9
    RESULT_RETURNED = 10

    @property
    def vi(self) -> str:
        """The status in Vietnamese, as the national portal words it."""
        return _INFO[self].vi

    @property
    def en(self) -> str:
        """The status in English."""
        return _INFO[self].en

    @property
    def clock_effect(self) -> ClockEffect:
        """What this status does to the statutory clock."""
        return _INFO[self].clock

    @property
    def is_final(self) -> bool:
        """Whether a dossier in this status is closed for good."""
        return self.clock_effect is ClockEffect.FINAL

    @property
    def pauses_clock(self) -> bool:
        """Whether the statutory clock is paused (waiting on the citizen) in this status."""
        return self.clock_effect is ClockEffect.PAUSED


_INFO: Final[dict[NationalStatus, _StatusInfo]] = {
    NationalStatus.SUBMITTED_ONLINE: _StatusInfo("Mới đăng ký", "Submitted online", ClockEffect.NOT_STARTED),
    NationalStatus.ACCEPTED: _StatusInfo("Được tiếp nhận", "Accepted at the desk", ClockEffect.RUNNING),
    NationalStatus.REFUSED: _StatusInfo("Không được tiếp nhận", "Refused at intake", ClockEffect.FINAL),
    NationalStatus.IN_PROGRESS: _StatusInfo("Đang xử lý", "In progress with an agency", ClockEffect.RUNNING),
    NationalStatus.SUPPLEMENT_REQUESTED: _StatusInfo(
        "Yêu cầu bổ sung giấy tờ", "Supplement requested", ClockEffect.PAUSED
    ),
    NationalStatus.PAYMENT_REQUIRED: _StatusInfo(
        "Yêu cầu thực hiện nghĩa vụ tài chính", "Fee or tax to pay", ClockEffect.PAUSED
    ),
    NationalStatus.WITHDRAWN: _StatusInfo("Công dân yêu cầu rút hồ sơ", "Withdrawn", ClockEffect.FINAL),
    # Domain notes say "paused / final": a stop may be lifted, so the clock pauses; a dossier closed
    # while stopped is closed by DossierClosed, which accepts this status as final.
    NationalStatus.STOPPED: _StatusInfo("Dừng xử lý", "Processing stopped", ClockEffect.PAUSED),
    NationalStatus.PROCESSED: _StatusInfo("Đã xử lý xong", "Result back at the desk", ClockEffect.STOPPED),
    NationalStatus.RESULT_RETURNED: _StatusInfo("Đã trả kết quả", "Result handed over", ClockEffect.FINAL),
}

CLOSING_STATUSES: Final[frozenset[NationalStatus]] = frozenset(
    {s for s in NationalStatus if s.is_final} | {NationalStatus.STOPPED, NationalStatus.PROCESSED}
)
"""Statuses a dossier can be closed in: the final ones, a stop that is not lifted, and "processed"
(the agencies are done; handing the result over at the desk is the center's own act, not the bus's)."""
