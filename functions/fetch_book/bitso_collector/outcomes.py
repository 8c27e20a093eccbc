"""Every way a slot can end, and every way a call can end: one enum each, used everywhere."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What became of one slot; the value is what run records and logs say."""

    WRITTEN = "written"
    DUPLICATE = "duplicate"
    LOST = "lost"
    # Skipped before a request was sent.
    LATE = "late"
    DEADLINE = "deadline"
    IN_FLIGHT_LIMIT = "in_flight_limit"
    AFTER_THROTTLE = "after_throttle"
    #: In the silence after a throttling reply (an earlier call's or this one's).
    BACKING_OFF = "backing_off"
    # Started, but no reply by the time fetching stopped.
    ABANDONED = "abandoned"
    # The request failed: the `reason` of each error in `errors.py`.
    THROTTLED = "throttled"
    UNKNOWN_BOOK = "unknown_book"
    API_ERROR = "api_error"
    HTTP_5XX = "http_5xx"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    MALFORMED = "malformed"
    BITSO_ERROR = "bitso_error"
    # A trades backfill page was fetched: the slot stores trades, not a snapshot.
    BACKFILLED = "backfilled"

    @property
    def stored(self) -> bool:
        """The snapshot is in the archive (written now, or already there)."""
        return self in (Outcome.WRITTEN, Outcome.DUPLICATE)

    @property
    def failed(self) -> bool:
        """Counted under `failed` in the run record: neither stored, lost in storage, nor used
        for a trades backfill."""
        return not self.stored and self not in (Outcome.LOST, Outcome.BACKFILLED)


class CallStatus(StrEnum):
    """How a call ended; the app maps each to its HTTP answer."""

    OK = "ok"
    DEGRADED = "degraded"
    THROTTLED = "throttled"
    #: The whole call fell in the silence after a throttling reply: nothing was requested.
    BACKING_OFF = "backing_off"
    LOST = "lost"
    CLAIMED = "claimed"
    MISCONFIGURED = "misconfigured"
    #: The call's minute has no slot left that could still start (nothing claimed or requested).
    TOO_LATE = "too_late"
    #: The call names a minute too far ahead of this server's clock (nothing claimed or requested).
    TOO_EARLY = "too_early"
