"""Typed async client for the land registration office API (REST/JSON, 202 + jobs).

    async with LandClient(base_url) as land:
        job = await land.start_transfer_check(..., idempotency_key=handoff_id)
        done = await land.wait_for_job(job.job_id)          # AgencyRejected if rejected
        slip = done.check_result()

Errors: ``connectors.errors`` — ``AgencyRejected`` (rejected job, unknown parcel),
``AgencyUnavailable`` (5xx/429/timeouts/connection, a failed job, a job still running at the
deadline of ``wait_for_job``), ``AgencyProtocolError`` (garbage reply, 400, key reused).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from connectors import AgencyClient, AgencyProtocolError, AgencyRejected, AgencyUnavailable

AGENCY = "land"
JobStatus = Literal["running", "succeeded", "rejected", "failed"]
R = TypeVar("R", bound=BaseModel)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Reason(_Reply):
    code: str
    vi: str
    en: str


class CheckResult(_Reply):
    """A successful transfer or first-certificate check: the cadastral slip for tax."""

    cadastral_slip_no: str
    parcel_id: str
    area_m2: float
    land_use_purpose: str
    assessed_value_vnd: int | None = None


class CertificateResult(_Reply):
    certificate_no: str
    parcel_id: str
    owner_citizen_id: str
    owner_name: str


class Job(_Reply):
    job_id: str
    status: JobStatus
    kind: str | None = None
    poll: str | None = None
    result: dict[str, Any] | None = None
    reason: Reason | None = None

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def raise_for_outcome(self) -> None:
        """Raise ``AgencyRejected`` for a rejected job, ``AgencyUnavailable`` for a failed one."""
        if self.status == "rejected":
            reason = self.reason or Reason(code="REJECTED", vi="Hồ sơ bị từ chối", en="rejected")
            raise AgencyRejected(reason.vi, code=reason.code, reason_en=reason.en, agency=AGENCY)
        if self.status == "failed":
            detail = self.reason.en if self.reason else "job failed"
            raise AgencyUnavailable(f"job {self.job_id} failed at the agency: {detail}", agency=AGENCY)

    def check_result(self) -> CheckResult:
        return self._result(CheckResult)

    def certificate_result(self) -> CertificateResult:
        return self._result(CertificateResult)

    def _result(self, model: type[R]) -> R:
        if self.status != "succeeded" or self.result is None:
            raise AgencyProtocolError(
                f"job {self.job_id} has no result (status {self.status})", agency=AGENCY
            )
        try:
            return model.model_validate(self.result)
        except ValidationError as exc:
            raise AgencyProtocolError(
                f"job {self.job_id} result does not match {model.__name__}: {exc.errors(include_url=False)}",
                agency=AGENCY,
            ) from exc


class Parcel(_Reply):
    parcel_id: str
    area_m2: float
    owner_citizen_id: str
    owner_name: str
    land_use_purpose: str
    has_certificate: bool
    certificate_no: str | None = None
    address: str = ""


class LandClient(AgencyClient):
    agency = AGENCY

    async def start_transfer_check(
        self,
        *,
        parcel_id: str,
        transferor_citizen_id: str,
        transferee_citizen_id: str,
        transferee_name: str,
        declared_value_vnd: int,
        area_m2: float,
        idempotency_key: str,
    ) -> Job:
        body = {
            "parcel_id": parcel_id,
            "transferor_citizen_id": transferor_citizen_id,
            "transferee_citizen_id": transferee_citizen_id,
            "transferee_name": transferee_name,
            "declared_value_vnd": declared_value_vnd,
            "area_m2": area_m2,
        }
        return await self._start("/api/v1/transfer-checks", body, idempotency_key)

    async def start_transfer_registration(
        self,
        *,
        parcel_id: str,
        transferee_citizen_id: str,
        transferee_name: str,
        tax_paid_reference: str,
        idempotency_key: str,
    ) -> Job:
        body = {
            "parcel_id": parcel_id,
            "transferee_citizen_id": transferee_citizen_id,
            "transferee_name": transferee_name,
            "tax_paid_reference": tax_paid_reference,
        }
        return await self._start("/api/v1/transfer-registrations", body, idempotency_key)

    async def start_first_certificate_check(
        self,
        *,
        parcel_id: str,
        applicant_citizen_id: str,
        applicant_name: str,
        area_m2: float,
        idempotency_key: str,
    ) -> Job:
        body = {
            "parcel_id": parcel_id,
            "applicant_citizen_id": applicant_citizen_id,
            "applicant_name": applicant_name,
            "area_m2": area_m2,
        }
        return await self._start("/api/v1/first-certificate-checks", body, idempotency_key)

    async def start_first_certificate(
        self,
        *,
        parcel_id: str,
        applicant_citizen_id: str,
        applicant_name: str,
        tax_paid_reference: str,
        idempotency_key: str,
    ) -> Job:
        body = {
            "parcel_id": parcel_id,
            "applicant_citizen_id": applicant_citizen_id,
            "applicant_name": applicant_name,
            "tax_paid_reference": tax_paid_reference,
        }
        return await self._start("/api/v1/first-certificates", body, idempotency_key)

    async def get_job(self, job_id: str) -> Job:
        """The job as it is now (a rejected job is returned, not raised)."""
        response = await self._request("GET", f"/api/v1/jobs/{job_id}", reads=(404,))
        if response.status_code == 404:
            raise AgencyProtocolError(f"unknown job {job_id}", agency=AGENCY, status_code=404)
        return self._model(Job, self._json(response), response)

    async def wait_for_job(self, job_id: str, *, within_s: float = 30.0, interval_s: float = 0.05) -> Job:
        """Poll until the job finishes; return it if it succeeded, raise otherwise."""
        deadline = time.monotonic() + within_s
        while True:
            job = await self.get_job(job_id)
            if job.finished:
                job.raise_for_outcome()
                return job
            if time.monotonic() >= deadline:
                raise AgencyUnavailable(f"job {job_id} still running after {within_s}s", agency=AGENCY)
            await asyncio.sleep(interval_s)

    async def get_parcel(self, parcel_id: str) -> Parcel:
        response = await self._request("GET", f"/api/v1/parcels/{parcel_id}", reads=(404,))
        if response.status_code == 404:
            raise AgencyRejected(
                f"Thửa đất {parcel_id} không tồn tại",
                code="PARCEL_NOT_FOUND",
                reason_en=f"Parcel {parcel_id} does not exist",
                agency=AGENCY,
                status_code=404,
            )
        return self._model(Parcel, self._json(response), response)

    async def add_parcel(self, parcel: Parcel) -> Parcel:
        """Sandbox only: add a parcel for a test scenario."""
        response = await self._request(
            "POST", "/_sandbox/parcels", json_body=parcel.model_dump(exclude={"certificate_no"})
        )
        return self._model(Parcel, self._json(response), response)

    async def _start(self, path: str, body: dict[str, Any], idempotency_key: str) -> Job:
        response = await self._request("POST", path, json_body=body, idempotency_key=idempotency_key)
        if response.status_code != 202:
            raise AgencyProtocolError(
                f"expected 202 from {path}, got {response.status_code}",
                agency=AGENCY,
                status_code=response.status_code,
            )
        return self._model(Job, self._json(response), response)
