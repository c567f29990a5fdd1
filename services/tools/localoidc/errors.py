"""The one error the local provider raises: a sentence a newcomer can act on, never a stack trace."""


class ProviderError(RuntimeError):
    """The local OpenID Connect provider could not be resolved, started, reached or stopped."""
