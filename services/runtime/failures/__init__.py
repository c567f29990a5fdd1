"""Failures: where each is classified (:mod:`~services.runtime.failures.table`) and what follows from
it: blip retries, the delayed retry tiers, dead letters and their replay, the circuit breaker."""
