"""Where snapshots, run records and minute claims are stored: local disk or GCS, one interface."""

from __future__ import annotations

from ..config import Settings
from .base import Sink
from .local import LocalSink

__all__ = ["LocalSink", "Sink", "make_sink"]


def make_sink(settings: Settings) -> Sink:
    """The local sink under LOCAL_DATA_DIR when no bucket is configured."""
    return LocalSink(settings.local_data_dir)
