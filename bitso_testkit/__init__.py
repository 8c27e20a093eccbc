"""Fakes that behave like the real services, on 127.0.0.1 only: Bitso's REST API and WebSocket
(driven by the same order-level markets, `market`), a strict GCS proxy over the storage
emulator, Secret Manager; and the process launcher the tests, `make demo` and `make bench` share.
Development only: never deployed with a function."""
