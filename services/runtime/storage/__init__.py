"""Storage: each service's processed ids and outbox, committed with its own state in one transaction."""
