"""Sample traffic for the local stack: citizens handing in dossiers, and paying their tax notices.

Everything goes through the public doors a real center would use: ``POST /dossiers`` on intake, the
land registry's own records (a parcel the seller really owns), and the bank paying a tax notice.

On a stack with sign-in (``sign_in``) each dossier is handed in by the client system of its channel
(:data:`services.tools.stack.signin.CHANNEL_CLIENTS`: the counter application, the online portal) with
its client-credentials token, and the tracker is read as the stack's reader
(:data:`services.tools.stack.signin.STACK_READER`).
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
from services.tools.stack.signin import CHANNEL_CLIENTS, STACK_READER, ClientCredentials, SignIn

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
        self,
        intake_url: str,
        tracker_url: str,
        land_url: str,
        tax_url: str,
        *,
        seed: int = 2026,
        sign_in: SignIn | None = None,
    ) -> None:
        self.samples = SampleDossiers(seed)
        self.http = httpx.AsyncClient(timeout=15.0)
        self.intake_url = intake_url
        self.tracker_url = tracker_url
        self.land = LandClient(land_url)
        self.tax = TaxClient(tax_url)
        self.paid: set[str] = set()
        self._numbers = itertools.count(1)
        self._clients: dict[str, ClientCredentials] = (
            {channel: sign_in.credentials(client) for channel, client in CHANNEL_CLIENTS.items()}
            if sign_in is not None
            else {}
        )
        self._reader = sign_in.credentials(STACK_READER) if sign_in is not None else None

    async def intake_headers(self, channel: str) -> dict[str, str]:
        """The ``Authorization`` of the client system that hands in a dossier of ``channel``."""
        client = self._clients.get(channel)
        return await client.headers(self.http) if client is not None else {}

    async def tracker_headers(self) -> dict[str, str]:
        """The ``Authorization`` the stack's reader of the tracker sends (none without sign-in)."""
        return await self._reader.headers(self.http) if self._reader is not None else {}

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
                headers = {"Idempotency-Key": key, **await self.intake_headers(submission["channel"])}
                answer = await self.http.post(f"{self.intake_url}/dossiers", json=submission, headers=headers)
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

    async def marriage(self, *, channel: str = "counter") -> Submitted:
        """Marriage registration, handed in at the counter or (``channel="online"``) on the portal."""
        return await self.submit({**self.samples.marriage(), "channel": channel})

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
        reader = await self.tracker_headers()
        answer = await self.http.get(
            f"{self.tracker_url}/dossiers", params={"status": PAYMENT_REQUIRED, "limit": 500}, headers=reader
        )
        answer.raise_for_status()
        paid = 0
        for summary in answer.json()["items"]:
            found = await self.http.get(
                f"{self.tracker_url}/dossiers/{summary['dossier_id']}", headers=reader
            )
            detail = found.json()
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
