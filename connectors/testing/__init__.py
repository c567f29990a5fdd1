"""The connector conformance kit (see ``conformance.py`` for the scenarios and how to adopt it)."""

from connectors.testing.conformance import (
    TRANSIENT_FAULTS,
    ConformanceCase,
    ConnectorConformance,
    Kit,
    KitEnvironment,
    RejectionCase,
    agency_id,
    people_in,
)
from connectors.testing.samples import SampleForms
from connectors.testing.transport import DeadlineASGITransport

__all__ = [
    "TRANSIENT_FAULTS",
    "ConformanceCase",
    "ConnectorConformance",
    "DeadlineASGITransport",
    "Kit",
    "KitEnvironment",
    "RejectionCase",
    "SampleForms",
    "agency_id",
    "people_in",
]
