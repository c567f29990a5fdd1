"""A dossier intake accepts, per procedure: what ``GET /procedures/{code}/example`` answers.

The forms' own examples (the ``examples`` of their JSON Schemas) make the dossier; for the land
procedures the parcel and its holder come from the sample parcels the land sandbox starts with
(:data:`schemas.examples.land_parcels.SEED_PARCELS`), since the land registry refuses a transfer of
a parcel it does not know or by someone who does not hold it.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from pydantic import BaseModel, Field

from schemas.catalog import Procedure
from schemas.examples.land_parcels import SEED_PARCELS, SeedParcel
from schemas.forms import FORMS, FormKind
from schemas.values import citizen_id_birth_year, citizen_id_sex

# Who hands the dossier in, by form kind: the form's person the applicant is.
APPLICANT: Final[dict[str, str]] = {
    FormKind.LAND_TRANSFER: "transferor",
    FormKind.FIRST_LAND_CERTIFICATE: "applicant",
    FormKind.MARRIAGE: "husband",
    FormKind.BIRTH: "mother",
    FormKind.DEATH: "declarant",
    FormKind.HOUSEHOLD_BUSINESS: "owner",
}
LAND_KINDS: Final = frozenset({FormKind.LAND_TRANSFER, FormKind.FIRST_LAND_CERTIFICATE})


class SandboxParcel(BaseModel):
    """A parcel the land sandbox of the local stack starts with, and who holds it then."""

    parcel_id: str
    area_m2: float
    land_use_purpose: str
    has_certificate: bool = Field(description="Transferable if true; a first-certificate case if false.")
    holder_citizen_id: str
    holder_full_name: str
    holder_birth_year: int = Field(description="The year the holder's citizen id encodes.")
    holder_sex: str


class ProcedureExample(BaseModel):
    """A dossier for one procedure that intake accepts as it is, and what it relies on."""

    procedure_code: str
    form_kind: str
    submission: dict[str, Any] = Field(
        description="The body of POST /dossiers (send it with Content-Type: application/json and a "
        "fresh Idempotency-Key)."
    )
    notes: list[str] = Field(description="What the agencies check beyond the form.")
    sandbox_parcels: list[SandboxParcel] = Field(
        default_factory=list,
        description="Land procedures only: the parcels the land sandbox starts with.",
    )


def _holder(parcel: SeedParcel) -> dict[str, Any]:
    citizen_id = parcel["owner_citizen_id"]
    return {
        "citizen_id": citizen_id,
        "full_name": parcel["owner_name"],
        "date_of_birth": f"{citizen_id_birth_year(citizen_id)}-01-01",
        "sex": citizen_id_sex(citizen_id).value,
    }


def _sandbox_parcel(parcel: SeedParcel) -> SandboxParcel:
    citizen_id = parcel["owner_citizen_id"]
    return SandboxParcel(
        parcel_id=parcel["parcel_id"],
        area_m2=parcel["area_m2"],
        land_use_purpose=parcel["land_use_purpose"],
        has_certificate=parcel["has_certificate"],
        holder_citizen_id=citizen_id,
        holder_full_name=parcel["owner_name"],
        holder_birth_year=citizen_id_birth_year(citizen_id),
        holder_sex=citizen_id_sex(citizen_id).value,
    )


_LAND_NOTES: Final = [
    "The land registry checks the parcel: it must exist, the declared area must match its records "
    "(within half a square metre in the sandbox), and the person handing it over must be its "
    "registered holder.",
    "A transfer needs a parcel that has a certificate (has_certificate true); a first certificate "
    "one that has none. sandbox_parcels lists the parcels the land sandbox of the local stack "
    "(lienthong run) starts with; its GET /api/v1/parcels/{parcel_id} shows a parcel's holder now, "
    "which a completed transfer changes.",
    "The holder's date of birth must fall in the year the citizen id encodes; the sandbox checks "
    "only the citizen id.",
]


def _land_form(kind: str, form: dict[str, Any]) -> dict[str, Any]:
    transfer = kind == FormKind.LAND_TRANSFER  # a transfer needs a certified parcel, a first certificate not
    parcel = next(p for p in SEED_PARCELS if p["has_certificate"] == transfer)
    form = {**form, "parcel_id": parcel["parcel_id"], "area_m2": parcel["area_m2"]}
    if kind == FormKind.FIRST_LAND_CERTIFICATE:
        form["land_use_purpose"] = parcel["land_use_purpose"]
    form[APPLICANT[kind]] = _holder(parcel)
    return form


def example(procedure: Procedure) -> ProcedureExample | None:
    """A dossier for ``procedure`` that intake accepts, or None for a form kind without an example."""
    model = FORMS.get(procedure.form_kind)
    examples = (model.model_json_schema().get("examples") or []) if model is not None else []
    if not examples or procedure.form_kind not in APPLICANT:
        return None
    form: dict[str, Any] = copy.deepcopy(examples[0])
    notes = ["Every date of a birth or a death must be on or before today in Vietnam."]
    parcels: list[SandboxParcel] = []
    if procedure.form_kind in LAND_KINDS:
        form = _land_form(procedure.form_kind, form)
        notes += _LAND_NOTES
        parcels = [_sandbox_parcel(p) for p in SEED_PARCELS]
    submission = {
        "procedure_code": procedure.code,
        "channel": "counter",
        "applicant": form[APPLICANT[procedure.form_kind]],
        "form": form,
        "documents": [],
    }
    return ProcedureExample(
        procedure_code=procedure.code,
        form_kind=procedure.form_kind,
        submission=submission,
        notes=notes,
        sandbox_parcels=parcels,
    )
