"""Each sandbox as its own OS process, over real HTTP, with faults changed at run time."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from connectors.civil_status.client import CivilStatusClient, Person
from connectors.errors import AgencyUnavailable
from connectors.land.client import LandClient
from connectors.sandbox_kit.faults import FaultSettings
from connectors.sandbox_kit.process import SandboxProcess
from connectors.tax.client import CadastralSlip, TaxClient
from schemas.examples.land_parcels import SEED_PARCELS


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def set_faults(sandbox: SandboxProcess, **faults: object) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url or "", headers=sandbox.admin_headers) as http:
        answer = await http.put("/_sandbox/faults", json=faults)
        assert answer.status_code == 200, answer.text


async def test_land_sandbox_process(tmp_path: Path) -> None:
    parcel = SEED_PARCELS[1]
    with SandboxProcess() as sandbox:
        base_url = sandbox.start(
            "connectors.land.sandbox",
            db_path=tmp_path / "land.db",
            env={"LAND_SANDBOX_JOB_SECONDS": "0.05"},
        )
        pid = sandbox.pid
        assert pid is not None
        async with LandClient(base_url, timeout=5) as land:
            job = await land.start_transfer_check(
                parcel_id=parcel["parcel_id"],
                transferor_citizen_id=parcel["owner_citizen_id"],
                transferee_citizen_id="001203004567",
                transferee_name="Ngô Thị Hoa",
                declared_value_vnd=2_000_000_000,
                area_m2=parcel["area_m2"],
                idempotency_key="p-1",
            )
            assert (await land.wait_for_job(job.job_id, within_s=10)).check_result().parcel_id == parcel[
                "parcel_id"
            ]

            await set_faults(sandbox, down_for_s=30, down_mode="drop")
            with pytest.raises(AgencyUnavailable, match="connection failed"):
                await land.get_job(job.job_id)
            await set_faults(sandbox, down_for_s=0)
            assert (await land.get_job(job.job_id)).status == "succeeded"
    assert not sandbox.running
    assert_gone(pid)
    assert (tmp_path / "land.db").exists()


async def test_tax_sandbox_process_starts_with_faults(tmp_path: Path) -> None:
    with SandboxProcess() as sandbox:
        base_url = sandbox.start(
            "connectors.tax.sandbox", db_path=tmp_path / "tax.db", faults=FaultSettings(failure_rate=1.0)
        )
        pid = sandbox.pid
        assert pid is not None
        slip = CadastralSlip(
            slip_no="PCTT-2025-000009",
            dossier_code="HS-1",
            kind="chuyen_nhuong",
            parcel_id="TD-10-137",
            area_m2=Decimal("73"),
            value_vnd=2_000_000_000,
            payer_citizen_id="001203004567",
            payer_name="Ngô Thị Hoa",
        )
        async with TaxClient(base_url, timeout=5) as tax:
            with pytest.raises(AgencyUnavailable) as failed:
                await tax.submit_cadastral_slip(slip, idempotency_key="t-1")
            assert failed.value.status_code == 503
            await set_faults(sandbox, failure_rate=0)
            notice = await tax.submit_cadastral_slip(slip, idempotency_key="t-1")
            assert notice.total_vnd == 50_000_000
            await tax.pay(notice.notice_no, notice.total_vnd)
            assert (await tax.get_notice(notice.notice_no)).paid
    assert_gone(pid)


async def test_civil_status_sandbox_process(tmp_path: Path) -> None:
    with SandboxProcess() as sandbox:
        base_url = sandbox.start("connectors.civil_status.sandbox", db_path=tmp_path / "civil.db")
        pid = sandbox.pid
        assert pid is not None
        husband = Person(full_name="Trần Văn Minh", birth_date=date(1995, 5, 1), citizen_id="079095001234")
        wife = Person(full_name="Lê Thị Thu", birth_date=date(1998, 7, 2), citizen_id="079198005678")
        async with CivilStatusClient(base_url, timeout=5) as civil:
            await set_faults(sandbox, latency_ms=2_000)
            async with CivilStatusClient(base_url, timeout=0.3) as impatient:
                with pytest.raises(AgencyUnavailable, match="timed out"):
                    await impatient.get_marriage(wife.citizen_id)
            await set_faults(sandbox, latency_ms=0)
            await civil.register_marriage(husband, wife, idempotency_key="c-1")
            marriage = await civil.get_marriage(wife.citizen_id)
            assert marriage is not None and marriage.husband == husband
    assert_gone(pid)


def test_a_sandbox_that_cannot_start_reports_why() -> None:
    with SandboxProcess(startup_timeout=10) as sandbox, pytest.raises(RuntimeError, match="No module named"):
        sandbox.start("connectors.no_such_sandbox")
    assert not sandbox.running


async def test_the_fault_endpoints_refuse_a_caller_without_the_admin_token(tmp_path: Path) -> None:
    with SandboxProcess() as sandbox:
        base_url = sandbox.start("connectors.residence.sandbox")
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
            for method in ("GET", "PUT", "DELETE"):
                anonymous = await http.request(method, "/_sandbox/faults", json={"failure_rate": 1})
                assert anonymous.status_code == 401, (method, anonymous.text)
                assert "admin token" in anonymous.json()["detail"]
            wrong = await http.put(
                "/_sandbox/faults", json={"failure_rate": 1}, headers={"Authorization": "Bearer guessed"}
            )
            assert wrong.status_code == 401
            assert (await http.get("/_sandbox/faults", headers=sandbox.admin_headers)).json()[
                "failure_rate"
            ] == 0.0, "the refused calls changed nothing"


async def test_a_sandbox_given_no_admin_token_serves_no_fault_endpoints(tmp_path: Path) -> None:
    with SandboxProcess(fault_endpoints=False) as sandbox:
        base_url = sandbox.start("connectors.residence.sandbox")
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
            assert (await http.put("/_sandbox/faults", json={"failure_rate": 1})).status_code == 404
            assert (await http.get("/health")).status_code == 200
        assert "is not served" in sandbox.output()
