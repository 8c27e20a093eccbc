"""Where snapshots, run records and minute claims are stored: local disk or GCS, one interface."""

from __future__ import annotations

from ..clock import Clock
from ..config import Settings
from .base import Sink
from .gcs import GcsSink
from .local import LocalSink

__all__ = ["GcsSink", "LocalSink", "Sink", "make_sink"]


def make_sink(settings: Settings, clock: Clock | None = None) -> Sink:
    """GCS when GCS_BUCKET is set, else the local sink under LOCAL_DATA_DIR.

    `clock` is the collector's clock: the deadlines the sink is given are read on it.
    """
    if settings.gcs_bucket:
        return GcsSink(settings.gcs_bucket, clock)
    return LocalSink(settings.local_data_dir)
