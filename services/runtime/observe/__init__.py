"""Observability: metrics, logs, traces and consumer lag, the same in every process."""
