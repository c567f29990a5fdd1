"""Liên Thông's services: what is deployed, and the local tools beside it.

Deployed (one container image, one process per service, any number of replicas on Kubernetes)::

    intake/      where a dossier enters: POST /dossiers from the counter or the online portal
                 (api), the receipt code and due date (intake), DossierReceived through the outbox
    router/      where a dossier is routed: each procedure's route, one leg per agency; the
                 decisions are plain functions (routing), the handlers map events onto them
    connector/   where a connector's worker lives: the host that runs any agency's connector
                 (host), its store of handoffs and pending jobs (store), its settings
    tracker/     the supervision view: projection of every topic, the API, the staff's page,
                 the domain gauges and the hash-chained handoff log
    runtime/     what every service shares, by concern (its docstring has the map): consuming,
                 failures (every failure class is decided in runtime/failures/table.py), the
                 service shell, storage, observability and trust

Local tools (never imported by the deployed code; pyproject.toml's import contracts check it)::

    tools/       the ``lienthong`` command, the local stack (``lienthong run``), the embedded
                 Kafka broker and the benchmarks

A dossier's path: intake.api → intake.intake → (outbox) → dossier.received → router.handlers →
router.routing → (outbox) → handoff.<agency>.requested → connector.host → the agency's connector
(``connectors/``) → handoff.outcome → router → … → dossier.closed; the tracker reads every topic.
"""
