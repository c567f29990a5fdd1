"""Headers the runtime adds to a record's own (CloudEvents ``ce_*`` headers travel untouched)."""

from typing import Final

RETRY_ATTEMPT: Final = "lienthong-retry-attempt"  # 1 on the first delay tier, 2 on the second, …
RETRY_DUE_MS: Final = "lienthong-retry-due-ms"  # epoch milliseconds before which it must not run
FAILING_SINCE: Final = "lienthong-first-failure"  # ISO time of the handoff's first transient failure
LAST_ERROR: Final = "lienthong-last-error"  # the last failure's message (no personal data)
REPLAY_ID: Final = "lienthong-replay-id"  # set by `lienthong dlq replay`: <dlq topic>/<partition>/<offset>
# The signature over the event id and the replay id / retry attempt, by whoever set them, and its key
# (services.runtime.trust.header_signing): without it those headers would give any copy a fresh dedupe key.
HEADERS_SIGNATURE: Final = "lienthong-headers-signature"
HEADERS_KEY_ID: Final = "lienthong-headers-keyid"

RUNTIME_HEADERS: Final = (
    RETRY_ATTEMPT,
    RETRY_DUE_MS,
    FAILING_SINCE,
    LAST_ERROR,
    REPLAY_ID,
    HEADERS_SIGNATURE,
    HEADERS_KEY_ID,
)
