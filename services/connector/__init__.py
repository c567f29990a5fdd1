"""The connector service: one process per agency, the host (:mod:`services.connector.host`) running that
agency's connector (``connectors/``) with everything a connector must not own: failures, retries,
the circuit breaker, dead letters, outcomes and polling pending work."""
