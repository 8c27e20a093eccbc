"""One scheduled call through the real server with streams on, a diff dropped 8 s in and the
socket cut (reconnects refused for half a second) 15 s in: what the read-back tests read."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.fake_ws import FakeBitsoWs
from tests.conftest import FunctionServer, StartFunction

BOOKS = ("btc_mxn", "eth_mxn")
CALL_SECONDS = 24


def record_faulty_minute(
    start_function: StartFunction, rest: FakeBitso, socket: FakeBitsoWs
) -> tuple[FunctionServer, float, requests.Response]:
    """The server, the minute's start and the call's reply (asserted 200)."""
    server = start_function(
        {
            "BITSO_BOOKS": ",".join(BOOKS),
            "BITSO_API_URL": rest.url,
            "BITSO_WS_URL": socket.url,
            "STREAMS": "trades,diff-orders",
        }
    )
    minute = server.new_minute(-0.3)
    assert server.clock is not None
    shift = server.clock.now() - time.time()
    socket.clock = lambda: time.time() + shift  # the socket stamps messages with that clock
    replies: list[Any] = []
    call = threading.Thread(
        target=lambda: replies.append(
            server.call({"duration_seconds": CALL_SECONDS}, minute_start=minute, timeout=90)
        )
    )
    call.start()
    while socket.clock() < minute + 8:
        time.sleep(0.05)
    socket.drop_diffs(1, "btc_mxn")
    while socket.clock() < minute + 15:
        time.sleep(0.05)
    socket.refuse(0.5)
    socket.cut()
    call.join()
    (reply,) = replies
    assert reply.status_code == 200, reply.text
    return server, minute, reply
