"""The blocking Bitso client against the fake: one error type per failure, signed requests."""

from __future__ import annotations

import socket

import pytest

from bitso_collector.bitso_client import BitsoClient
from bitso_collector.errors import (
    ConnectionFailed,
    HttpError,
    Throttled,
    UnknownBook,
)
from bitso_collector.signing import ApiCredentials
from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from bitso_testkit.processes import free_port
from tests.support.faults import FAULT_ERRORS


def test_an_order_book_comes_back_with_string_levels(fake_bitso: FakeBitso) -> None:
    payload = BitsoClient(fake_bitso.url).order_book("btc_mxn")
    assert len(payload["bids"]) == len(payload["asks"]) == 50
    assert all(isinstance(level["price"], str) for level in payload["bids"])
    assert int(payload["sequence"]) > 0
    full = BitsoClient(fake_bitso.url).order_book("btc_mxn", aggregate=False)
    assert len(full["bids"]) == 1000 and all("oid" in level for level in full["bids"])
    assert [e.aggregate for e in fake_bitso.requests] == [True, False]


@pytest.mark.parametrize(("fault", "error"), FAULT_ERRORS)
def test_each_fault_raises_its_own_error(
    fake_bitso: FakeBitso, fault: str, error: type[Exception]
) -> None:
    fake_bitso.configure(script=[fault], slow_seconds=1.0)
    with pytest.raises(error) as caught:
        BitsoClient(fake_bitso.url, read_timeout=0.3).order_book("btc_mxn")
    assert type(caught.value) is error


def test_unknown_books_unknown_paths_and_dead_servers(fake_bitso: FakeBitso) -> None:
    with pytest.raises(UnknownBook, match="0301"):
        BitsoClient(fake_bitso.url).order_book("nope_usd")
    with pytest.raises(HttpError, match="404"):
        BitsoClient(fake_bitso.url + "/elsewhere").order_book("btc_mxn")
    with pytest.raises(ConnectionFailed, match=r"127\.0\.0\.1:\d+: connection refused$"):
        BitsoClient(f"http://127.0.0.1:{free_port()}").order_book("btc_mxn")
    with pytest.raises(ConnectionFailed, match="InvalidURL"):  # any requests error is one slot's
        BitsoClient("http://127.0.0.1:99999").order_book("btc_mxn")


def test_the_fake_throttles_past_60_starts_a_minute_and_locks_out() -> None:
    with FakeBitso(Behaviour(limit=60, window=60)) as fake:
        client = BitsoClient(fake.url)
        for _ in range(60):
            client.order_book("btc_mxn")
        with pytest.raises(Throttled, match="0801"):
            client.order_book("btc_mxn")
        with pytest.raises(Throttled):
            client.order_book("btc_mxn")
        assert [e.status for e in fake.requests[-3:]] == [200, 420, 420]


def test_signed_requests_verify_and_bad_keys_are_refused() -> None:
    with FakeBitso(Behaviour(api_key="key-1", api_secret="secret-1")) as fake:
        BitsoClient(fake.url, ApiCredentials("key-1", "secret-1")).order_book("btc_mxn")
        with pytest.raises(Exception, match="0201") as caught:
            BitsoClient(fake.url, ApiCredentials("key-1", "wrong")).order_book("btc_mxn")
        assert "wrong" not in str(caught.value)
        assert [e.auth for e in fake.requests] == ["valid", "invalid"]


def test_a_name_that_does_not_resolve_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver's own failure (no lookup leaves this machine: the resolver is replaced)."""

    def no_such_name(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    with pytest.raises(ConnectionFailed) as caught:
        BitsoClient("https://api.bitso.com").order_book("btc_mxn")
    assert str(caught.value) == (
        "cannot reach https://api.bitso.com: name resolution failed (Name or service not known)"
    )
