"""The agency systems Liên Thông connects, and the actions each one serves.

This is the one list that the catalog, the topic registry and the connectors agree on. Adding an
agency means adding it here, giving it a connector, and declaring its topics (see connectors/README.md).
"""

from __future__ import annotations

from enum import StrEnum


class Agency(StrEnum):
    """An agency system, by the id used in topic names and metric labels."""

    LAND = "land"  # land registration office (Văn phòng đăng ký đất đai)
    TAX = "tax"  # tax authority (cơ quan thuế)
    CIVIL_STATUS = "civil_status"  # commune/ward civil-status registry (hộ tịch)
    RESIDENCE = "residence"  # police residence registration (cư trú)
    SOCIAL_INSURANCE = "social_insurance"  # social insurance (BHXH): health cards, allowances
    BUSINESS_REGISTRY = "business_registry"  # household business registration (đăng ký hộ kinh doanh)


AGENCY_ACTIONS: dict[Agency, frozenset[str]] = {
    Agency.LAND: frozenset(
        {
            "check_transfer",  # check the transfer dossier, send the cadastral information slip
            "register_transfer",  # register the change of owner, issue the certificate
            "verify_first_certificate",  # verify the parcel and the applicant's use, send the slip
            "issue_first_certificate",  # issue the first-time certificate
        }
    ),
    Agency.TAX: frozenset(
        {
            "assess_transfer_obligations",  # income tax + registration fee; citizen pays later
            "assess_first_certificate_fees",  # registration fee (and land-use levy) on a first certificate
            "register_household_tax",  # tax code for a household business
        }
    ),
    Agency.CIVIL_STATUS: frozenset({"register_marriage", "register_birth", "register_death"}),
    Agency.RESIDENCE: frozenset({"register_permanent_residence", "remove_permanent_residence"}),
    Agency.SOCIAL_INSURANCE: frozenset({"issue_child_health_card", "pay_funeral_allowance"}),
    Agency.BUSINESS_REGISTRY: frozenset({"register_household_business"}),
}


def is_known_action(agency: Agency | str, action: str) -> bool:
    """Whether ``agency`` serves ``action`` (unknown agencies serve nothing)."""
    try:
        return action in AGENCY_ACTIONS[Agency(agency)]
    except ValueError:
        return False
