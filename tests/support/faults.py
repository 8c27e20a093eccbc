"""What each scripted fault of the fake Bitso must become in a client: one error type each.

Shared by the blocking and the asyncio client tests, which must agree on it.
"""

from bitso_collector.errors import (
    BitsoError,
    MalformedReply,
    RequestTimeout,
    ServerError,
    Throttled,
)

#: Fake fault -> the error a client raises. "slow" replies after the client's read timeout.
FAULT_ERRORS: list[tuple[str, type[BitsoError]]] = [
    ("throttle", Throttled),
    ("5xx", ServerError),
    ("garbage", MalformedReply),
    ("empty", MalformedReply),
    ("truncate", MalformedReply),
    ("hang", RequestTimeout),
    ("slow", RequestTimeout),
]
