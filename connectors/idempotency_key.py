"""The ``Idempotency-Key`` vocabulary both sides speak: the header a client sends with every write, and
the codes an agency answers a key with. The agency clients read these codes; the sandboxes
(``connectors.sandbox_kit.idempotency``) answer with them.
"""

from __future__ import annotations

from typing import Final

HEADER: Final = "Idempotency-Key"
"""The request header carrying the key: a connector sends ``request.handoff_id``."""

REPLAYED_HEADER: Final = "Idempotent-Replayed"
"""Set to ``true`` on an answer replayed from an earlier request with the same key."""

KEY_REUSED: Final = "IDEMPOTENCY_KEY_REUSED"
"""The key was used before with another body: a request the agency will never accept as sent."""

KEY_IN_PROGRESS: Final = "IDEMPOTENCY_KEY_IN_PROGRESS"
"""The first request with this key is still running at the agency: ask again later."""

KEY_INVALID: Final = "IDEMPOTENCY_KEY_INVALID"
"""The key is not 1 to 255 printable characters."""
