"""The one error the local broker raises: a sentence a newcomer can act on, never a stack trace."""


class BrokerError(RuntimeError):
    """The local Kafka broker could not be resolved, started, reached or stopped."""
