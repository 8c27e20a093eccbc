"""The aiohttp client of the `asyncio` strategy against the fake: the same error types, signing,
keep-alive and deadline handling as the blocking client."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bitso_collector.bitso_client import BitsoClient
from bitso_collector.call_options import CallOptions
from bitso_collector.clock import ShiftedClock, SystemClock
from bitso_collector.config import Settings
from bitso_collector.errors import (
    BitsoError,
    ConnectionFailed,
    HttpError,
    RequestTimeout,
    Throttled,
    UnknownBook,
)
from bitso_collector.runner import Collector
from bitso_collector.signing import ApiCredentials
from bitso_collector.sinks import LocalSink
from bitso_collector.strategies import make_strategy
from bitso_collector.strategies.asyncio_strategy import (
    AsyncBitsoClient,
    AsyncioStrategy,
    sleep_until,
)
from bitso_logs import JsonLogger
from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from bitso_testkit.processes import FUNCTION_DIR, free_port
from tests.support.faults import FAULT_ERRORS

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def fetch(url: str, book: str = "btc_mxn", **options: Any) -> dict[str, Any]:
    """One order book through a fresh client (its own session), as one call would."""
    aggregate = options.pop("aggregate", True)
    timeout = options.pop("timeout", None)

    async def go() -> dict[str, Any]:
        async with AsyncBitsoClient(url, **options) as client:
            return await client.order_book(book, aggregate, timeout=timeout)

    return run(go())


def test_an_order_book_comes_back_with_string_levels(fake_bitso: FakeBitso) -> None:
    payload = fetch(fake_bitso.url)
    assert len(payload["bids"]) == len(payload["asks"]) == 50
    assert all(isinstance(level["price"], str) for level in payload["bids"])
    full = fetch(fake_bitso.url, aggregate=False)  # ~600 KB
    assert len(full["bids"]) == 1000 and all("oid" in level for level in full["bids"])
    assert [entry.aggregate for entry in fake_bitso.requests] == [True, False]


@pytest.mark.parametrize(("fault", "error"), FAULT_ERRORS)
def test_each_fault_raises_its_own_error(
    fake_bitso: FakeBitso, fault: str, error: type[BitsoError]
) -> None:
    fake_bitso.configure(script=[fault], slow_seconds=1.0)
    with pytest.raises(error) as caught:
        fetch(fake_bitso.url, read_timeout=0.3)
    assert type(caught.value) is error


def test_throttling_is_recognised_by_status_and_by_code(fake_bitso: FakeBitso) -> None:
    fake_bitso.configure(script=["throttle"])
    with pytest.raises(Throttled, match=r"HTTP 420, code 0801"):
        fetch(fake_bitso.url)


def test_unknown_books_unknown_paths_and_dead_servers(fake_bitso: FakeBitso) -> None:
    with pytest.raises(UnknownBook, match="0301"):
        fetch(fake_bitso.url, "nope_usd")
    with pytest.raises(HttpError, match="404"):
        fetch(fake_bitso.url + "/elsewhere")
    with pytest.raises(ConnectionFailed, match=r"127\.0\.0\.1:\d+: connection refused$"):
        fetch(f"http://127.0.0.1:{free_port()}")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("slow", "no reply within 0.3 s"),
        ("truncate", "the reply body was cut off or badly encoded"),
        ("refused", "cannot reach {url}: connection refused"),
    ],
)
def test_both_clients_name_a_transport_failure_alike(fault: str, message: str) -> None:
    """The same error, type and message, whichever HTTP library saw the failure."""
    with FakeBitso(Behaviour(slow_seconds=1.0)) as fake:
        url = f"http://127.0.0.1:{free_port()}" if fault == "refused" else fake.url
        errors: list[BitsoError] = []
        for get in (
            lambda: BitsoClient(url, read_timeout=0.3).order_book("btc_mxn"),
            lambda: fetch(url, read_timeout=0.3),
        ):
            fake.configure(script=[fault])
            with pytest.raises(BitsoError) as caught:
                get()
            errors.append(caught.value)
    from_requests, from_aiohttp = errors
    assert type(from_requests) is type(from_aiohttp)
    assert str(from_requests) == str(from_aiohttp) == message.format(url=url)


def test_a_name_that_does_not_resolve_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver's own failure (no lookup leaves this machine: the resolver is replaced)."""

    def no_such_name(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(ConnectionFailed) as caught:
        fetch("https://api.bitso.com")
    assert str(caught.value) == (
        "cannot reach https://api.bitso.com: name resolution failed (Name or service not known)"
    )


def test_the_deadline_caps_the_request(fake_bitso: FakeBitso) -> None:
    """`timeout` (time left until the job's deadline) wins over a longer read timeout."""
    fake_bitso.configure(script=["hang"])
    began = time.monotonic()
    with pytest.raises(RequestTimeout):
        fetch(fake_bitso.url, read_timeout=10.0, timeout=0.3)
    assert time.monotonic() - began < 1.5


def test_requests_are_signed_like_the_blocking_client() -> None:
    behaviour = Behaviour(api_key="key", api_secret="secret")
    with FakeBitso(behaviour) as fake:
        fetch(fake.url, credentials=ApiCredentials("key", "secret"))
        with pytest.raises(BitsoError, match="0201"):
            fetch(fake.url, credentials=ApiCredentials("key", "wrong"))
        fetch(fake.url, "eth_mxn")
        assert [entry.auth for entry in fake.requests] == ["valid", "invalid", "none"]
        assert [entry.status for entry in fake.requests] == [200, 401, 200]


def test_one_connection_is_kept_alive_for_a_calls_requests(fake_bitso: FakeBitso) -> None:
    connections = 0
    server = fake_bitso._server
    accept = server.process_request

    def counting(request: Any, address: Any) -> None:
        nonlocal connections
        connections += 1
        accept(request, address)

    server.process_request = counting  # type: ignore[method-assign]

    async def go() -> None:
        async with AsyncBitsoClient(fake_bitso.url) as client:
            for _ in range(5):
                await client.order_book("btc_mxn")

    run(go())
    assert len(fake_bitso.requests) == 5
    assert connections == 1


def test_the_client_must_be_opened_in_its_loop() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        run(AsyncBitsoClient("http://127.0.0.1:9").order_book("btc_mxn"))


def test_sleep_until_never_wakes_early() -> None:
    clock = SystemClock()
    target = clock.now() + 0.05
    run(sleep_until(clock, target))
    assert 0 <= clock.now() - target < 0.03


def test_make_strategy_builds_asyncio_and_main_does_not_import_aiohttp() -> None:
    strategy = make_strategy("asyncio", "http://127.0.0.1:9", None)
    assert isinstance(strategy, AsyncioStrategy) and strategy.name == "asyncio"
    strategy.close()
    probe = "import sys, main; print(json.dumps(sorted(m for m in sys.modules if 'aiohttp' in m)))"
    out = subprocess.run(
        [sys.executable, "-c", f"import json; {probe}"],
        cwd=FUNCTION_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == []


def test_full_order_books_are_stored_with_their_oids(tmp_path: Path) -> None:
    """`aggregate=false` through the strategy: big replies are normalised off the loop."""
    period_ms = 4000
    with FakeBitso(Behaviour(window=period_ms / 1000, limit=31)) as fake:
        settings = Settings(
            api_url=fake.url, aggregate=False, requests_per_minute=30, strategy="asyncio"
        )
        now = time.time()
        minute_start = (int(now * 1000) // period_ms + 1) * period_ms / 1000
        clock = ShiftedClock(minute_start - 0.02 - now)  # a minute begins 20 ms from now
        collector = Collector(
            settings,
            LocalSink(tmp_path),
            AsyncioStrategy(fake.url),
            clock,
            JsonLogger(io.StringIO()),
            period_ms=period_ms,
        )
        record = collector.run(
            CallOptions(schedule_time=minute_start, duration_seconds=1)
        ).to_json()
    stored = [p for p in tmp_path.rglob("*.json") if "_runs" not in p.parts]
    assert record["status"] == "ok", record
    assert record["written"] == len(stored) == len(fake.served) >= 7
    document = json.loads(stored[0].read_text())
    assert document["aggregate"] is False
    assert len(document["bids"]) == 1000 and all(level["oid"] for level in document["bids"])
