"""Who may speak for an agency: its connector, and no one else.

A valid signature proves which producer sent an event (the verifier ties the key id to the producer);
it does not prove the event was that producer's to send. The land connector sees every land-transfer
dossier and could derive the tax leg's handoff id: a "completed" tax outcome it signed would skip the
payment. So an outcome counts only when the producer is the connector of the leg's agency and the
outcome names that agency. The router (which dead-letters such an outcome) and the tracker (which
skips it) check it with :func:`check_outcome`; the connector host signs as :func:`connector_producer`
of its agency, so the name it signs as and the name the checks expect cannot drift apart.
"""

from __future__ import annotations

from schemas.agencies import Agency
from schemas.errors import EventContractError
from schemas.events import HandoffReported, OperatorActionRecorded

OPERATOR_TOOLS = frozenset({"tracker", "dlq-tool"})
"""The producers that record operator actions: the supervision page (the tracker) and the dead-letter
tool (``lienthong dlq``). The only ones whose :class:`OperatorActionRecorded` enter the handoff log."""


class NotTheAgencysOutcome(EventContractError):
    """An outcome reported for a leg by someone who does not speak for the leg's agency (another
    agency's connector, or an outcome naming another agency): dead-lettered with error class
    ``authorization``, never applied."""


def connector_producer(agency: Agency | str) -> str:
    """The producer name of ``agency``'s connector: ``connector.tax``. The only producer whose outcomes
    count for the agency's legs, and the name its signing key is registered under."""
    return f"connector.{Agency(agency).value}"


def check_outcome(event: HandoffReported, leg_agency: Agency | str) -> None:
    """Raise :class:`NotTheAgencysOutcome` unless ``event`` comes from the connector of
    ``leg_agency`` and names that agency."""
    agency = Agency(leg_agency)
    expected = connector_producer(agency)
    if event.producer != expected or event.data.agency is not agency:
        raise NotTheAgencysOutcome(
            f"outcome of step {event.data.step_id} (a {agency.value} leg) reported by {event.producer}"
            f" about {event.data.agency.value}: only {expected} speaks for {agency.value}"
        )


class NotAnOperatorTool(EventContractError):
    """An operator action recorded by a producer that is not an operator tool (say, a connector
    claiming that a person replayed something): dead-lettered with error class ``authorization``,
    never appended to the handoff log."""


def check_operator_action(event: OperatorActionRecorded) -> None:
    """Raise :class:`NotAnOperatorTool` unless ``event`` comes from one of :data:`OPERATOR_TOOLS`."""
    if event.producer not in OPERATOR_TOOLS:
        raise NotAnOperatorTool(
            f"operator action recorded by {event.producer}: only {', '.join(sorted(OPERATOR_TOOLS))}"
            " record operator actions"
        )
