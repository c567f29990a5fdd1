"""Sample traffic for the local stack: citizens handing in dossiers, and paying their tax notices.

Everything goes through the public doors a real center would use: ``POST /dossiers`` on intake, the
land registry's own records (a parcel the seller really owns), and the bank paying a tax notice.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.errors import AgencyProtocolError
from connectors.land.client import LandClient, Parcel
from connectors.tax.client import TaxClient
from services.tools.stack.samples import SampleDossiers

PAYMENT_REQUIRED = 6


@dataclass(frozen=True)
class Submitted:
    procedure_code: str
    dossier_id: str
    dossier_code: str
    expected: str  # "completed" or "returned"
    form: dict[str, Any] = field(default_factory=dict)


class Traffic:
    def __init__(
        self, intake_url: str, tracker_url: str, land_url: str, tax_url: str, *, seed: int = 2026
    ) -> None:
        self.samples = SampleDossiers(seed)
        self.http = httpx.AsyncClient(timeout=15.0)
        self.intake_url = intake_url
        self.tracker_url = tracker_url
        self.land = LandClient(land_url)
        self.tax = TaxClient(tax_url)
        self.paid: set[str] = set()
        self._numbers = itertools.count(1)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.land.aclose()
        await self.tax.aclose()

    async def submit(self, submission: dict[str, Any], expected: str = "completed") -> Submitted:
        """Hands a dossier in; like a careful counter client, retries with the same Idempotency-Key
        while intake is unreachable, so a retry never makes a second dossier."""
        key = str(uuid.uuid4())
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = await self.http.post(
                    f"{self.intake_url}/dossiers", json=submission, headers={"Idempotency-Key": key}
                )
                if answer.status_code < 500:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)
        if answer.status_code != 201:
            raise RuntimeError(f"intake refused a sample dossier ({answer.status_code}): {answer.text[:500]}")
        body = answer.json()
        return Submitted(
            submission["procedure_code"],
            body["dossier_id"],
            body["dossier_code"],
            expected,
            submission["form"],
        )

    async def _registered_parcel(self, owner: dict[str, Any], *, certified: bool) -> Parcel:
        """A parcel the owner really holds in the land registry (map sheets 50-89 are ours)."""
        while True:
            number = next(self._numbers)
            parcel = Parcel(
                parcel_id=f"TD-{50 + number % 40}-{self.samples.random.randint(1, 99999)}",
                area_m2=float(80 + number % 150),
                owner_citizen_id=owner["citizen_id"],
                owner_name=owner["full_name"],
                land_use_purpose="ODT",
                has_certificate=certified,
                address=f"Thửa {number}, Quận 3, TP. Hồ Chí Minh",
            )
            try:
                return await self.land.add_parcel(parcel)
            except AgencyProtocolError as error:
                if error.status_code != 409:  # 409: another generator registered that number
                    raise

    async def land_transfer(self, *, wrong_owner: bool = False) -> Submitted:
        owner = self.samples.person()
        parcel = await self._registered_parcel(owner, certified=True)
        seller = self.samples.person() if wrong_owner else owner
        submission = self.samples.land_transfer(parcel.parcel_id, seller, parcel.area_m2)
        return await self.submit(submission, "returned" if wrong_owner else "completed")

    async def first_certificate(self) -> Submitted:
        user = self.samples.person()
        parcel = await self._registered_parcel(user, certified=False)
        return await self.submit(self.samples.first_certificate(parcel.parcel_id, user, parcel.area_m2))

    async def marriage(self) -> Submitted:
        return await self.submit(self.samples.marriage())

    async def birth(self) -> Submitted:
        """Birth registration, then permanent residence and the child's health-insurance card."""
        return await self.submit(self.samples.birth())

    async def death(self) -> Submitted:
        """Death registration, then removal of permanent residence and the funeral allowance."""
        return await self.submit(self.samples.death())

    async def household_business(self) -> Submitted:
        """Household business registration, then its tax code."""
        return await self.submit(self.samples.household_business())

    async def pay_waiting_notices(self) -> int:
        """The citizens whose dossiers wait on a tax notice go to the bank and pay it."""
        answer = await self.http.get(
            f"{self.tracker_url}/dossiers", params={"status": PAYMENT_REQUIRED, "limit": 500}
        )
        answer.raise_for_status()
        paid = 0
        for summary in answer.json()["items"]:
            detail = (await self.http.get(f"{self.tracker_url}/dossiers/{summary['dossier_id']}")).json()
            for leg in detail["legs"]:
                notice_no = leg.get("agency_reference")
                if leg["agency"] != "tax" or leg["state"] != "waiting_on_citizen" or not notice_no:
                    continue
                if notice_no in self.paid:
                    continue
                notice = await self.tax.get_notice(notice_no)
                if not notice.paid:
                    await self.tax.pay(notice_no, notice.total_vnd, idempotency_key=f"bank-{notice_no}")
                self.paid.add(notice_no)
                paid += 1
        return paid
