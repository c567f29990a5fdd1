"""The land registration office connector: handoff requests → land jobs (202 + polling).

Actions and the ``result`` each leg hands to later legs:

- ``check_transfer`` (land_transfer form) → ``{cadastral_slip_no, parcel_id, area_m2, land_use_purpose,
  assessed_value_vnd, declared_value_vnd}``; reference: the slip number;
- ``register_transfer`` (needs the tax payment reference among ``inputs``) → ``{certificate_no,
  parcel_id}``; reference: the certificate number;
- ``verify_first_certificate`` (first_land_certificate form) → ``{cadastral_slip_no, parcel_id, area_m2,
  land_use_purpose, assessed_value_vnd}``; reference: the slip number;
- ``issue_first_certificate`` (needs the payment reference) → ``{certificate_no, parcel_id}``.

Every job is started with the handoff id as its idempotency key and waited for briefly
(``wait_s``); a job still running then is returned as ``Pending`` and finished through :meth:`poll`.
The poll token is the job id, followed by ``?declared_value_vnd=…`` for a transfer check, so that a
check finished by polling yields the same result as one finished at once.

A job the office itself *failed* is transient: redelivering the same key would only replay that
failed job, so the connector starts the job again under a key derived from the failed job's id
(``<handoff id>/after/<job id>``), which keeps redeliveries idempotent; it gives up (``AgencyUnavailable``)
after ``MAX_JOB_ATTEMPTS`` failed jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl, urlencode

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors import (
    AgencyProtocolError,
    AgencySettings,
    AgencyUnavailable,
    Completed,
    HandoffRequest,
    HandoffResult,
    HttpConnector,
    Pending,
    parse_form,
)
from connectors.land.client import AGENCY, Job, LandClient
from schemas.agencies import Agency
from schemas.forms import FirstLandCertificateForm, LandTransferForm

StartJob = Callable[[str], Awaitable[Job]]

MAX_JOB_ATTEMPTS: Final = 3
CHECK_KINDS: Final = frozenset({"transfer_check", "first_certificate_check"})
CERTIFICATE_KINDS: Final = frozenset({"transfer_registration", "first_certificate"})


class LandSettings(AgencySettings):
    """From ``LIENTHONG_LAND_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_LAND_", extra="ignore")

    url: str = "http://127.0.0.1:8200"
    wait_s: float = Field(default=2.0, ge=0, description="how long handle() waits for a job before Pending")
    job_poll_interval_s: float = Field(default=0.05, gt=0, description="job polling while waiting")


def payment_reference(request: HandoffRequest) -> str:
    """The tax payment reference an earlier leg returned (found by its key, never by step id)."""
    found = {
        str(result["payment_reference"])
        for result in request.inputs.values()
        if result.get("payment_reference")
    }
    if len(found) != 1:
        raise AgencyProtocolError(
            f"{request.action} needs exactly one tax payment reference among the inputs, found {len(found)}",
            agency=AGENCY,
        )
    return found.pop()


def poll_token(job_id: str, extras: dict[str, int]) -> str:
    return f"{job_id}?{urlencode(extras)}" if extras else job_id


def parse_poll_token(token: str) -> tuple[str, dict[str, int]]:
    job_id, _, query = token.partition("?")
    try:
        extras = {name: int(value) for name, value in parse_qsl(query, strict_parsing=bool(query))}
    except ValueError as exc:
        raise AgencyProtocolError(f"not a land poll token: {token!r}", agency=AGENCY) from exc
    if not job_id:
        raise AgencyProtocolError(f"not a land poll token: {token!r}", agency=AGENCY)
    return job_id, extras


