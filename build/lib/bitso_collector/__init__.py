"""Collector of Bitso order book snapshots: pure logic plus small I/O adapters.

Nothing here creates a network client at import time; the entry point wires the parts per call.
"""
