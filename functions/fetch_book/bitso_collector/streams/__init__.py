"""Streams: Bitso's WebSocket `trades` and `diff-orders` recorded beside the snapshots (`STREAMS`).

Pure parts: `protocol` (what a message is), `subscriptions` (acks matched in order per channel),
`tally` (sequence checks, coverage), `planner` (what each slot is used for), `backfill` (which
REST trades fill the socket's holes), `objects` (the gzipped lines), `summary` (the run record's
part). `state` joins them behind one lock; `client` is the one adapter (the socket's thread).
"""
