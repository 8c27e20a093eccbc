"""Object names and request signing."""

from __future__ import annotations

from datetime import UTC, datetime

from bitso_collector.bitso_client import RequestSigner, order_book_path
from bitso_collector.signing import ApiCredentials, NonceSource, authorization_header, signature
from bitso_format import claim_name, run_record_name, seconds_to_ms, snapshot_name

SLOT_MS = int(datetime(2026, 11, 24, 10, 15, 7, 118000, tzinfo=UTC).timestamp() * 1000)
MINUTE = datetime(2026, 11, 24, 10, 15, tzinfo=UTC).timestamp()


def test_snapshot_names_follow_the_design() -> None:
    assert (
        snapshot_name("", "btc_mxn", SLOT_MS) == "2026/11/24/10/btc_mxn_20261124T101507.118Z.json"
    )
    assert (
        snapshot_name("raw/bitso", "eth_mxn", SLOT_MS, "gzip")
        == "raw/bitso/2026/11/24/10/eth_mxn_20261124T101507.118Z.json.gz"
    )
    assert snapshot_name("", "btc_mxn", SLOT_MS - 7118).endswith("T101500.000Z.json")


def test_run_record_and_claim_names() -> None:
    assert run_record_name("", seconds_to_ms(MINUTE)) == "_runs/2026/11/24/10/20261124T1015Z.json"
    assert claim_name("p", seconds_to_ms(MINUTE)) == "p/_runs/2026/11/24/10/20261124T1015Z.claim"


def test_signature_matches_an_independent_hmac() -> None:
    # Expected values computed with `openssl dgst -sha256 -hmac`.
    assert (
        signature("my-secret-value", "1700000000000", "GET", order_book_path("btc_mxn", True))
        == "b1f783c49180243e5c4862a7602a69d028407479c37634e7792820fb29de9713"
    )
    body = '{"book":"btc_mxn","side":"buy","type":"limit","major":"0.01","price":"40000"}'
    assert (
        signature("secret", "1503088536000", "post", "/v3/orders/", body)
        == "a7dedd743073410d376fa1f75b89da4c883bf4d09413e83cc2d02f9f7d32f0a5"
    )


def test_header_format_and_no_secret_in_it() -> None:
    creds = ApiCredentials("my-key", "my-secret-value")
    header = authorization_header(creds, "1700000000000", "GET", "/v3/order_book/?book=btc_mxn")
    key, nonce, sig = header.removeprefix("Bitso ").split(":")
    assert (key, nonce, len(sig)) == ("my-key", "1700000000000", 64)
    assert "my-secret-value" not in header
    assert "my-secret-value" not in repr(creds)


def test_nonces_strictly_increase_and_unsigned_requests_have_no_header() -> None:
    nonces = NonceSource()
    values = [int(nonces.next()) for _ in range(1000)]
    assert values == sorted(set(values))
    assert "Authorization" not in RequestSigner(None).headers("GET", "/v3/order_book/")
    signed = RequestSigner(ApiCredentials("k", "s")).headers("GET", "/v3/order_book/")
    assert signed["Authorization"].startswith("Bitso k:")