class LandConnector(HttpConnector[LandSettings, LandClient]):
    agency: ClassVar[Agency] = Agency.LAND
    actions: ClassVar[frozenset[str]] = frozenset(
        {"check_transfer", "register_transfer", "verify_first_certificate", "issue_first_certificate"}
    )

    settings_class = LandSettings
    client_class = LandClient

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        land = self.client
        extras: dict[str, int] = {}
        start: StartJob
        if request.action in ("check_transfer", "register_transfer"):
            transfer = parse_form(request, LandTransferForm, agency=AGENCY)
            if request.action == "check_transfer":
                extras = {"declared_value_vnd": transfer.declared_value_vnd}

                def start(key: str) -> Awaitable[Job]:
                    return land.start_transfer_check(
                        parcel_id=transfer.parcel_id,
                        transferor_citizen_id=transfer.transferor.citizen_id,
                        transferee_citizen_id=transfer.transferee.citizen_id,
                        transferee_name=transfer.transferee.full_name,
                        declared_value_vnd=transfer.declared_value_vnd,
                        area_m2=transfer.area_m2,
                        idempotency_key=key,
                    )

            else:
                paid = payment_reference(request)

                def start(key: str) -> Awaitable[Job]:
                    return land.start_transfer_registration(
                        parcel_id=transfer.parcel_id,
                        transferee_citizen_id=transfer.transferee.citizen_id,
                        transferee_name=transfer.transferee.full_name,
                        tax_paid_reference=paid,
                        idempotency_key=key,
                    )

        elif request.action in ("verify_first_certificate", "issue_first_certificate"):
            first = parse_form(request, FirstLandCertificateForm, agency=AGENCY)
            if request.action == "verify_first_certificate":

                def start(key: str) -> Awaitable[Job]:
                    return land.start_first_certificate_check(
                        parcel_id=first.parcel_id,
                        applicant_citizen_id=first.applicant.citizen_id,
                        applicant_name=first.applicant.full_name,
                        area_m2=first.area_m2,
                        idempotency_key=key,
                    )

            else:
                paid = payment_reference(request)

                def start(key: str) -> Awaitable[Job]:
                    return land.start_first_certificate(
                        parcel_id=first.parcel_id,
                        applicant_citizen_id=first.applicant.citizen_id,
                        applicant_name=first.applicant.full_name,
                        tax_paid_reference=paid,
                        idempotency_key=key,
                    )

        else:
            raise AgencyProtocolError(f"the land connector does not serve {request.action!r}", agency=AGENCY)
        return await self._run(start, request.handoff_id, extras)

    async def poll(self, poll_token: str) -> HandoffResult:
        job_id, extras = parse_poll_token(poll_token)
        return self._outcome(await self.client.get_job(job_id), extras)

    async def _run(self, start: StartJob, handoff_id: str, extras: dict[str, int]) -> HandoffResult:
        key = handoff_id
        for _ in range(MAX_JOB_ATTEMPTS):
            started = await start(key)
            job = await self._wait(started.job_id)
            if job.status != "failed":
                return self._outcome(job, extras)
            key = f"{handoff_id}/after/{job.job_id}"  # a new job, idempotent on redelivery too
        raise AgencyUnavailable(
            f"the land office failed {MAX_JOB_ATTEMPTS} jobs in a row for handoff {handoff_id}", agency=AGENCY
        )

    async def _wait(self, job_id: str) -> Job:
        """The job once finished, or as it is when ``wait_s`` is up (looked at least once)."""
        deadline = time.monotonic() + self.settings.wait_s
        while True:
            job = await self.client.get_job(job_id)
            if job.finished or time.monotonic() >= deadline:
                return job
            await asyncio.sleep(self.settings.job_poll_interval_s)

    @staticmethod
    def _outcome(job: Job, extras: dict[str, int]) -> HandoffResult:
        if not job.finished:
            return Pending(poll_token=poll_token(job.job_id, extras), reference=job.job_id)
        job.raise_for_outcome()  # AgencyRejected with the office's Vietnamese reason; failed → unavailable
        if job.kind in CHECK_KINDS:
            slip = job.check_result()
            result: dict[str, Any] = {
                "cadastral_slip_no": slip.cadastral_slip_no,
                "parcel_id": slip.parcel_id,
                "area_m2": slip.area_m2,
                "land_use_purpose": slip.land_use_purpose,
                "assessed_value_vnd": slip.assessed_value_vnd,
                **extras,
            }
            return Completed(result=result, reference=slip.cadastral_slip_no)
        if job.kind in CERTIFICATE_KINDS:
            certificate = job.certificate_result()  # owner name and id stay out of the result
            return Completed(
                result={"certificate_no": certificate.certificate_no, "parcel_id": certificate.parcel_id},
                reference=certificate.certificate_no,
            )
        raise AgencyProtocolError(f"job {job.job_id} has an unknown kind {job.kind!r}", agency=AGENCY)
