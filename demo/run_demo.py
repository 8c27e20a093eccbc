"""`make demo`: the whole cloud path, offline, in about 20 seconds.

Starts the fake Bitso (one process: the REST API and the WebSocket, driven by the same order-level
markets), an in-memory GCS emulator behind the strict proxy that enforces create-only writes, and
the real `functions-framework --target=fetch_book` server with GCS_BUCKET, STORAGE_EMULATOR_HOST
and STREAMS pointing at them. Triggers one call as Cloud Scheduler would (10 s of collection),
lists the `gs://` objects that landed (snapshots, anchors and the stream objects), shows what the
streams recorded, prints the run record, calls the same minute again to show the claim at work
(409, nothing sent to Bitso), then stops everything by PID.
Nothing leaves 127.0.0.1 and nothing is kept: the emulator lives in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bitso_format import iso_minute, seconds_to_ms
from bitso_http import SCHEDULE_HEADER
from bitso_testkit.processes import FUNCTION_DIR, base_env, free_port, running, running_fake_market
from bitso_testkit.strict_gcs import StrictGcs, running_strict_gcs

BUCKET = "bitso-demo"
MIN_SECONDS_LEFT = 15.0


def say(text: str = "") -> None:
    print(text, flush=True)


def pick_minute() -> float:
    """This minute if it has 15 s left for the collection, else the next one (waiting for it)."""
    now = time.time()
    minute = math.floor(now / 60) * 60.0
    left = minute + 60 - now
    if left >= MIN_SECONDS_LEFT:
        return minute
    next_minute = iso_minute(seconds_to_ms(minute + 60))
    say(f"Only {left:.0f} s left in this minute; waiting for {next_minute} ...")
    time.sleep(max(0.0, minute + 60 - time.time() - 0.3))
    return minute + 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds to collect (10)")
    parser.add_argument("--books", default="btc_mxn,eth_mxn")
    parser.add_argument("--compression", choices=("none", "gzip"), default="none")
    parser.add_argument(
        "--streams", default="trades,diff-orders", help="STREAMS (empty: snapshots only)"
    )
    parser.add_argument("--rate", type=float, default=20, help="market changes a second per book")
    args = parser.parse_args(argv)
    started = time.monotonic()
    bin_dir = Path(sys.executable).parent

    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bitso-demo-")))
        gcs = stack.enter_context(running_strict_gcs())
        gcs.create_bucket(BUCKET)
        say(f"GCS emulator (in memory, strict create-only proxy): {gcs.url}, bucket gs://{BUCKET}")

        fake = stack.enter_context(running_fake_market(args.books, args.rate, scratch))
        bitso_url, ws_url = fake.rest_url, fake.ws_url
        say(f"Fake Bitso (typical latency): REST {bitso_url}, WebSocket {ws_url}")
        say(f"  one order-level market per book, {args.rate:g} changes a second each")

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = scratch / "function.log"
        settings = {
            "GCS_BUCKET": BUCKET,
            "STORAGE_EMULATOR_HOST": gcs.url,
            "BITSO_API_URL": bitso_url,
            "BITSO_BOOKS": args.books,
            "COMPRESSION": args.compression,
            "STREAMS": args.streams,
            "BITSO_WS_URL": ws_url,
            "LOCAL_DATA_DIR": str(scratch / "data"),
        }
        stack.enter_context(
            running(
                [
                    str(bin_dir / "functions-framework"),
                    "--target=fetch_book",
                    f"--source={FUNCTION_DIR / 'main.py'}",
                    "--host=127.0.0.1",
                    f"--port={port}",
                ],
                base_env(settings),
                f"{url}/robots.txt",
                log,
                cwd=scratch,  # so no .env of the user's is read
            )
        )
        say(f"functions-framework --target=fetch_book: {url}")
        say("  " + " ".join(f"{k}={v}" for k, v in settings.items() if k != "LOCAL_DATA_DIR"))

        minute = pick_minute()
        body = {"duration_seconds": args.seconds}
        headers = {SCHEDULE_HEADER: iso_minute(seconds_to_ms(minute))}
        say()
        say(f"POST {url}  {json.dumps(body)}  {SCHEDULE_HEADER}: {headers[SCHEDULE_HEADER]}")
        say(f"  collecting {args.seconds:g} s of {args.books} ...")
        reply = requests.post(url, json=body, headers=headers, timeout=75)
        record = reply.json()
        say(f"  -> HTTP {reply.status_code}, status {record.get('status')}")

        say()
        say("Objects in the bucket:")
        items = gcs.list_objects(BUCKET)
        for item in items:
            encoding = f", {item['contentEncoding']}" if item.get("contentEncoding") else ""
            say(
                f"  gs://{BUCKET}/{item['name']}  "
                f"({item['size']} bytes, {item['contentType']}{encoding})"
            )

        snapshots = [item for item in items if item["name"][:1].isdigit()]
        for first in snapshots:
            data = gcs.read_object(BUCKET, first["name"])
            if first.get("contentEncoding") == "gzip":
                data = gzip.decompress(data)
            snapshot = json.loads(data)
            if not snapshot["aggregate"]:
                continue  # an anchor: every order, not levels
            say(
                f"  e.g. {first['name'].rsplit('/', 1)[-1]}: sequence {snapshot['sequence']}, "
                f"best bid {snapshot['bids'][0]['price']}, "
                f"best ask {snapshot['asks'][0]['price']}, "
                f"{len(snapshot['bids'])}+{len(snapshot['asks'])} levels, "
                f"{snapshot['latency_ms']:.0f} ms round trip"
            )
            break

        show_streams(gcs, record)

        say()
        say(f"Run record ({record.get('run_record', 'not stored; this is the HTTP reply')}):")
        say(json.dumps(record, indent=2))

        requests_before = len(requests.get(f"{bitso_url}/_requests", timeout=5).json())
        again = requests.post(url, json=body, headers=headers, timeout=75)
        requests_after = len(requests.get(f"{bitso_url}/_requests", timeout=5).json())
        say()
        say(
            f"The same minute again: HTTP {again.status_code} ({again.json().get('status')}); "
            f"Bitso got {requests_after - requests_before} more requests, "
            "the claim object made sure of it."
        )
        failed = reply.status_code != 200 or again.status_code != 409
        if failed:
            say()
            say(f"Something went wrong; the function's log:\n{log.read_text()}")
        say()
        say("Stopping the function server, the fake Bitso and the emulator ...")

    say(f"Done in {time.monotonic() - started:.0f} s.")
    return 1 if failed else 0


def show_streams(gcs: StrictGcs, record: dict[str, Any]) -> None:
    """What the socket recorded, per book and channel, and one line of each kind."""
    streams = record.get("streams")
    if not streams:
        return
    say()
    say(
        f"Streams: {streams['connections']} connection(s), {streams['keepalives']} keep-alives "
        "counted (not stored); slot uses: "
        + (", ".join(f"{u['book']} {u['slot'][11:23]} {u['use']}" for u in record["slot_uses"]))
    )
    for book, channels in streams["books"].items():
        for channel, entry in channels.items():
            sequences = ""
            if entry["first_sequence"] is not None:
                sequences = f", sequences {entry['first_sequence']}..{entry['last_sequence']}"
            say(
                f"  {book} {channel}: {entry['messages']} messages{sequences}, "
                f"{len(entry['sequence_gaps'])} gaps, {entry['backfilled']} backfilled, "
                f"{entry['uncovered_ms']} ms uncovered"
            )
    shown: set[str] = set()
    for channels in streams["books"].values():
        for entry in channels.values():
            for name in entry["objects"]:  # one per hour its lines were received in
                lines = gzip.decompress(gcs.read_object(BUCKET, name)).splitlines()
                for line in lines:
                    kind = "backfilled" if b'"source"' in line else name.split("/", 1)[0]
                    if kind not in shown:
                        shown.add(kind)
                        text = line.decode()
                        say(f"  e.g. a {kind} line: {text[:160]}{'...' if len(text) > 160 else ''}")


if __name__ == "__main__":
    sys.exit(main())
