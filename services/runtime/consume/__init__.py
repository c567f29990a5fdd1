"""Consuming: the one path every record takes from Kafka to a service's handler and back."""
