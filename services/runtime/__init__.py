"""The runtime every service and the connector host share, so that no service writes its own.

========  ============================  ====================================================================
concern   module                        what it does
========  ============================  ====================================================================
consume   consume.consumer              the one consume path: parse, dead-letter poison, dedupe, dispatch to
                                        the service's ``HANDLERS`` map, commit, ack
          consume.records               events as Kafka records (CloudEvents binary mode) and back
          consume.offsets               offsets marked per record, committed in the background
          consume.headers               the headers the runtime adds to a record's own
          consume.ids                   name-based event ids for hot paths
failures  failures.table                every failure class and what the runtime does with it, in one table
                                        (retried, tier, dead letter, call result, circuit effect)
          failures.blip_retry           in-process retries of an agency's blips (tenacity)
          failures.retry_tiers          consumers of the delayed retry topics (10 s, 1 min, 10 min)
          failures.dead_letter_records  a dead-letter record: the original, its story in headers
          failures.dead_letter_replay   the operators' side: list, inspect, replay
          failures.circuit              the circuit breaker per agency
shell     shell.service                 the ASGI app every service runs in: probes, metrics, the broker,
                                        supervised background loops
          shell.settings                settings every process shares (Kafka access, data dir, port)
          shell.kafka                   the Kafka clients: the FastStream broker, the relay's producer
          shell.serve                   ``python -m services.<name>``: uvicorn around the app
          shell.replication             the start-up check that topics are kept in several copies
          shell.topics_admin            creating the declared topics
          shell.asyncapi                the AsyncAPI document, generated from the broker
storage   storage.store                 processed ids and the outbox, in the service's database
          storage.outbox                the transactional outbox and its relay to Kafka
          storage.sqlite                SQLite as the default store
observe   observe.metrics               every ``lienthong_*`` Prometheus metric
          observe.logs                  JSON logs with personal data masked
          observe.tracing               W3C trace context across every hop
          observe.lag                   this process's consumer lag
trust     trust.signing                 every producer signs, every consumer verifies
          trust.keys                    Ed25519 signing keys and the trust store
========  ============================  ====================================================================
"""
